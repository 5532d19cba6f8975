"""Grounded decoding: keep a generated answer a verbatim span of given passages.

A reader model answers with a short span of its context. Masking every next token that would take
the answer text off the passages makes an invented short answer impossible: whatever the model
picks, ``answer.strip()`` is a substring of one passage. Answers are compared as UTF-8 bytes, the
leading whitespace of the first token ignored (" Denver" may start an answer that reads "Denver" in
the passage), and a stop token is allowed only once the answer is non-empty and ends on a whole
character (a reader, whose empty answer means "not in this passage", passes ``allow_empty=True``).

How a generator uses it (``tb`` is built once per tokenizer and cached; the constraint once per
question)::

    from transformers import LogitsProcessorList

    from slmkit.models.grounding import (
        SpanConstraint, llama_logits_processor, llama_token_bytes, token_bytes,
    )
    from slmkit.models.grounding_torch import SpanLogitsProcessor

    # transformers (TransformersGenerator): a chat model stops at end of turn; a base model, whose
    # answer is one line, at any token that starts with a newline.
    tb = token_bytes(tokenizer)
    if has_chat_template:
        stops = [tokenizer.eos_token_id]
    else:
        stops = [i for i, piece in enumerate(tb) if piece.startswith(b"\\n")]
    constraint = SpanConstraint(tb, passages, stops)
    inputs = tokenizer.apply_chat_template(messages, add_generation_prompt=True,
                                           return_tensors="pt", return_dict=True)
    processor = SpanLogitsProcessor(constraint, prompt_length=inputs["input_ids"].shape[1])
    output = model.generate(**inputs, logits_processor=LogitsProcessorList([processor]), ...)

    # llama.cpp (LlamaCppGenerator): ids, stops and prompt are llama.cpp's own; stop at any
    # end-of-generation token (list them once: a ctypes call per token).
    tb = llama_token_bytes(llm)
    stops = [i for i in range(llm.n_vocab()) if llama_cpp.llama_vocab_is_eog(llm._model.vocab, i)]
    constraint = SpanConstraint(tb, passages, stops)
    for token in llm.generate(prompt, logits_processor=llama_logits_processor(constraint, len(prompt)),
                              ...):
        ...

Cost on a CPU (three ~1,000-character SQuAD passages, a busy 2-core machine): the first step looks
up the passages' substrings, ~7 ms for SmolLM2's 49k vocabulary and ~8 ms for Gemma's 262k; each
later step only the positions the answer so far still matches, ~0.05 ms. Once per tokenizer,
``token_bytes`` takes 0.04 s / 0.3 s and the index of ids by bytes 0.05 s / 0.3-0.7 s.
"""

from __future__ import annotations

import ctypes
import json
import re
import threading
import weakref
from collections.abc import Collection, Iterable, Iterator, Sequence
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

import numpy as np

__all__ = [
    "LlamaSpanLogitsProcessor",
    "SpanConstraint",
    "llama_logits_processor",
    "llama_token_bytes",
    "token_bytes",
]

_WHITESPACE = b" \t\n\r\x0b\x0c"  # what bytes.lstrip() removes
_BYTE_TOKEN = re.compile(r"<0x([0-9A-Fa-f]{2})>")
_token_bytes_cache: weakref.WeakKeyDictionary[Any, list[bytes]] = weakref.WeakKeyDictionary()


# --- Token bytes ---------------------------------------------------------------------------------


def token_bytes(tokenizer: Any) -> list[bytes]:
    """The bytes each token id of a transformers tokenizer stands for inside a decoded sequence.

    ``b"".join(token_bytes(tok)[i] for i in tok.encode(text, add_special_tokens=False))`` is
    ``text.encode()`` (when the vocabulary has every byte the text needs), except that tokenizers
    which prepend a space to the first word (Llama-2's SentencePiece) give that space too (``decode``
    strips it; Gemma and byte-level BPE prepend none).
    Special tokens are ``b""``. Byte-level tokens (GPT-2, SmolLM2, Llama-3, Qwen) map back through
    the GPT-2 byte alphabet; SentencePiece-style tokens (Gemma, Llama-2) turn "▁" into a space and
    ``<0xNN>`` byte-fallback tokens into that byte. The list is computed once per tokenizer (the same
    object is returned on later calls, so :class:`SpanConstraint` can reuse its index).

    Raises:
        ValueError: ``tokenizer`` is not a fast (``tokenizers``-backed) tokenizer, or its decoder is
            neither byte-level nor SentencePiece-style (e.g. WordPiece).
    """
    cached = _token_bytes_cache.get(tokenizer)
    if cached is None:
        cached = _compute_token_bytes(tokenizer)
        _token_bytes_cache[tokenizer] = cached
    return cached


def _compute_token_bytes(tokenizer: Any) -> list[bytes]:
    backend = getattr(tokenizer, "backend_tokenizer", None)
    if backend is None:
        raise ValueError(f"{type(tokenizer).__name__} is not a fast tokenizer; load it with use_fast=True")
    decoders = list(_decoders(json.loads(backend.decoder.__getstate__()) if backend.decoder else {}))
    types = {d.get("type") for d in decoders}
    metaspace = "Metaspace" in types or any(
        d.get("type") == "Replace" and d.get("pattern", {}).get("String") == "▁" for d in decoders
    )
    vocab = backend.get_vocab(with_added_tokens=False)
    added = tokenizer.added_tokens_decoder
    size = max(len(tokenizer), max(vocab.values()) + 1, max(added, default=-1) + 1)
    pieces = [""] * size
    for piece, token_id in vocab.items():
        pieces[token_id] = piece
    if "ByteLevel" in types:
        out = _byte_level_bytes(pieces)
    elif metaspace:
        out = _metaspace_bytes(pieces, byte_fallback="ByteFallback" in types)
    else:
        found = ", ".join(sorted(str(t) for t in types)) or "none"
        raise ValueError(
            f"cannot tell the bytes of {type(tokenizer).__name__}'s tokens: its decoder ({found}) is "
            "neither byte-level nor SentencePiece-style"
        )
    # Added tokens decode to their literal text, or to nothing when special.
    for token_id, token in added.items():
        out[token_id] = b"" if token.special else token.content.encode("utf-8")
    return out


def _decoders(spec: dict[str, Any]) -> Iterator[dict[str, Any]]:
    """A serialized decoder and every decoder nested in it (``Sequence``)."""
    if spec:
        yield spec
    for child in spec.get("decoders") or ():
        yield from _decoders(child)


@lru_cache(maxsize=1)
def _byte_level_table() -> dict[int, int]:
    """``str.translate`` table from GPT-2's printable byte alphabet back to the bytes (as code points)."""
    printable = [*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1), *range(ord("®"), 256)]
    table, shifted = {}, 256
    for byte in range(256):
        if byte in printable:
            table[byte] = byte
        else:
            table[shifted] = byte
            shifted += 1
    return table


def _byte_level_bytes(pieces: list[str]) -> list[bytes]:
    table = _byte_level_table()
    out = []
    for piece in pieces:
        try:
            out.append(piece.translate(table).encode("latin-1"))
        except UnicodeEncodeError:  # not a byte-level piece (an added token: fixed up by the caller)
            out.append(piece.encode("utf-8"))
    return out


def _metaspace_bytes(pieces: list[str], byte_fallback: bool) -> list[bytes]:
    out = [piece.replace("▁", " ").encode("utf-8") for piece in pieces]
    if byte_fallback:
        for token_id, piece in enumerate(pieces):
            if len(piece) == 6 and (match := _BYTE_TOKEN.fullmatch(piece)):
                out[token_id] = bytes([int(match.group(1), 16)])
    return out


def llama_token_bytes(llm: Any) -> list[bytes]:
    """The bytes each token id of a ``llama_cpp.Llama`` model stands for inside a decoded sequence.

    Uses llama.cpp's ``llama_token_to_piece`` (with the leading space that SentencePiece tokens
    carry; control tokens are ``b""``), with a buffer large enough for every token: llama-cpp-python's
    own ``token_to_piece`` returns a zero-padded 32-byte buffer and ``detokenize`` asserts on longer
    tokens. Computed once per ``llm`` (the same list is returned on later calls).
    """
    cached = _token_bytes_cache.get(llm)
    if cached is None:
        cached = _compute_llama_token_bytes(llm)
        _token_bytes_cache[llm] = cached
    return cached


def _compute_llama_token_bytes(llm: Any) -> list[bytes]:
    import llama_cpp

    vocab = llm._model.vocab
    size = 256
    buffer = ctypes.create_string_buffer(size)
    out = []
    for token_id in range(llm.n_vocab()):
        n = llama_cpp.llama_token_to_piece(vocab, token_id, buffer, size, 0, False)
        if n < 0:  # the piece needs -n bytes
            bigger = ctypes.create_string_buffer(-n)
            n = llama_cpp.llama_token_to_piece(vocab, token_id, bigger, -n, 0, False)
            out.append(bigger.raw[:n])
        else:
            out.append(buffer.raw[:n])
    return out


# --- The constraint ------------------------------------------------------------------------------


@dataclass(frozen=True)
class _VocabIndex:
    """Token ids by their bytes, built once per token-bytes list.

    Attributes:
        ids: Token bytes -> one id with those bytes (empty tokens left out).
        more_ids: Token bytes -> the other ids with the same bytes, for the few that share them.
        stripped: Bytes without leading whitespace -> the tokens (as bytes) that read so after it.
        blank: Ids of the tokens that are only spaces or tabs, no line break (sorted).
        longest: The longest key, in bytes.
    """

    ids: dict[bytes, int]
    more_ids: dict[bytes, list[int]]
    stripped: dict[bytes, list[bytes]]
    blank: np.ndarray
    longest: int

    def ids_of(self, pieces: Iterable[bytes]) -> Iterator[int]:
        return _ids_of(self.ids, self.more_ids, pieces)


def _ids_of(
    ids: dict[bytes, int], more_ids: dict[bytes, list[int]], pieces: Iterable[bytes]
) -> Iterator[int]:
    """Every token id of each piece: its first id and the ids of its duplicates."""
    for piece in pieces:
        yield ids[piece]
        yield from more_ids.get(piece, ())


# Keyed by the list's id, holding the list itself so the id cannot be reused while cached.
_index_cache: dict[int, tuple[list[bytes], _VocabIndex]] = {}
_INDEX_CACHE_SIZE = 4
# Indexes are built on the threads that load models (slmkit.models.llama_cpp) as well as where they
# are used: one build at a time, so a list is indexed once and the cache is never evicted from
# while another thread adds to it.
_INDEX_LOCK = threading.Lock()


def _vocab_index(tb: list[bytes]) -> _VocabIndex:
    with _INDEX_LOCK:
        hit = _index_cache.get(id(tb))
        if hit is not None and hit[0] is tb:
            return hit[1]
        index = _build_vocab_index(tb)
        if len(_index_cache) >= _INDEX_CACHE_SIZE:
            _index_cache.pop(next(iter(_index_cache)))
        _index_cache[id(tb)] = (tb, index)
        return index


def _build_vocab_index(tb: list[bytes]) -> _VocabIndex:
    # Built with C-level dict/zip where possible: a Python loop appending to a list per token takes
    # a second for Gemma's 262k tokens, this a tenth of that.
    ids = dict(zip(tb, range(len(tb)), strict=True))
    ids.pop(b"", None)
    more_ids: dict[bytes, list[int]] = {}
    for token_id in [i for i, piece in enumerate(tb) if piece and ids[piece] != i]:
        more_ids.setdefault(tb[token_id], []).append(token_id)
    stripped: dict[bytes, list[bytes]] = {}
    spaced = [p for p in ids if p[:1].isspace()]  # _WHITESPACE is what isspace() accepts
    blank_pieces = []  # among the pieces that start with a space, not a call per token
    for piece in spaced:
        if rest := piece.lstrip(_WHITESPACE):
            stripped.setdefault(rest, []).append(piece)
        elif _is_leading_space(piece):
            blank_pieces.append(piece)
    blank = np.array(sorted(_ids_of(ids, more_ids, blank_pieces)), dtype=np.int64)
    longest = max(map(len, ids), default=0)  # a stripped key is shorter than its token
    return _VocabIndex(ids, more_ids, stripped, blank, longest)


def index_vocabulary(tb: list[bytes]) -> None:
    """Build now the index of ``tb`` that a :class:`SpanConstraint` over it needs (kept per list):
    a fifth of a second for Gemma-3's 262k tokens, which a caller can spend while it waits anyway."""
    _vocab_index(tb)


def _is_leading_space(piece: bytes) -> bool:
    """Whether a token may stand before an answer's first word: spaces or tabs only. Not a line
    break: a base model's answer is one line (its stops are the tokens that start with one)."""
    return bool(piece) and not piece.strip(_WHITESPACE) and b"\n" not in piece


def _windows(text: bytes, starts: Iterable[int], index: _VocabIndex) -> set[bytes]:
    """Every substring of ``text`` from one of ``starts`` as long as a token may be.

    All of them, up to the longest token: a chunk has a few hundred answer starts, so that is some
    ten thousand slices a passage (milliseconds), where an index of every token's prefixes, to stop
    a window once no token begins with it, cost a fresh process a quarter of a second to build and
    made the search no faster (Gemma-3's 262k tokens, three SQuAD paragraphs: 16 ms pruned, 8 ms not).
    """
    windows: set[bytes] = set()
    alive = [i for i in starts if i < len(text)]
    for k in range(1, index.longest + 1):
        windows.update([text[i : i + k] for i in alive])
        alive = [i for i in alive if i + k < len(text)]
    return windows


def _answer_starts(text: str) -> list[int]:
    """Byte offsets of the characters of ``text`` that may start an answer: not whitespace, and not
    inside a word (a letter or digit right after another), so "graduate" is never read out of
    "undergraduates".

    Whitespace as ``str.strip`` sees it (also e.g. a no-break space), so a stripped answer that is
    non-empty here is non-empty after ``decode(...).strip()`` too.
    """
    starts, offset, previous = [], 0, ""
    for char in text:
        if not char.isspace() and not (char.isalnum() and previous.isalnum()):
            starts.append(offset)
        offset += len(char.encode("utf-8"))
        previous = char
    return starts


def _answer_ends(text: str) -> frozenset[int]:
    """Byte offsets where an answer may end: whole characters, and not inside a word (so an answer
    read out of "undergraduates" cannot stop at "undergraduate")."""
    ends, offset, previous = set(), 0, ""
    for char in text:
        if not (char.isalnum() and previous.isalnum()):
            ends.add(offset)
        offset += len(char.encode("utf-8"))
        previous = char
    ends.add(offset)
    return frozenset(ends)


class SpanConstraint:
    """Which tokens may come next so that the answer stays a verbatim span of one passage.

    The answer is the concatenated bytes of the generated tokens with the leading whitespace
    removed; it must be a contiguous byte substring of one passage that starts on a non-whitespace
    character at a word boundary. The first token may be spaces only (no line break), once:
    tokenizers that split digits (Gemma, SmolLM2, Llama-3) write " 1997" as a space token and four
    digits, and banning that space steered every numeric answer to a word ("When?" -> "following
    the"); after it, the next token must carry text (with or without whitespace before it). A stop id
    ends the answer and is allowed only once the answer is non-empty (or with ``allow_empty``) and
    ends on a whole UTF-8 character that is not inside a word; stop ids are never answer text (even
    when their bytes, e.g. a newline, occur in a passage).

    The state is incremental: :meth:`allowed` remembers the ids it saw and the passage positions the
    answer still matches, so a call costs only those positions when ``generated`` extends the last
    call's sequence; any other sequence is replayed from the start.

    Args:
        token_bytes: Bytes of each token id, from :func:`token_bytes` or :func:`llama_token_bytes`
            (pass that same cached list each time: its index of ids by bytes is built once per list).
        passages: The texts the answer must come from.
        stop_ids: End-of-turn / EOS ids; for a base model, whose answer is one line, every token
            that starts with a newline.
        allow_empty: Also allow a stop before any text: for a reader, whose empty answer means "the
            passage does not answer" (slmkit.data.prompts.NO_ANSWER).

    Raises:
        ValueError: ``stop_ids`` is empty (a dead end would leave no token to pick).
    """

    def __init__(
        self,
        token_bytes: list[bytes],
        passages: Sequence[str],
        stop_ids: Collection[int],
        allow_empty: bool = False,
    ) -> None:
        if not stop_ids:
            raise ValueError("stop_ids is empty: give the end-of-turn/EOS ids that end an answer")
        self.token_bytes = token_bytes
        self.passages = [p.encode("utf-8") for p in passages]
        self._starts = [_answer_starts(p) for p in passages]
        self._ends = [_answer_ends(p) for p in passages]
        self.stop_ids = np.array(sorted(set(stop_ids)), dtype=np.int64)
        self._stops = frozenset(int(i) for i in stop_ids)
        self.allow_empty = allow_empty
        self._index = _vocab_index(token_bytes)
        self._first_allowed: np.ndarray | None = None
        self._seen: list[int] = []
        # (passage index, byte offset) pairs where the next token's bytes must start; None: no token
        # read yet (every position is open); an empty list: a dead end.
        self._live: list[tuple[int, int]] | None = None

    def allowed(self, generated: Sequence[int]) -> np.ndarray:
        """Sorted ids that may follow ``generated`` (the answer's token ids so far, prompt excluded).

        Falls back to only the stop ids at a dead end: ``generated`` already left the passages (it
        cannot, if every step was masked with this constraint), no passage has a usable span, or no
        token continues an answer that ends mid-character (a vocabulary without every byte).
        """
        generated = [int(i) for i in generated]
        seen = len(self._seen)
        if len(generated) < seen or generated[:seen] != self._seen:
            self._seen, self._live, seen = [], None, 0
        for token_id in generated[seen:]:
            self._advance(token_id)
        if self._live is None:
            if self._first_allowed is None:
                self._first_allowed = self._first_step()
            first = self._first_allowed
            if not self._seen and first.size:  # nothing generated yet: a space may come first
                first = np.union1d(first, np.setdiff1d(self._index.blank, self.stop_ids))
            if self.allow_empty:
                return np.union1d(first, self.stop_ids)
            return first if first.size else self.stop_ids
        allowed = self._next_step(self._live) if self._live else self.stop_ids
        return allowed if allowed.size else self.stop_ids

    def _advance(self, token_id: int) -> None:
        self._seen.append(token_id)
        if self._live is not None and not self._live:
            return
        piece = self.token_bytes[token_id] if 0 <= token_id < len(self.token_bytes) else b""
        if token_id in self._stops or not piece:
            self._live = []
        elif self._live is None:
            if len(self._seen) == 1 and _is_leading_space(piece):
                return  # the answer has not started
            self._live = self._first_matches(piece.lstrip(_WHITESPACE))
        else:
            self._live = [
                (p, pos + len(piece)) for p, pos in self._live if self.passages[p].startswith(piece, pos)
            ]

    def _first_matches(self, piece: bytes) -> list[tuple[int, int]]:
        """Ends of every occurrence of ``piece`` that starts where an answer may start."""
        live = []
        for p, text in enumerate(self.passages):
            starts = set(self._starts[p])
            start = text.find(piece) if piece else -1
            while start >= 0:
                if start in starts:
                    live.append((p, start + len(piece)))
                start = text.find(piece, start + 1)
        return live

    def _first_step(self) -> np.ndarray:
        # Windows start on a non-whitespace character; a token may add whitespace before them.
        index = self._index
        windows: set[bytes] = set()
        for text, starts in zip(self.passages, self._starts, strict=True):
            windows |= _windows(text, starts, index)
        pieces = [*(windows & index.ids.keys())]
        for rest in windows & index.stripped.keys():
            pieces += index.stripped[rest]
        return self._ids(pieces)

    def _next_step(self, live: list[tuple[int, int]]) -> np.ndarray:
        index = self._index
        windows: set[bytes] = set()
        for p, text in enumerate(self.passages):
            if starts := [pos for q, pos in live if q == p]:
                windows |= _windows(text, starts, index)
        allowed = self._ids(windows & index.ids.keys())
        if any(pos in self._ends[p] for p, pos in live):
            allowed = np.union1d(allowed, self.stop_ids)
        return allowed

    def _ids(self, pieces: Iterable[bytes]) -> np.ndarray:
        ids = np.fromiter(self._index.ids_of(pieces), dtype=np.int64)
        return np.setdiff1d(ids, self.stop_ids)  # sorted and unique


# --- Logits processors ---------------------------------------------------------------------------


class LlamaSpanLogitsProcessor:
    """The same mask for llama-cpp-python's ``Llama.generate(logits_processor=...)``.

    ``generate`` iterates over ``logits_processor``: wrap this in a ``llama_cpp.LogitsProcessorList``
    (:func:`llama_logits_processor` does). It is called with all ids so far (prompt and answer) and
    the logits of the next token, as a vector over the vocabulary.

    Args:
        constraint: The span constraint for this question, built from :func:`llama_token_bytes`.
        prompt_length: Tokens of the prompt.
    """

    def __init__(self, constraint: SpanConstraint, prompt_length: int) -> None:
        self.constraint = constraint
        self.prompt_length = prompt_length

    def __call__(self, input_ids: np.ndarray, scores: np.ndarray) -> np.ndarray:
        allowed = self.constraint.allowed(input_ids[self.prompt_length :].tolist())
        allowed = allowed[allowed < scores.shape[-1]]
        masked = np.full_like(scores, -np.inf)
        masked[allowed] = scores[allowed]
        return masked


def llama_logits_processor(constraint: SpanConstraint, prompt_length: int) -> Any:
    """A ``llama_cpp.LogitsProcessorList`` holding one :class:`LlamaSpanLogitsProcessor`, ready to pass
    as ``Llama.generate(logits_processor=...)`` (which iterates over it)."""
    from llama_cpp import LogitsProcessorList

    return LogitsProcessorList([LlamaSpanLogitsProcessor(constraint, prompt_length)])
