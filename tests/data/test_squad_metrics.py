"""Official SQuAD v1.1 normalisation and scores, on hand-checked cases."""

from __future__ import annotations

import pytest

from slmkit.data.squad_metrics import exact_match, f1_score, normalize_answer


@pytest.mark.parametrize(
    ("raw", "normalized"),
    [
        ("The Denver Broncos", "denver broncos"),
        ("  a  Cat, an   Apple! ", "cat apple"),
        ("Levi's Stadium.", "levis stadium"),
        ("theatre", "theatre"),  # 'the' is removed only as a whole word
    ],
)
def test_normalization_follows_the_official_script(raw, normalized):
    assert normalize_answer(raw) == normalized


def test_exact_match_takes_the_best_gold():
    assert exact_match("the Broncos", ["Denver Broncos", "Broncos"]) == 1.0
    assert exact_match("Denver", ["Denver Broncos"]) == 0.0


def test_f1_hand_computed():
    # prediction tokens {denver, broncos, won}, gold {denver, broncos}: P=2/3, R=1 → F1=0.8
    assert f1_score("Denver Broncos won", ["Denver Broncos"]) == pytest.approx(0.8)
    assert f1_score("Carolina", ["Denver Broncos"]) == 0.0
    assert f1_score("", ["x"]) == 0.0
