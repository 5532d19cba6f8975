"""Grounded decoding: keep a generated answer a verbatim span of given passages.

This first part maps token ids to the exact bytes they stand for inside a decoded sequence, for
transformers tokenizers and for llama.cpp models alike: what a span constraint compares with the
passages' bytes.
"""

from __future__ import annotations

import ctypes
import json
import re
import weakref
from collections.abc import Iterator
from functools import lru_cache
from typing import Any

__all__ = ["llama_token_bytes", "token_bytes"]

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
    object is returned on later calls).

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
