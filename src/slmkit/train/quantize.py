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

import contextlib
import logging
import types
from typing import Any

import torch

from slmkit.errors import ConfigError
from slmkit.models.loading import LoadedModel, model_class, resolve_device

logger = logging.getLogger(__name__)

BACKENDS = ("torchao-int8", "bnb-nf4")
__all__ = ["BACKENDS", "dequantized_weight", "quantize_base", "resolve_backend", "resolve_device"]


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
    quantized = 0
    for module in model.modules():
        if dequantized_weight(module) is not None:
            module.forward = types.MethodType(_frozen_int8_forward, module)
            quantized += 1
    if not quantized:
        # GPT-2's projections are transformers Conv1D layers, which torchao does not quantize.
        logger.warning("torchao-int8 found no nn.Linear layer to quantize: the base stays in full precision")
    _release_freed_memory()
    return model


class _FrozenInt8Linear(torch.autograd.Function):
    """``x @ W.T + b`` for a frozen int8 ``W`` that keeps only the int8 weight for the backward pass.

    torchao's own linear computes ``mm(x, W.to(x.dtype))`` under autograd, which saves that
    full-precision copy of every weight for backward, and, being a tensor subclass out of
    autocast's reach, takes and returns fp32 inside a bf16 autocast region: QLoRA then used more
    memory than LoRA (docs/qlora.md). Here the input gets the dtype autocast would give a plain
    ``Linear``, and the weight is dequantized again in backward instead of being stored.
    """

    @staticmethod
    def forward(ctx: Any, x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
        device = x.device.type
        ctx.weight, ctx.input_dtype = weight, x.dtype
        if torch.is_autocast_enabled(device):
            x = x.to(torch.get_autocast_dtype(device))
        with torch.autocast(device, enabled=False):
            w = weight.dequantize().to(x.dtype)
            return torch.nn.functional.linear(x, w, None if bias is None else bias.to(x.dtype))

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[torch.Tensor, None, None]:
        w = ctx.weight.dequantize().to(grad.dtype)
        return (grad @ w).to(ctx.input_dtype), None, None


def _frozen_int8_forward(self: torch.nn.Linear, x: torch.Tensor) -> torch.Tensor:
    return _FrozenInt8Linear.apply(x, self.weight, self.bias)


def _release_freed_memory() -> None:
    """Hand the freed fp32 weights back to the OS: glibc keeps freed heap pages in the process,
    where they would count against the memory QLoRA is meant to save."""
    import ctypes
    import gc

    gc.collect()
    with contextlib.suppress(OSError, AttributeError):  # not glibc (macOS, musl): nothing to trim
        ctypes.CDLL("libc.so.6").malloc_trim(0)


def _bnb_nf4(loaded: LoadedModel, device: torch.device) -> torch.nn.Module:
    # Exercised by tests/gpu/test_cuda.py (`make test-gpu`, on a CUDA machine only).
    try:
        from peft import prepare_model_for_kbit_training
        from transformers import BitsAndBytesConfig
    except ImportError as err:
        raise ConfigError("method 'qlora' on CUDA needs bitsandbytes: pip install 'slmkit[qlora]'") from err
    source = str(loaded.path or loaded.name)
    model = model_class(source).from_pretrained(
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
