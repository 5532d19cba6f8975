"""Is the F1 gap between two evaluated scenarios real? A paired bootstrap over their questions.

Reads the ``predictions.jsonl`` that ``slmkit eval`` / ``slmkit experiment`` write for two scenarios
over the same questions, scores every question with the runs' own SQuAD metric
(``slmkit.eval.metrics.squad_metric``, so the means are the report's), and resamples the
per-question differences. Prints one JSON line: both means, the mean difference and
its 95 % interval; ``ratio`` = mean F1 of A / mean F1 of B (the baseline).

    python benchmarks/paired_bootstrap.py runs/experiment-squad/scenarios/A runs/experiment-squad/scenarios/B
"""

from __future__ import annotations

import argparse
from pathlib import Path

from _common import bootstrap_ci, emit
from slmkit.eval.metrics import squad_metric
from slmkit.eval.predictions import read_predictions


def per_question_f1(scenario: Path) -> dict[str, float]:
    """SQuAD F1 (0-100) per graded question, exactly as the run's own ``squad`` metric scores it
    (abstentions score 0; questions the knowledge base cannot answer are not graded)."""
    predictions = read_predictions(scenario / "predictions.jsonl")
    scores = squad_metric(predictions).per_example["f1"]
    return {p.id: score for p, score in zip(predictions, scores, strict=True) if score is not None}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("a", type=Path, help="Scenario folder (with predictions.jsonl).")
    parser.add_argument("b", type=Path, help="Baseline scenario folder over the same questions.")
    parser.add_argument("--resamples", type=int, default=5000)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    a, b = per_question_f1(args.a), per_question_f1(args.b)
    ids = sorted(set(a) & set(b))
    if not ids:
        raise SystemExit(f"{args.a} and {args.b} share no question ids")
    diffs = [a[i] - b[i] for i in ids]
    low, high = bootstrap_ci(diffs, args.resamples, args.seed)
    mean_a, mean_b = sum(a[i] for i in ids) / len(ids), sum(b[i] for i in ids) / len(ids)
    emit(
        {
            "benchmark": "paired_bootstrap",
            "a": str(args.a),
            "baseline": str(args.b),
            "questions": len(ids),
            "f1_a": round(mean_a, 2),
            "f1_baseline": round(mean_b, 2),
            "difference": round(mean_a - mean_b, 2),
            "ci95": [round(low, 2), round(high, 2)],
            "ratio": round(mean_a / mean_b, 3) if mean_b else None,
        }
    )


if __name__ == "__main__":
    main()
