"""Does tuning the embedder itself on SQuAD train questions lift retrieval on the eval articles?

The lever issue 13 names first: all-MiniLM-L6-v2 fine-tuned as a bi-encoder (questions and chunks
both embedded by the tuned model, so the knowledge base is embedded again) on the reranker recipe's
training questions: every answerable question of the 38 train articles but its 300 held-out ones,
each with its own chunk and one hard negative from the hybrid ranking over a train-only knowledge
base (``slmkit.train.reranker.training_rows``: the same mining as the reranker's), with
sentence-transformers' MultipleNegativesRankingLoss (in-batch negatives too; batches never hold
the same text twice). A LoRA on every linear layer (r 16, 1.3 MB in bf16: what could ship beside
the reranker within the package's size budget), merged for measuring.

Measured twice, plain MiniLM against the tuned one, each with a knowledge base embedded by it:

1. the 300 held-out **train** questions against the train-article knowledge base, where
   ``retrieval.lexical_weight`` for the tuned embedder is chosen (best recall@1, then MRR);
2. the 2,524 **eval** questions against all 48 articles, after the choice.

One JSON line; ``ratio`` = the tuned embedder's convex-hybrid recall@1 on eval at the chosen weight /
plain MiniLM's at the default weight. About 40 minutes of training on 2 cores, plus 10 of
embedding and measuring; a finished model in ``--output`` is reused, a killed run starts again.

    python benchmarks/embedder_tuning.py [--output runs/embedder-tuning] [--epochs 1] [--lr 2e-4]
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Sequence
from pathlib import Path

from _common import emit
from slmkit.config import (
    DEFAULT_LEXICAL_WEIGHT,
    IndexConfig,
    RerankerTrainConfig,
    RetrievalConfig,
    load_yaml,
    parse_config,
)
from slmkit.data.squad import bundled_squad, load_squad, split_articles
from slmkit.models.families import ALL_LINEAR
from slmkit.models.registry import DEFAULT_EMBEDDER
from slmkit.rag.knowledge_base import KnowledgeBase
from slmkit.rag.retrieval import Retriever
from slmkit.train.rag_examples import paragraphs_kb
from slmkit.train.reranker import (
    RerankQuestion,
    rerank_questions,
    rerank_recall,
    squad_questions,
    training_rows,
)

DEPTH = 20


def train_embedder(rows: list[dict[str, str]], output: Path, args: argparse.Namespace) -> Path:
    """MiniLM with a LoRA trained on ``rows`` and merged in, saved as a sentence-transformers folder."""
    from datasets import Dataset
    from peft import LoraConfig, get_peft_model
    from sentence_transformers import SentenceTransformerTrainer, SentenceTransformerTrainingArguments
    from sentence_transformers.losses import MultipleNegativesRankingLoss
    from sentence_transformers.training_args import BatchSamplers

    from slmkit.models.embedder import load_embedder

    final = output / "model"
    if (final / "modules.json").is_file():
        return final
    model = load_embedder(DEFAULT_EMBEDDER, device="cpu")
    # Injected into the transformer in place: the sentence-transformers model around it trains as is.
    lora = get_peft_model(
        model[0].auto_model,
        LoraConfig(r=args.r, lora_alpha=2 * args.r, lora_dropout=0.05, target_modules=ALL_LINEAR),
    )
    training = SentenceTransformerTrainingArguments(
        output_dir=str(output / "checkpoints"),
        num_train_epochs=args.epochs,
        per_device_train_batch_size=args.batch_size,
        learning_rate=args.lr,
        warmup_steps=0.1,  # a share of the steps (transformers 5)
        logging_steps=10,
        save_strategy="no",
        seed=0,
        use_cpu=True,
        # An in-batch negative that is another row's own chunk would be a false negative.
        batch_sampler=BatchSamplers.NO_DUPLICATES,
        report_to=[],
    )
    trainer = SentenceTransformerTrainer(
        model=model,
        args=training,
        train_dataset=Dataset.from_list(rows),
        loss=MultipleNegativesRankingLoss(model),
    )
    trainer.train()
    lora.save_pretrained(str(output / "adapter"))
    lora.merge_and_unload()
    model.save(str(final))
    return final


def recall(
    kb: KnowledgeBase, questions: Sequence[RerankQuestion], weights: Sequence[float]
) -> dict[str, dict[str, float]]:
    """Dense, BM25 and convex hybrid at each lexical weight: recall@1/3/5 and MRR over the top 20."""
    rows = {}
    for mode in ("dense", "bm25"):
        retriever = Retriever(kb, RetrievalConfig(mode=mode, reranker=None))
        rows[mode] = rerank_recall(None, questions, retriever, DEPTH)[1.0]
    for weight in weights:
        retriever = Retriever(kb, RetrievalConfig(lexical_weight=weight, reranker=None))
        rows[f"convex {weight}"] = rerank_recall(None, questions, retriever, DEPTH)[1.0]
    return rows


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--recipe", default="recipes/reranker-minilm.yaml", help="questions, split, hold-out")
    parser.add_argument("--output", default="runs/embedder-tuning")
    parser.add_argument("--epochs", type=float, default=1.0)
    parser.add_argument("--lr", type=float, default=2e-4)
    parser.add_argument("--r", type=int, default=16)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--negatives", type=int, default=1)
    parser.add_argument("--weights", default="0.4,0.5,0.6,0.7")
    args = parser.parse_args()
    default = DEFAULT_LEXICAL_WEIGHT
    weights = sorted({float(w) for w in args.weights.split(",")} | {default})
    output = Path(args.output)
    started = time.monotonic()

    config = parse_config(RerankerTrainConfig, load_yaml(args.recipe)["rerank"], f"{args.recipe} [rerank]")
    if config.split != "train":  # the eval articles are what is measured: never trained on
        parser.error(f"{args.recipe}: rerank.split is '{config.split}'; this benchmark needs 'train'")
    retriever, train, heldout = rerank_questions(config)
    rows = training_rows(train, retriever, args.negatives, config.pool, config.seed)
    tuned = train_embedder(rows, output, args)
    trained = time.monotonic()

    articles = load_squad(config.squad or bundled_squad())
    results: dict[str, dict] = {}
    eval_questions = 0
    for name, embedder in (("plain", DEFAULT_EMBEDDER), ("tuned", str(tuned))):
        index = IndexConfig(embedder=embedder)
        if name == "plain":
            heldout_kb = retriever.kb  # the recipe's own train-article knowledge base
        else:  # the same articles as the recipe's, embedded by the tuned model
            heldout_kb = paragraphs_kb(split_articles(articles, "train"), output / "train-kb", index)
        eval_kb = paragraphs_kb(articles, output / f"kb-{name}", index)
        questions = squad_questions(split_articles(articles, "eval"), eval_kb)
        eval_questions = len(questions)
        results[name] = {
            "heldout_train": recall(heldout_kb, heldout, weights),
            "eval": recall(eval_kb, questions, weights),
        }
    held = results["tuned"]["heldout_train"]
    chosen = max(weights, key=lambda w: (held[f"convex {w}"]["recall@1"], held[f"convex {w}"]["mrr"]))
    plain_default = results["plain"]["eval"][f"convex {default}"]["recall@1"]
    tuned_chosen = results["tuned"]["eval"][f"convex {chosen}"]["recall@1"]
    emit(
        {
            "benchmark": "embedder_tuning",
            "train_rows": len(rows),
            "heldout_questions": len(heldout),
            "eval_questions": eval_questions,
            "settings": {k: v for k, v in vars(args).items() if k != "weights"},
            "results": results,
            "chosen_lexical_weight": chosen,
            "train_seconds": round(trained - started, 1),
            "seconds": round(time.monotonic() - started, 1),
            "ratio": round(tuned_chosen / plain_default, 4),
        }
    )


if __name__ == "__main__":
    main()
