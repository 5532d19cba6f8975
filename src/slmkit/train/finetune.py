"""Full, LoRA and QLoRA fine-tuning: setup → train (with validation and checkpoints) → save.

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
from contextlib import contextmanager, nullcontext
from pathlib import Path
from typing import Any

import numpy as np
import torch
import yaml
from tqdm.auto import tqdm
from transformers import get_cosine_schedule_with_warmup

from slmkit.atomic import atomic_write_json, atomic_write_text
from slmkit.config import TrainConfig
from slmkit.errors import InputError
from slmkit.interrupt import deferred_stop, stop_requested
from slmkit.models.adapters import load_adapter_weights, save_merged
from slmkit.models.families import lora_target_modules
from slmkit.models.loading import LoadedModel, load_causal_lm, save_tokenizer
from slmkit.train.batching import batch_order, collate
from slmkit.train.checkpoint import load_checkpoint, save_checkpoint
from slmkit.train.distributed import (
    Processes,
    check_run,
    load_sharded_checkpoint,
    save_sharded_checkpoint,
)
from slmkit.train.loss import answer_loss
from slmkit.train.memory import OutOfMemoryError, advice, check_fits, is_out_of_memory
from slmkit.train.precision import resolve_bf16
from slmkit.train.quantize import quantize_base, resolve_backend, resolve_device
from slmkit.train.tokenize import IGNORE, TokenizedExample

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

    Subclasses change what is learned by overriding :meth:`training_loss` (distillation does) and
    what ``recipe.yaml`` records by overriding :meth:`recipe`; batching, checkpoints, resumption,
    validation, early stopping and saving stay the same.

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
        # Under torchrun / accelerate launch / --nproc, this process's share of a data-parallel run.
        self.processes = Processes(resolve_device(config.device), config.distributed.strategy)
        self.device = self.processes.device
        check_run(config, self.processes)
        # What `bf16: auto` stands for on this machine is what ran, so recipe.yaml records it.
        config = self.config = config.model_copy(update={"bf16": resolve_bf16(config.bf16, self.device)})
        self.loaded = loaded or load_causal_lm(config.model)
        # Likewise the family's LoRA targets that `target_modules: auto` stands for.
        targets = lora_target_modules(self.loaded.model.config, config.lora.target_modules)
        lora = config.lora.model_copy(update={"target_modules": targets})
        config = self.config = config.model_copy(update={"lora": lora})
        self.model = self._prepare_model(self.loaded)
        self.pad_id = self.loaded.tokenizer.pad_token_id
        self.processes.sync_parameters([p for p in self.model.parameters() if p.requires_grad])
        if self.processes.sharded:
            self.processes.shard(self.model)  # before the optimizer: it must hold the shards
        self.trainable = [p for p in self.model.parameters() if p.requires_grad]
        if not self.processes.sharded:  # the estimate is of one device holding the whole model
            check_fits(self.model, config, max(len(e) for e in self.train_set), self.device)
        self.optimizer = build_optimizer(self.trainable, config)
        self.total_steps = self._total_steps()
        warmup = int(config.optim.warmup_ratio * self.total_steps)
        self.scheduler = get_cosine_schedule_with_warmup(self.optimizer, warmup, self.total_steps)
        self.metrics_path = self.output_dir / "metrics.jsonl"
        self._tensorboard: Any = None

    # -- setup -------------------------------------------------------------------------------
    @property
    def uses_adapters(self) -> bool:
        return self.config.method in ("lora", "qlora")

    def _prepare_model(self, loaded: LoadedModel) -> torch.nn.Module:
        if self.config.method == "qlora":
            backend = resolve_backend(self.config.quantization.backend, self.device)
            model = quantize_base(loaded, backend, self.device)
        else:
            model = loaded.model.to(self.device)
        if self.config.gradient_checkpointing:
            model.gradient_checkpointing_enable()
            model.config.use_cache = False
        if self.uses_adapters:
            import warnings

            from peft import LoraConfig, get_peft_model

            # PEFT warns that a torchao base cannot merge adapters in place; slmkit never does:
            # it merges into a fresh full-precision base (slmkit.models.adapters).
            warnings.filterwarnings("ignore", message="TorchaoLoraLinear was instantiated without")
            # GPT-2's Conv1D stores its weight transposed; PEFT notices and adapts it correctly.
            warnings.filterwarnings("ignore", message="fan_in_fan_out is set to False")
            # PEFT reads transformers' deprecated is_gradient_checkpointing alias (theirs to fix).
            warnings.filterwarnings("ignore", message="`is_gradient_checkpointing` is deprecated")

            lora = self.config.lora
            model = get_peft_model(
                model,
                LoraConfig(
                    r=lora.r,
                    lora_alpha=lora.alpha,
                    lora_dropout=lora.dropout,
                    target_modules=lora.target_modules,
                    task_type="SEQ_2_SEQ_LM" if loaded.is_encoder_decoder else "CAUSAL_LM",
                ),
            )
            if lora.init_from:
                load_adapter_weights(
                    model, lora.init_from, self.config.model, lora.r, lora.alpha, lora.target_modules
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
        """Yield ``(epoch, batch_index, batch, real)`` forever, from a position (for exact resume).

        Every process walks the same batch order and collates its own share of each micro-batch;
        ``real`` is False for a stand-in share that must not count (see Processes.share).
        """
        lengths = [len(e) for e in self.train_set]
        epoch, index = start_epoch, start_batch
        while True:
            order = batch_order(lengths, self.config.optim.batch_size, self.config.seed, epoch)
            for i in range(index, len(order)):
                share, real = self.processes.share([self.train_set[j] for j in order[i]])
                yield epoch, i, self._collate(share), real
            epoch, index = epoch + 1, 0

    def _collate(self, examples: Sequence[TokenizedExample]) -> dict[str, torch.Tensor]:
        batch = collate(examples, self.pad_id, self.loaded.is_encoder_decoder)
        return {k: v.to(self.device) for k, v in batch.items()}

    def _autocast(self):
        if not self.config.bf16:
            return nullcontext()
        return torch.autocast(self.device.type, dtype=torch.bfloat16)

    @contextmanager
    def _validation_mode(self):
        """No dropout, no gradients. A quantized base stays in training mode with dropout set to 0:
        some 4-bit kernels repack their weights on the first inference-mode pass, after which LoRA
        gradients are wrong (see slmkit.train.quantize)."""
        dropouts = []
        if self.config.method == "qlora":
            dropouts = [(m, m.p) for m in self.model.modules() if isinstance(m, torch.nn.Dropout)]
            for module, _ in dropouts:
                module.p = 0.0
        else:
            self.model.eval()
        try:
            with torch.no_grad():
                yield
        finally:
            for module, p in dropouts:
                module.p = p
            self.model.train()

    # -- train -------------------------------------------------------------------------------
    def train(self, stop_after: int | None = None) -> dict[str, Any]:
        """Run to ``total_steps`` (or early stopping), resuming from a checkpoint if there is one.

        Under :func:`slmkit.interrupt.stop_on_signals` (the CLI), SIGTERM or Ctrl-C stops the run
        after its current optimizer step, with a checkpoint written: the summary's ``interrupted``
        names the signal, and the same command resumes.

        Args:
            stop_after: Stop (as if interrupted) after this many optimizer steps in this call;
                used by tests of resumption.

        Returns:
            A summary: steps, final/best validation loss, tokens/s, seconds, where the model is,
            whether it ``finished``, and the signal that ``interrupted`` it (None if none did).
        """
        with deferred_stop():
            return self._train(stop_after)

    def _train(self, stop_after: int | None) -> dict[str, Any]:
        config, main = self.config, self.processes.is_main
        self.output_dir.mkdir(parents=True, exist_ok=True)
        if main:  # one process writes files, logs and evaluates
            recipe = yaml.safe_dump(self.recipe(), sort_keys=False)
            atomic_write_text(self.output_dir / "recipe.yaml", recipe)
        state = self._load_checkpoint() or {
            "step": 0,
            "epoch": 0,
            "batch": 0,
            "best_val": None,
            "bad_evals": 0,
            "tokens": 0,
            "seconds": 0.0,
        }
        if state["step"] and main:
            logger.info("resuming from step %d", state["step"])
        if main:
            self._forget_metrics_after(state["step"])
        batches = self._micro_batches(state["epoch"], state["batch"])
        progress = tqdm(
            total=self.total_steps,
            initial=state["step"],
            desc="train",
            unit="step",
            dynamic_ncols=True,
            disable=not main,
        )
        steps_this_call = 0
        while state["step"] < self.total_steps and not stop_requested():
            started = time.perf_counter()
            loss_sum, tokens = 0.0, 0
            for _ in range(config.optim.grad_accum):
                epoch, index, batch, real = next(batches)
                loss = self._backward(batch, state["step"], real)
                loss_sum += loss / config.optim.grad_accum
                tokens += int(batch["attention_mask"].sum()) if real else 0
            self.processes.average_gradients(self.trainable)
            # Each process's loss is its share of the global mean (see _backward): their mean is it.
            loss_sum = self.processes.sum(loss_sum) / self.processes.world
            tokens = int(self.processes.sum(tokens))
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
                **self.step_metrics(),
            }
            progress.update(1)
            progress.set_postfix(loss=f"{loss_sum:.3f}", tok_s=f"{tokens / elapsed:.0f}")
            stop = self._maybe_validate(state, record)
            if main:
                self._log(record)
            steps_this_call += 1
            last = state["step"] == self.total_steps
            if state["step"] % config.save_every == 0 or last or stop or stop_requested():
                self._save_checkpoint(state)
            if stop or (stop_after is not None and steps_this_call >= stop_after):
                break
        progress.close()
        if self._tensorboard is not None:
            self._tensorboard.close()
            self._tensorboard = None
        finished = state["step"] >= self.total_steps or state.get("stopped_early", False)
        stopped_by = stop_requested()
        summary = {
            **state,
            "finished": finished,
            "interrupted": stopped_by.name if stopped_by and not finished else None,
            "total_steps": self.total_steps,
            "model_dir": str(self.output_dir / "final"),
            "tokens_per_second": state["tokens"] / state["seconds"] if state["seconds"] else 0.0,
            "trainable_parameters": sum(p.numel() for p in self.trainable),
        }
        if finished and (main or self.processes.sharded):
            self._save_final(summary)
        return summary

    def recipe(self) -> dict[str, Any]:
        """What ``recipe.yaml`` (kept in every saved model folder) records about this run."""
        return {"train": self.config.model_dump()}

    def step_metrics(self) -> dict[str, float]:
        """Extra values for the metrics line of the optimizer step just taken (none here)."""
        return {}

    def training_loss(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        """The loss one micro-batch trains on: cross-entropy on answer tokens.

        Validation always measures :func:`answer_loss`, so ``val_loss`` and perplexity keep their
        meaning whatever a subclass trains on.
        """
        return answer_loss(self.model, batch, through_forward=self.processes.sharded)[0]

    def _load_checkpoint(self) -> dict | None:
        if self.processes.sharded:
            args = (self.output_dir, self.model, self.optimizer, self.scheduler)
            return load_sharded_checkpoint(self.processes, *args)
        return load_checkpoint(self.output_dir, self.model, self.optimizer, self.scheduler)

    def _save_checkpoint(self, state: dict) -> None:
        """Process 0 writes the checkpoint; all processes gather a sharded model's state for it."""
        if self.processes.sharded:
            args = (self.output_dir, self.model, self.optimizer, self.scheduler, state)
            save_sharded_checkpoint(self.processes, *args)
        elif self.processes.is_main:
            save_checkpoint(self.output_dir, self.model, self.optimizer, self.scheduler, state)

    def _backward(self, batch: dict[str, torch.Tensor], step: int, real: bool = True) -> float:
        try:
            with self._autocast():
                loss = self.training_loss(batch) * self._share_weight(batch, real)
            (loss / self.config.optim.grad_accum).backward()
        except (RuntimeError, MemoryError) as err:
            if not is_out_of_memory(err):
                raise
            shape = "×".join(str(n) for n in batch["input_ids"].shape)
            raise OutOfMemoryError(
                f"out of memory at step {step + 1} on a {shape} batch ({err.__class__.__name__}): "
                f"{advice(self.config)}. The last checkpoint in {self.output_dir} is intact; "
                "re-run the same command after the change to resume from it."
            ) from err
        return float(loss.detach())

    def _share_weight(self, batch: dict[str, torch.Tensor], real: bool) -> float:
        """What turns this process's mean loss into its share of the micro-batch's global mean.

        With ``world`` processes whose gradients are averaged, weighting each process's mean by
        ``world × its answer tokens / all answer tokens`` makes the averaged gradient that of the
        mean over every answer token of the micro-batch, as one process computes it.
        """
        if self.processes.world == 1:
            return 1.0
        tokens = int((batch["labels"][:, 1:] != IGNORE).sum()) if real else 0
        total = self.processes.sum(tokens)
        return self.processes.world * tokens / total if total else 0.0

    def _maybe_validate(self, state: dict, record: dict) -> bool:
        last = state["step"] == self.total_steps
        if not self.val_set or (state["step"] % self.config.eval_every and not last):
            return False
        # Rank 0 evaluates (with a sharded model all take part); the others get its result, so all
        # keep the same state and stop together.
        evaluates = self.processes.is_main or self.processes.sharded
        val_loss = self.processes.broadcast(self.evaluate() if evaluates else None)
        record.update(val_loss=round(val_loss, 5), val_perplexity=round(math.exp(min(val_loss, 50)), 3))
        if state["best_val"] is None or val_loss < state["best_val"]:
            state.update(best_val=val_loss, bad_evals=0)
            if evaluates:
                self._save_model(self.output_dir / "best")
            return False
        state["bad_evals"] += 1
        patience = self.config.early_stopping_patience
        if patience and state["bad_evals"] >= patience:
            logger.info("early stopping: validation loss has not improved for %d evaluations", patience)
            state["stopped_early"] = True
            return True
        return False

    def evaluate(self) -> float:
        """Token-weighted mean answer loss on the validation set."""
        total, count = 0.0, 0
        size = self.config.optim.batch_size
        ordered = sorted(self.val_set, key=len)
        with self._validation_mode():
            for start in range(0, len(ordered), size):
                batch = self._collate(ordered[start : start + size])
                with self._autocast():
                    loss, n = answer_loss(self.model, batch, through_forward=self.processes.sharded)
                total += float(loss) * n
                count += n
        return total / max(count, 1)

    # -- save --------------------------------------------------------------------------------
    def _forget_metrics_after(self, step: int) -> None:
        """Drop metric lines of steps after the checkpoint: a resumed run logs them again."""
        if not self.metrics_path.exists():
            return
        lines = self.metrics_path.read_text(encoding="utf-8").splitlines()
        kept = [line for line in lines if (logged := _logged_step(line)) is not None and logged <= step]
        if len(kept) != len(lines):
            atomic_write_text(self.metrics_path, "".join(line + "\n" for line in kept))

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
        """A self-contained model folder: weights, tokenizer, recipe; for LoRA/QLoRA the adapters
        merged into a fresh full-precision base, with the adapters themselves kept in ``adapter/``.
        A sharded model's weights are gathered first, by every process; process 0 writes."""
        weights = self.processes.full_state(self.model)[0] if self.processes.sharded else None
        if not self.processes.is_main:
            return
        if not self.uses_adapters:
            staging = folder.with_name(f".{folder.name}-staging")
            shutil.rmtree(staging, ignore_errors=True)
            self.model.save_pretrained(staging, state_dict=weights)
            save_tokenizer(self.loaded.tokenizer, staging)
            shutil.copy(self.output_dir / "recipe.yaml", staging / "recipe.yaml")
            shutil.rmtree(folder, ignore_errors=True)
            staging.rename(folder)
            return
        adapter = self.output_dir / f".{folder.name}-adapter"
        shutil.rmtree(adapter, ignore_errors=True)
        self.model.save_pretrained(adapter, state_dict=weights)
        shutil.copy(self.output_dir / "recipe.yaml", adapter / "recipe.yaml")
        base = load_causal_lm(str(self.loaded.path or self.loaded.name))
        save_merged(base.model, base.tokenizer, adapter, folder)
        adapter.rename(folder / "adapter")

    def _save_final(self, summary: dict[str, Any]) -> None:
        final = self.output_dir / "final"
        self._save_model(final)
        if not self.processes.is_main:
            return
        if self.metrics_path.exists():
            shutil.copy(self.metrics_path, final / "metrics.jsonl")
        # How long and how fast training ran, for reports that compare trained models.
        atomic_write_json(final / "training.json", {"method": self.config.method, **summary})


def build_optimizer(params: list[torch.nn.Parameter], config: TrainConfig) -> torch.optim.Optimizer:
    """AdamW from torch, or bitsandbytes' 8-bit (optionally paged) AdamW."""
    optim = config.optim
    if optim.optimizer == "adamw":
        return torch.optim.AdamW(params, lr=optim.lr, weight_decay=optim.weight_decay)
    try:
        import bitsandbytes as bnb
    except ImportError as err:
        raise InputError(
            f"optim.optimizer '{optim.optimizer}' needs bitsandbytes: pip install 'slmkit[qlora]'"
        ) from err
    cls = bnb.optim.PagedAdamW8bit if optim.optimizer == "paged-adamw-8bit" else bnb.optim.AdamW8bit
    return cls(params, lr=optim.lr, weight_decay=optim.weight_decay)
