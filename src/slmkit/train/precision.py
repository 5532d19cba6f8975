"""Which precision a training run computes in: ``bf16: auto | true | false``.

bf16 autocast halves activation memory, but whether it is *faster* depends on the hardware. On a
CUDA GPU with bf16 support it is. On a CPU it is only when the matrix units run bf16 natively
(Intel AMX, flag ``amx_bf16``); elsewhere oneDNN emulates it and a step gets slower. Measured on
2-core Xeons: without AVX512-BF16, SmolLM2 LoRA ran at 90-98 training tokens/s in bf16 against
293-311 in fp32; with AVX512-BF16 but no AMX, 140 against 200 (docs/benchmarks.md).
"""

from __future__ import annotations

from functools import cache
from pathlib import Path

import torch


@cache
def cpu_has_amx_bf16() -> bool:
    """True when the CPU advertises Intel AMX with bf16 tiles (Linux; False where unknown)."""
    cpuinfo = Path("/proc/cpuinfo")
    try:
        return "amx_bf16" in cpuinfo.read_text().split()
    except OSError:
        return False


def resolve_bf16(setting: bool | str, device: torch.device) -> bool:
    """Whether to autocast to bf16: ``auto`` picks what runs faster on ``device``."""
    if setting != "auto":
        return bool(setting)
    if device.type == "cuda":
        return torch.cuda.is_bf16_supported()
    return device.type == "cpu" and cpu_has_amx_bf16()
