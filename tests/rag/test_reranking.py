"""Re-ranking the first stage's hits with a cross-encoder (the model replaced by a known scorer)."""

from __future__ import annotations

import numpy as np
import pytest

import slmkit.models.reranker as reranker_module
from slmkit.config import RetrievalConfig
from slmkit.models.reranker import Reranker
from slmkit.rag.retrieval import Retriever, rerank_order


@pytest.fixture
def by_length(monkeypatch, tmp_path):
    """A reranker that prefers shorter chunks, and the (question, passages) it was asked about."""
    calls = []

    def score(question, passages):
        calls.append((question, list(passages)))
        return -np.array([len(p) for p in passages], dtype=np.float32)

    monkeypatch.setattr(
        reranker_module, "load_reranker", lambda name, engine="auto": Reranker(score, tmp_path, {})
    )
    return calls


QUESTION = "Where was Super Bowl 50 played?"


def test_the_top_hits_are_reordered_and_renumbered(tiny_kb, by_length):
    first = Retriever(tiny_kb).search(QUESTION, top_k=3)
    hits = Retriever(tiny_kb, RetrievalConfig(reranker="fake", rerank_depth=3)).search(QUESTION, top_k=3)
    assert {h.chunk.id for h in hits} == {h.chunk.id for h in first}
    assert [len(h.chunk.title) + 1 + len(h.chunk.text) for h in hits] == sorted(
        len(h.chunk.title) + 1 + len(h.chunk.text) for h in first
    )
    assert [h.rank for h in hits] == [1, 2, 3]
    assert [h.score for h in hits] == sorted((h.score for h in hits), reverse=True)
    # What abstention reads is the first stage's, whatever the order.
    dense = {h.chunk.id: h.dense_score for h in first}
    assert all(h.dense_score == dense[h.chunk.id] for h in hits)
    question, passages = by_length[-1]
    assert question == QUESTION and all("\n" in p for p in passages)  # the title, then the text


def test_the_reranker_reads_its_depth_whatever_top_k_is(tiny_kb, by_length):
    hits = Retriever(tiny_kb, RetrievalConfig(reranker="fake", rerank_depth=3)).search(QUESTION, top_k=1)
    assert len(hits) == 1
    assert len(by_length[-1][1]) == 3
    shortest = min(
        Retriever(tiny_kb).search(QUESTION, top_k=3), key=lambda h: len(h.chunk.text) + len(h.chunk.title)
    )
    assert hits[0].chunk.id == shortest.chunk.id


def test_hits_below_the_depth_keep_the_first_stage_order(tiny_kb, by_length):
    first = Retriever(tiny_kb).search(QUESTION, top_k=3)
    hits = Retriever(tiny_kb, RetrievalConfig(reranker="fake", rerank_depth=2)).search(QUESTION, top_k=3)
    assert len(by_length[-1][1]) == 2
    assert {h.chunk.id for h in hits[:2]} == {h.chunk.id for h in first[:2]}
    assert hits[2].chunk.id == first[2].chunk.id and hits[2].rank == 3
    assert hits[2].score == first[2].score  # not re-scored


def test_rerank_weight_mixes_in_the_first_stage_score(tiny_kb, by_length):
    first = Retriever(tiny_kb).search(QUESTION, top_k=3)
    config = RetrievalConfig(reranker="fake", rerank_depth=3, rerank_weight=0.0)
    hits = Retriever(tiny_kb, config).search(QUESTION, top_k=3)
    # Weight 0: the reranker has no say, so the first stage's order stands.
    assert [h.chunk.id for h in hits] == [h.chunk.id for h in first]
    assert [h.score for h in hits] == sorted((h.score for h in hits), reverse=True)


def test_rerank_order_is_a_convex_combination_of_normalised_scores():
    first_stage, reranker = [1.0, 0.5, 0.0], [-3.0, 5.0, 1.0]
    assert [i for i, _ in rerank_order(first_stage, reranker, 1.0)] == [1, 2, 0]
    assert rerank_order(first_stage, reranker, 1.0)[0] == (1, 5.0)  # the reranker's own score
    assert [i for i, _ in rerank_order(first_stage, reranker, 0.0)] == [0, 1, 2]
    # 0.5: position 0 scores 0.5·1 + 0.5·0 = 0.5, position 1 0.5·0.5 + 0.5·1 = 0.75, position 2 0.25.
    mixed = rerank_order(first_stage, reranker, 0.5)
    assert [i for i, _ in mixed] == [1, 0, 2]
    assert [round(s, 6) for _, s in mixed] == [0.75, 0.5, 0.25]
    # Ties keep the first stage's order.
    assert [i for i, _ in rerank_order([0.3, 0.2], [1.0, 1.0], 1.0)] == [0, 1]
