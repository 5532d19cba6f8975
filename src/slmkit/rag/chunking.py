"""Split documents into token-bounded, overlapping chunks for embedding and retrieval.

Chunks are packed from whole sentences so a retrieved chunk reads as prose, and neighbouring chunks
share their boundary sentences so a fact that straddles a boundary is still found in one piece.
Lengths are counted in the embedder's own tokens, because that is the limit that truncates silently.

Sentences are found by ``sentencex`` (Wikimedia's rule-based segmenter, in Rust), which knows
abbreviations, initials and decimals: on 35 hand-written cases ("Dr.", "e.g.", "U.S.", "No. 5",
"J. R. R. Tolkien", "$4.50", "Ph.D.", ...) it split 32 right, pysbd 31, syntok 32 and the regex used
before 10; it took 0.01 ms per SQuAD paragraph (pysbd 4.1 ms, syntok 0.7 ms).
"""

from __future__ import annotations

import re
from bisect import bisect_left
from collections.abc import Iterable
from dataclasses import dataclass
from itertools import chain
from typing import Any

import sentencex

from slmkit.config import ChunkingConfig
from slmkit.errors import ConfigError
from slmkit.rag.documents import Chunk, Document, content_hash

# A blank line ends a paragraph (and so a sentence), which also separates headings and list items.
_PARAGRAPH_BREAK = re.compile(r"\n[ \t]*\n\s*")
# The segmenter's rules (abbreviations, quotes) are English ones; other languages still split at
# their sentence-final punctuation, only without their own abbreviation lists.
_LANGUAGE = "en"


@dataclass(frozen=True)
class _Unit:
    """An unbreakable piece to pack: a sentence, or a slice of an over-long sentence."""

    start: int
    end: int
    tokens: int


@dataclass(frozen=True)
class _Tokens:
    """Character offsets of every token of the text, from a single tokenizer call."""

    starts: list[int]
    ends: list[int]


def chunk_spans(text: str, tokenizer: Any, chunk_tokens: int, overlap_tokens: int) -> list[tuple[int, int]]:
    """Character spans ``(start, end)`` of ``text``'s chunks, in order.

    Whole sentences are packed into chunks of at most ``chunk_tokens`` tokens; each chunk after the
    first starts with the trailing sentences of the previous one, up to ``overlap_tokens`` tokens (a
    last sentence longer than that is not repeated, so those neighbours share nothing). A sentence
    longer than a chunk is cut between words into slices that overlap the same way.
    Every non-whitespace character of ``text`` lies in some span; spans are non-empty and carry no
    leading or trailing whitespace. Whitespace-only text gives no spans.

    Token counts come from one tokenization of the whole text. For WordPiece tokenizers such as
    MiniLM's they equal the count of tokenizing each chunk alone, because cuts fall between words; only
    a single word longer than a whole chunk is cut inside.

    Args:
        tokenizer: A Hugging Face *fast* tokenizer (offsets are needed), normally the embedder's.

    Raises:
        ConfigError: ``chunk_tokens < 1``, ``overlap_tokens < 0``, ``overlap_tokens >= chunk_tokens``
            or a tokenizer without offset support.
    """
    _check_sizes(chunk_tokens, overlap_tokens)
    tokens = _tokenize(text, tokenizer)
    units: list[_Unit] = []
    for start, end in sentence_spans(text):
        units.extend(_sentence_units(text, start, end, tokens, chunk_tokens, overlap_tokens))
    return _pack(units, chunk_tokens, overlap_tokens)


def chunk_documents(
    documents: Iterable[Document], tokenizer: Any, config: ChunkingConfig, start_id: int = 0
) -> list[Chunk]:
    """Chunk each document with :func:`chunk_spans`; chunk ids run on from ``start_id``.

    Each chunk keeps its document's source, title, position and (a copy of its) metadata, its index
    within the document, and ``start``/``end`` offsets such that ``document.text[start:end] == chunk.text``.

    Raises:
        ConfigError: see :func:`chunk_spans`.
    """
    _check_sizes(config.chunk_tokens, config.overlap_tokens)
    chunks: list[Chunk] = []
    for document in documents:
        spans = chunk_spans(document.text, tokenizer, config.chunk_tokens, config.overlap_tokens)
        for index, (start, end) in enumerate(spans):
            chunks.append(_make_chunk(document, start_id + len(chunks), index, start, end))
    return chunks


def _make_chunk(document: Document, chunk_id: int, index: int, start: int, end: int) -> Chunk:
    chunk_text = document.text[start:end]
    return Chunk(
        id=chunk_id,
        text=chunk_text,
        source=document.source,
        title=document.title,
        position=document.position,
        chunk_index=index,
        start=start,
        end=end,
        hash=content_hash(chunk_text),
        metadata=dict(document.metadata),
    )


def _check_sizes(chunk_tokens: int, overlap_tokens: int) -> None:
    if chunk_tokens < 1:
        raise ConfigError(f"chunk_tokens must be at least 1, got {chunk_tokens}")
    if overlap_tokens < 0:
        raise ConfigError(f"overlap_tokens must be 0 or more, got {overlap_tokens}")
    if overlap_tokens >= chunk_tokens:
        raise ConfigError(
            f"overlap_tokens ({overlap_tokens}) must be smaller than chunk_tokens ({chunk_tokens}), "
            "or no chunk would add new text; lower overlap_tokens or raise chunk_tokens"
        )


def _tokenize(text: str, tokenizer: Any) -> _Tokens:
    if not getattr(tokenizer, "is_fast", False):
        raise ConfigError(
            f"chunking needs a fast (Rust) Hugging Face tokenizer for character offsets; "
            f"got {type(tokenizer).__name__}. Load it with AutoTokenizer.from_pretrained(..., use_fast=True)"
        )
    # verbose=False: a long document exceeding the model's input length is expected here, since
    # it is being cut to size, so the tokenizer's length warning would only mislead.
    encoding = tokenizer(text, add_special_tokens=False, return_offsets_mapping=True, verbose=False)
    offsets = encoding["offset_mapping"]
    return _Tokens(starts=[s for s, _ in offsets], ends=[e for _, e in offsets])


def sentence_spans(text: str) -> Iterable[tuple[int, int]]:
    """Stripped, non-empty spans of the sentences of ``text``, paragraph by paragraph."""
    start = 0
    for match in _PARAGRAPH_BREAK.finditer(text):
        yield from _paragraph_sentences(text, start, match.start())
        start = match.end()
    yield from _paragraph_sentences(text, start, len(text))


def _paragraph_sentences(text: str, start: int, end: int) -> Iterable[tuple[int, int]]:
    # The boundaries tile the paragraph (character offsets, whitespace included), so every
    # non-whitespace character lands in exactly one sentence.
    for boundary in sentencex.get_sentence_boundaries(_LANGUAGE, text[start:end]):
        yield from _stripped(text, start + boundary["start_index"], start + boundary["end_index"])


def _stripped(text: str, start: int, end: int) -> list[tuple[int, int]]:
    """``[(start, end)]`` narrowed to exclude surrounding whitespace, or ``[]`` if nothing is left."""
    piece = text[start:end]
    left = len(piece) - len(piece.lstrip())
    right = len(piece.rstrip())
    return [(start + left, start + right)] if left < right else []


def _sentence_units(
    text: str, start: int, end: int, tokens: _Tokens, chunk_tokens: int, overlap_tokens: int
) -> list[_Unit]:
    first = bisect_left(tokens.starts, start)
    stop = bisect_left(tokens.starts, end)
    if stop - first <= chunk_tokens:
        return [_Unit(start, end, stop - first)]
    # Slices of `overlap` tokens let the packer rebuild a sliding window whose overlap is a whole
    # number of slices; without overlap, a slice can fill a chunk.
    slice_tokens = min(overlap_tokens, chunk_tokens - overlap_tokens) or chunk_tokens
    return _slice_sentence(text, (start, end), (first, stop), tokens, slice_tokens, chunk_tokens)


def _slice_sentence(
    text: str,
    chars: tuple[int, int],
    token_range: tuple[int, int],
    tokens: _Tokens,
    slice_tokens: int,
    chunk_tokens: int,
) -> list[_Unit]:
    (start, end), (first, stop) = chars, token_range
    units: list[_Unit] = []
    while stop - first > slice_tokens:
        cut = _cut_point(tokens, first, stop, slice_tokens, chunk_tokens)
        if cut is None:
            break
        units.extend(_Unit(s, e, cut - first) for s, e in _stripped(text, start, tokens.starts[cut]))
        first, start = cut, tokens.starts[cut]
    units.extend(_Unit(s, e, stop - first) for s, e in _stripped(text, start, end))
    return units


def _cut_point(tokens: _Tokens, first: int, stop: int, slice_tokens: int, chunk_tokens: int) -> int | None:
    """Token index in ``(first, stop)`` to cut before, or None to keep the rest whole.

    A cut where whitespace precedes the token keeps each piece's token count the same when the piece is
    tokenized alone, so prefer the last word start within ``slice_tokens``, then the first one that
    still fits a chunk. Only a word longer than a chunk is cut inside, at any token with its own offset.
    """
    starts, ends = tokens.starts, tokens.ends
    limit = first + slice_tokens
    longest = min(first + chunk_tokens, stop - 1)
    for i in chain(range(limit, first, -1), range(limit + 1, longest + 1)):
        if starts[i] > ends[i - 1]:
            return i
    if stop - first <= chunk_tokens:
        return None  # the rest is one word (or word and punctuation) that fits a chunk whole
    for i in chain(range(limit, first, -1), range(limit + 1, stop)):
        # Byte-fallback pieces of one character share its offsets and cannot be parted.
        if starts[i] > starts[i - 1]:
            return i
    return None


def _pack(units: list[_Unit], chunk_tokens: int, overlap_tokens: int) -> list[tuple[int, int]]:
    spans: list[tuple[int, int]] = []
    current: list[_Unit] = []
    total = 0
    for unit in units:
        if current and total + unit.tokens > chunk_tokens:
            spans.append((current[0].start, current[-1].end))
            current = _overlap_tail(current, overlap_tokens, chunk_tokens - unit.tokens)
            total = sum(u.tokens for u in current)
        current.append(unit)
        total += unit.tokens
    if current:
        spans.append((current[0].start, current[-1].end))
    return spans


def _overlap_tail(units: list[_Unit], overlap_tokens: int, room: int) -> list[_Unit]:
    """The trailing units of a finished chunk that start the next one: at most ``overlap_tokens``
    tokens, and no more than ``room`` so the next unit still fits."""
    budget = min(overlap_tokens, room)
    total = 0
    kept = 0
    for unit in reversed(units):
        if total + unit.tokens > budget:
            break
        total += unit.tokens
        kept += 1
    return units[len(units) - kept :]
