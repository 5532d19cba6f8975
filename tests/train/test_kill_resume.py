"""A training process killed with SIGKILL resumes from its checkpoint and ends where an
uninterrupted run ends (real processes, real model; the slowest training test)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

pytestmark = pytest.mark.slow
SQUAD_TINY = Path(__file__).resolve().parent.parent / "assets" / "squad_tiny.json"


def _recipe(tmp_path: Path, name: str) -> Path:
    recipe = {
        "train": {
            "model": "smollm2-135m-instruct",
            "method": "lora",
            "output_dir": str(tmp_path / name),
            "bf16": False,
            "eval_every": 100,
            "save_every": 1,
            "seed": 3,
            "data": {"task": "squad", "path": str(SQUAD_TINY), "split": "all", "val_fraction": 0.25},
            "optim": {"lr": 1e-3, "batch_size": 1, "max_steps": 6, "warmup_ratio": 0.0},
        }
    }
    path = tmp_path / f"{name}.yaml"
    path.write_text(yaml.safe_dump(recipe), encoding="utf-8")
    return path


def _train(recipe: Path, env: dict) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "slmkit.cli", "train", str(recipe)],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


def _steps(run_dir: Path) -> list[dict]:
    path = run_dir / "metrics.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


def test_sigkill_then_rerun_matches_an_uninterrupted_run(tmp_path, model_cache):
    env = {**os.environ, "SLMKIT_CACHE": str(model_cache), "HF_HUB_OFFLINE": "1"}
    straight = _recipe(tmp_path, "straight")
    assert _train(straight, env).wait(timeout=600) == 0

    killed = _recipe(tmp_path, "killed")
    process = _train(killed, env)
    deadline = time.time() + 600
    while len(_steps(tmp_path / "killed")) < 3 and time.time() < deadline and process.poll() is None:
        time.sleep(0.2)
    assert process.poll() is None, "the run finished before it could be killed; make it longer"
    os.kill(process.pid, signal.SIGKILL)
    process.wait()
    assert not (tmp_path / "killed" / "final").exists()

    assert _train(killed, env).wait(timeout=600) == 0
    expected, resumed = _steps(tmp_path / "straight"), _steps(tmp_path / "killed")
    assert [m["step"] for m in resumed] == [1, 2, 3, 4, 5, 6]  # no step logged twice
    assert resumed[-1]["loss"] == pytest.approx(expected[-1]["loss"], rel=1e-5)
    assert resumed[-1]["val_loss"] == pytest.approx(expected[-1]["val_loss"], rel=1e-5)
