"""What differs between model families where slmkit cares and the model cannot say: LoRA target names.

A model is recognised by its config's ``model_type``. Everything else slmkit needs from a family is
read off the model itself (``get_decoder()``, ``get_output_embeddings()``, the tokenizer's chat
template and pad token), and whether llama.cpp can convert it is asked of llama.cpp's converter
(slmkit.models.gguf_export), so this table holds only what the model cannot tell.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

ALL_LINEAR = "all-linear"
AUTO = "auto"


@dataclass(frozen=True)
class Family:
    """A model family slmkit is tested on (tests/test_families.py builds a tiny model of each; the
    other ``model_types`` listed share its module names).

    Attributes:
        name: How people call it.
        model_types: The ``config.model_type`` values it covers.
        attention: The attention projections ``lora.target_modules: auto`` adapts (PEFT matches a
            name against the end of each module path, so ``attn.c_proj`` leaves GPT-2's MLP
            ``c_proj`` alone).
    """

    name: str
    model_types: tuple[str, ...]
    attention: tuple[str, ...]


_QKVO = ("q_proj", "k_proj", "v_proj", "o_proj")

FAMILIES: tuple[Family, ...] = (
    # GPT-2's query/key/value are one fused Conv1D (c_attn); PEFT adapts Conv1D layers too.
    Family("GPT-2", ("gpt2",), ("c_attn", "attn.c_proj")),
    Family("phi", ("phi",), ("q_proj", "k_proj", "v_proj", "dense")),
    Family("Qwen2", ("qwen2", "qwen3"), _QKVO),
    Family("Llama", ("llama",), _QKVO),
    Family("Mistral", ("mistral", "mixtral"), _QKVO),
    Family("Gemma", ("gemma", "gemma2", "gemma3", "gemma3_text"), _QKVO),
    Family("BART", ("bart", "mbart"), ("q_proj", "k_proj", "v_proj", "out_proj")),
    # T5's attention projections are q, k, v, o; its MLP's wi/wo do not end in ".o".
    Family("T5", ("t5", "mt5", "umt5"), ("q", "k", "v", "o")),
)


def family_of(config: Any) -> Family | None:
    """The family of a transformers config (None for a family slmkit has no entry for)."""
    model_type = getattr(config, "model_type", None)
    return next((f for f in FAMILIES if model_type in f.model_types), None)


def lora_target_modules(config: Any, requested: str | list[str]) -> str | list[str]:
    """The ``target_modules`` to hand PEFT for ``lora.target_modules: requested``.

    ``auto`` is the family's attention projections (:data:`FAMILIES`), or every linear layer for
    a family without an entry; ``all-linear`` is every linear layer but the output head (PEFT's own
    shorthand); a list is used as given.
    """
    if requested == AUTO:
        family = family_of(config)
        return list(family.attention) if family else ALL_LINEAR
    return requested
