"""Resumable training state, written atomically.

A checkpoint holds the trainable weights, optimizer and scheduler state, the step counter, the
data position and every RNG state, so a run killed at any moment (even ``kill -9``) resumes from
its last checkpoint and continues exactly as the uninterrupted run would have.

Everything in it is tensors and plain Python values, so it loads with ``torch.load(weights_only=True)``:
a checkpoint file cannot run code when it is read.
"""

from __future__ import annotations

import os
import pickle
import random
import shutil
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors.torch import save_file

from slmkit.atomic import atomic_folder
from slmkit.errors import InputError

CHECKPOINT = "checkpoint"


def trainable_state(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    """Only the parameters being trained (all of them for a full fine-tune, the adapters for LoRA)."""
    return {name: p.detach().clone() for name, p in model.named_parameters() if p.requires_grad}


def save_checkpoint(
    output_dir: Path, model: torch.nn.Module, optimizer: Any, scheduler: Any, state: dict
) -> None:
    """Write the checkpoint into a temporary folder, then swap it in with renames."""
    output_dir.mkdir(parents=True, exist_ok=True)
    for stale in output_dir.glob(".checkpoint-tmp*"):  # left by a run killed while saving
        shutil.rmtree(stale, ignore_errors=True)
    staging = Path(tempfile.mkdtemp(prefix=".checkpoint-tmp", dir=output_dir))
    payload = {
        "model": trainable_state(model),
        "optimizer": optimizer.state_dict(),
        "scheduler": scheduler.state_dict(),
        "state": state,
        "rng": rng_state(),
    }
    torch.save(payload, staging / "state.pt")
    with open(staging / "state.pt", "rb") as f:
        os.fsync(f.fileno())
    target = output_dir / CHECKPOINT
    old = output_dir / ".checkpoint-old"
    shutil.rmtree(old, ignore_errors=True)
    if target.exists():
        target.rename(old)
    staging.rename(target)
    shutil.rmtree(old, ignore_errors=True)


def load_checkpoint(output_dir: Path, model: torch.nn.Module, optimizer: Any, scheduler: Any) -> dict | None:
    """Restore a checkpoint if one exists; returns its ``state`` dict (or None to start fresh)."""
    target = output_dir / CHECKPOINT
    if not (target / "state.pt").exists():
        old = output_dir / ".checkpoint-old"  # a crash between the two renames of save_checkpoint
        if not (old / "state.pt").exists():
            return None
        target = old
    payload = _load(target / "state.pt")
    params = dict(model.named_parameters())
    with torch.no_grad():
        for name, tensor in payload["model"].items():
            params[name].copy_(tensor)
    optimizer.load_state_dict(payload["optimizer"])
    scheduler.load_state_dict(payload["scheduler"])
    set_rng_state(payload["rng"])
    return payload["state"]


def checkpoint_state(output_dir: Path) -> dict[str, Any] | None:
    """The progress a run's last checkpoint records (step, tokens, seconds, ...), or None."""
    path = output_dir / CHECKPOINT / "state.pt"
    return _load(path)["state"] if path.exists() else None


def export_adapter(output_dir: Path, target: Path) -> int:
    """Write the LoRA adapter of a run's last checkpoint as a PEFT adapter folder at ``target``;
    returns the checkpoint's step.

    A run saves an adapter folder only for its best validation loss (``best/``) and at the end
    (``final/``); the checkpoint between them may answer better (validation loss is not F1), so
    this lets a benchmark or ``scripts/ship_reader.py`` use it. The adapter's config comes from the
    run's own ``best/`` or ``final/`` adapter (same recipe, same LoRA shape)."""
    path = output_dir / CHECKPOINT / "state.pt"
    source = next(
        (
            f / "adapter"
            for f in (output_dir / "final", output_dir / "best")
            if (f / "adapter" / "adapter_config.json").is_file()
        ),
        None,
    )
    if not path.is_file() or source is None:
        raise InputError(f"{output_dir}: needs a checkpoint/state.pt and a best/ or final/ adapter folder")
    payload = _load(path)
    # PEFT names a parameter "...lora_A.<adapter>.weight" in the model and "...lora_A.weight" on disk.
    weights = {name.replace(".default.", "."): t.contiguous() for name, t in payload["model"].items()}
    if not all(".lora_" in name for name in weights):
        raise InputError(f"{path}: not a LoRA run's checkpoint (it trains non-adapter weights)")
    with atomic_folder(target) as staging:
        for name in ("adapter_config.json", "recipe.yaml"):
            if (source / name).is_file():
                shutil.copy(source / name, staging / name)
        save_file(weights, staging / "adapter_model.safetensors", metadata={"format": "pt"})
    return int(payload["state"]["step"])


def rng_state() -> dict[str, Any]:
    """Python's, NumPy's and torch's RNG states, as plain values and tensors (``weights_only``-safe)."""
    numpy = np.random.get_state(legacy=False)  # {"bit_generator", "state": {"key", "pos"}, ...}
    numpy["state"] = {"key": numpy["state"]["key"].tolist(), "pos": int(numpy["state"]["pos"])}
    return {"python": random.getstate(), "numpy": numpy, "torch": torch.get_rng_state()}


def set_rng_state(rng: dict[str, Any]) -> None:
    """Restore what :func:`rng_state` returned (or, from older checkpoints, NumPy's legacy tuple)."""
    random.setstate(rng["python"])
    numpy = rng["numpy"]
    if isinstance(numpy, dict):
        key = np.asarray(numpy["state"]["key"], dtype=np.uint32)
        numpy = {**numpy, "state": {"key": key, "pos": numpy["state"]["pos"]}}
    np.random.set_state(numpy)
    torch.set_rng_state(rng["torch"])


def _load(path: Path) -> dict[str, Any]:
    try:
        return torch.load(path, weights_only=True)
    except pickle.UnpicklingError:
        # Checkpoints written before 2026-11-29 hold NumPy's RNG state as a pickled ndarray, which
        # weights_only refuses by default; runs started then (some take hours) must still resume.
        # Allowing NumPy's array reconstruction, and nothing else, reads them still weights-only.
        # Remove once no run of that format is left.
        try:
            from numpy._core.multiarray import _reconstruct  # NumPy 2
        except ImportError:
            from numpy.core.multiarray import _reconstruct  # NumPy 1.26
        legacy = [_reconstruct, np.ndarray, np.dtype, type(np.dtype(np.uint32))]
        with torch.serialization.safe_globals(legacy):
            return torch.load(path, weights_only=True)
