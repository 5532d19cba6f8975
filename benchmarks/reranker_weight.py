"""Choose ``retrieval.rerank_weight`` on train articles only: the reranker recipe's held-out
questions (whole paragraphs the reranker never trained on, against the train-article knowledge base),
the first stage's top ``rerank_depth`` re-ordered at each weight of the reranker's share of the final
score. The reranker scores each question's hits once. One JSON line; ``ratio`` = recall@1 at the best
weight / recall@1 at weight 1 (the reranker's order alone).

Eval articles are never read here: the weight this picks is then measured on them by
``retrieval_squad.py``.

    python benchmarks/reranker_weight.py [--recipe recipes/reranker-minilm.yaml] [--reranker NAME]
"""

from __future__ import annotations

import argparse
import time

from _common import emit
from slmkit.config import RerankerTrainConfig, RetrievalConfig, load_yaml, parse_config
from slmkit.models.reranker import load_reranker
from slmkit.train.reranker import WEIGHT_GRID, rerank_questions, rerank_recall


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--recipe", default="recipes/reranker-minilm.yaml")
    parser.add_argument("--reranker", default="slmkit-reranker-minilm")
    parser.add_argument("--engine", default="transformers", help="same scores on llama.cpp, slower here")
    parser.add_argument("--weights", default=",".join(map(str, WEIGHT_GRID)))
    args = parser.parse_args()
    weights = [float(w) for w in args.weights.split(",")]

    config = parse_config(RerankerTrainConfig, load_yaml(args.recipe)["rerank"], f"{args.recipe} [rerank]")
    retriever, _, heldout = rerank_questions(config)
    reranker = load_reranker(args.reranker, args.engine)
    depth = RetrievalConfig().rerank_depth
    started = time.monotonic()
    first_stage = rerank_recall(None, heldout, retriever, depth)[1.0]
    by_weight = rerank_recall(reranker.scores, heldout, retriever, depth, weights)
    best = max(weights, key=lambda w: (by_weight[w]["recall@1"], by_weight[w]["mrr"]))
    emit(
        {
            "benchmark": "reranker_weight",
            "reranker": args.reranker,
            "questions": len(heldout),
            "depth": depth,
            "first_stage": first_stage,
            "by_weight": {str(w): r for w, r in by_weight.items()},
            "best_weight": best,
            "seconds": round(time.monotonic() - started, 1),
            "ratio": round(by_weight[best]["recall@1"] / max(by_weight[1.0]["recall@1"], 1e-9), 4)
            if 1.0 in by_weight
            else None,
        }
    )


if __name__ == "__main__":
    main()
