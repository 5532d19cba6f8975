"""Turn LoRA / QLoRA adapters into a standalone model folder.

Adapters are always merged into the *unquantized* base, as the PEFT maintainers recommend for
QLoRA: merging into 4-bit or int8 weights would round the adapter update away.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import yaml
from transformers import PreTrainedModel

from slmkit.errors import InputError
from slmkit.models.loading import LoadedModel, load_causal_lm

ADAPTER_CONFIG = "adapter_config.json"


def base_model_of(adapter_dir: Path) -> str:
    """The base model an adapter folder was trained on, from its ``recipe.yaml`` or PEFT config.

    Raises:
        InputError: the folder is not an adapter folder, or names no base model.
    """
    if not (adapter_dir / ADAPTER_CONFIG).is_file():
        raise InputError(f"{adapter_dir}: not a LoRA adapter folder (no {ADAPTER_CONFIG})")
    recipe = adapter_dir / "recipe.yaml"
    if recipe.is_file():
        model = (yaml.safe_load(recipe.read_text()) or {}).get("train", {}).get("model")
        if model:
            return str(model)
    import json

    base = json.loads((adapter_dir / ADAPTER_CONFIG).read_text()).get("base_model_name_or_path")
    if not base:
        raise InputError(f"{adapter_dir / ADAPTER_CONFIG}: no base_model_name_or_path; pass --base")
    return str(base)


def merged_model(base: LoadedModel, adapter_dir: Path) -> PreTrainedModel:
    """``base`` (full precision) with the adapters in ``adapter_dir`` folded into its weights."""
    from peft import PeftModel

    return PeftModel.from_pretrained(base.model, str(adapter_dir)).merge_and_unload()


def save_merged(base: LoadedModel, adapter_dir: Path, output: Path) -> Path:
    """Merge and write a self-contained model folder atomically (weights, tokenizer, recipe)."""
    staging = output.with_name(f".{output.name}-staging")
    shutil.rmtree(staging, ignore_errors=True)
    merged_model(base, adapter_dir).save_pretrained(staging)
    base.tokenizer.save_pretrained(staging)
    for name in ("recipe.yaml", "metrics.jsonl"):
        if (adapter_dir / name).is_file():
            shutil.copy(adapter_dir / name, staging / name)
    shutil.rmtree(output, ignore_errors=True)
    staging.rename(output)
    return output


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
    return save_merged(load_causal_lm(name), adapter_dir, output)
