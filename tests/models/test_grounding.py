"""Grounded decoding: token bytes, the span constraint and its two logits processors.

The constraint is checked against a brute-force reading of its definition on small made-up
vocabularies, and by random walks over the real SmolLM2 (byte-level BPE) and Gemma-3
(SentencePiece-style, byte fallback) vocabularies: whatever allowed token a walk takes, the decoded
answer stays a substring of a passage. Real generation runs in the slow tests.
"""

from __future__ import annotations

import functools
import random
import statistics
import time

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from slmkit.models.grounding import (
    LlamaSpanLogitsProcessor,
    SpanConstraint,
    _index_cache,
    llama_logits_processor,
    llama_token_bytes,
    token_bytes,
)
from slmkit.models.grounding_torch import SpanLogitsProcessor

SMOLLM, GEMMA = "smollm2-135m-instruct", "gemma3-270m"
WS = b" \t\n\r\x0b\x0c"

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


# --- A brute-force reading of the definition ------------------------------------------------------


def _answer_starts(text: str) -> set[int]:
    """Offsets of non-space characters that do not continue a word (letter/digit after one)."""
    starts, offset = set(), 0
    for i, char in enumerate(text):
        inside_word = char.isalnum() and i > 0 and text[i - 1].isalnum()
        if not char.isspace() and not inside_word:
            starts.add(offset)
        offset += len(char.encode())
    return starts


def _answer_ends(text: str) -> set[int]:
    """Offsets of character boundaries that are not inside a word, and the end."""
    ends, offset = set(), 0
    for i, char in enumerate(text):
        if not (char.isalnum() and i > 0 and text[i - 1].isalnum()):
            ends.add(offset)
        offset += len(char.encode())
    return ends | {offset}


def _occurrence_ends(texts: list[str], piece: bytes) -> list[tuple[str, int]]:
    """(passage, end) of every occurrence of ``piece`` that starts where an answer may start."""
    found = []
    for text in texts:
        data, starts = text.encode(), _answer_starts(text)
        found += [(text, s + len(piece)) for s in starts if piece and data.startswith(piece, s)]
    return found


def brute_allowed(tb: list[bytes], texts: list[str], stops: list[int], generated: list[int]) -> set[int]:
    ids = [i for i, piece in enumerate(tb) if piece and i not in stops]
    if not generated:
        allowed = {i for i in ids if _occurrence_ends(texts, tb[i].lstrip(WS))}
        if allowed:  # a token of spaces only (no line break) may come first, once
            allowed |= {i for i in ids if not tb[i].strip(WS) and b"\n" not in tb[i]}
        return allowed or set(stops)
    if generated[0] in ids and not tb[generated[0]].strip(WS) and b"\n" not in tb[generated[0]]:
        generated = generated[1:]  # the leading space: what follows is read as the first token
        if not generated:
            return {i for i in ids if _occurrence_ends(texts, tb[i].lstrip(WS))} or set(stops)
    if any(g in stops or not tb[g] for g in generated):
        return set(stops)
    answer = tb[generated[0]].lstrip(WS) + b"".join(tb[g] for g in generated[1:])
    ends = _occurrence_ends(texts, answer)
    if not ends:
        return set(stops)
    allowed = {i for i in ids if _occurrence_ends(texts, answer + tb[i])}
    if any(end in _answer_ends(text) for text, end in ends):
        allowed |= set(stops)
    return allowed or set(stops)


@st.composite
def vocabularies(draw, texts: list[str]) -> list[bytes]:
    """A small vocabulary: pieces of the passages (whole, cut mid-character, with a leading space or
    newline), pieces from nowhere, and two empty (special) tokens at ids 0 and 1."""
    data = b"".join(t.encode() for t in texts) or b"x"
    vocab = [b"", b"", b"\n"]
    for _ in range(draw(st.integers(5, 60))):
        start = draw(st.integers(0, len(data) - 1))
        piece = data[start : start + draw(st.integers(1, 6))]
        prefix = draw(st.sampled_from([b"", b"", b" ", b"\n", b"  "]))
        vocab.append(prefix + piece)
    vocab += draw(st.lists(st.binary(min_size=1, max_size=3), max_size=5))
    vocab += [bytes([b]) for b in range(32, 127)]
    return vocab


@settings(max_examples=150, deadline=None)
@given(data=st.data())
def test_allowed_matches_a_brute_force_reading_of_the_definition(data):
    texts = data.draw(st.lists(passages(max_words=8), min_size=1, max_size=3))
    tb = data.draw(vocabularies(texts))
    stops = [1, 2]  # an empty special token and a newline one: a stop is never answer text
    constraint = SpanConstraint(tb, texts, stops)
    rng = data.draw(st.randoms(use_true_random=False))
    generated: list[int] = []
    for _ in range(12):
        allowed = constraint.allowed(generated)
        assert set(allowed.tolist()) == brute_allowed(tb, texts, stops, generated), generated
        choice = rng.choice(allowed.tolist())
        if choice in stops:
            break
        if generated and rng.random() < 0.2:
            generated.pop()  # not an extension of the last call: the state is replayed
        generated.append(choice)


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


# --- The constraint on real vocabularies ---------------------------------------------------------


@pytest.mark.parametrize("name", BOTH)
@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(texts=st.lists(passages(), min_size=1, max_size=3), rng=st.randoms(use_true_random=False))
def test_random_walks_stay_inside_a_passage(name, texts, rng):
    tokenizer = _tokenizer(name)
    tb, stops = token_bytes(tokenizer), _stops(tokenizer, name)
    constraint = SpanConstraint(tb, texts, stops)
    generated, stopped = [], False
    for _ in range(16):
        allowed = constraint.allowed(generated).tolist()
        words = [i for i in allowed if i not in stops]
        if not words or (len(words) < len(allowed) and rng.random() < 0.25):
            stopped = True
            break
        generated.append(rng.choice(words))
    answer = b"".join(tb[i] for i in generated).lstrip(WS)
    assert any(answer in t.encode() for t in texts)
    if stopped:
        text = tokenizer.decode(generated, skip_special_tokens=True).strip()
        assert text and any(text in t for t in texts), (text, texts)


def test_stop_waits_for_a_non_empty_answer_and_a_whole_character():
    tokenizer = _tokenizer(SMOLLM)
    tb, eos = token_bytes(tokenizer), tokenizer.eos_token_id
    constraint = SpanConstraint(tb, ["Fun 😀 times"], [eos])
    assert eos not in constraint.allowed([])
    first, last = tokenizer.encode(" 😀", add_special_tokens=False)  # 'ĠðŁĺ' 'Ģ': split mid-emoji
    assert first in constraint.allowed([])
    assert eos not in constraint.allowed([first]) and last in constraint.allowed([first])
    assert eos in constraint.allowed([first, last])
    # A reader may abstain with an empty answer when asked to.
    assert eos in SpanConstraint(tb, ["Fun 😀 times"], [eos], allow_empty=True).allowed([])


def test_an_answer_found_twice_keeps_both_places_live():
    tokenizer = _tokenizer(SMOLLM)
    constraint = SpanConstraint(token_bytes(tokenizer), ["Paris is big. I love Paris in spring."], [2])
    (paris,) = tokenizer.encode(" Paris", add_special_tokens=False)
    (is_, in_) = (tokenizer.encode(w, add_special_tokens=False)[0] for w in (" is", " in"))
    allowed = constraint.allowed([paris])
    assert is_ in allowed and in_ in allowed
    assert in_ not in constraint.allowed([paris, is_])


def test_a_leading_space_token_may_start_an_answer_anywhere():
    tokenizer = _tokenizer(SMOLLM)
    (denver,) = tokenizer.encode(" Denver", add_special_tokens=False)
    for passage in ("Denver is high.", "Cities:\nDenver", "(Denver)"):
        assert denver in SpanConstraint(token_bytes(tokenizer), [passage], [2]).allowed([])
    # ... but after the first token, the passage's own spacing decides.
    constraint = SpanConstraint(token_bytes(tokenizer), ["in(Denver)"], [2])
    (in_,) = tokenizer.encode("in", add_special_tokens=False)
    assert denver not in constraint.allowed([in_])


def test_a_number_may_start_with_the_space_token_a_digit_splitting_tokenizer_writes_first():
    # SmolLM2 (as Gemma and Llama-3) writes " 1997" as "Ġ" then one token per digit: banning the
    # lone space made the reader answer "When?" with "following the" instead of "1997".
    tokenizer = _tokenizer(SMOLLM)
    tb, eos = token_bytes(tokenizer), tokenizer.eos_token_id
    space, *digits = tokenizer.encode(" 1997", add_special_tokens=False)
    assert tb[space] == b" " and len(digits) == 4
    constraint = SpanConstraint(tb, ["Following the election in 1997, the UK subscribed."], [eos])
    assert space in constraint.allowed([])
    assert digits[0] in constraint.allowed([space])
    assert space not in constraint.allowed([space])  # once only: the answer must then begin
    assert eos not in constraint.allowed([space])  # ... and may not be empty
    assert eos in constraint.allowed([space, *digits])
    # No span to read, no space either.
    assert SpanConstraint(tb, [" \n "], [eos]).allowed([]).tolist() == [eos]


def test_an_impossible_history_or_empty_passages_allow_only_stops():
    tokenizer = _tokenizer(SMOLLM)
    tb = token_bytes(tokenizer)
    (zebra,) = tokenizer.encode(" zebra", add_special_tokens=False)
    assert SpanConstraint(tb, ["a horse"], [2, 0]).allowed([zebra]).tolist() == [0, 2]
    assert SpanConstraint(tb, ["", " \n "], [2]).allowed([]).tolist() == [2]
    with pytest.raises(ValueError, match="stop_ids is empty"):
        SpanConstraint(tb, ["a horse"], [])


def _squad_passages(count: int, seed: int) -> list[str]:
    from slmkit.data.squad import bundled_squad, load_squad

    paragraphs = [p.context for a in load_squad(bundled_squad()) for p in a.paragraphs]
    return random.Random(seed).sample([p for p in paragraphs if 900 <= len(p) <= 1200], count)


@pytest.mark.slow
def test_steps_cost_milliseconds_on_gemmas_vocabulary():
    # Three ~1,000-character passages against 262k tokens. CPU time, so a busy machine does not
    # fail it; the bounds are loose (measured ~8 ms and ~0.05 ms) but catch a scan of the vocabulary.
    tokenizer = _tokenizer(GEMMA)
    tb, stops = token_bytes(tokenizer), _stops(tokenizer, GEMMA)
    SpanConstraint(tb, ["warm up the index"], stops).allowed([])
    rng = random.Random(0)
    first, later = [], []
    for seed in range(5):
        constraint = SpanConstraint(tb, _squad_passages(3, seed), stops)
        generated: list[int] = []
        for step in range(10):
            start = time.process_time()
            allowed = constraint.allowed(generated)
            (later if step else first).append(time.process_time() - start)
            generated.append(rng.choice([i for i in allowed.tolist() if i not in stops] or [stops[0]]))
    assert max(first) < 0.2 and statistics.median(later) < 0.01, (first, later)


# --- Logits processors ---------------------------------------------------------------------------


def test_span_logits_processor_keeps_only_allowed_scores():
    tokenizer = _tokenizer(SMOLLM)
    constraint = SpanConstraint(token_bytes(tokenizer), ["The Pike's Peak Gold Rush"], [2])
    (gold,) = tokenizer.encode(" Gold", add_special_tokens=False)
    prompt = [1, 9, 8, 7]
    processor = SpanLogitsProcessor(constraint, prompt_length=len(prompt))
    scores = torch.randn(1, 49152)
    out = processor(torch.tensor([[*prompt, gold]]), scores.clone())
    expected = constraint.allowed([gold])
    assert torch.isfinite(out[0]).nonzero().flatten().tolist() == expected.tolist()
    assert torch.equal(out[0, expected], scores[0, expected])
    with pytest.raises(ValueError, match="one sequence"):
        processor(torch.tensor([[*prompt, gold], [*prompt, gold]]), torch.zeros(2, 49152))


def test_llama_logits_processor_keeps_only_allowed_scores():
    tokenizer = _tokenizer(SMOLLM)
    constraint = SpanConstraint(token_bytes(tokenizer), ["The Pike's Peak Gold Rush"], [2])
    processor = LlamaSpanLogitsProcessor(constraint, prompt_length=3)
    scores = np.random.default_rng(0).standard_normal(49152).astype(np.single)
    out = processor(np.array([1, 9, 8], dtype=np.intc), scores.copy())
    expected = constraint.allowed([])
    assert np.flatnonzero(np.isfinite(out)).tolist() == expected.tolist()
    assert np.array_equal(out[expected], scores[expected])


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


def test_llama_and_transformers_processors_allow_the_same_tokens(smollm_llama):
    tokenizer = _tokenizer(SMOLLM)
    texts = _squad_passages(2, seed=3)
    hf = SpanConstraint(token_bytes(tokenizer), texts, [2])
    llama = LlamaSpanLogitsProcessor(SpanConstraint(llama_token_bytes(smollm_llama), texts, [2]), 2)
    rng = random.Random(0)
    generated: list[int] = []
    for _ in range(6):
        scores = llama(np.array([1, 5, *generated], dtype=np.intc), np.zeros(49152, dtype=np.single))
        allowed = hf.allowed(generated)
        assert np.flatnonzero(np.isfinite(scores)).tolist() == allowed.tolist()
        generated.append(rng.choice([i for i in allowed.tolist() if i != 2]))


# --- Real generation -----------------------------------------------------------------------------

PASSAGE = (
    "Denver is the capital of Colorado. It was founded in November 1858 as a mining town during the "
    "Pike's Peak Gold Rush."
)


def _chat(question: str) -> list[dict[str, str]]:
    from slmkit.data.prompts import Passage, qa_messages

    return qa_messages(question, [Passage("Denver", PASSAGE)])


@pytest.mark.slow
def test_greedy_transformers_generation_returns_a_span_of_the_passage(smollm):
    from transformers import LogitsProcessorList

    tokenizer, model = smollm.tokenizer, smollm.model
    inputs = tokenizer.apply_chat_template(
        _chat("When was Denver founded?"), add_generation_prompt=True, return_tensors="pt", return_dict=True
    )
    prompt_length = inputs["input_ids"].shape[1]
    constraint = SpanConstraint(token_bytes(tokenizer), [PASSAGE], [tokenizer.eos_token_id])
    processor = SpanLogitsProcessor(constraint, prompt_length)
    with torch.inference_mode():
        output = model.generate(
            **inputs,
            max_new_tokens=8,
            do_sample=False,
            pad_token_id=tokenizer.pad_token_id,
            logits_processor=LogitsProcessorList([processor]),
        )
    answer = tokenizer.decode(output[0, prompt_length:], skip_special_tokens=True).strip()
    assert answer and answer in PASSAGE


@pytest.mark.slow
def test_greedy_llama_cpp_generation_returns_a_span_of_the_passage():
    pytest.importorskip("llama_cpp", reason="needs llama-cpp-python (the llama extra)")
    import llama_cpp

    from slmkit.models.cache import cache_dir
    from slmkit.models.llama_cpp import LlamaCppGenerator
    from slmkit.models.registry import PACKAGED_MODELS

    generator = LlamaCppGenerator(PACKAGED_MODELS[SMOLLM].locate(cache_dir()), threads=1, context_window=512)
    llm = generator.llm
    prompt = generator._tokens(_chat("When was Denver founded?"))
    stops = [i for i in range(llm.n_vocab()) if llama_cpp.llama_vocab_is_eog(llm._model.vocab, i)]
    processor = llama_logits_processor(SpanConstraint(llama_token_bytes(llm), [PASSAGE], stops), len(prompt))
    ids: list[int] = []
    for token in llm.generate(prompt, temp=0.0, repeat_penalty=1.0, logits_processor=processor):
        if token in stops or len(ids) == 12:
            break
        ids.append(token)
    answer = llm.detokenize(ids).decode().strip()
    assert answer and answer in PASSAGE


def test_an_answer_neither_starts_nor_stops_inside_a_word():
    tb = [b"", b"", b"\n", b"under", b"graduate", b"s", b" enroll", b"graduates", b"Several"]
    constraint = SpanConstraint(tb, ["Several thousand undergraduates enroll."], [1, 2])
    first = set(constraint.allowed([]).tolist())
    assert 3 in first and 7 not in first  # "graduates" starts inside "undergraduates"
    after_graduate = set(constraint.allowed([3, 4]).tolist())
    assert after_graduate == {5}  # "undergraduate" may not end there: only "s" continues
    assert {1, 2} <= set(constraint.allowed([3, 4, 5]).tolist())


def test_the_llama_cpp_token_table_is_kept_in_the_cache_and_read_back_unchanged(tmp_path, monkeypatch):
    """A fresh process reads the table from the cache instead of 49k (Gemma-3: 262k) ctypes calls."""
    pytest.importorskip("llama_cpp", reason="needs llama-cpp-python (the llama extra)")
    from slmkit.models.cache import cache_dir
    from slmkit.models.llama_cpp import LlamaCppGenerator
    from slmkit.models.registry import PACKAGED_MODELS

    gguf = PACKAGED_MODELS[SMOLLM].locate(cache_dir())
    monkeypatch.setenv("SLMKIT_CACHE", str(tmp_path))
    first = LlamaCppGenerator(gguf, context_window=256).token_bytes
    assert list((tmp_path / "gguf").glob("*.token-bytes.npz"))
    again = LlamaCppGenerator(gguf, context_window=256).token_bytes
    assert again == first and len(first) == 49152 and first[0] == b""
    # Read while the weights loaded, with grounding's index of it built there too.
    assert _index_cache[id(again)][0] is again
    # A damaged cache file is read past: the table is computed again, and written anew.
    (saved,) = (tmp_path / "gguf").glob("*.token-bytes.npz")
    saved.write_bytes(b"not a table")
    assert LlamaCppGenerator(gguf, context_window=256).token_bytes == first
    assert saved.stat().st_size > 1000


def test_vocabulary_indexes_built_on_many_threads_at_once_are_each_right():
    """Model loads build indexes on their own threads (slmkit.models.llama_cpp): more lists than the
    cache keeps, built at once, each get their own index and the cache stays within its size."""
    from concurrent.futures import ThreadPoolExecutor

    from slmkit.models.grounding import _INDEX_CACHE_SIZE, index_vocabulary

    filler = [f"t{i}".encode() for i in range(10_000)]  # enough work for the threads to overlap
    tables = [[b"", b"a", b" a", f" w{n}".encode(), b"\n", *filler] for n in range(3 * _INDEX_CACHE_SIZE)]
    with ThreadPoolExecutor(max_workers=6) as pool:
        list(pool.map(index_vocabulary, tables))
    assert len(_index_cache) <= _INDEX_CACHE_SIZE
    for table in tables[-2:]:
        constraint = SpanConstraint(table, ["w"], [4])
        assert constraint._index.ids[table[3]] == 3
