"""Training in 2 CPU processes (gloo), as `slmkit train --nproc 2` runs it, data-parallel (ddp) and
sharded (fsdp), against one process at the same global batch: the same losses and final weights, one
writer of checkpoints and metrics, and a rerun that resumes after one rank is killed with SIGKILL.

A tiny randomly initialised Llama (2 layers, width 16) with the MiniLM tokenizer keeps each run to a
few seconds, most of it process start-up.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest
import torch
import yaml
from safetensors.torch import load_file
from transformers import LlamaConfig, LlamaForCausalLM

SQUAD_TINY = Path(__file__).resolve().parent.parent / "assets" / "squad_tiny.json"
STEPS = 8
# Two processes compute the same sums in another order (two half batches, each padded to its own
# longest example): the losses agree to float32 rounding, far inside this tolerance.
REL_TOL = 1e-4


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory, minilm_tokenizer) -> Path:
    folder = tmp_path_factory.mktemp("tiny-llama")
    config = LlamaConfig(
        vocab_size=len(minilm_tokenizer),
        hidden_size=16,
        intermediate_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        num_key_value_heads=1,
        max_position_embeddings=256,
        pad_token_id=minilm_tokenizer.pad_token_id,
    )
    torch.manual_seed(0)
    LlamaForCausalLM(config).save_pretrained(folder)
    minilm_tokenizer.save_pretrained(folder)
    return folder


def _recipe(tmp_path: Path, name: str, model: Path, strategy: str = "ddp") -> Path:
    recipe = {
        "train": {
            "model": str(model),
            "method": "full",
            "device": "cpu",
            "distributed": {"strategy": strategy},
            "output_dir": str(tmp_path / name),
            "bf16": False,
            "eval_every": 4,
            "save_every": 2,
            "seed": 5,
            "data": {
                "task": "squad",
                "path": str(SQUAD_TINY),
                "split": "all",
                "val_fraction": 0.2,
                "max_seq_len": 96,
            },
            "optim": {"lr": 3e-3, "batch_size": 4, "max_steps": STEPS, "warmup_ratio": 0.0},
        }
    }
    path = tmp_path / f"{name}.yaml"
    path.write_text(yaml.safe_dump(recipe), encoding="utf-8")
    return path


# Imported by every process of a run whose PYTHONPATH starts with its folder: slows each training
# step down, so that a test has time to kill a rank mid-run.
SLOW_STEPS = """
from slmkit.train import finetune
import time

_loss = finetune.FineTune.training_loss


def training_loss(self, batch):
    time.sleep(0.25)
    return _loss(self, batch)


finetune.FineTune.training_loss = training_loss
"""


def _train(recipe: Path, nproc: int, slow: Path | None = None) -> subprocess.Popen:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1"}
    if slow is not None:
        (slow / "sitecustomize.py").write_text(SLOW_STEPS, encoding="utf-8")
        env["PYTHONPATH"] = os.pathsep.join([str(slow), env.get("PYTHONPATH", "")])
    return subprocess.Popen(
        [sys.executable, "-m", "slmkit.cli", "train", str(recipe), "--nproc", str(nproc)],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


def _finish(process: subprocess.Popen) -> str:
    output, _ = process.communicate(timeout=300)
    assert process.returncode == 0, output[-3000:]
    return output


def _metrics(run_dir: Path) -> list[dict]:
    path = run_dir / "metrics.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


@pytest.fixture(scope="module")
def single(tmp_path_factory, tiny_model) -> list[dict]:
    """The metrics of one process training the tiny model for STEPS steps (its run folder beside)."""
    tmp_path = tmp_path_factory.mktemp("single")
    _finish(_train(_recipe(tmp_path, "single", tiny_model), 1))
    metrics = _metrics(tmp_path / "single")
    metrics[-1]["run"] = tmp_path / "single"
    return metrics


def _assert_same_curve(metrics: list[dict], expected: list[dict]) -> None:
    assert [m["step"] for m in metrics] == list(range(1, STEPS + 1))  # rank 0 alone logs, once per step
    for got, want in zip(metrics, expected, strict=True):
        assert got["loss"] == pytest.approx(want["loss"], rel=REL_TOL), got["step"]
        assert got["tokens_per_second"] > 0
        if "val_loss" in want:
            assert got["val_loss"] == pytest.approx(want["val_loss"], rel=REL_TOL), got["step"]


@pytest.mark.parametrize("strategy", ["ddp", "fsdp"])
def test_two_processes_follow_the_single_process_loss_curve(strategy, tmp_path, tiny_model, single):
    output = _finish(_train(_recipe(tmp_path, strategy, tiny_model, strategy), 2))
    run = tmp_path / strategy
    _assert_same_curve(_metrics(run), single)
    assert single[-1]["loss"] < single[0]["loss"]  # it learns at all
    assert output.count("trained 8 steps") == 1  # one report, from rank 0
    assert [p.name for p in run.iterdir() if "checkpoint" in p.name] == ["checkpoint"]
    assert (run / "best").is_dir()
    weights = load_file(run / "final" / "model.safetensors")  # gathered from the shards for fsdp
    expected = load_file(single[-1]["run"] / "final" / "model.safetensors")
    assert weights.keys() == expected.keys()
    assert all(torch.allclose(weights[k], expected[k], atol=1e-5) for k in weights)


def _rank_pid(launcher: subprocess.Popen, rank: int) -> int | None:
    for child in psutil.Process(launcher.pid).children(recursive=True):
        try:
            if child.environ().get("RANK") == str(rank) and "slmkit.cli" in " ".join(child.cmdline()):
                return child.pid
        except psutil.Error:
            continue
    return None


@pytest.mark.slow  # three launches of two processes each: about a minute on 2 cores
@pytest.mark.parametrize("strategy", ["ddp", "fsdp"])
def test_sigkill_of_one_rank_then_a_rerun_resumes(strategy, tmp_path, tiny_model, single):
    recipe = _recipe(tmp_path, "killed", tiny_model, strategy)
    run = tmp_path / "killed"
    slow = tmp_path / "slow"
    slow.mkdir()
    launcher = _train(recipe, 2, slow)
    deadline = time.time() + 120
    while len(_metrics(run)) < 3 and time.time() < deadline and launcher.poll() is None:
        time.sleep(0.05)
    victim = _rank_pid(launcher, 1)
    assert launcher.poll() is None and victim is not None, "the run ended before a rank could be killed"
    os.kill(victim, signal.SIGKILL)
    launcher.communicate(timeout=120)
    assert launcher.returncode != 0  # torchrun stops the surviving rank and reports the failure
    logged = [m["step"] for m in _metrics(run)]
    assert 3 <= len(logged) < STEPS and not (run / "final").exists()
    _finish(_train(recipe, 2))
    _assert_same_curve(_metrics(run), single)  # no step lost or logged twice, same losses


def test_recipes_a_multi_process_run_cannot_take_are_refused():
    from slmkit.config import TrainConfig, parse_config
    from slmkit.errors import ConfigError
    from slmkit.train.distributed import Processes, check_run

    processes = Processes(torch.device("cpu"))
    processes.world, processes.sharded = 4, True
    small = parse_config(TrainConfig, {"optim": {"batch_size": 2}}, "test")
    with pytest.raises(ConfigError, match=r"batch_size \(2\) is smaller than the number of processes \(4\)"):
        check_run(small, processes)
    qlora = parse_config(TrainConfig, {"method": "qlora", "distributed": {"strategy": "fsdp"}}, "test")
    with pytest.raises(ConfigError, match="cannot shard a quantized"):
        check_run(qlora, processes)
    share, real = processes.share(["a", "b", "c"])
    assert (share, real) == (["a"], True)
    processes.rank = 3
    assert processes.share(["a", "b", "c"]) == (["a"], False)  # a stand-in, weighted 0
