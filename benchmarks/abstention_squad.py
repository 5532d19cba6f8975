"""Does slmkit say "I don't know" when it should, and only then?

Knowledge base: the 38 SQuAD *train* articles. Answerable: 50 questions about those articles.
Unanswerable: 50 questions about the 10 *eval* articles, which the knowledge base does not hold
(their topics are close to what it holds — Wikipedia on history, science, sport — so this is a hard
test, not a toy one). Each question is answered once with every gate switched off; the gates are then
applied to the recorded scores, so every threshold setting is compared on identical generations.

Outcomes — answerable: correct (a gold answer in the reply), wrong, abstained; unanswerable:
abstained (right) or answered (an invention). Baseline: no gates (always answer); ``ratio`` =
inventions on unanswerable questions with the default gates / without any gate.

    python benchmarks/abstention_squad.py [--questions 50]
"""

from __future__ import annotations

import argparse

from _common import emit, squad_articles, train_kb
from slmkit.config import AbstentionConfig, AskConfig
from slmkit.data.squad import split_articles
from slmkit.data.squad_metrics import normalize_answer
from slmkit.rag.abstention import coverage_score, is_refusal, support_score
from slmkit.rag.answer import Answerer

GRID = [(r, c, s) for r in (0.35, 0.40, 0.45) for c in (0.0, 0.5) for s in (0.0, 0.5)]


def spread(split: str, n: int) -> list[tuple[str, list[str]]]:
    paragraphs = [p for a in split_articles(squad_articles(), split) for p in a.paragraphs]
    step = max(1, len(paragraphs) // n)
    return [(p.qas[0].question, p.qas[0].answers) for p in paragraphs[::step][:n]]


def record(answerer: Answerer, question: str, golds: list[str]) -> dict:
    answer = answerer.ask(question)
    contexts = [h.chunk.text for h in answer.hits]
    reply = answer.raw_text
    return {
        "relevance": max((h.dense_score for h in answer.hits), default=-1.0),
        "coverage": coverage_score(question, contexts),
        "support": support_score(reply, contexts, question),
        "refusal": is_refusal(reply),
        "correct": any(normalize_answer(g) in normalize_answer(reply) for g in golds),
    }


def abstains(row: dict, r: float, c: float, s: float) -> bool:
    return row["relevance"] < r or row["coverage"] < c or row["refusal"] or row["support"] < s


def outcomes(answerable: list[dict], absent: list[dict], r: float, c: float, s: float) -> dict:
    kept = [row for row in answerable if not abstains(row, r, c, s)]
    return {
        "answerable_correct": round(sum(row["correct"] for row in kept) / len(answerable), 3),
        "answerable_wrong": round(sum(not row["correct"] for row in kept) / len(answerable), 3),
        "answerable_abstained": round(1 - len(kept) / len(answerable), 3),
        "unanswerable_abstained": round(sum(abstains(row, r, c, s) for row in absent) / len(absent), 3),
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--questions", type=int, default=50)
    args = parser.parse_args()
    ungated = AskConfig(abstention=AbstentionConfig(min_relevance=-1.0, min_coverage=0.0, min_support=0.0))
    answerer = Answerer.load(train_kb(), ungated)
    answerable = [record(answerer, q, g) for q, g in spread("train", args.questions)]
    absent = [record(answerer, q, g) for q, g in spread("eval", args.questions)]

    default = AbstentionConfig()
    gated = outcomes(answerable, absent, default.min_relevance, default.min_coverage, default.min_support)
    # Baseline: every reply is shown; only the model's own refusals count as abstentions.
    baseline = outcomes(answerable, absent, -1.0, 0.0, 0.0)
    invented_without = 1 - baseline["unanswerable_abstained"]
    invented_with = 1 - gated["unanswerable_abstained"]
    emit(
        {
            "benchmark": "abstention_squad",
            "questions_per_set": args.questions,
            "defaults": {
                "min_relevance": default.min_relevance,
                "min_coverage": default.min_coverage,
                "min_support": default.min_support,
            },
            "with_gates": gated,
            "baseline": "no gates (model's own refusals only)",
            "without_gates": baseline,
            "grid": {
                f"r{r:.2f}_c{c:.1f}_s{s:.1f}": outcomes(answerable, absent, r, c, s) for r, c, s in GRID
            },
            "ratio": round(invented_with / invented_without, 3) if invented_without else None,
        }
    )


if __name__ == "__main__":
    main()
