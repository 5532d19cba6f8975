"""Retrieval quality and speed on the SQuAD v1.1 eval articles against the whole knowledge base.

Knowledge base: all 2,067 paragraphs of the 48 articles (so retrieval must find the right paragraph
among all of them). Queries: the 2,524 questions of the 10 eval articles (../shared/README.md split:
nothing slmkit ships was trained on them). A hit is correct when the chunk comes from the question's
own paragraph. Rankings: dense (MiniLM), BM25, hybrid by reciprocal-rank fusion (the previous
default) and by convex fusion of normalised scores (``retrieval.fusion: convex``, the default), and,
on a sample, the default ranking's top 5 re-ranked by the reader's no-answer
probability per passage: what ``ask`` does when it reads the passages it retrieved
(slmkit.rag.reading), reported for the top 3 it reads by default and for all 5; and the default
ranking's top 10 and top 20 re-ordered by the cross-encoder reranker (``retrieval.reranker``), at
each ``--rerank-weights`` share of the final score (``retrieval.rerank_weight``; the reranker scores
each question's hits once, the weights re-order them).

Also calibrates the abstention relevance gate over all 10,570 questions: for each, the best cosine
similarity with its article in the knowledge base (answerable) and with its article left out.

Baseline: the previous default (convex hybrid when the default re-ranks, else rank-fusion hybrid);
``ratio`` is the default ranking's recall@1 over the baseline's.

    python benchmarks/retrieval_squad.py [--rebuild] [--rerank 300] [--reranker NAME] [--rerank-depths 10,20]
    python benchmarks/retrieval_squad.py --rerank 0 --reranker-engine transformers \
        --latency-engines llama.cpp,transformers      # the reranker's recall, its p50 on both engines
    python benchmarks/retrieval_squad.py --rerank 0 --rerank-depths 10 --rerank-weights 1,0.8,0.7
"""

from __future__ import annotations

import argparse
import random
import statistics
import time

import numpy as np
from tqdm import tqdm

from _common import emit, squad_articles, squad_kb
from slmkit.config import RetrievalConfig
from slmkit.data.prompts import Passage, reader_messages, titled_text
from slmkit.data.squad import split_articles
from slmkit.models.registry import DEFAULT_MODEL
from slmkit.models.reranker import load_reranker
from slmkit.rag.retrieval import Retriever, rerank_hits

THRESHOLDS = (0.25, 0.30, 0.35, 0.40, 0.45, 0.50)
DEPTH = 20
BASELINE = "hybrid, rank fusion"  # the previous default
DEFAULT = "hybrid, convex fusion"


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rebuild", action="store_true", help="rebuild the KB to time ingestion")
    parser.add_argument("--rerank", type=int, default=300, help="questions re-ranked by the reader (0: none)")
    parser.add_argument("--reader", default=DEFAULT_MODEL)
    parser.add_argument("--reranker", default="slmkit-reranker-minilm", help="cross-encoder to measure")
    parser.add_argument(
        "--reranker-engine",
        default="auto",
        choices=["auto", "llama.cpp", "transformers"],
        help="engine the recall is measured with (both give the same scores; transformers is faster here)",
    )
    parser.add_argument(
        "--latency-engines",
        type=lambda v: [e for e in v.split(",") if e],
        default=[],
        help="also time the re-ranked query on these engines (comma-separated: llama.cpp,transformers)",
    )
    parser.add_argument(
        "--rerank-depths",
        type=lambda v: [int(d) for d in v.split(",") if d],
        default=[10, 20],
        help="first-stage hits it re-orders, comma-separated (empty: skip)",
    )
    parser.add_argument(
        "--rerank-weights",
        type=lambda v: [float(w) for w in v.split(",") if w],
        default=[1.0, RetrievalConfig().rerank_weight],
        help="reranker shares of the final score to measure, comma-separated (retrieval.rerank_weight)",
    )
    args = parser.parse_args()
    kb, build = squad_kb(rebuild=args.rebuild)
    questions, gold = _questions(split_articles(squad_articles(), "eval"))
    chunk_paragraph = [(c.metadata["article"], c.metadata["paragraph"]) for c in kb.chunks]
    record: dict = {
        "benchmark": "retrieval_squad",
        "questions": len(questions),
        "chunks": len(kb.chunks),
        **build,
    }
    rankings, ranks = {}, {}
    for label, mode, fusion in (
        ("dense", "dense", "rrf"),
        ("bm25", "bm25", "rrf"),
        (BASELINE, "hybrid", "rrf"),
        (DEFAULT, "hybrid", "convex"),
    ):
        retriever = Retriever(kb, RetrievalConfig(fusion=fusion, reranker=None))
        retriever.search_many(questions[:2], top_k=DEPTH, mode=mode)  # load the query encoder first
        results = retriever.search_many(questions, top_k=DEPTH, mode=mode)
        ranks[label] = [_first_rank(hits, chunk_paragraph, g) for hits, g in zip(results, gold, strict=True)]
        rankings[label] = {
            **_scores(ranks[label]),
            "p50_ms": _p50_latency_ms(retriever, questions[::25], mode),
        }
        if label == DEFAULT:
            default_hits = results
    weights = list(dict.fromkeys(args.rerank_weights))
    for depth in args.rerank_depths:
        by_weight = _reranked_ranks(
            load_reranker(args.reranker, args.reranker_engine), depth, weights, questions, default_hits
        )
        for weight, moved in by_weight.items():
            label = _reranked_label(depth, weight)
            ranks[label] = [_first_rank(h, chunk_paragraph, g) for h, g in zip(moved, gold, strict=True)]
            retriever = _reranking(kb, args.reranker, depth, weight, args.reranker_engine)
            rankings[label] = {
                **_scores(ranks[label]),
                "p50_ms": _p50_latency_ms(retriever, questions[::25], "hybrid"),
            }
            # The same scores on every engine (tests/models/test_reranker.py), another speed.
            for engine in args.latency_engines:
                timed = _reranking(kb, args.reranker, depth, weight, engine)
                rankings[label][f"p50_ms_{engine}"] = _p50_latency_ms(timed, questions[::25], "hybrid")
    if args.rerank:
        sample = sorted(random.Random(0).sample(range(len(questions)), min(args.rerank, len(questions))))
        rankings.update(
            _reader_rerank(args.reader, sample, questions, default_hits, chunk_paragraph, gold, ranks)
        )
    record["eval"] = rankings
    record.update(_calibrate_relevance(kb, *_questions(squad_articles()), chunk_paragraph))
    # The shipped default against the one before it: convex hybrid once a reranker is the default.
    shipped = RetrievalConfig()
    default = _reranked_label(shipped.rerank_depth, shipped.rerank_weight) if shipped.reranker else DEFAULT
    if default not in rankings:
        default = DEFAULT  # the reranked row was not measured (--rerank-depths)
    baseline = DEFAULT if default != DEFAULT else BASELINE
    record["baseline"] = baseline
    record["default"] = default
    record["ratio"] = round(rankings[default]["recall@1"] / rankings[baseline]["recall@1"], 4)
    emit(record)


def _reranked_label(depth: int, weight: float) -> str:
    # Weight 1 (the reranker's order alone) keeps the label earlier runs reported.
    return f"{DEFAULT} + reranker (top {depth}" + (f", weight {weight})" if weight < 1 else ")")


def _reranked_ranks(reranker, depth: int, weights, questions, hits) -> dict[float, list]:
    """Each question's default ranking with its top ``depth`` re-ordered at each weight, as
    ``Retriever`` does with ``retrieval.rerank_weight`` (``rerank_hits``): the reranker scores
    every question's hits once, and the weights only re-order them."""
    moved: dict[float, list] = {w: [] for w in weights}
    for question, found in zip(tqdm(questions, desc=f"reranking top {depth}", unit="q"), hits, strict=True):
        top, rest = found[:depth], list(found[depth:])
        scores = reranker.scores(question, [titled_text(h.chunk.title, h.chunk.text) for h in top])
        for weight in weights:
            moved[weight].append(rerank_hits(top, scores, weight) + rest)
    return moved


def _reranking(kb, reranker: str, depth: int, weight: float, engine: str) -> Retriever:
    """The default ranking re-ordered by ``reranker`` on ``engine``, loaded before it is timed."""
    retriever = Retriever(
        kb,
        RetrievalConfig(reranker=reranker, rerank_depth=depth, rerank_weight=weight, reranker_engine=engine),
    )
    retriever.search("Which NFL team won Super Bowl 50?", top_k=DEPTH)
    return retriever


def _questions(articles) -> tuple[list[str], list[tuple[str, int]]]:
    questions, gold = [], []
    for article in articles:
        for paragraph in article.paragraphs:
            for qa in paragraph.qas:
                questions.append(qa.question)
                gold.append((article.title, paragraph.index))
    return questions, gold


def _scores(ranks: list[int | None]) -> dict[str, float]:
    return {
        "recall@1": _recall(ranks, 1),
        "recall@5": _recall(ranks, 5),
        "recall@20": _recall(ranks, 20),
        "mrr@20": round(float(np.mean([1 / r if r else 0.0 for r in ranks])), 4),
    }


def _reader_rerank(reader, sample, questions, hits, chunk_paragraph, gold, ranks) -> dict:
    """Re-rank each sampled question's top 3 and top 5 by the reader's no-answer probability."""
    from slmkit.models.backends import load_generator

    generator = load_generator(reader, "auto")
    out: dict = {}
    reranked: dict[int, list[int | None]] = {3: [], 5: []}
    seconds: dict[int, list[float]] = {3: [], 5: []}
    for i in sample:
        top = hits[i][:5]
        prompts = [reader_messages(questions[i], Passage(h.chunk.title, h.chunk.text)) for h in top]
        start = time.perf_counter()
        no_answer = generator.no_answer_probabilities(prompts[:3])
        seconds[3].append(time.perf_counter() - start)
        no_answer += generator.no_answer_probabilities(prompts[3:]) if prompts[3:] else []
        seconds[5].append(time.perf_counter() - start)
        for depth in reranked:
            order = sorted(range(min(depth, len(top))), key=lambda j: no_answer[j])
            # Re-ranking moves the top `depth`; what lies below keeps its rank.
            moved = [top[j] for j in order] + list(hits[i][depth:])
            reranked[depth].append(_first_rank(moved, chunk_paragraph, gold[i]))
    n = len(sample)
    out[f"{DEFAULT}, same {n} questions"] = _scores([ranks[DEFAULT][i] for i in sample])
    for depth, got in reranked.items():
        out[f"... top {depth} re-ranked by the reader ({n} questions)"] = {
            **_scores(got),
            "p50_ms": round(statistics.median(seconds[depth]) * 1000, 1),  # reading only
        }
    return out


def _first_rank(hits, chunk_paragraph, gold) -> int | None:
    """1-based position of the first hit from the gold paragraph (hits in their ranked order)."""
    return next((r for r, h in enumerate(hits, start=1) if chunk_paragraph[h.chunk.id] == gold), None)


def _recall(ranks, k: int) -> float:
    return round(sum(1 for r in ranks if r and r <= k) / len(ranks), 4)


def _p50_latency_ms(retriever: Retriever, sample, mode: str) -> float:
    """Median time of one search, the question's embedding included."""
    times = []
    for question in sample:
        start = time.perf_counter()
        retriever.search(question, top_k=5, mode=mode)
        times.append(time.perf_counter() - start)
    return round(statistics.median(times) * 1000, 2)


def _calibrate_relevance(kb, questions, gold, chunk_paragraph) -> dict:
    vectors = kb.embed_queries(questions)  # as ask embeds them
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
