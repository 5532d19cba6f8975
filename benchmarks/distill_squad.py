"""How much of the teacher does a distilled ~30-50M student keep, for how much less size and time?

1. Distil SmolLM2-135M-Instruct (the teacher) with ``recipes/distill-squad-smollm2.yaml`` (logit
   distillation on SQuAD *train* articles, gold paragraph as context) into two students, for the
   same number of steps:
   - ``scratch``: the recipe's new 31.9M student (6 layers, hidden 384) trained from scratch;
   - ``teacher-init``: a 6-layer student of the teacher's width initialised from the teacher's
     embeddings and evenly spaced layers (49.5M), ``--student.init teacher``.
2. Evaluate teacher and students on the same SQuAD *eval* questions (never trained on), as
   ``benchmarks/squad_finetune.py`` does: gold paragraph EM/F1, open book (the full ``ask`` path
   over all 2,067 paragraphs, gates on) EM/F1 and abstention share, decode tokens/s.

Baseline: the teacher; ``ratio`` = scratch student F1 / teacher F1 with gold context (with the
parameter and disk compression beside it). Steps are the CPU budget: ``--steps 25`` (200 examples)
per student fits in ~25 minutes on 2 cores together with the evaluations.

    python benchmarks/distill_squad.py [--steps 25] [--questions 30] [--students scratch,teacher-init]
        [--teacher smollm2-135m-instruct] [--kl-tokens answer|all] [--lr LR]
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import time
from pathlib import Path

import torch

from _common import REPO, emit, squad_kb
from slmkit.config import DistillConfig, load_yaml, parse_config
from slmkit.data.prompts import Passage, qa_messages
from slmkit.eval.distillation import evaluate_pair
from slmkit.models.generation import TransformersGenerator
from slmkit.models.loading import load_causal_lm
from slmkit.train.distill import distill
from squad_finetune import eval_questions, evaluate

RECIPE = REPO / "recipes" / "distill-squad-smollm2.yaml"
TEACHER_INIT = {"layers": 6, "hidden_size": 576, "heads": 9, "kv_heads": 3, "intermediate_size": 1536}


def train_student(
    name: str, steps: int, output: Path, teacher: str, kl_tokens: str, lr: float | None, eval_every: int
) -> dict:
    data = load_yaml(RECIPE)["distill"]
    data.update(
        teacher=teacher,
        kl_tokens=kl_tokens,
        output_dir=str(output / name),
        eval={"questions": 0},
        save_every=10_000,
        eval_every=eval_every,
    )
    data["optim"] = {**data["optim"], "max_steps": steps}
    data["data"] = {
        **data["data"],
        "max_examples": steps * data["optim"]["batch_size"],
        "max_val_examples": 24,
    }
    if name == "teacher-init":
        data["student"] = {"architecture": TEACHER_INIT, "init": "teacher"}
        data["optim"]["lr"] = 1e-4  # the copied layers are trained, not learnt anew
    if lr is not None:
        data["optim"]["lr"] = lr
    started = time.perf_counter()
    report = distill(parse_config(DistillConfig, data, f"distill_squad [{name}]"), evaluate_pair)
    report["wall_minutes"] = round((time.perf_counter() - started) / 60, 1)
    return report


def decode_tokens_per_second(model_name: str, tokens: int = 32, repeats: int = 3) -> float:
    """Decode speed on a gold-context SQuAD prompt with exactly ``tokens`` new tokens (an untrained
    student may stop at once, so answer-length speeds would not compare), median of ``repeats``."""
    loaded = load_causal_lm(model_name)
    title, context, question, _ = eval_questions(1)[0]
    inputs = TransformersGenerator(loaded)._encode(qa_messages(question, [Passage(title, context)]))
    speeds = []
    for _ in range(repeats + 1):  # the first call warms up
        with torch.inference_mode():
            started = time.perf_counter()
            loaded.model.generate(**inputs, max_new_tokens=1, do_sample=False)
            prefill = time.perf_counter() - started
            started = time.perf_counter()
            loaded.model.generate(**inputs, min_new_tokens=tokens, max_new_tokens=tokens, do_sample=False)
            speeds.append((tokens - 1) / (time.perf_counter() - started - prefill))
    return round(statistics.median(speeds[1:]), 1)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--steps", type=int, default=25, help="Optimizer steps (batches of 8) per student.")
    parser.add_argument("--questions", type=int, default=30)
    parser.add_argument("--students", default="scratch,teacher-init")
    parser.add_argument("--output", default=str(REPO / "runs" / "bench-distill"))
    parser.add_argument(
        "--teacher",
        default="smollm2-135m-instruct",
        help="Teacher model: the packaged default, or e.g. a SQuAD fine-tune's final/ folder.",
    )
    parser.add_argument("--kl-tokens", choices=["answer", "all"], default="answer")
    parser.add_argument("--lr", type=float, default=None, help="Override every student's learning rate.")
    parser.add_argument(
        "--eval-every", type=int, default=10_000, help="Validation loss every N steps (a learning curve)."
    )
    args = parser.parse_args()
    output = Path(args.output)
    shutil.rmtree(output, ignore_errors=True)  # a benchmark measures a fresh run, not a resumed one
    reports = {
        name: train_student(name, args.steps, output, args.teacher, args.kl_tokens, args.lr, args.eval_every)
        for name in args.students.split(",")
    }
    kb, _ = squad_kb()
    questions = eval_questions(args.questions)
    teacher = evaluate(args.teacher, questions, kb)
    first = next(iter(reports.values()))
    teacher.update(
        fixed_decode_tokens_per_second=decode_tokens_per_second(args.teacher),
        parameters=first["teacher_parameters"],
        safetensors_mb=_mb(first["teacher_safetensors_bytes"]),
    )
    students = {}
    for name, report in reports.items():
        scores = evaluate(report["model_dir"], questions, kb)
        scores.update(
            fixed_decode_tokens_per_second=decode_tokens_per_second(report["model_dir"]),
            parameters=report["student_parameters"],
            safetensors_mb=_mb(report["student_safetensors_bytes"]),
            parameter_compression=report["parameter_compression"],
            disk_compression=report["disk_compression"],
            train_steps=report["steps"],
            train_examples=report["steps"] * 8,
            train_seconds=report["training_seconds"],
            train_tokens_per_second=report["training_tokens_per_second"],
            best_val_loss=round(report["best_val_loss"], 4) if report["best_val_loss"] else None,
            f1_vs_teacher=round(scores["gold_f1"] / teacher["gold_f1"], 3) if teacher["gold_f1"] else None,
        )
        students[name] = scores
    main_student = students.get("scratch") or next(iter(students.values()))
    emit(
        {
            "benchmark": "distill_squad",
            "method": first["method"],
            "temperature": first["temperature"],
            "alpha": first["alpha"],
            "kl_tokens": args.kl_tokens,
            "eval_questions": len(questions),
            "baseline": f"teacher {args.teacher}",
            "teacher": teacher,
            "students": students,
            "ratio": main_student["f1_vs_teacher"],
        }
    )


def _mb(n: int | None) -> float | None:
    return round(n / 2**20, 1) if n else None


if __name__ == "__main__":
    main()
