"""Retrieval quality and speed over the whole SQuAD v1.1 dev set.

Knowledge base: all 2,067 paragraphs (every article, so retrieval must find the right paragraph
among all of them). Queries: all 10,570 questions. A hit is correct when the chunk comes from the
question's own paragraph. Also calibrates the abstention relevance gate: for each question, the
best cosine similarity with its article in the knowledge base (answerable) and with its article
left out (unanswerable: the best chunk from any *other* article).

Baseline: dense retrieval; ``ratio`` is hybrid recall@5 over dense recall@5.

    python benchmarks/retrieval_squad.py [--rebuild]
"""

from __future__ import annotations

import argparse
import statistics
import time

import numpy as np

from _common import emit, squad_articles, squad_kb
from slmkit.rag.retrieval import Retriever

THRESHOLDS = (0.25, 0.30, 0.35, 0.40, 0.45, 0.50)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rebuild", action="store_true", help="rebuild the KB to time ingestion")
    args = parser.parse_args()
    kb, build = squad_kb(rebuild=args.rebuild)
    questions, gold = [], []
    for article in squad_articles():
        for paragraph in article.paragraphs:
            for qa in paragraph.qas:
                questions.append(qa.question)
                gold.append((article.title, paragraph.index))
    chunk_paragraph = [(c.metadata["article"], c.metadata["paragraph"]) for c in kb.chunks]

    retriever = Retriever(kb)
    record: dict = {
        "benchmark": "retrieval_squad",
        "questions": len(questions),
        "chunks": len(kb.chunks),
        **build,
    }
    for mode in ("dense", "bm25", "hybrid"):
        start = time.perf_counter()
        results = retriever.search_many(questions, top_k=10, mode=mode)
        record[f"{mode}_batch_seconds"] = round(time.perf_counter() - start, 1)
        ranks = [_first_rank(hits, chunk_paragraph, g) for hits, g in zip(results, gold, strict=True)]
        record[f"{mode}_recall@1"] = _recall(ranks, 1)
        record[f"{mode}_recall@3"] = _recall(ranks, 3)
        record[f"{mode}_recall@5"] = _recall(ranks, 5)
        record[f"{mode}_mrr@10"] = round(float(np.mean([1 / r if r else 0.0 for r in ranks])), 4)
        record[f"{mode}_p50_query_ms"] = _p50_latency_ms(retriever, questions[::53], mode)
    record.update(_calibrate_relevance(kb, questions, gold, chunk_paragraph))
    record["baseline"] = "dense"
    record["ratio"] = round(record["hybrid_recall@5"] / record["dense_recall@5"], 4)
    emit(record)


def _first_rank(hits, chunk_paragraph, gold) -> int | None:
    return next((h.rank for h in hits if chunk_paragraph[h.chunk.id] == gold), None)


def _recall(ranks, k: int) -> float:
    return round(sum(1 for r in ranks if r and r <= k) / len(ranks), 4)


def _p50_latency_ms(retriever: Retriever, sample, mode: str) -> float:
    times = []
    for question in sample:
        start = time.perf_counter()
        retriever.search(question, top_k=5, mode=mode)
        times.append(time.perf_counter() - start)
    return round(statistics.median(times) * 1000, 2)


def _calibrate_relevance(kb, questions, gold, chunk_paragraph) -> dict:
    vectors = kb.embed(questions)
    scores, ids = kb.dense.search(vectors, 300)
    present, absent = [], []
    for row, (article, _) in enumerate(gold):
        present.append(float(scores[row, 0]))
        others = [s for s, c in zip(scores[row], ids[row], strict=True) if chunk_paragraph[c][0] != article]
        absent.append(float(others[0]) if others else float("nan"))
    present_a, absent_a = np.array(present), np.array(absent)
    out = {
        "similarity_p50_answerable": round(float(np.median(present_a)), 3),
        "similarity_p50_article_absent": round(float(np.nanmedian(absent_a)), 3),
    }
    for t in THRESHOLDS:
        out[f"gate@{t:.2f}_answerable_pass"] = round(float(np.mean(present_a >= t)), 4)
        out[f"gate@{t:.2f}_absent_blocked"] = round(float(np.mean(absent_a < t)), 4)
    return out


if __name__ == "__main__":
    main()
