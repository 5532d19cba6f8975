"""Grounded decoding: the bytes of SmolLM2's (byte-level BPE) and Gemma-3's (SentencePiece-style,
byte fallback) tokens, from transformers and from llama.cpp."""

from __future__ import annotations

import functools

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from slmkit.models.grounding import llama_token_bytes, token_bytes

SMOLLM, GEMMA = "smollm2-135m-instruct", "gemma3-270m"

# Passage material: ASCII words and digits, punctuation, brackets, line breaks, 2-, 3- and 4-byte
# characters (an emoji is a partial token in SmolLM2's vocabulary, one token in Gemma's).
WORDS = [
    "Denver", "the", "city", "of", "is", "in", "1858", "3.14", "gold", "rush", "café", "Straße",
    "naïve", "中文", "東京", "😀", "🎉", "x", "ab", "Paris", "(river)", '"quoted"', "e.g.", "—", "%",
]  # fmt: skip
SEPARATORS = [" ", " ", " ", ", ", ". ", "\n", " (", ") ", "\n\n", "  ", "\t", "-", "\u00a0"]


@st.composite
def passages(draw, max_words: int = 40) -> str:
    parts = []
    for _ in range(draw(st.integers(1, max_words))):
        parts.append(
            draw(st.sampled_from(WORDS) | st.text("abcdefghijkXYZ0123456789", min_size=1, max_size=8))
        )
        parts.append(draw(st.sampled_from(SEPARATORS)))
    return "".join(parts[:-1])


# Gemma's 262k-entry tokenizer takes several seconds to load: its tests are slow ones.
BOTH = [SMOLLM, pytest.param(GEMMA, marks=pytest.mark.slow)]


@functools.cache
def _tokenizer(name: str):
    from slmkit.models.loading import load_tokenizer

    return load_tokenizer(name)


def _stops(tokenizer, name: str) -> list[int]:
    # The chat model stops at end of turn; the base model (no template) at a newline too.
    return [tokenizer.eos_token_id] if name == SMOLLM else [tokenizer.eos_token_id, 107]


# --- Token bytes ---------------------------------------------------------------------------------


@pytest.mark.parametrize("name", BOTH)
@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(text=passages() | st.text(st.characters(codec="utf-8", exclude_categories=["Cs"]), max_size=40))
def test_token_bytes_concatenate_to_the_decoded_text(name, text):
    tokenizer = _tokenizer(name)
    ids = tokenizer.encode(text, add_special_tokens=False)
    joined = b"".join(token_bytes(tokenizer)[i] for i in ids)
    decoded = tokenizer.decode(ids)
    assert joined.decode("utf-8", errors="replace") == decoded
    # Neither tokenizer prepends a space to the first word, so the bytes are the text's exactly (a
    # Llama-2-style one would give one leading space more, which its decode strips) -- unless the
    # vocabulary lacks a byte: SmolLM2's has no 0xF1 (U+40000..U+7FFFF start with it) and drops it.
    if decoded == text:
        assert joined == text.encode()


@pytest.mark.parametrize("name", BOTH)
def test_token_bytes_are_computed_once_and_empty_for_special_tokens(name):
    tokenizer = _tokenizer(name)
    tb = token_bytes(tokenizer)
    assert token_bytes(tokenizer) is tb
    assert len(tb) >= len(tokenizer)
    assert all(tb[i] == b"" for i in tokenizer.all_special_ids)
    assert tb[tokenizer.convert_tokens_to_ids(tokenizer.tokenize(" Paris")[0])] == b" Paris"


def test_token_bytes_refuses_a_wordpiece_tokenizer(minilm_tokenizer):
    with pytest.raises(ValueError, match="neither byte-level nor SentencePiece"):
        token_bytes(minilm_tokenizer)


@pytest.fixture(scope="module")
def smollm_llama():
    """SmolLM2's packaged Q4_1 GGUF in llama.cpp: vocabulary only, no weights (fast)."""
    llama_cpp = pytest.importorskip("llama_cpp", reason="needs llama-cpp-python (the llama extra)")
    from slmkit.models.cache import cache_dir
    from slmkit.models.registry import PACKAGED_MODELS

    llm = llama_cpp.Llama(
        model_path=str(PACKAGED_MODELS[SMOLLM].locate(cache_dir())), vocab_only=True, verbose=False
    )
    yield llm
    llm.close()


def test_llama_token_bytes_match_the_transformers_ones(smollm_llama):
    tb = llama_token_bytes(smollm_llama)
    assert llama_token_bytes(smollm_llama) is tb
    assert tb == token_bytes(_tokenizer(SMOLLM))  # every id, the special ones (b"") included
