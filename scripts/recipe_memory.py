"""The memory each hub-model recipe needs, from slmkit's pre-flight estimate, without downloading it.

    python scripts/recipe_memory.py                 # every recipe whose train.model is a hub id
    python scripts/recipe_memory.py recipes/squad-qlora-mistral7b.yaml

The architectures below are the hub checkpoints' config.json values (sizes only); each model is
built on PyTorch's meta device, so nothing is allocated, and slmkit.train.memory.estimate_from_config
gives the same estimate `slmkit train` checks before its first step (weights, gradients + optimizer
state, activations of the longest micro-batch: batch_size × max_seq_len), for CPU and for CUDA. The
recipes quote these numbers in their headers; tests/test_recipes.py checks that they do.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "src"))

from slmkit.config import TrainConfig, load_yaml, parse_config  # noqa: E402
from slmkit.models.loading import is_hub_id  # noqa: E402
from slmkit.train.memory import estimate_from_config  # noqa: E402

# hub id: (transformers config class, its sizes from the checkpoint's config.json)
HUB_ARCHITECTURES: dict[str, tuple[str, dict]] = {
    "microsoft/phi-2": (
        "PhiConfig",
        {"vocab_size": 51200, "hidden_size": 2560, "intermediate_size": 10240, "num_hidden_layers": 32,
         "num_attention_heads": 32, "partial_rotary_factor": 0.4, "max_position_embeddings": 2048},
    ),
    "microsoft/phi-1_5": (
        "PhiConfig",
        {"vocab_size": 51200, "hidden_size": 2048, "intermediate_size": 8192, "num_hidden_layers": 24,
         "num_attention_heads": 32, "partial_rotary_factor": 0.5, "max_position_embeddings": 2048},
    ),
    "Qwen/Qwen2-0.5B": (
        "Qwen2Config",
        {"vocab_size": 151936, "hidden_size": 896, "intermediate_size": 4864, "num_hidden_layers": 24,
         "num_attention_heads": 14, "num_key_value_heads": 2, "tie_word_embeddings": True},
    ),
    "distilbert/distilgpt2": ("GPT2Config", {"n_layer": 6}),
    "openai-community/gpt2": ("GPT2Config", {}),
    "facebook/bart-large-xsum": (
        "BartConfig",
        {"vocab_size": 50264, "d_model": 1024, "encoder_layers": 12, "decoder_layers": 12,
         "encoder_attention_heads": 16, "decoder_attention_heads": 16, "encoder_ffn_dim": 4096,
         "decoder_ffn_dim": 4096},
    ),
    "mistralai/Mistral-7B-v0.1": (
        "MistralConfig",
        {"vocab_size": 32000, "hidden_size": 4096, "intermediate_size": 14336, "num_hidden_layers": 32,
         "num_attention_heads": 32, "num_key_value_heads": 8, "tie_word_embeddings": False},
    ),
    "meta-llama/Llama-3.1-8B": (
        "LlamaConfig",
        {"vocab_size": 128256, "hidden_size": 4096, "intermediate_size": 14336, "num_hidden_layers": 32,
         "num_attention_heads": 32, "num_key_value_heads": 8, "tie_word_embeddings": False},
    ),
}  # fmt: skip


def hub_config(hub_id: str):
    """The transformers config of a hub checkpoint in HUB_ARCHITECTURES."""
    import transformers

    class_name, sizes = HUB_ARCHITECTURES[hub_id]
    return getattr(transformers, class_name)(**sizes)


def estimate(recipe: Path) -> dict[str, float]:
    """GiB the recipe's training run needs on CPU and on CUDA, and the model's parameters (billions)."""
    import torch
    from transformers import AutoModelForCausalLM, AutoModelForSeq2SeqLM

    train = parse_config(TrainConfig, load_yaml(recipe)["train"], recipe.name)
    config = hub_config(train.model)
    longest = min(train.data.max_seq_len, getattr(config, "max_position_embeddings", None) or 2048)
    auto = AutoModelForSeq2SeqLM if config.is_encoder_decoder else AutoModelForCausalLM
    with torch.device("meta"):
        parameters = sum(p.numel() for p in auto.from_config(config).parameters())
    out = {"parameters_b": parameters / 1e9}
    for device in ("cpu", "cuda"):
        bf16 = train.bf16 if train.bf16 != "auto" else device == "cuda"
        run = train.model_copy(update={"bf16": bf16})
        out[f"{device}_gib"] = sum(estimate_from_config(config, run, longest, device).values()) / 2**30
    return out


def hub_recipes() -> list[Path]:
    return [
        r
        for r in sorted((REPO / "recipes").glob("*.yaml"))
        if is_hub_id(str((load_yaml(r).get("train") or {}).get("model", "")))
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("recipes", nargs="*", type=Path)
    args = parser.parse_args()
    for recipe in args.recipes or hub_recipes():
        found = estimate(recipe)
        print(
            f"{recipe.name}: {found['parameters_b']:.2f}B parameters; "
            f"{found['cuda_gib']:.1f} GiB on CUDA, {found['cpu_gib']:.1f} GiB on CPU"
        )


if __name__ == "__main__":
    main()
