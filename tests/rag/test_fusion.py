"""Reciprocal-rank fusion."""

from __future__ import annotations

import pytest

from slmkit.rag.retrieval import reciprocal_rank_fusion


def test_rrf_matches_hand_computed_scores():
    fused = dict(reciprocal_rank_fusion([[1, 2, 3], [3, 1]], k=60))
    assert fused[1] == pytest.approx(1 / 61 + 1 / 62)
    assert fused[3] == pytest.approx(1 / 63 + 1 / 61)
    assert fused[2] == pytest.approx(1 / 62)


def test_rrf_orders_items_found_by_both_lists_first():
    fused = [item for item, _ in reciprocal_rank_fusion([[1, 2, 3], [3, 1]], k=60)]
    assert fused == [1, 3, 2]


def test_rrf_with_one_empty_list_keeps_the_other_order():
    assert [i for i, _ in reciprocal_rank_fusion([[5, 4], []])] == [5, 4]
