"""Does fine-tuning on retrieval-shaped SQuAD data make the small model a better reader?

1. Fine-tune the default model (LoRA) on SQuAD *train* articles with retrieved context (RAFT-style:
   gold passage among retrieved distractors, 20 % abstention targets), within a CPU budget set by
   ``--examples`` (the default, 640 examples × 1 epoch, takes about 25 minutes on 2 cores).
2. Evaluate base and fine-tuned models on the same SQuAD *eval* questions (never trained on):
   - gold context: the gold paragraph as the only passage; SQuAD EM/F1 of the reply;
   - retrieved context (open book): the full `ask` path over all 2,067 paragraphs, gates on;
     EM/F1 over all questions (an abstention scores 0) and the share abstained.

Baseline: the base model; ``ratio`` = fine-tuned F1 / base F1 with gold context.

    python benchmarks/squad_finetune.py [--examples 640] [--questions 60]
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

from _common import REPO, emit, squad_articles, squad_kb
from slmkit.config import AskConfig, GenerationConfig, TrainConfig, parse_config
from slmkit.data.prompts import Passage, qa_messages
from slmkit.data.squad import split_articles
from slmkit.data.squad_metrics import exact_match, f1_score
from slmkit.models.generation import TransformersGenerator
from slmkit.models.loading import load_causal_lm
from slmkit.rag.answer import Answerer
from slmkit.rag.retrieval import Retriever
from slmkit.train.run import finetune


def eval_questions(n: int) -> list[tuple[str, str, str, list[str]]]:
    """(title, paragraph, question, golds): first question of evenly spread eval paragraphs."""
    items = [(a.display_title, p) for a in split_articles(squad_articles(), "eval") for p in a.paragraphs]
    step = max(1, len(items) // n)
    return [(t, p.context, p.qas[0].question, p.qas[0].answers) for t, p in items[::step][:n]]


def _percent(values: list[float]) -> float:
    return round(100 * statistics.mean(values), 1)


def evaluate(model_name: str, questions, kb) -> dict:
    generator = TransformersGenerator(load_causal_lm(model_name))
    config = AskConfig(model=model_name, generation=GenerationConfig(max_new_tokens=48))
    gold_em, gold_f1, rag_em, rag_f1, abstained, seconds, speeds = [], [], [], [], 0, [], []
    answerer = Answerer(generator, Retriever(kb), config)
    for title, context, question, golds in questions:
        generation = generator.generate(qa_messages(question, [Passage(title, context)]), config.generation)
        reply = generation.text
        if generation.tokens_per_second:
            speeds.append(generation.tokens_per_second)
        gold_em.append(exact_match(reply, golds))
        gold_f1.append(f1_score(reply, golds))
        answer = answerer.ask(question)
        seconds.append(answer.timings["total"])
        text = "" if answer.abstained else answer.raw_text
        abstained += answer.abstained
        rag_em.append(exact_match(text, golds))
        rag_f1.append(f1_score(text, golds))
    mean = lambda xs: round(100 * statistics.mean(xs), 1)  # noqa: E731
    return {
        "gold_em": mean(gold_em),
        "gold_f1": mean(gold_f1),
        "rag_em": mean(rag_em),
        "rag_f1": mean(rag_f1),
        "rag_abstained": round(abstained / len(questions), 3),
        "ask_p50_seconds": round(statistics.median(seconds), 2),
        "decode_tokens_per_second": round(statistics.median(speeds), 1) if speeds else None,
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--examples", type=int, default=640)
    parser.add_argument("--questions", type=int, default=60)
    parser.add_argument("--output", default=str(REPO / "runs" / "bench-squad-lora"))
    args = parser.parse_args()
    config = parse_config(
        TrainConfig,
        {
            "model": "smollm2-135m-instruct",
            "method": "lora",
            "output_dir": args.output,
            "data": {
                "task": "squad",
                "path": "bundled:squad",
                "split": "train",
                "context": "retrieved",
                "top_k": 3,
                "abstain_share": 0.2,
                "max_examples": args.examples,
                "max_val_examples": 48,
                "max_seq_len": 768,
            },
            "optim": {"lr": 2e-4, "batch_size": 8, "epochs": 1, "warmup_ratio": 0.05},
            "eval_every": 20,
            "save_every": 10,
            "seed": 0,
        },
        "squad_finetune",
    )
    started = time.perf_counter()
    result = finetune(config)
    train_minutes = (time.perf_counter() - started) / 60
    kb, _ = squad_kb()
    questions = eval_questions(args.questions)
    base = evaluate("smollm2-135m-instruct", questions, kb)
    tuned = evaluate(str(Path(args.output) / "final"), questions, kb)
    emit(
        {
            "benchmark": "squad_finetune",
            "train_examples": args.examples,
            "eval_questions": len(questions),
            "train_steps": result["step"],
            "train_minutes": round(train_minutes, 1),
            "train_tokens_per_second": round(result["tokens_per_second"], 1),
            "best_val_loss": round(result["best_val"], 4) if result.get("best_val") is not None else None,
            "baseline": "smollm2-135m-instruct, not fine-tuned",
            "base": base,
            "finetuned": tuned,
            "ratio": round(tuned["gold_f1"] / base["gold_f1"], 3) if base["gold_f1"] else None,
        }
    )


if __name__ == "__main__":
    main()
