"""Will this run fit? A pre-flight estimate, and a clear message when memory runs out anyway.

On Linux a CPU process that over-allocates is usually killed by the kernel without a Python
traceback, so the estimate runs before the first step and refuses a run that clearly cannot fit.
The activation term follows Korthikanti et al. (2022), "Reducing Activation Recomputation in Large
Transformer Models": per layer ``s·b·h·(34 + 5·a·s/h)`` bytes in 16-bit, doubled for fp32.
It is a rough upper bound for the longest batch, not a promise.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import torch

from slmkit.errors import SlmkitError

logger = logging.getLogger(__name__)

_OPTIMIZER_BYTES = {"adamw": 8, "adamw-8bit": 2, "paged-adamw-8bit": 2}  # moment states per parameter


class OutOfMemoryError(SlmkitError):
    """A training run does not fit in memory; the message says which settings to lower."""


def advice(config: Any) -> str:
    """What to lower, in the order that costs the least quality."""
    optim, tips = config.optim, []
    if optim.batch_size > 1:
        tips.append(
            f"optim.batch_size (now {optim.batch_size}; raise optim.grad_accum to keep the effective batch)"
        )
    tips.append(f"data.max_seq_len (now {config.data.max_seq_len})")
    if not config.gradient_checkpointing:
        tips.append("turn on gradient_checkpointing")
    if config.method == "full":
        tips.append("use method lora or qlora")
    elif config.method == "lora":
        tips.append("use method qlora")
    if optim.optimizer == "adamw":
        tips.append("use optim.optimizer adamw-8bit")
    return "lower " + "; ".join(tips)


def available_bytes(device: torch.device) -> int:
    """Free memory on ``device``: CUDA's free memory, or the kernel's MemAvailable on CPU."""
    if device.type == "cuda":
        return int(torch.cuda.mem_get_info(device)[0])
    meminfo = Path("/proc/meminfo")
    if meminfo.exists():
        for line in meminfo.read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    return 1 << 62  # unknown platform: do not block the run on a guess


def tensor_bytes(tensor: torch.Tensor) -> int:
    """Bytes a tensor really holds; a quantized tensor subclass (torchao) is summed over its parts,
    because its own ``element_size()`` reports the dtype it stands in for (fp32)."""
    if hasattr(tensor, "__tensor_flatten__"):
        names, _ = tensor.__tensor_flatten__()
        return sum(tensor_bytes(getattr(tensor, name)) for name in names)
    return tensor.numel() * tensor.element_size()


def estimate_bytes(model: torch.nn.Module, config: Any, longest: int) -> dict[str, int]:
    """Weights, gradients + optimizer state, and activations for the longest micro-batch."""
    weights = sum(tensor_bytes(p) for p in model.parameters())
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    optimizer = trainable * (4 + _OPTIMIZER_BYTES[config.optim.optimizer])
    model_config = getattr(model, "config", None) or model.get_base_model().config
    hidden, layers = model_config.hidden_size, model_config.num_hidden_layers
    if getattr(model_config, "is_encoder_decoder", False):  # BART, T5: the decoder's layers too
        layers += getattr(model_config, "decoder_layers", None) or model_config.num_decoder_layers
    heads = model_config.num_attention_heads
    tokens = config.optim.batch_size * longest
    per_layer = tokens * hidden * (34 + 5 * heads * longest / hidden)
    if config.gradient_checkpointing:
        per_layer = tokens * hidden * 2  # only each layer's input is kept
    scale = 1 if config.bf16 else 2
    return {"weights": weights, "optimizer": optimizer, "activations": int(per_layer * layers * scale)}


# Bytes a quantized base keeps per weight of its linear layers: NF4 with double quantization (4 bits
# plus ~0.13 bit of block scales, Dettmers et al. 2023); int8 weight-only (one fp32 scale per row).
QUANTIZED_BYTES = {"bnb-nf4": 0.516, "torchao-int8": 1.0}


def estimate_from_config(model_config: Any, config: Any, longest: int, device: str) -> dict[str, int]:
    """:func:`estimate_bytes` for a model known by its config alone (nothing downloaded or allocated):
    the model is built on the meta device, LoRA adapters are added as the run adds them, and a
    ``qlora`` base's linear layers count at their quantized size on ``device`` (``cpu`` or ``cuda``).
    Recipes for hub models state this number (scripts/recipe_memory.py prints it).
    """
    import warnings

    from transformers import AutoModelForCausalLM, AutoModelForSeq2SeqLM

    from slmkit.models.families import lora_target_modules

    seq2seq = getattr(model_config, "is_encoder_decoder", False)
    with torch.device("meta"):
        model = (AutoModelForSeq2SeqLM if seq2seq else AutoModelForCausalLM).from_config(model_config)
    head = model.get_output_embeddings()
    linear = sum(
        m.weight.numel()
        for m in model.modules()
        if m is not head and (isinstance(m, torch.nn.Linear) or type(m).__name__ == "Conv1D")
    )
    if config.method != "full":
        from peft import LoraConfig, get_peft_model

        lora = config.lora
        targets = lora_target_modules(model_config, lora.target_modules)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # GPT-2's Conv1D fan_in_fan_out note
            model = get_peft_model(model, LoraConfig(r=lora.r, lora_alpha=lora.alpha, target_modules=targets))
    parts = estimate_bytes(model, config, longest)
    if config.method == "qlora":
        backend = "bnb-nf4" if device == "cuda" else "torchao-int8"
        parts["weights"] -= int(linear * (4 - QUANTIZED_BYTES[backend]))
    return parts


def check_fits(model: torch.nn.Module, config: Any, longest: int, device: torch.device) -> None:
    """Refuse a run whose estimate exceeds the free memory; warn above 80 %.

    Raises:
        OutOfMemoryError: with the estimate, the free memory and what to lower.
    """
    parts = estimate_bytes(model, config, longest)
    need, free = sum(parts.values()), available_bytes(device)
    detail = ", ".join(f"{k} {v / 2**30:.2f}" for k, v in parts.items())
    if need > free:
        raise OutOfMemoryError(
            f"this run needs about {need / 2**30:.1f} GiB ({detail} GiB; longest batch "
            f"{config.optim.batch_size}×{longest} tokens) but {device} has {free / 2**30:.1f} GiB free: "
            f"{advice(config)}"
        )
    if need > 0.8 * free:
        logger.warning(
            "memory is tight: about %.1f of %.1f GiB free (%s GiB)", need / 2**30, free / 2**30, detail
        )


def is_out_of_memory(error: BaseException) -> bool:
    """True for CUDA OOM, a failed CPU allocation, or Python's MemoryError."""
    if isinstance(error, (torch.OutOfMemoryError, MemoryError)):
        return True
    return isinstance(error, RuntimeError) and "can't allocate memory" in str(error)
