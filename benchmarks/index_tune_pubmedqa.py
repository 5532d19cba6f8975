"""`slmkit index tune` on a domain slmkit's query adapter never saw: PubMedQA abstracts.

Knowledge base: the 1,000 PubMedQA PQA-L abstracts (data/pubmedqa, MIT), one document each, built
with the default settings. Questions: each abstract's own question; the 500 of the official test
PMIDs are only ever asked, the 500 others are the pairs ``index tune`` trains on (question, its
abstract as the passage). A hit is a chunk of the question's own abstract.

Rankings compared on the 500 test questions, dense and hybrid: the plain embedder, and the query
adapter ``index tune`` trained on this knowledge base. ``ratio`` = tuned dense recall@1 / plain
dense recall@1. Also reports the tune's time and its own held-out recall, and how many of the test
questions (all answerable) the default relevance gate, calibrated on SQuAD, would refuse here.

    python benchmarks/index_tune_pubmedqa.py
"""

from __future__ import annotations

import json
import tempfile
import time
from pathlib import Path

import numpy as np

from _common import REPO, emit
from slmkit.config import AbstentionConfig, IndexConfig, IngestConfig, QueryTuneConfig, RetrievalConfig
from slmkit.rag.knowledge_base import KnowledgeBase
from slmkit.rag.retrieval import Retriever
from slmkit.train.query_tuning import read_pairs, tune_query_encoder

DATA = REPO / "data" / "pubmedqa" / "pqal_questions_contexts.jsonl"
DEPTHS = (1, 5, 20)


def main() -> None:
    rows = [json.loads(line) for line in DATA.read_text(encoding="utf-8").splitlines()]
    with tempfile.TemporaryDirectory(prefix="pubmedqa-") as tmp:
        work = Path(tmp)
        config = IndexConfig(ingest=IngestConfig(text_field="context", title_field="pmid"))
        start = time.perf_counter()
        kb, _ = KnowledgeBase.build(work / "kb", [str(DATA)], config, progress=False)
        build_seconds = time.perf_counter() - start
        pairs_file = work / "train-pairs.jsonl"
        train_rows = [r for r in rows if r["split"] == "train"]
        pairs_file.write_text(
            "".join(
                json.dumps({"question": r["question"], "passage": r["context"]}) + "\n" for r in train_rows
            ),
            encoding="utf-8",
        )
        test = [r for r in rows if r["split"] == "test"]
        record: dict = {
            "benchmark": "index_tune_pubmedqa",
            "documents": len(rows),
            "chunks": len(kb.chunks),
            "test_questions": len(test),
            "build_seconds": round(build_seconds, 1),
        }
        results = {"plain embedder": _recall(kb, test)}
        record["relevance_gate"] = _relevance_gate(kb, test)
        pairs, unmatched = read_pairs(pairs_file, kb)
        start = time.perf_counter()
        tuned = tune_query_encoder(kb, pairs, work / "adapter", QueryTuneConfig(), progress=False)
        record["tune_seconds"] = round(time.perf_counter() - start, 1)
        record["tune_pairs"] = len(pairs)
        record["tune_unmatched_passages"] = unmatched
        record["tune_heldout_before"], record["tune_heldout_after"] = tuned.before, tuned.after
        results["index tune adapter"] = _recall(kb.with_query_adapter(tuned.adapter), test)
    record["test"] = results
    record["baseline"] = "plain embedder, dense"
    record["ratio"] = round(
        results["index tune adapter"]["dense"]["recall@1"] / results["plain embedder"]["dense"]["recall@1"], 4
    )
    emit(record)


def _relevance_gate(kb: KnowledgeBase, questions: list[dict]) -> dict:
    """How many of these answerable questions the default relevance gate would refuse: the gate was
    calibrated on SQuAD (Wikipedia), and a domain whose questions sit further from their passages
    in the embedder's space would lose answerable questions to it."""
    threshold = AbstentionConfig().min_relevance
    retriever = Retriever(kb, RetrievalConfig())  # what ask retrieves by default
    hits = retriever.search_many([q["question"] for q in questions])
    best = [max(h.dense_score for h in question_hits) for question_hits in hits]
    return {
        "min_relevance": threshold,
        "refused_pct": round(100 * sum(b < threshold for b in best) / len(best), 2),
        "best_similarity_p05": round(float(np.percentile(best, 5)), 3),
        "best_similarity_p50": round(float(np.median(best)), 3),
    }


def _recall(kb: KnowledgeBase, questions: list[dict]) -> dict:
    pmid_of = [c.title for c in kb.chunks]
    out = {}
    retriever = Retriever(kb, RetrievalConfig(reranker=None))  # the first stage: what index tune adapts
    for mode in ("dense", "hybrid"):
        results = retriever.search_many([q["question"] for q in questions], top_k=max(DEPTHS), mode=mode)
        ranks = [
            next((h.rank for h in hits if pmid_of[h.chunk.id] == q["pmid"]), None)
            for hits, q in zip(results, questions, strict=True)
        ]
        out[mode] = {
            f"recall@{k}": round(sum(1 for r in ranks if r and r <= k) / len(ranks), 4) for k in DEPTHS
        }
        out[mode]["mrr@20"] = round(sum(1 / r for r in ranks if r) / len(ranks), 4)
    return out


if __name__ == "__main__":
    main()
