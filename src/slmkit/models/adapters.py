"""LoRA adapter folders as models: which base they belong to, and the base with them merged in.

An adapter folder (PEFT's ``adapter_config.json`` + weights, and slmkit's ``recipe.yaml``) can be
passed wherever a model is expected: it is merged into its full-precision base once and the merged
folder is cached, like a dequantized GGUF. Adapters are always merged into the *unquantized* base,
as the PEFT maintainers recommend for QLoRA: merging into 4-bit or int8 weights would round the
adapter update away.
"""

from __future__ import annotations

import json
import logging
import shutil
from pathlib import Path
from typing import TYPE_CHECKING

import yaml

from slmkit.atomic import atomic_folder
from slmkit.errors import InputError

if TYPE_CHECKING:
    from transformers import PreTrainedModel

logger = logging.getLogger(__name__)

ADAPTER_CONFIG = "adapter_config.json"
# Files kept beside the weights: how the model was trained, its curve and its model card.
_CARRIED = ("recipe.yaml", "metrics.jsonl", "README.md", "scores.json")


def is_adapter_folder(path: Path) -> bool:
    """A folder holding LoRA adapters only (no full model of its own)."""
    return path.is_dir() and (path / ADAPTER_CONFIG).is_file() and not (path / "config.json").is_file()


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
    base = json.loads((adapter_dir / ADAPTER_CONFIG).read_text()).get("base_model_name_or_path")
    if not base:
        raise InputError(f"{adapter_dir / ADAPTER_CONFIG}: no base_model_name_or_path; pass --base")
    return str(base)


# Written into a cached merged folder: which adapter folder it came from (see loading.merged_folder).
MERGED_FROM = "slmkit-merged-from.json"


def merged_model(base: PreTrainedModel, adapter_dir: Path) -> PreTrainedModel:
    """``base`` (full precision) with the adapters in ``adapter_dir`` folded into its weights."""
    import warnings

    from peft import PeftModel

    with warnings.catch_warnings():
        # PEFT reads transformers' deprecated ``is_gradient_checkpointing`` alias; the FutureWarning
        # is theirs to fix and would otherwise be the one line of noise in `make demo`.
        warnings.filterwarnings("ignore", message="`is_gradient_checkpointing` is deprecated")
        return PeftModel.from_pretrained(base, str(adapter_dir)).merge_and_unload()


def save_merged(
    base: PreTrainedModel, tokenizer, adapter_dir: Path, output: Path, note: dict | None = None
) -> Path:
    """Merge and write a self-contained model folder atomically (weights, tokenizer, recipe, card;
    ``note``, if given, as ``MERGED_FROM``)."""
    from slmkit.models.loading import save_tokenizer

    with atomic_folder(output) as staging:
        merged_model(base, adapter_dir).save_pretrained(staging)
        save_tokenizer(tokenizer, staging)
        if note is not None:
            (staging / MERGED_FROM).write_text(json.dumps(note, indent=2), encoding="utf-8")
        for name in _CARRIED:
            if (adapter_dir / name).is_file():
                shutil.copy(adapter_dir / name, staging / name)
    return output


def adapter_fingerprint(adapter_dir: Path) -> str:
    """A short id of an adapter's weights and config, so a retrained adapter gets a new cache entry."""
    from slmkit.models.loading import file_fingerprint

    weights = sorted(adapter_dir.glob("adapter_model.*"))
    if not weights:
        raise InputError(f"{adapter_dir}: no adapter_model.safetensors (or .bin) in the adapter folder")
    return file_fingerprint(weights[0])
