"""The frozen, quantized base of a QLoRA run, with the backend chosen per device.

Measured on a 2-core CPU with SmolLM2-135M (tests/train/test_quantize.py repeats the check):

- bitsandbytes NF4 computes correct LoRA gradients on CPU only until the model runs any inference
  pass (``eval()``, ``generate()`` or even a ``no_grad`` forward in training mode): bitsandbytes then
  repacks the 4-bit weights for its inference kernel and every later LoRA gradient is wrong
  (relative error 1.0). Validation during training would silently ruin the run, so slmkit refuses
  ``bnb-nf4`` on CPU. On CUDA it is the standard QLoRA backend (Dettmers et al. 2023).
- torchao int8 weight-only (``Int8WeightOnlyConfig``) under PEFT LoRA trains with gradients that
  match the dequantized model before and after validation passes; it is the CPU backend.
  torchao's int4 weight-only config has no CPU training path here.
"""

from __future__ import annotations

import logging

import torch

from slmkit.errors import ConfigError
from slmkit.models.loading import LoadedModel

logger = logging.getLogger(__name__)

BACKENDS = ("torchao-int8", "bnb-nf4")


def resolve_device(requested: str) -> torch.device:
    """``auto`` picks CUDA when present; asking for CUDA without one is a config error."""
    if requested == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if requested == "cuda" and not torch.cuda.is_available():
        raise ConfigError("device: 'cuda' was asked for but torch sees no CUDA device; use 'cpu' or 'auto'")
    return torch.device(requested)


def resolve_backend(requested: str, device: torch.device) -> str:
    """The quantization backend for ``device`` (``auto``: NF4 on CUDA, int8 on CPU).

    Raises:
        ConfigError: ``bnb-nf4`` on CPU (wrong gradients after validation; see module docstring).
    """
    if requested == "auto":
        return "bnb-nf4" if device.type == "cuda" else "torchao-int8"
    if requested == "bnb-nf4" and device.type != "cuda":
        raise ConfigError(
            "quantization.backend: 'bnb-nf4' needs CUDA: on CPU bitsandbytes repacks its 4-bit weights "
            "after the first inference pass and LoRA gradients become wrong; use 'torchao-int8' or 'auto'"
        )
    return requested


def _is_body_linear(module: torch.nn.Module, name: str) -> bool:
    # The output head stays in full precision: it is tied to the input embeddings in most small
    # models and is where quantization error hurts the loss most.
    return isinstance(module, torch.nn.Linear) and "lm_head" not in name


def quantize_base(loaded: LoadedModel, backend: str, device: torch.device) -> torch.nn.Module:
    """Return the base model with its body's linear layers quantized and every weight frozen.

    ``torchao-int8`` quantizes ``loaded.model`` in place; ``bnb-nf4`` reloads the weights from
    ``loaded.path`` (or the hub id) in 4-bit onto the GPU.
    """
    if backend == "torchao-int8":
        model = _torchao_int8(loaded.model.to(device))
    elif backend == "bnb-nf4":
        model = _bnb_nf4(loaded, device)
    else:
        raise ConfigError(
            f"quantization.backend: unknown backend {backend!r}; known: auto, {', '.join(BACKENDS)}"
        )
    for param in model.parameters():
        param.requires_grad_(False)
    logger.info("quantized the base model with %s", backend)
    return model


def _torchao_int8(model: torch.nn.Module) -> torch.nn.Module:
    try:
        from torchao.quantization import Int8WeightOnlyConfig, quantize_
    except ImportError as err:
        raise ConfigError("method 'qlora' on CPU needs torchao: pip install 'slmkit[qlora]'") from err
    quantize_(model, Int8WeightOnlyConfig(), filter_fn=_is_body_linear)
    return model


def _bnb_nf4(loaded: LoadedModel, device: torch.device) -> torch.nn.Module:
    # Not exercised by the test suite: this machine has no GPU. The path follows the PEFT/QLoRA recipe.
    try:
        from peft import prepare_model_for_kbit_training
        from transformers import AutoModelForCausalLM, BitsAndBytesConfig
    except ImportError as err:
        raise ConfigError("method 'qlora' on CUDA needs bitsandbytes: pip install 'slmkit[qlora]'") from err
    source = str(loaded.path or loaded.name)
    model = AutoModelForCausalLM.from_pretrained(
        source,
        quantization_config=BitsAndBytesConfig(
            load_in_4bit=True,
            bnb_4bit_quant_type="nf4",
            bnb_4bit_use_double_quant=True,
            bnb_4bit_compute_dtype=torch.bfloat16,
        ),
        device_map={"": device.index or 0},
    )
    return prepare_model_for_kbit_training(model, use_gradient_checkpointing=False)


def dequantized_weight(module: torch.nn.Module) -> torch.Tensor | None:
    """The full-precision weight a quantized linear layer computes with (None if not quantized)."""
    weight = getattr(module, "weight", None) if isinstance(module, torch.nn.Linear) else None
    # A quantized weight is a tensor subclass (torchao Int8Tensor, bitsandbytes Params4bit).
    if weight is None or type(weight) in (torch.Tensor, torch.nn.Parameter):
        return None
    if hasattr(weight, "quant_state"):  # bitsandbytes
        import bitsandbytes as bnb

        return bnb.functional.dequantize_4bit(weight.data, weight.quant_state).float()
    return weight.dequantize().float()
