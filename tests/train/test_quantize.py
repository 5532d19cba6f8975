"""QLoRA: the quantized base computes the same LoRA gradients as its dequantized twin, also after a
validation pass, and the run ends in a merged full-precision model plus its adapters."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from slmkit.config import TrainConfig, parse_config
from slmkit.data.tasks import read_squad_examples
from slmkit.errors import ConfigError
from slmkit.models.loading import load_causal_lm
from slmkit.train.finetune import FineTune
from slmkit.train.loss import answer_loss
from slmkit.train.quantize import dequantized_weight, resolve_backend
from slmkit.train.tokenize import tokenize_examples

ASSETS = Path(__file__).resolve().parent.parent / "assets"


def test_backend_follows_the_device():
    assert resolve_backend("auto", torch.device("cpu")) == "torchao-int8"
    assert resolve_backend("auto", torch.device("cuda")) == "bnb-nf4"
    assert resolve_backend("torchao-int8", torch.device("cuda")) == "torchao-int8"


def test_bitsandbytes_on_cpu_is_refused_with_the_reason():
    with pytest.raises(ConfigError, match=r"bnb-nf4.*needs CUDA.*gradients"):
        resolve_backend("bnb-nf4", torch.device("cpu"))


def _config(tmp_path: Path, **overrides) -> TrainConfig:
    data = {
        "method": "qlora",
        "output_dir": str(tmp_path / "run"),
        "bf16": False,
        "eval_every": 2,
        "save_every": 2,
        "seed": 3,
        # Random (non-zero) B so both adapter matrices get a gradient from the first step.
        "lora": {"r": 4, "alpha": 8, "dropout": 0.1, "target_modules": ["q_proj", "v_proj", "down_proj"]},
        "optim": {"lr": 2e-3, "batch_size": 2, "max_steps": 4, "warmup_ratio": 0.0},
    }
    data.update(overrides)
    return parse_config(TrainConfig, data, "test")


@pytest.fixture(scope="module")
def examples(smollm):
    return tokenize_examples(read_squad_examples(ASSETS / "squad_tiny.json"), smollm.tokenizer, 256)


def _lora_grads(model, batch) -> torch.Tensor:
    model.zero_grad(set_to_none=True)
    loss, _ = answer_loss(model, batch)
    loss.backward()
    return torch.cat([p.grad.flatten() for n, p in model.named_parameters() if "lora_" in n])


def _dequantized_twin(run: FineTune, model_cache) -> torch.nn.Module:
    """A full-precision model computing with exactly the quantized weights, carrying the same adapters."""
    import copy

    reference = load_causal_lm("smollm2-135m-instruct", cache=model_cache).model
    twin = copy.deepcopy(run.model)  # the same PEFT wrapper and adapter values ...
    body = reference.model
    for name, module in twin.base_model.model.model.named_modules():
        weight = dequantized_weight(module)
        if weight is not None:  # ... with every int8 weight swapped for its fp32 dequantization
            parent_name, _, leaf = name.rpartition(".")
            plain = torch.nn.Linear(weight.shape[1], weight.shape[0], bias=module.bias is not None)
            plain.weight = torch.nn.Parameter(weight, requires_grad=False)
            if module.bias is not None:
                plain.bias = torch.nn.Parameter(module.bias.detach().float(), requires_grad=False)
            setattr(twin.base_model.model.model.get_submodule(parent_name), leaf, plain)
    del body
    for module in twin.modules():
        if isinstance(module, torch.nn.Dropout):
            module.p = 0.0
    return twin


@pytest.mark.slow
def test_gradients_match_the_dequantized_model_before_and_after_validation(tmp_path, examples, model_cache):
    run = FineTune(
        _config(tmp_path), examples, examples[:2], load_causal_lm("smollm2-135m-instruct", cache=model_cache)
    )
    for module in run.model.modules():
        if isinstance(module, torch.nn.Dropout):
            module.p = 0.0  # dropout masks would differ between the two models
    quantized_layers = [m for m in run.model.modules() if dequantized_weight(m) is not None]
    assert len(quantized_layers) == 30 * 7  # every linear layer of the 30 decoder blocks
    with torch.no_grad():
        for name, p in run.model.named_parameters():
            if "lora_B" in name:
                p.normal_(std=0.02)
    twin = _dequantized_twin(run, model_cache)
    batch = run._collate(examples[:2])

    reference = _lora_grads(twin, batch)
    assert reference.norm() > 0
    before = _lora_grads(run.model, batch)
    assert float((before - reference).norm() / reference.norm()) < 1e-3

    run.evaluate()  # a validation pass must not change what training computes
    after = _lora_grads(run.model, batch)
    assert float((after - reference).norm() / reference.norm()) < 1e-3
    assert all(m.p == 0.0 for m in run.model.modules() if isinstance(m, torch.nn.Dropout))


@pytest.mark.slow
def test_qlora_run_trains_and_saves_a_merged_model_with_its_adapters(tmp_path, examples, model_cache):
    base = load_causal_lm("smollm2-135m-instruct", cache=model_cache)
    run = FineTune(_config(tmp_path), examples, examples[:2], base)
    before = run.evaluate()
    result = run.train()
    assert result["finished"] and run.evaluate() < before
    final = Path(result["model_dir"])
    assert (final / "adapter" / "adapter_config.json").is_file()
    merged = load_causal_lm(str(final))
    assert merged.num_parameters == pytest.approx(134.5e6, rel=0.01)
    fresh = load_causal_lm("smollm2-135m-instruct", cache=model_cache).model
    name = "model.layers.0.self_attn.q_proj.weight"
    merged_weight, base_weight = merged.model.state_dict()[name], fresh.state_dict()[name]
    assert merged_weight.dtype == torch.float32
    assert not torch.equal(merged_weight, base_weight)  # the adapter update is in the full-precision weights
