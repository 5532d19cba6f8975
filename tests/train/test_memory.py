"""A run that cannot fit in memory stops with a message that says what to lower."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from slmkit.config import TrainConfig, parse_config
from slmkit.data.tasks import read_squad_examples
from slmkit.models.loading import load_causal_lm
from slmkit.train import finetune as finetune_module
from slmkit.train import memory
from slmkit.train.finetune import FineTune
from slmkit.train.memory import OutOfMemoryError, advice, is_out_of_memory
from slmkit.train.tokenize import tokenize_examples

ASSETS = Path(__file__).resolve().parent.parent / "assets"


def _config(tmp_path: Path, **overrides) -> TrainConfig:
    data = {"method": "full", "output_dir": str(tmp_path / "run"), "optim": {"batch_size": 8}}
    data.update(overrides)
    return parse_config(TrainConfig, data, "test")


def test_advice_names_the_settings_to_lower(tmp_path):
    text = advice(_config(tmp_path))
    for setting in ("optim.batch_size (now 8", "data.max_seq_len", "gradient_checkpointing", "lora or qlora"):
        assert setting in text
    lean = advice(_config(tmp_path, method="qlora", gradient_checkpointing=True, optim={"batch_size": 1}))
    assert "batch_size" not in lean and "gradient_checkpointing" not in lean and "adamw-8bit" in lean


def test_out_of_memory_errors_are_recognised():
    assert is_out_of_memory(RuntimeError("[enforce fail] DefaultCPUAllocator: can't allocate memory: 8 GB"))
    assert is_out_of_memory(torch.OutOfMemoryError("CUDA out of memory"))
    assert not is_out_of_memory(RuntimeError("shape mismatch"))


@pytest.fixture(scope="module")
def examples(smollm):
    return tokenize_examples(read_squad_examples(ASSETS / "squad_tiny.json"), smollm.tokenizer, 256)


@pytest.mark.slow
def test_a_run_larger_than_free_memory_is_refused_before_training(
    tmp_path, examples, model_cache, monkeypatch
):
    monkeypatch.setattr(memory, "available_bytes", lambda device: 256 * 2**20)
    with pytest.raises(
        OutOfMemoryError, match=r"needs about .* GiB .* 0\.2 GiB free: lower optim\.batch_size"
    ):
        FineTune(_config(tmp_path), examples, [], load_causal_lm("smollm2-135m-instruct", cache=model_cache))


@pytest.mark.slow
def test_running_out_mid_training_keeps_the_checkpoint_and_says_what_to_lower(
    tmp_path, examples, model_cache, monkeypatch
):
    config = _config(
        tmp_path, method="lora", bf16=False, save_every=1, optim={"batch_size": 2, "max_steps": 3}
    )
    run = FineTune(config, examples, [], load_causal_lm("smollm2-135m-instruct", cache=model_cache))
    run.train(stop_after=1)
    real_loss = finetune_module.answer_loss

    def exhausted(model, batch, **kwargs):
        raise RuntimeError("DefaultCPUAllocator: can't allocate memory: you tried to allocate 9 GB")

    monkeypatch.setattr(finetune_module, "answer_loss", exhausted)
    with pytest.raises(
        OutOfMemoryError, match=r"out of memory at step 2 on a 2×\d+ batch.*optim\.batch_size"
    ):
        run.train()
    monkeypatch.setattr(finetune_module, "answer_loss", real_loss)
    resumed = FineTune(config, examples, [], load_causal_lm("smollm2-135m-instruct", cache=model_cache))
    assert resumed.train()["step"] == 3  # resumed from the step-1 checkpoint


def test_quantized_weights_are_counted_at_their_real_size():
    from torchao.quantization import Int8WeightOnlyConfig, quantize_

    layer = torch.nn.Sequential(torch.nn.Linear(256, 128, bias=False))
    assert memory.tensor_bytes(layer[0].weight) == 256 * 128 * 4
    quantize_(layer, Int8WeightOnlyConfig())
    # int8 values plus a few bytes of scale per output row, not the fp32 the subclass claims to hold.
    assert 256 * 128 < memory.tensor_bytes(layer[0].weight) <= 256 * 128 + 128 * 8
