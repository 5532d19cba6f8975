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


def test_convex_fusion_matches_hand_computed_scores():
    from slmkit.rag.retrieval import convex_fusion

    dense = [(1, 0.9), (2, 0.5), (3, 0.7)]  # normalised: 1 -> 1.0, 2 -> 0.0, 3 -> 0.5
    lexical = [(3, 12.0), (4, 2.0)]  # normalised: 3 -> 1.0, 4 -> 0.0
    fused = dict(convex_fusion(dense, lexical, lexical_weight=0.6))
    assert fused[1] == pytest.approx(0.4 * 1.0)
    assert fused[3] == pytest.approx(0.4 * 0.5 + 0.6 * 1.0)
    assert fused[2] == pytest.approx(0.0) and fused[4] == pytest.approx(0.0)
    assert [c for c, _ in convex_fusion(dense, lexical, 0.6)] == [3, 1, 2, 4]  # ties keep first appearance


def test_convex_fusion_weights_zero_and_one_are_the_single_rankings():
    from slmkit.rag.retrieval import convex_fusion

    dense = [(1, 0.9), (2, 0.8), (3, 0.1)]
    lexical = [(3, 9.0), (2, 5.0), (1, 1.0)]
    assert [c for c, _ in convex_fusion(dense, lexical, 0.0)] == [1, 2, 3]
    assert [c for c, _ in convex_fusion(dense, lexical, 1.0)] == [3, 2, 1]
    assert [c for c, _ in convex_fusion(dense, [], 0.6)] == [1, 2, 3]  # no keyword match at all
