"""``lora.target_modules``: what ``auto`` means per family, ``all-linear``, and explicit lists."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from slmkit.config import TrainConfig, parse_config
from slmkit.errors import ConfigError
from slmkit.models.families import lora_target_modules


@pytest.mark.parametrize(
    ("model_type", "expected"),
    [
        ("gpt2", ["c_attn", "attn.c_proj"]),
        ("phi", ["q_proj", "k_proj", "v_proj", "dense"]),
        ("qwen2", ["q_proj", "k_proj", "v_proj", "o_proj"]),
        ("llama", ["q_proj", "k_proj", "v_proj", "o_proj"]),
        ("mistral", ["q_proj", "k_proj", "v_proj", "o_proj"]),
        ("gemma3_text", ["q_proj", "k_proj", "v_proj", "o_proj"]),
        ("bart", ["q_proj", "k_proj", "v_proj", "out_proj"]),
        ("t5", ["q", "k", "v", "o"]),
        ("some-new-family", "all-linear"),  # no entry: adapt every linear layer rather than guess names
    ],
)
def test_auto_is_the_family_attention(model_type, expected):
    assert lora_target_modules(SimpleNamespace(model_type=model_type), "auto") == expected


def test_all_linear_and_explicit_lists_pass_through():
    config = SimpleNamespace(model_type="llama")
    assert lora_target_modules(config, "all-linear") == "all-linear"
    assert lora_target_modules(config, ["q_proj"]) == ["q_proj"]


def test_recipes_accept_auto_all_linear_or_a_list_and_nothing_else():
    assert parse_config(TrainConfig, {}, "t").lora.target_modules == "auto"
    assert parse_config(TrainConfig, {"lora": {"target_modules": "all-linear"}}, "t").lora.target_modules
    assert parse_config(TrainConfig, {"lora": {"target_modules": ["c_attn"]}}, "t").lora.target_modules
    with pytest.raises(ConfigError, match="target_modules"):
        parse_config(TrainConfig, {"lora": {"target_modules": "all-linears"}}, "t")
