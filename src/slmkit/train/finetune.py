"""Full and LoRA fine-tuning: setup → train (with validation and checkpoints) → save.

A plain PyTorch loop rather than ``transformers.Trainer``: on a CPU the wins come from what a generic
trainer cannot know — answer-only logits (slmkit.train.loss), length-grouped dynamic padding
(slmkit.train.batching) and bf16 autocast — and a short loop keeps every step inspectable.
"""

from __future__ import annotations

import json
import logging
import math
import random
import shutil
import time
from collections.abc import Sequence
from contextlib import nullcontext
from pathlib import Path
from typing import Any

import numpy as np
import torch
import yaml
from tqdm.auto import tqdm
from transformers import get_cosine_schedule_with_warmup

from slmkit.config import TrainConfig
from slmkit.errors import InputError
from slmkit.models.loading import LoadedModel, load_causal_lm
from slmkit.train.batching import batch_order, collate
from slmkit.train.checkpoint import load_checkpoint, save_checkpoint
from slmkit.train.loss import answer_loss
from slmkit.train.tokenize import TokenizedExample

logger = logging.getLogger(__name__)


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def _logged_step(line: str) -> int | None:
    """The step of a metrics line, or None for a line a kill cut short."""
    try:
        return int(json.loads(line)["step"])
    except (ValueError, KeyError, TypeError):
        return None


class FineTune:
    """One fine-tuning run of ``config`` on tokenized train/validation examples.

    Example:
        >>> run = FineTune(config, train_examples, val_examples)
        >>> result = run.train()
    """

    def __init__(
        self,
        config: TrainConfig,
        train: Sequence[TokenizedExample],
        val: Sequence[TokenizedExample],
        loaded: LoadedModel | None = None,
    ) -> None:
        if not train:
            raise InputError("the training set is empty; check data.path and data.max_examples")
        self.config, self.train_set, self.val_set = config, list(train), list(val)
        self.output_dir = Path(config.output_dir)
        seed_everything(config.seed)
        self.loaded = loaded or load_causal_lm(config.model)
        self.model = self._prepare_model(self.loaded)
        self.pad_id = self.loaded.tokenizer.pad_token_id
        self.trainable = [p for p in self.model.parameters() if p.requires_grad]
        self.optimizer = torch.optim.AdamW(
            self.trainable, lr=config.optim.lr, weight_decay=config.optim.weight_decay
        )
        self.total_steps = self._total_steps()
        warmup = int(config.optim.warmup_ratio * self.total_steps)
        self.scheduler = get_cosine_schedule_with_warmup(self.optimizer, warmup, self.total_steps)
        self.metrics_path = self.output_dir / "metrics.jsonl"
        self._tensorboard: Any = None

    # -- setup -------------------------------------------------------------------------------
    def _prepare_model(self, loaded: LoadedModel) -> torch.nn.Module:
        model = loaded.model
        if self.config.gradient_checkpointing:
            model.gradient_checkpointing_enable()
            model.config.use_cache = False
        if self.config.method == "lora":
            from peft import LoraConfig, get_peft_model

            lora = self.config.lora
            model = get_peft_model(
                model,
                LoraConfig(
                    r=lora.r,
                    lora_alpha=lora.alpha,
                    lora_dropout=lora.dropout,
                    target_modules=list(lora.target_modules),
                    task_type="CAUSAL_LM",
                ),
            )
            if self.config.gradient_checkpointing:
                model.enable_input_require_grads()
        model.train()
        return model

    def _batches_per_epoch(self) -> int:
        return math.ceil(len(self.train_set) / self.config.optim.batch_size)

    def _total_steps(self) -> int:
        optim = self.config.optim
        if optim.max_steps:
            return optim.max_steps
        return max(1, math.ceil(optim.epochs * self._batches_per_epoch() / optim.grad_accum))

    def _micro_batches(self, start_epoch: int, start_batch: int):
        """Yield ``(epoch, batch_index, batch)`` forever, from a position (for exact resume)."""
        lengths = [len(e) for e in self.train_set]
        epoch, index = start_epoch, start_batch
        while True:
            order = batch_order(lengths, self.config.optim.batch_size, self.config.seed, epoch)
            for i in range(index, len(order)):
                yield epoch, i, collate([self.train_set[j] for j in order[i]], self.pad_id)
            epoch, index = epoch + 1, 0

    def _autocast(self):
        return torch.autocast("cpu", dtype=torch.bfloat16) if self.config.bf16 else nullcontext()

    # -- train -------------------------------------------------------------------------------
    def train(self, stop_after: int | None = None) -> dict[str, Any]:
        """Run to ``total_steps`` (or early stopping), resuming from a checkpoint if there is one.

        Args:
            stop_after: Stop (as if interrupted) after this many optimizer steps in this call;
                used by tests of resumption.

        Returns:
            A summary: steps, final/best validation loss, tokens/s, seconds, where the model is.
        """
        config = self.config
        self.output_dir.mkdir(parents=True, exist_ok=True)
        (self.output_dir / "recipe.yaml").write_text(
            yaml.safe_dump({"train": config.model_dump()}, sort_keys=False)
        )
        state = load_checkpoint(self.output_dir, self.model, self.optimizer, self.scheduler) or {
            "step": 0,
            "epoch": 0,
            "batch": 0,
            "best_val": None,
            "bad_evals": 0,
            "tokens": 0,
            "seconds": 0.0,
        }
        if state["step"]:
            logger.info("resuming from step %d", state["step"])
        self._forget_metrics_after(state["step"])
        batches = self._micro_batches(state["epoch"], state["batch"])
        progress = tqdm(
            total=self.total_steps, initial=state["step"], desc="train", unit="step", dynamic_ncols=True
        )
        steps_this_call = 0
        while state["step"] < self.total_steps:
            started = time.perf_counter()
            loss_sum, tokens = 0.0, 0
            for _ in range(config.optim.grad_accum):
                epoch, index, batch = next(batches)
                with self._autocast():
                    loss, _ = answer_loss(self.model, batch)
                (loss / config.optim.grad_accum).backward()
                loss_sum += float(loss.detach()) / config.optim.grad_accum
                tokens += int(batch["attention_mask"].sum())
            torch.nn.utils.clip_grad_norm_(self.trainable, config.optim.max_grad_norm)
            self.optimizer.step()
            self.scheduler.step()
            self.optimizer.zero_grad(set_to_none=True)
            elapsed = time.perf_counter() - started
            state.update(
                step=state["step"] + 1,
                epoch=epoch,
                batch=index + 1,
                tokens=state["tokens"] + tokens,
                seconds=state["seconds"] + elapsed,
            )
            record = {
                "step": state["step"],
                "loss": round(loss_sum, 5),
                "lr": self.scheduler.get_last_lr()[0],
                "tokens_per_second": round(tokens / elapsed, 1),
            }
            progress.update(1)
            progress.set_postfix(loss=f"{loss_sum:.3f}", tok_s=f"{tokens / elapsed:.0f}")
            stop = self._maybe_validate(state, record)
            self._log(record)
            steps_this_call += 1
            if state["step"] % config.save_every == 0 or state["step"] == self.total_steps or stop:
                save_checkpoint(self.output_dir, self.model, self.optimizer, self.scheduler, state)
            if stop or (stop_after is not None and steps_this_call >= stop_after):
                break
        progress.close()
        if self._tensorboard is not None:
            self._tensorboard.close()
            self._tensorboard = None
        finished = state["step"] >= self.total_steps or state.get("stopped_early", False)
        if finished:
            self._save_final()
        return {
            **state,
            "finished": finished,
            "model_dir": str(self.output_dir / "final"),
            "tokens_per_second": state["tokens"] / state["seconds"] if state["seconds"] else 0.0,
        }

    def _maybe_validate(self, state: dict, record: dict) -> bool:
        last = state["step"] == self.total_steps
        if not self.val_set or (state["step"] % self.config.eval_every and not last):
            return False
        val_loss = self.evaluate()
        record.update(val_loss=round(val_loss, 5), val_perplexity=round(math.exp(min(val_loss, 50)), 3))
        if state["best_val"] is None or val_loss < state["best_val"]:
            state.update(best_val=val_loss, bad_evals=0)
            self._save_model(self.output_dir / "best")
            return False
        state["bad_evals"] += 1
        patience = self.config.early_stopping_patience
        if patience and state["bad_evals"] >= patience:
            logger.info("early stopping: validation loss has not improved for %d evaluations", patience)
            state["stopped_early"] = True
            return True
        return False

    @torch.no_grad()
    def evaluate(self) -> float:
        """Token-weighted mean answer loss on the validation set."""
        self.model.eval()
        total, count = 0.0, 0
        size = self.config.optim.batch_size
        ordered = sorted(self.val_set, key=len)
        for start in range(0, len(ordered), size):
            batch = collate(ordered[start : start + size], self.pad_id)
            with self._autocast():
                loss, n = answer_loss(self.model, batch)
            total += float(loss) * n
            count += n
        self.model.train()
        return total / max(count, 1)

    # -- save --------------------------------------------------------------------------------
    def _forget_metrics_after(self, step: int) -> None:
        """Drop metric lines of steps after the checkpoint: a resumed run logs them again."""
        if not self.metrics_path.exists():
            return
        lines = self.metrics_path.read_text(encoding="utf-8").splitlines()
        kept = [line for line in lines if (logged := _logged_step(line)) is not None and logged <= step]
        if len(kept) != len(lines):
            self.metrics_path.write_text("".join(line + "\n" for line in kept), encoding="utf-8")

    def _log(self, record: dict) -> None:
        with self.metrics_path.open("a", encoding="utf-8") as f:
            f.write(json.dumps(record) + "\n")
        if self._tensorboard is None:
            from torch.utils.tensorboard import SummaryWriter

            self._tensorboard = SummaryWriter(str(self.output_dir / "tensorboard"))
        for key, value in record.items():
            if key != "step":
                self._tensorboard.add_scalar(f"train/{key}", value, record["step"])
        self._tensorboard.flush()

    def _save_model(self, folder: Path) -> None:
        """A self-contained model folder: weights (LoRA merged into the base), tokenizer, recipe."""
        staging = folder.with_name(f".{folder.name}-staging")
        shutil.rmtree(staging, ignore_errors=True)
        model = self.model
        if self.config.method == "lora":
            # Merge a copy so training can go on with the adapters in place.
            import copy

            model = copy.deepcopy(self.model).merge_and_unload()
        model.save_pretrained(staging)
        self.loaded.tokenizer.save_pretrained(staging)
        shutil.copy(self.output_dir / "recipe.yaml", staging / "recipe.yaml")
        shutil.rmtree(folder, ignore_errors=True)
        staging.rename(folder)

    def _save_final(self) -> None:
        self._save_model(self.output_dir / "final")
        if self.metrics_path.exists():
            shutil.copy(self.metrics_path, self.output_dir / "final" / "metrics.jsonl")
