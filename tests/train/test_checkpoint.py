"""Checkpoints hold only tensors and plain values (they load with weights_only=True), restore every
RNG exactly, and checkpoints of the previous format (pickled NumPy RNG state) still resume."""

from __future__ import annotations

import random

import numpy as np
import pytest
import torch
from transformers import get_cosine_schedule_with_warmup

from slmkit.train.checkpoint import CHECKPOINT, load_checkpoint, save_checkpoint


def _run():
    torch.manual_seed(0)
    model = torch.nn.Linear(4, 2)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-2)
    scheduler = get_cosine_schedule_with_warmup(optimizer, 1, 10)
    model(torch.ones(1, 4)).sum().backward()
    optimizer.step()
    scheduler.step()
    return model, optimizer, scheduler


def _draws() -> tuple[float, float, float, float]:
    return random.random(), float(np.random.rand()), float(np.random.randn()), float(torch.rand(1))


def test_a_checkpoint_loads_weights_only_and_restores_every_rng(tmp_path):
    model, optimizer, scheduler = _run()
    np.random.randn()  # leave a cached Gaussian in NumPy's state: it must survive too
    save_checkpoint(tmp_path, model, optimizer, scheduler, {"step": 1})
    expected = _draws()
    payload = torch.load(tmp_path / CHECKPOINT / "state.pt", weights_only=True)  # no fallback needed
    assert payload["state"] == {"step": 1}

    fresh, fresh_optimizer, fresh_scheduler = _run()
    with torch.no_grad():
        fresh.weight.zero_()
    assert load_checkpoint(tmp_path, fresh, fresh_optimizer, fresh_scheduler) == {"step": 1}
    assert _draws() == expected
    assert torch.equal(fresh.weight, model.weight)
    assert fresh_scheduler.state_dict() == scheduler.state_dict()


def test_a_checkpoint_of_the_previous_format_still_resumes(tmp_path):
    model, optimizer, scheduler = _run()
    folder = tmp_path / CHECKPOINT
    folder.mkdir()
    rng = {"python": random.getstate(), "numpy": np.random.get_state(), "torch": torch.get_rng_state()}
    old = {  # as save_checkpoint wrote it until 2026-11-29: NumPy's state a pickled ndarray
        "model": {n: p.detach().clone() for n, p in model.named_parameters()},
        "optimizer": optimizer.state_dict(),
        "scheduler": scheduler.state_dict(),
        "state": {"step": 7},
        "rng": rng,
    }
    torch.save(old, folder / "state.pt")
    with pytest.raises(Exception, match="Weights only load failed"):
        torch.load(folder / "state.pt", weights_only=True)
    expected = _draws()

    fresh, fresh_optimizer, fresh_scheduler = _run()
    assert load_checkpoint(tmp_path, fresh, fresh_optimizer, fresh_scheduler) == {"step": 7}
    assert _draws() == expected


def test_a_checkpoint_that_would_run_code_is_refused(tmp_path):
    model, optimizer, scheduler = _run()
    folder = tmp_path / CHECKPOINT
    folder.mkdir()
    torch.save({"rng": {"evil": print}}, folder / "state.pt")  # a pickled callable: code on load
    with pytest.raises(Exception, match="Weights only load failed"):
        load_checkpoint(tmp_path, model, optimizer, scheduler)
