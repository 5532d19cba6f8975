"""`slmkit merge`: adapters saved by a LoRA run rebuild the same standalone model."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file

from slmkit.config import TrainConfig, parse_config
from slmkit.data.tasks import read_squad_examples
from slmkit.errors import ConfigError, InputError
from slmkit.models.adapters import adapter_fingerprint
from slmkit.models.loading import load_causal_lm
from slmkit.train.finetune import FineTune
from slmkit.train.merge import base_model_of, merge_adapter
from slmkit.train.tokenize import tokenize_examples

ASSETS = Path(__file__).resolve().parent.parent / "assets"


def test_a_folder_without_adapters_is_refused(tmp_path):
    with pytest.raises(InputError, match="not a LoRA adapter folder"):
        merge_adapter(tmp_path, tmp_path / "out")


@pytest.mark.slow
def test_merging_the_saved_adapter_reproduces_the_final_model(tmp_path, smollm, model_cache):
    examples = tokenize_examples(read_squad_examples(ASSETS / "squad_tiny.json"), smollm.tokenizer, 256)
    config = parse_config(
        TrainConfig,
        {
            "output_dir": str(tmp_path / "run"),
            "bf16": False,
            "optim": {"lr": 2e-3, "batch_size": 2, "max_steps": 2, "optimizer": "adamw-8bit"},
        },
        "test",
    )
    result = FineTune(
        config, examples, [], load_causal_lm("smollm2-135m-instruct", cache=model_cache)
    ).train()
    final = Path(result["model_dir"])
    adapter = final / "adapter"
    assert base_model_of(adapter) == "smollm2-135m-instruct"  # read from the recipe kept with the adapter

    merged = merge_adapter(adapter, tmp_path / "merged", base=str(smollm.path))
    assert (merged / "recipe.yaml").is_file() and (merged / "tokenizer.json").is_file()
    ids = smollm.tokenizer("Denver won Super Bowl 50.", return_tensors="pt").input_ids
    with torch.no_grad():
        expected = load_causal_lm(str(final)).model(ids).logits
        got = load_causal_lm(str(merged)).model(ids).logits
        base = smollm.model(ids).logits
    assert torch.allclose(got, expected, atol=1e-5)
    assert not torch.allclose(got, base, atol=1e-3)  # the 8-bit AdamW steps changed the model


def test_a_lora_trained_on_an_adapter_folder_stacks_on_it(tmp_path, tiny_model, model_cache):
    """Fine-tuning a fine-tuned model (how a user adapts the shipped reader, an adapter folder, to
    their own questions): the new adapter's base is the first adapter folder, and loading the new
    adapter merges both, in order, into the same weights the run saved."""
    base = tiny_model("llama")
    tokenizer = load_causal_lm(str(base), cache=model_cache).tokenizer
    examples = tokenize_examples(read_squad_examples(ASSETS / "squad_tiny.json"), tokenizer, 256)

    def train(model: str, run: str) -> Path:
        config = parse_config(
            TrainConfig,
            {
                "model": model,
                "method": "lora",
                "output_dir": str(tmp_path / run),
                "bf16": False,
                "optim": {"lr": 5e-2, "batch_size": 2, "max_steps": 2},
            },
            "test",
        )
        result = FineTune(config, examples, [], load_causal_lm(model, cache=model_cache)).train()
        return Path(result["model_dir"])

    first = train(str(base), "first")
    second = train(str(first / "adapter"), "second")
    assert base_model_of(second / "adapter") == str(first / "adapter")

    ids = tokenizer("Denver won Super Bowl 50.", return_tensors="pt").input_ids
    with torch.no_grad():
        saved = load_causal_lm(str(second)).model(ids).logits
        stacked = load_causal_lm(str(second / "adapter"), cache=model_cache).model(ids).logits
        only_first = load_causal_lm(str(first / "adapter"), cache=model_cache).model(ids).logits
    assert torch.allclose(stacked, saved, atol=1e-5)
    assert not torch.allclose(stacked, only_first, atol=1e-3)  # the second run's steps are in it

    # The first adapter retrained (or the shipped reader updated): the second one's cached merge
    # was made on the old weights, so it must not be reused.
    before = adapter_fingerprint(second / "adapter")
    weights = first / "adapter" / "adapter_model.safetensors"
    tensors = load_file(weights)
    save_file({k: v + 0.5 for k, v in tensors.items()}, weights)
    assert adapter_fingerprint(second / "adapter") != before


def test_lora_init_from_starts_the_adapters_from_a_trained_one(tmp_path, tiny_model, model_cache):
    """`lora.init_from`: a run that continues a trained adapter (the shipped reader's) instead of
    stacking a new one; its adapters start equal to the trained ones, and a mismatch is refused."""
    from peft import get_peft_model_state_dict

    base = str(tiny_model("llama"))
    loaded = load_causal_lm(base, cache=model_cache)
    examples = tokenize_examples(read_squad_examples(ASSETS / "squad_tiny.json"), loaded.tokenizer, 256)

    def config(run: str, **lora) -> TrainConfig:
        data = {
            "model": base,
            "method": "lora",
            "output_dir": str(tmp_path / run),
            "bf16": False,
            "lora": {"r": 4, "alpha": 8, **lora},
            "optim": {"lr": 5e-2, "batch_size": 2, "max_steps": 2},
        }
        return parse_config(TrainConfig, data, "test")

    first = Path(
        FineTune(config("first"), examples, [], load_causal_lm(base, cache=model_cache)).train()["model_dir"]
    )
    trained = load_file(first / "adapter" / "adapter_model.safetensors")
    run = FineTune(
        config("second", init_from=str(first / "adapter")),
        examples,
        [],
        load_causal_lm(base, cache=model_cache),
    )
    started = get_peft_model_state_dict(run.model)
    assert started.keys() == trained.keys()
    assert all(torch.equal(started[k].float(), trained[k].float()) for k in trained)
    assert any(v.abs().sum() > 0 for k, v in trained.items() if "lora_B" in k)  # not LoRA's zero start

    with pytest.raises(ConfigError, match=r"has lora\.r 4, this run 8; set lora\.r: 4"):
        FineTune(
            config("third", r=8, init_from=str(first / "adapter")),
            examples,
            [],
            load_causal_lm(base, cache=model_cache),
        )
