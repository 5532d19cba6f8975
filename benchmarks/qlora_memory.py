"""QLoRA memory: slmkit LoRA on the full-precision base vs slmkit QLoRA on a torchao int8 base (CPU).

Same model, same examples (SQuAD train articles, gold paragraph as context), same adapters (r=16,
alpha=32, dropout 0.05 on q/k/v/o), same micro-batch, steps, learning rate, schedule and seed, bf16
autocast for both. Each run is its own subprocess, so its peak RSS (the kernel's high-water mark,
``ru_maxrss``) is its own: model load, quantization and the training steps. Each run stops after its
last step as an interrupted run would (``FineTune.train(stop_after=...)`` on a schedule one step
longer, the same for both), so the checkpoint and the merge into a fresh full-precision base that end
a real run are left out: they are not training. The validation pass follows, after the peak is read.

Reported per run: training tokens/s (non-padding tokens per second of training steps), peak RSS,
peak *anonymous* RSS (``RssAnon``, sampled every 20 ms: tensors and heap, without the file pages of
the memory-mapped safetensors weights, which RSS also counts and the kernel can drop), RSS once the
model is ready (before the first step), the last step's training loss, the validation loss after
the same steps (same held-out examples, slmkit's own validation path) and the bytes of the frozen
base's parameters (fp32, or int8 values plus their scales). Linux only (``/proc/self/status``).

Baseline: LoRA; ``ratio`` = QLoRA peak RSS / LoRA peak RSS; ``tokens_per_second_ratio`` = QLoRA
tokens/s / LoRA tokens/s.

    python benchmarks/qlora_memory.py                          # smollm2-135m-instruct
    python benchmarks/qlora_memory.py --model gemma3-270m
    python benchmarks/qlora_memory.py --no-bf16                # fp32 compute for both runs
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Any

from _common import PeakSampler, emit
from slmkit.train.memory import tensor_bytes

if TYPE_CHECKING:
    import torch

METHODS = ("lora", "qlora")
LORA = {"r": 16, "alpha": 32, "dropout": 0.05, "target_modules": ["q_proj", "k_proj", "v_proj", "o_proj"]}
VAL_EXAMPLES = 32


def anonymous_rss() -> int:
    """``RssAnon`` of this process in bytes (Linux)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("RssAnon:"):
            return int(line.split()[1]) * 1024
    raise RuntimeError("/proc/self/status has no RssAnon line: this benchmark needs Linux")


def base_bytes(model: torch.nn.Module) -> int:
    """Parameter bytes of the frozen base (adapters excluded); tied weights are counted once."""
    return sum(tensor_bytes(p) for name, p in model.named_parameters() if "lora_" not in name)


def _examples(model_name: str, count: int) -> tuple[Any, list, list]:
    """The first ``count`` SQuAD-train examples for training and the last 32 for validation, tokenized."""
    from slmkit.data.squad import bundled_squad
    from slmkit.data.tasks import read_squad_examples
    from slmkit.models.loading import load_causal_lm
    from slmkit.train.tokenize import tokenize_examples

    examples = read_squad_examples(bundled_squad(), split="train")
    loaded = load_causal_lm(model_name)
    train = tokenize_examples(examples[:count], loaded.tokenizer, 512)
    val = tokenize_examples(examples[-VAL_EXAMPLES:], loaded.tokenizer, 512, "validation")
    return loaded, train, val


def _train_config(args: argparse.Namespace, output_dir: str) -> Any:
    from slmkit.config import TrainConfig, parse_config

    return parse_config(
        TrainConfig,
        {
            "model": args.model,
            "method": args.worker,
            "device": "cpu",
            "output_dir": output_dir,
            "quantization": {"backend": "torchao-int8"},
            "lora": LORA,
            # One step more than is run, so the run stops unfinished: no checkpoint, no merge.
            "optim": {"lr": 2e-4, "batch_size": args.batch, "max_steps": args.steps + 1, "warmup_ratio": 0.0},
            "bf16": not args.no_bf16,
            "eval_every": 10**6,
            "save_every": 10**6,
            "seed": 0,
        },
        "benchmark",
    )


def run_method(args: argparse.Namespace) -> dict[str, float]:
    """One training run in this process (``--worker METHOD``); returns its measurements."""
    import psutil

    from slmkit.train.finetune import FineTune

    loaded, train, val = _examples(args.model, args.examples)
    with tempfile.TemporaryDirectory(prefix=f"qlora-bench-{args.worker}-") as output_dir:
        # Validation is not inside the loop (a best/ model would be merged and written); it runs
        # after the last step, on the same examples for both methods.
        with PeakSampler(anonymous_rss) as anonymous:
            run = FineTune(_train_config(args, output_dir), train, [], loaded)  # qlora: quantizes
            ready_rss = psutil.Process().memory_info().rss
            result = run.train(stop_after=args.steps)
        # Linux reports ru_maxrss in KiB.
        peak_rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
        run.val_set = val
        val_loss = run.evaluate()
        last = json.loads(run.metrics_path.read_text(encoding="utf-8").splitlines()[-1])
    return {
        "tokens_per_second": result["tokens_per_second"],
        "peak_rss_gb": peak_rss / 2**30,
        "peak_anon_rss_gb": anonymous.peak / 2**30,
        "ready_rss_gb": ready_rss / 2**30,
        "train_loss": last["loss"],
        "val_loss": val_loss,
        "base_param_gb": base_bytes(run.model) / 2**30,
        "tokens": result["tokens"],
        "seconds": result["seconds"],
    }


def spawn(method: str, args: argparse.Namespace) -> dict[str, float]:
    """Run ``method`` in a fresh Python process and read back its measurements.

    Raises:
        RuntimeError: the worker failed (its exit status; its stderr went to the console).
    """
    with tempfile.TemporaryDirectory() as folder:
        out = Path(folder) / "result.json"
        command = [
            sys.executable,
            __file__,
            "--worker",
            method,
            "--result",
            str(out),
            "--model",
            args.model,
            "--examples",
            str(args.examples),
            "--steps",
            str(args.steps),
            "--batch",
            str(args.batch),
            *(["--no-bf16"] if args.no_bf16 else []),
        ]
        status = subprocess.run(command, check=False).returncode
        if status != 0:
            raise RuntimeError(f"the {method} run failed with exit status {status}")
        return json.loads(out.read_text(encoding="utf-8"))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default="smollm2-135m-instruct")
    parser.add_argument("--examples", type=int, default=48, help="SQuAD-train examples to train on")
    parser.add_argument("--steps", type=int, default=12)
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--no-bf16", action="store_true", help="fp32 for both (default: bf16 autocast)")
    parser.add_argument("--worker", choices=METHODS, help=argparse.SUPPRESS)
    parser.add_argument("--result", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        Path(args.result).write_text(json.dumps(run_method(args)), encoding="utf-8")
        return
    runs = {method: spawn(method, args) for method in METHODS}
    lora, qlora = runs["lora"], runs["qlora"]
    emit(
        {
            "benchmark": "qlora_memory",
            "model": args.model,
            "examples": args.examples,
            "steps": args.steps,
            "batch": args.batch,
            "bf16": not args.no_bf16,
            "lora": {k: round(v, 4) for k, v in lora.items()},
            "qlora": {k: round(v, 4) for k, v in qlora.items()},
            "baseline": "slmkit LoRA on the fp32 base (same model, data, adapters, batch, steps, lr, seed)",
            "ratio": round(qlora["peak_rss_gb"] / lora["peak_rss_gb"], 3),
            "tokens_per_second_ratio": round(qlora["tokens_per_second"] / lora["tokens_per_second"], 3),
            "anon_rss_ratio": round(qlora["peak_anon_rss_gb"] / lora["peak_anon_rss_gb"], 3),
            "base_param_bytes_ratio": round(qlora["base_param_gb"] / lora["base_param_gb"], 3),
        }
    )


if __name__ == "__main__":
    main()
