"""``slmkit merge``: turn LoRA / QLoRA adapters into a standalone model folder (slmkit.models.adapters
does the merging; adapter folders also work directly wherever a model is expected)."""

from __future__ import annotations

from pathlib import Path

from slmkit.errors import InputError
from slmkit.models.adapters import ADAPTER_CONFIG, base_model_of, save_merged
from slmkit.models.loading import load_causal_lm

__all__ = ["ADAPTER_CONFIG", "base_model_of", "merge_adapter"]


def merge_adapter(adapter_dir: Path, output: Path, base: str | None = None) -> Path:
    """``slmkit merge``: load the base (``base`` or the one the adapter names), merge, save.

    Raises:
        InputError: ``adapter_dir`` is not an adapter folder or ``output`` is the adapter folder.
        ModelNotFoundError: the base model cannot be loaded.
    """
    adapter_dir, output = Path(adapter_dir), Path(output)
    if output.resolve() == adapter_dir.resolve():
        raise InputError(f"{output}: the output folder must differ from the adapter folder")
    name = base or base_model_of(adapter_dir)
    base_model = load_causal_lm(name)
    return save_merged(base_model.model, base_model.tokenizer, adapter_dir, output)
