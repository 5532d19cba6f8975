"""Load a generator by packaged name, local folder, GGUF file or hub id: a causal LM of any family
(GPT-2, phi, Qwen2, Llama, Mistral, Gemma, ...) or an encoder-decoder (BART, T5), whose config says
which (``is_encoder_decoder``).

GGUF files are dequantized by transformers (slow: ~12 s for 135M parameters, ~50 s for 270M) once,
then cached as a plain safetensors folder, which later loads in well under a second.
"""

from __future__ import annotations

import glob
import hashlib
import json
import logging
import os
import re
import shutil
import tempfile
from dataclasses import dataclass
from importlib.metadata import version
from pathlib import Path
from typing import TYPE_CHECKING, Any

from slmkit.errors import ConfigError, ModelNotFoundError, SlmkitError
from slmkit.models.adapters import (
    MERGED_FROM,
    adapter_fingerprint,
    base_model_of,
    is_adapter_folder,
    save_merged,
)
from slmkit.models.cache import cache_dir
from slmkit.models.registry import PACKAGED_MODELS, packaged_names

if TYPE_CHECKING:
    import torch
    from transformers import PreTrainedModel, PreTrainedTokenizerBase

logger = logging.getLogger(__name__)

_HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")
# torch and transformers are imported by the functions that load weights, not here: resolving a
# model's cached files (what a fresh `slmkit ask` on llama.cpp does) then costs no torch start-up.
_DTYPES = ("float32", "bfloat16")
# SentencePiece model files: transformers' fast tokenizers do not write them back on save, but
# llama.cpp's converter reads them for T5, Gemma (v1) and other SentencePiece families.
_SENTENCEPIECE_FILES = ("tokenizer.model", "spiece.model", "sentencepiece.bpe.model")


@dataclass
class LoadedModel:
    """A generator (causal LM or encoder-decoder) ready for generation or training.

    Attributes:
        name: What the user asked for (packaged name, path or hub id).
        model: The transformers model, in eval mode (``AutoModelForCausalLM`` or, for an
            encoder-decoder, ``AutoModelForSeq2SeqLM``).
        tokenizer: Its tokenizer; ``pad_token`` is always set.
        path: The folder the weights were loaded from (the cache folder for GGUF sources), or None
            for hub models.
    """

    name: str
    model: PreTrainedModel
    tokenizer: PreTrainedTokenizerBase
    path: Path | None

    @property
    def has_chat_template(self) -> bool:
        return bool(getattr(self.tokenizer, "chat_template", None))

    @property
    def is_encoder_decoder(self) -> bool:
        """True for encoder-decoders (BART, T5): the prompt goes to the encoder, the answer is decoded."""
        return bool(getattr(self.model.config, "is_encoder_decoder", False))

    @property
    def context_window(self) -> int:
        # T5's relative positions set no limit; 2048 keeps its prompts to what it handles well.
        return int(getattr(self.model.config, "max_position_embeddings", None) or 2048)

    @property
    def num_parameters(self) -> int:
        return sum(p.numel() for p in self.model.parameters())


def is_hub_id(name: str) -> bool:
    """True for ``org/name`` strings that do not exist as local paths."""
    return bool(_HUB_ID.match(name)) and not Path(name).expanduser().exists()


def hub_offline() -> bool:
    """True when the user has told Hugging Face libraries not to use the network."""
    flags = ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE")
    return any(os.environ.get(f, "").strip().upper() in {"1", "ON", "YES", "TRUE"} for f in flags)


def file_fingerprint(path: Path) -> str:
    """A short stable id for a weights file: its size, first and last MiB (and transformers' major)."""
    # Size plus the first and last MiB identify a weights file without reading all of it,
    # so a cache hit costs milliseconds even for multi-GB files.
    size = path.stat().st_size
    digest = hashlib.sha256(f"{size}:{version('transformers').split('.')[0]}".encode())
    with path.open("rb") as f:
        digest.update(f.read(1 << 20))
        f.seek(max(0, size - (1 << 20)))
        digest.update(f.read(1 << 20))
    return digest.hexdigest()[:16]


def _clear_gguf_quantization_mark(model: PreTrainedModel) -> None:
    # transformers 5.x loads GGUF weights dequantized to plain fp32 tensors but leaves the model
    # marked as GGUF-quantized, and then refuses save_pretrained() and training. The tensors are
    # ordinary, so dropping the mark is safe (the re-saved folder reloads with identical logits).
    model.hf_quantizer = None
    model.is_quantized = False
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config


def dequantized_folder(gguf: Path, cache: Path | None = None) -> Path:
    """Return a cached safetensors folder holding ``gguf`` dequantized, creating it on first use.

    The folder is written to a temporary sibling and renamed into place, so an interrupted
    conversion never leaves a half-written cache entry behind.
    """
    root = (cache or cache_dir()) / "models"
    target = root / f"{gguf.stem}-{file_fingerprint(gguf)}"
    if (target / "slmkit-model.json").is_file():
        return target
    root.mkdir(parents=True, exist_ok=True)
    logger.info("dequantizing %s once (later loads use the cache at %s)", gguf.name, target)
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(str(gguf.parent), gguf_file=gguf.name)
    model = AutoModelForCausalLM.from_pretrained(str(gguf.parent), gguf_file=gguf.name, dtype=torch.float32)
    _clear_gguf_quantization_mark(model)
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.", dir=root))
    try:
        model.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
        meta = {"source_gguf": str(gguf), "transformers": version("transformers")}
        (tmp / "slmkit-model.json").write_text(json.dumps(meta, indent=2))
        try:
            tmp.rename(target)
        except OSError:
            # Another process finished the same conversion first; theirs is as good as ours.
            if not (target / "slmkit-model.json").is_file():
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return target


def merged_folder(adapter_dir: Path, cache: Path | None = None) -> Path:
    """Return a cached model folder holding ``adapter_dir``'s base with the adapters merged in,
    creating it on first use (written to a temporary sibling and renamed into place).

    A new merge replaces the cached merges of earlier weights in the same adapter folder (a
    retrained run, or the reader of an older slmkit), and the GGUF exports made from them: each is
    about a gigabyte for a 270M model, and nothing resolves to them any more.
    """
    root = (cache or cache_dir()) / "models"
    target = root / f"{adapter_dir.name}-merged-{adapter_fingerprint(adapter_dir)}"
    if (target / "config.json").is_file():
        return target
    base_name = base_model_of(adapter_dir)
    logger.info("merging %s into %s once (later loads use the cache at %s)", adapter_dir, base_name, target)
    base_path = resolve_model_path(base_name, cache)
    import torch
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(str(base_path))
    base = model_class(base_path).from_pretrained(str(base_path), dtype=torch.float32)
    note = {"adapter": str(adapter_dir.resolve())}
    save_merged(base, tokenizer, adapter_dir, target, note)
    prune_superseded_merges(target, note["adapter"])
    return target


def source_gguf_of(folder: Path, cache: Path | None = None) -> Path | None:
    """The packaged GGUF whose weights ``folder`` holds: itself dequantized, or the base of an
    adapter merged into it (following each cached merge to its base); None for any other folder.

    An export uses it to give its GGUF back the tokenizer the weights were packaged with
    (slmkit.models.gguf_export).
    """
    for _ in range(8):  # an adapter on a merge of an adapter...; a cycle would be a corrupt cache
        try:
            meta = json.loads((folder / "slmkit-model.json").read_text(encoding="utf-8"))
            gguf = Path(meta["source_gguf"])
            return gguf if gguf.is_file() else None
        except (OSError, ValueError, KeyError, TypeError):
            pass
        try:
            adapter = Path(json.loads((folder / MERGED_FROM).read_text(encoding="utf-8"))["adapter"])
            base = resolve_model_path(base_model_of(adapter), cache)
        except (OSError, ValueError, KeyError, TypeError, SlmkitError):
            return None
        if not isinstance(base, Path):
            return None  # a hub id: no packaged file behind it
        folder = base
    return None


def prune_superseded_merges(current: Path, adapter: str) -> list[Path]:
    """Delete the cached merges of ``adapter`` (a resolved adapter folder) other than ``current``,
    with every file of the cache's ``gguf/`` derived from them; returns the merges deleted.

    Only merges that record the same adapter folder go: two runs whose adapters share a folder name
    keep theirs. A process still using a deleted GGUF keeps reading it (an unlinked file lives on
    while it is open or mapped); only its next start merges again.
    """
    pruned = []
    for other in current.parent.glob(f"{glob.escape(current.name.rsplit('-merged-', 1)[0])}-merged-*"):
        try:
            source = json.loads((other / MERGED_FROM).read_text(encoding="utf-8")).get("adapter")
        except (OSError, ValueError, AttributeError):
            continue  # not one of ours, or written before merges recorded their adapter
        if other == current or source != adapter:
            continue
        for derived in (current.parent.parent / "gguf").glob(f"{glob.escape(other.name)}-*"):
            derived.unlink(missing_ok=True)
        shutil.rmtree(other, ignore_errors=True)
        logger.info("removed %s, a cached merge of earlier weights of %s", other, adapter)
        pruned.append(other)
    return pruned


def model_class(source: Path | str) -> type:
    """``AutoModelForSeq2SeqLM`` for an encoder-decoder's folder (or hub id), else ``AutoModelForCausalLM``.

    Raises:
        ModelNotFoundError: no readable config there.
    """
    from transformers import AutoConfig, AutoModelForCausalLM, AutoModelForSeq2SeqLM

    try:
        config = AutoConfig.from_pretrained(str(source))
    except (OSError, ValueError) as err:
        raise ModelNotFoundError(f"could not read the model config of {source}: {err}") from None
    return AutoModelForSeq2SeqLM if getattr(config, "is_encoder_decoder", False) else AutoModelForCausalLM


def save_tokenizer(tokenizer: PreTrainedTokenizerBase, folder: Path) -> None:
    """``tokenizer.save_pretrained(folder)``, plus the SentencePiece model file of the folder it was
    loaded from, which the save leaves out and llama.cpp's converter needs (T5, Gemma v1)."""
    tokenizer.save_pretrained(folder)
    source = Path(str(getattr(tokenizer, "name_or_path", "") or ""))
    for name in _SENTENCEPIECE_FILES:
        if (source / name).is_file() and not (Path(folder) / name).exists():
            shutil.copy(source / name, Path(folder) / name)


def model_recipe(name: str) -> dict[str, Any]:
    """The ``train:`` section of the recipe a model was trained with ({} when there is none): read
    from a model or adapter folder's ``recipe.yaml``, or a packaged adapter's."""
    import yaml

    path = Path(name).expanduser()
    if name in PACKAGED_MODELS and PACKAGED_MODELS[name].kind == "causal-lm":
        try:
            path = PACKAGED_MODELS[name].locate(cache_dir())
        except ModelNotFoundError:
            return {}
    recipe = path / "recipe.yaml" if path.is_dir() else None
    if recipe is None or not recipe.is_file():
        return {}
    data = yaml.safe_load(recipe.read_text(encoding="utf-8"))
    return (data.get("train") or {}) if isinstance(data, dict) else {}


def is_reader(name: str) -> bool:
    """True for a model trained as a passage reader (``data.context: passage``): it answers from one
    passage with a span, or with nothing when the passage does not hold the answer."""
    return (model_recipe(name).get("data") or {}).get("context") == "passage"


def resolve_model_path(name: str, cache: Path | None = None) -> Path | str:
    """Map a user's model name to a local folder (or, online, a hub id).

    Raises:
        ModelNotFoundError: unknown name (lists the packaged ones), or a hub id while offline.
    """
    cache = cache or cache_dir()
    if name in PACKAGED_MODELS:
        spec = PACKAGED_MODELS[name]
        if spec.kind != "causal-lm":
            raise ModelNotFoundError(f"'{name}' is an embedder, not a generator; generators: {_known()}")
        located = spec.locate(cache)
        if is_adapter_folder(located):
            return merged_folder(located, cache)
        return dequantized_folder(located, cache)
    path = Path(name).expanduser()
    if path.is_file() and path.suffix == ".gguf":
        return dequantized_folder(path.resolve(), cache)
    if is_adapter_folder(path):
        return merged_folder(path.resolve(), cache)
    if path.is_dir():
        if not (path / "config.json").is_file():
            raise ModelNotFoundError(f"{path}: not a model folder (no config.json); {_hint()}")
        return path
    if is_hub_id(name):
        if hub_offline():
            raise ModelNotFoundError(
                f"'{name}' looks like a Hugging Face hub id, but the hub is offline (HF_HUB_OFFLINE=1). "
                f"Download it where you have a network (`hf download {name} --local-dir DIR`), then pass "
                f"--model DIR; or use a packaged model: {_known()}"
            )
        return name
    raise ModelNotFoundError(f"unknown model '{name}'. {_hint()}")


def _known() -> str:
    return ", ".join(packaged_names("causal-lm"))


def _hint() -> str:
    return (
        f"Known packaged models: {_known()}; "
        "or give a local model folder, a .gguf file or a hub id (org/name)."
    )


def load_tokenizer(name: str, cache: Path | None = None) -> PreTrainedTokenizerBase:
    """The tokenizer of a model (packaged name, folder, GGUF file or hub id), without its weights.

    Raises:
        ModelNotFoundError: the model cannot be found, or its folder holds no tokenizer.
    """
    from transformers import AutoTokenizer

    source = resolve_model_path(name, cache)
    try:
        return AutoTokenizer.from_pretrained(str(source))
    except OSError as err:
        raise ModelNotFoundError(f"could not load the tokenizer of '{name}' from {source}: {err}") from None


def resolve_device(requested: str) -> torch.device:
    """``auto`` picks CUDA when present; asking for CUDA without one is a config error."""
    import torch

    if requested == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if requested == "cuda" and not torch.cuda.is_available():
        raise ConfigError("device: 'cuda' was asked for but torch sees no CUDA device; use 'cpu' or 'auto'")
    return torch.device(requested)


def load_causal_lm(
    name: str, dtype: str = "float32", cache: Path | None = None, device: str = "cpu"
) -> LoadedModel:
    """Load a generator by packaged name, folder, GGUF file or hub id: a causal LM, or an
    encoder-decoder (BART, T5) when its config says it is one.

    Args:
        name: e.g. ``smollm2-135m-instruct``, ``./my-finetune``, ``model.gguf`` or ``org/model``.
        dtype: ``float32`` or ``bfloat16``.
        cache: Cache root for dequantized GGUF models (default :func:`cache_dir`).
        device: ``cpu``, ``cuda`` or ``auto`` (CUDA when present).

    Raises:
        ModelNotFoundError: the model cannot be found or downloaded.
        ConfigError: ``device: cuda`` without a CUDA device.
    """
    import torch
    from transformers import AutoTokenizer

    if dtype not in _DTYPES:
        raise ConfigError(f"dtype '{dtype}' is not one of {', '.join(_DTYPES)}")
    source = resolve_model_path(name, cache)
    kwargs: dict[str, Any] = {"dtype": getattr(torch, dtype)}
    target = resolve_device(device)
    try:
        tokenizer = AutoTokenizer.from_pretrained(str(source))
        model = model_class(source).from_pretrained(str(source), **kwargs)
    except OSError as err:
        raise ModelNotFoundError(f"could not load model '{name}' from {source}: {err}") from None
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    model.to(target)
    model.eval()
    local = Path(str(source))
    return LoadedModel(name=name, model=model, tokenizer=tokenizer, path=local if local.exists() else None)
