"""Sentence embedders for the knowledge base (sentence-transformers)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from slmkit.errors import ModelNotFoundError
from slmkit.models.cache import cache_dir
from slmkit.models.loading import hub_offline, is_hub_id, resolve_device
from slmkit.models.registry import PACKAGED_MODELS, packaged_names


def resolve_embedder_path(name: str) -> str:
    """Map an embedder name to a local folder (or, online, a hub id).

    Raises:
        ModelNotFoundError: unknown name (lists packaged embedders) or a hub id while offline.
    """
    known = ", ".join(packaged_names("embedder"))
    if name in PACKAGED_MODELS:
        spec = PACKAGED_MODELS[name]
        if spec.kind != "embedder":
            kind = "a generator" if spec.kind == "causal-lm" else f"a {spec.kind}"
            raise ModelNotFoundError(f"'{name}' is {kind}, not an embedder; embedders: {known}")
        return str(spec.locate(cache_dir()))
    path = Path(name).expanduser()
    if path.is_dir():
        return _merged_if_adapter(path)
    if is_hub_id(name):
        if hub_offline():
            raise ModelNotFoundError(
                f"embedder '{name}' looks like a hub id, but the hub is offline (HF_HUB_OFFLINE=1). "
                "Download it where you have a network and pass its folder, or use a packaged embedder: "
                f"{known}"
            )
        return name
    raise ModelNotFoundError(
        f"unknown embedder '{name}'. Known packaged embedders: {known}; or a local folder."
    )


def _merged_if_adapter(path: Path) -> str:
    from slmkit.models.query_adapter import is_query_adapter, merged_query_encoder

    return str(merged_query_encoder(path, cache_dir()) if is_query_adapter(path) else path)


def load_embedder(name: str, device: str = "auto") -> Any:
    """Load a sentence-transformers embedder on ``device`` (``auto``: CUDA when present, else CPU).

    Raises:
        ModelNotFoundError: the embedder cannot be found or loaded.
        ConfigError: ``device: cuda`` without a CUDA device.
    """
    # Imported here: sentence-transformers (torch, transformers, peft) takes seconds to import, and
    # a process that only searches encodes its questions without it (slmkit.models.query_encoder).
    from sentence_transformers import SentenceTransformer

    target = str(resolve_device(device))
    try:
        return SentenceTransformer(resolve_embedder_path(name), device=target)
    except OSError as err:
        raise ModelNotFoundError(f"could not load embedder '{name}': {err}") from None
