"""Training throughput: slmkit's fine-tuning loop vs TRL's SFTTrainer, same everything, one process.

Same model (the packaged SmolLM2-135M), same examples (SQuAD train articles, gold paragraph as
context, rendered by the same chat template), same method (LoRA r=16 on q/k/v/o, or full), same
micro-batch, steps, learning rate and schedule, bf16 autocast for both, loss on the answer only for
both (TRL's prompt-completion format). Reported per trainer: training tokens/s (non-padding tokens
processed per second of training, set-up excluded), peak RSS during training, and the validation
answer loss afterwards (same held-out examples, same loss function) — so a faster run that learns
less would show it.

Baseline: TRL SFTTrainer; ``ratio`` = slmkit tokens/s / TRL tokens/s (goal ≥ 2 at equal loss).

    pip install trl datasets        # benchmark-only dependencies
    python benchmarks/train_throughput.py [--method lora|full] [--steps 12] [--batch 4] [--device cuda]

On CUDA (``--device cuda``, what ``make test-gpu`` runs) both trainers train on the GPU and peak GPU
memory (``torch.cuda.max_memory_allocated``) is reported beside the process's peak RSS.
"""

from __future__ import annotations

import argparse
import tempfile
import time

import psutil
import torch

from _common import PeakSampler, emit
from slmkit.config import TrainConfig, parse_config
from slmkit.data.squad import bundled_squad
from slmkit.data.tasks import read_squad_examples
from slmkit.models.loading import load_causal_lm
from slmkit.train.batching import collate
from slmkit.train.finetune import FineTune, seed_everything
from slmkit.train.loss import answer_loss
from slmkit.train.tokenize import tokenize_examples

_PROCESS = psutil.Process()

# The recipes' rates: LoRA adapters take a large one, a full fine-tune a far smaller one.
LR = {"lora": 2e-4, "full": 3e-5}


def val_loss(model, val, pad_id: int) -> float:
    model.eval()
    device = next(model.parameters()).device
    total = count = 0
    with torch.no_grad():
        for start in range(0, len(val), 4):
            batch = {k: v.to(device) for k, v in collate(val[start : start + 4], pad_id).items()}
            loss, n = answer_loss(model, batch)
            total, count = total + float(loss) * n, count + n
    return total / count


def run_slmkit(args, train, val) -> dict:
    config = parse_config(
        TrainConfig,
        {
            "method": args.method,
            "device": args.device,
            "output_dir": tempfile.mkdtemp(prefix="slmkit-bench-"),
            "bf16": True,
            "eval_every": 10**6,
            "save_every": 10**6,
            "seed": 0,
            "optim": {
                "lr": LR[args.method],
                "batch_size": args.batch,
                "max_steps": args.steps,
                "warmup_ratio": 0.0,
            },
        },
        "benchmark",
    )
    loaded = load_causal_lm("smollm2-135m-instruct")
    seed_everything(0)
    run = FineTune(config, train, [], loaded)
    _reset_gpu_peak(args.device)
    with PeakSampler(lambda: _PROCESS.memory_info().rss, 0.05) as rss:
        result = run.train()
    return {
        "tokens_per_second": result["tokens_per_second"],
        "peak_rss_gb": rss.peak / 2**30,
        **_gpu_peak(args.device),
        "val_loss": val_loss(run.model, val, loaded.tokenizer.pad_token_id),
        "tokens": result["tokens"],
    }


def run_trl(args, examples, val) -> dict:
    from datasets import Dataset
    from peft import LoraConfig
    from trl import SFTConfig, SFTTrainer

    loaded = load_causal_lm("smollm2-135m-instruct")
    rows = [{"prompt": e.messages[:-1], "completion": e.messages[-1:]} for e in examples]
    peft_config = None
    if args.method == "lora":
        peft_config = LoraConfig(
            r=16,
            lora_alpha=32,
            lora_dropout=0.05,
            target_modules=["q_proj", "k_proj", "v_proj", "o_proj"],
            task_type="CAUSAL_LM",
        )
    sft = SFTConfig(
        output_dir=tempfile.mkdtemp(prefix="trl-bench-"),
        per_device_train_batch_size=args.batch,
        max_steps=args.steps,
        learning_rate=LR[args.method],
        lr_scheduler_type="cosine",
        warmup_steps=0,
        bf16=True,
        use_cpu=args.device == "cpu",
        logging_steps=1,
        save_strategy="no",
        report_to=[],
        max_length=512,
        packing=False,
        completion_only_loss=True,
        seed=0,
        dataloader_num_workers=0,
    )
    timer = _train_timer()
    seed_everything(0)
    trainer = SFTTrainer(
        model=loaded.model,
        args=sft,
        train_dataset=Dataset.from_list(rows),
        processing_class=loaded.tokenizer,
        peft_config=peft_config,
        callbacks=[timer],
    )
    _reset_gpu_peak(args.device)
    with PeakSampler(lambda: _PROCESS.memory_info().rss, 0.05) as rss:
        trainer.train()
    # Every example is seen exactly once (steps × batch examples), as in slmkit's run.
    tokens = sum(len(ids) for ids in trainer.train_dataset["input_ids"])
    model = trainer.model
    return {
        "tokens_per_second": tokens / timer.seconds,
        "peak_rss_gb": rss.peak / 2**30,
        **_gpu_peak(args.device),
        "val_loss": val_loss(model, val, loaded.tokenizer.pad_token_id),
        "tokens": tokens,
    }


def _reset_gpu_peak(device: str) -> None:
    if device == "cuda":
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()


def _gpu_peak(device: str) -> dict[str, float]:
    return {"peak_gpu_gb": torch.cuda.max_memory_allocated() / 2**30} if device == "cuda" else {}


def _train_timer():
    """A callback that times the training loop only (TRL tokenizes the dataset before it starts)."""
    from transformers import TrainerCallback

    class TrainTimer(TrainerCallback):
        seconds = 0.0

        def on_train_begin(self, args, state, control, **kwargs):
            self.start = time.perf_counter()

        def on_train_end(self, args, state, control, **kwargs):
            self.seconds = time.perf_counter() - self.start

    return TrainTimer()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--method", choices=["lora", "full"], default="lora")
    parser.add_argument("--steps", type=int, default=12)
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--device", choices=["cpu", "cuda"], default="cpu")
    args = parser.parse_args()
    torch.manual_seed(0)
    examples = read_squad_examples(bundled_squad(), split="train")
    train_examples = examples[: args.steps * args.batch]
    val_examples = examples[-32:]
    tokenizer = load_causal_lm("smollm2-135m-instruct").tokenizer
    train = tokenize_examples(train_examples, tokenizer, 512)
    val = tokenize_examples(val_examples, tokenizer, 512)
    ours = run_slmkit(args, train, val)
    theirs = run_trl(args, train_examples, val)
    emit(
        {
            "benchmark": "train_throughput",
            "method": args.method,
            "steps": args.steps,
            "batch": args.batch,
            "device": args.device,
            "slmkit": {k: round(v, 4) for k, v in ours.items()},
            "baseline": "trl.SFTTrainer (prompt-completion, answer-only loss, bf16, same method/lr/steps)",
            "trl": {k: round(v, 4) for k, v in theirs.items()},
            "ratio": round(ours["tokens_per_second"] / theirs["tokens_per_second"], 3),
        }
    )


if __name__ == "__main__":
    main()
