"""Token-aware chunking: no text lost, every chunk within budget, neighbours overlap."""

from __future__ import annotations

import re
from itertools import pairwise
from typing import Any

import pytest

from slmkit.config import ChunkingConfig
from slmkit.errors import ConfigError
from slmkit.rag.chunking import chunk_documents, chunk_spans, sentence_spans
from slmkit.rag.documents import Document, content_hash

PROSE = (
    "Alpha beta gamma. Delta epsilon zeta eta! Theta iota kappa?\n\n"
    "Lambda mu nu xi omicron. Pi rho sigma tau. Upsilon phi chi psi omega.\n\n"
    "The quick brown fox jumps over the lazy dog. Sphinx of black quartz, judge my vow. "
    "How vexingly quick daft zebras jump! Pack my box with five dozen liquor jugs."
)


def _token_count(tokenizer: Any, text: str) -> int:
    return len(tokenizer(text, add_special_tokens=False)["input_ids"])


def _assert_covers(text: str, spans: list[tuple[int, int]]) -> None:
    covered = [False] * len(text)
    for start, end in spans:
        covered[start:end] = [True] * (end - start)
    lost = [i for i, c in enumerate(text) if not c.isspace() and not covered[i]]
    assert not lost, f"characters not in any chunk at offsets {lost[:10]}"


def _assert_well_formed(text: str, spans: list[tuple[int, int]], tokenizer: Any, chunk_tokens: int) -> None:
    _assert_covers(text, spans)
    for start, end in spans:
        piece = text[start:end]
        assert piece and piece == piece.strip()
        assert _token_count(tokenizer, piece) <= chunk_tokens
    assert [s for s, _ in spans] == sorted(s for s, _ in spans)


def test_short_text_is_one_chunk(minilm_tokenizer: Any) -> None:
    text = "  A single short sentence.  \n"
    assert chunk_spans(text, minilm_tokenizer, 64, 8) == [(2, 26)]


def test_whitespace_only_text_has_no_chunks(minilm_tokenizer: Any) -> None:
    assert chunk_spans(" \n\t ", minilm_tokenizer, 64, 8) == []


def test_prose_is_covered_within_budget(minilm_tokenizer: Any) -> None:
    spans = chunk_spans(PROSE, minilm_tokenizer, 20, 8)
    assert len(spans) > 2
    _assert_well_formed(PROSE, spans, minilm_tokenizer, 20)


def test_chunks_end_at_sentence_ends(minilm_tokenizer: Any) -> None:
    for _, end in chunk_spans(PROSE, minilm_tokenizer, 24, 8):
        assert PROSE[end - 1] in ".!?"


ABBREVIATED = [
    "Dr. Smith moved to the U.S. in 1990.",
    "He studied birds, e.g. robins and jays, at St. Louis.",
    "Item No. 5 costs $4.50, i.e. 3.7% more than in Jan. 2020.",
    "J. R. R. Tolkien and John F. Kennedy were born in the 20th century.",
    '"Is it done?" she asked.',
    "Mr. and Mrs. Jones arrived at 5 p.m. yesterday!",
]


def test_sentences_do_not_end_at_abbreviations_initials_or_decimals() -> None:
    text = "  " + " ".join(ABBREVIATED[:3]) + "\n" + " ".join(ABBREVIATED[3:]) + "\n\nNext paragraph"
    assert [text[s:e] for s, e in sentence_spans(text)] == [*ABBREVIATED, "Next paragraph"]


def test_chunks_pack_whole_sentences_across_abbreviations(minilm_tokenizer: Any) -> None:
    text = " ".join(ABBREVIATED)
    longest = max(_token_count(minilm_tokenizer, sentence) for sentence in ABBREVIATED)
    spans = chunk_spans(text, minilm_tokenizer, longest + 1, 0)
    _assert_well_formed(text, spans, minilm_tokenizer, longest + 1)
    starts = [text.index(sentence) for sentence in ABBREVIATED]
    ends = [start + len(sentence) for start, sentence in zip(starts, ABBREVIATED, strict=True)]
    assert len(spans) >= 4  # a budget of about one sentence
    assert all(start in starts and end in ends for start, end in spans), "chunks are whole sentences"


def test_neighbours_share_trailing_sentences(minilm_tokenizer: Any) -> None:
    # Every PROSE sentence is at most 11 tokens, so an overlap of 12 always fits a whole sentence.
    spans = chunk_spans(PROSE, minilm_tokenizer, 24, 12)
    sentence_starts = {0} | {m.end() for m in re.finditer(r"[.!?]\s+", PROSE)}
    for (_, previous_end), (next_start, _) in pairwise(spans):
        assert next_start < previous_end, "next chunk should start inside the previous one"
        assert _token_count(minilm_tokenizer, PROSE[next_start:previous_end]) <= 12
        assert next_start in sentence_starts, "overlap should be whole sentences"


def test_no_overlap_when_zero(minilm_tokenizer: Any) -> None:
    spans = chunk_spans(PROSE, minilm_tokenizer, 24, 0)
    for (_, previous_end), (next_start, _) in pairwise(spans):
        assert next_start >= previous_end


def test_long_sentence_is_split_with_token_overlap(minilm_tokenizer: Any) -> None:
    text = " ".join(f"word{i} unbelievably" for i in range(120)) + "."
    spans = chunk_spans(text, minilm_tokenizer, 24, 6)
    assert len(spans) > 5
    _assert_well_formed(text, spans, minilm_tokenizer, 24)
    for (_, previous_end), (next_start, _) in pairwise(spans):
        assert next_start < previous_end
    # Cuts fall between words, never inside "unbelievably".
    assert all(text[start - 1] == " " for start, _ in spans[1:])


@pytest.mark.parametrize(("chunk_tokens", "overlap_tokens"), [(16, 15), (16, 8), (16, 0), (17, 5)])
def test_small_budgets_stay_within_chunk(
    minilm_tokenizer: Any, chunk_tokens: int, overlap_tokens: int
) -> None:
    text = PROSE + " " + " ".join(f"word{i} unbelievably Sutcliffe" for i in range(30)) + "."
    spans = chunk_spans(text, minilm_tokenizer, chunk_tokens, overlap_tokens)
    _assert_well_formed(text, spans, minilm_tokenizer, chunk_tokens)


def test_long_sentence_among_short_ones(minilm_tokenizer: Any) -> None:
    long_sentence = " ".join(["lorem ipsum dolor"] * 40) + "."
    text = f"First short one. {long_sentence} Last short one."
    spans = chunk_spans(text, minilm_tokenizer, 32, 8)
    _assert_well_formed(text, spans, minilm_tokenizer, 32)


@pytest.mark.parametrize(("chunk_tokens", "overlap_tokens"), [(16, 16), (16, 20), (0, 0), (16, -1)])
def test_invalid_sizes_are_config_errors(
    minilm_tokenizer: Any, chunk_tokens: int, overlap_tokens: int
) -> None:
    with pytest.raises(ConfigError, match=r"chunk_tokens|overlap_tokens"):
        chunk_spans(PROSE, minilm_tokenizer, chunk_tokens, overlap_tokens)


def test_overlap_error_says_what_to_do(minilm_tokenizer: Any) -> None:
    with pytest.raises(ConfigError, match=r"overlap_tokens \(40\) must be smaller than chunk_tokens \(40\)"):
        chunk_spans(PROSE, minilm_tokenizer, 40, 40)


def test_slow_tokenizer_is_rejected() -> None:
    class SlowTokenizer:
        is_fast = False

    with pytest.raises(ConfigError, match="fast"):
        chunk_spans(PROSE, SlowTokenizer(), 40, 8)


def test_chunk_documents_ids_offsets_and_hashes(minilm_tokenizer: Any) -> None:
    documents = [
        Document(text=PROSE, source="prose.txt", title="Prose", position=3, metadata={"k": "v"}),
        Document(text="Tiny document.", source="tiny.md", title="tiny › Intro", position=1),
    ]
    config = ChunkingConfig(chunk_tokens=20, overlap_tokens=8)
    chunks = chunk_documents(documents, minilm_tokenizer, config, start_id=100)

    assert [c.id for c in chunks] == list(range(100, 100 + len(chunks)))
    prose_chunks = [c for c in chunks if c.source == "prose.txt"]
    assert [c.chunk_index for c in prose_chunks] == list(range(len(prose_chunks)))
    for chunk in chunks:
        document = documents[0] if chunk.source == "prose.txt" else documents[1]
        assert document.text[chunk.start : chunk.end] == chunk.text
        assert chunk.hash == content_hash(chunk.text)
        assert (chunk.title, chunk.position, chunk.metadata) == (
            document.title,
            document.position,
            document.metadata,
        )
    assert chunks[-1].text == "Tiny document." and chunks[-1].chunk_index == 0
    assert prose_chunks[0].metadata is not documents[0].metadata


def test_one_megabyte_document_chunks(minilm_tokenizer: Any) -> None:
    paragraph = (
        "The quick brown fox jumps over the lazy dog. Sphinx of black quartz, judge my vow! "
        "How vexingly quick daft zebras jump?\n\n"
    )
    text = paragraph * (1_000_000 // len(paragraph) + 1)
    spans = chunk_spans(text, minilm_tokenizer, 200, 40)
    _assert_covers(text, spans)
    assert len(spans) > 1000
