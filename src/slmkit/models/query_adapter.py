"""Query adapters: a LoRA on an embedder that changes how *questions* are embedded, not passages.

A knowledge base's chunks are embedded once, when it is built; re-embedding them to adapt retrieval
to a domain costs as much as the build. A query adapter leaves every stored vector as it is and
trains only the question side, against those fixed vectors (asymmetric, query-side tuning, as in
Khattab & Zaharia's ColBERT-QA query tuning or LlamaIndex's embedding adapters): adapting a
knowledge base takes minutes on a CPU, and the knowledge base stays valid for the untuned embedder.

A query adapter folder holds PEFT's ``adapter_config.json`` and weights for the embedder's
transformer, and ``query_adapter.json`` naming the embedder whose vector space it targets (its
``embedder`` key) with how it was trained and measured. Wherever an embedder is expected, such a
folder resolves to the embedder with the adapter merged in, written once into the cache: both
sentence-transformers and llama.cpp (slmkit.models.query_encoder) then load it like any embedder.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Any

from slmkit.atomic import atomic_folder
from slmkit.errors import InputError
from slmkit.models.adapters import adapter_fingerprint, merged_model

QUERY_ADAPTER_FILE = "query_adapter.json"
WEIGHTS_FILE = "adapter_model.safetensors"
# Merged query encoders kept in the cache (with their GGUFs): see evict_query_encoders.
QUERY_ENCODERS_KEPT = 5


def is_query_adapter(path: Path) -> bool:
    """A folder holding a query adapter (see the module docstring)."""
    return path.is_dir() and (path / QUERY_ADAPTER_FILE).is_file() and (path / WEIGHTS_FILE).is_file()


def read_query_adapter(path: Path) -> dict[str, Any]:
    """The adapter's ``query_adapter.json``.

    Raises:
        InputError: missing, not JSON, or without the ``embedder`` it targets.
    """
    file = path / QUERY_ADAPTER_FILE
    try:
        info = json.loads(file.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as err:
        raise InputError(f"{file}: not a readable query adapter description: {err}") from None
    if not isinstance(info, dict) or not isinstance(info.get("embedder"), str):
        raise InputError(f"{file}: no 'embedder' naming the embedder this adapter was trained for")
    return info


def merged_query_encoder(adapter: Path, cache: Path) -> Path:
    """The embedder of ``adapter`` with the adapter merged in, as a sentence-transformers folder in
    ``cache`` (written once, atomically; keyed by the adapter's weights so a retrained adapter gets
    a new folder).

    Raises:
        InputError: not a query adapter folder.
        ModelNotFoundError: the embedder it targets cannot be found.
    """
    if not is_query_adapter(adapter):
        raise InputError(f"{adapter}: not a query adapter (needs {QUERY_ADAPTER_FILE} and {WEIGHTS_FILE})")
    embedder = read_query_adapter(adapter)["embedder"]
    target = cache / "query-encoders" / f"{adapter.name}-{adapter_fingerprint(adapter)}"
    if (target / "modules.json").is_file():
        os.utime(target)  # used now: the last to be evicted
        return target
    from slmkit.models.embedder import load_embedder

    model = load_embedder(embedder, device="cpu")
    # Merged into the transformer's own weights in place: the sentence-transformers model around it
    # (pooling, normalisation) saves as it loaded.
    merged_model(model[0].auto_model, adapter)
    with atomic_folder(target) as staging:
        model.save(str(staging))
        shutil.copy(adapter / QUERY_ADAPTER_FILE, staging / QUERY_ADAPTER_FILE)
    evict_query_encoders(cache)
    return target


def evict_query_encoders(cache: Path, keep: int = QUERY_ENCODERS_KEPT) -> list[str]:
    """Remove all but the ``keep`` most recently used merged query encoders from ``cache``, with the
    GGUF exported from each (its name starts with the encoder's); returns the names removed.

    Every ``index tune`` run makes a new adapter, and each merged encoder and its GGUF take ~180 MB:
    kept forever they would fill the disk of anyone who tunes often (and of a CI machine, where the
    tests tune). What is evicted is made again, in seconds, if a knowledge base still needs it.
    """
    folder = cache / "query-encoders"
    if not folder.is_dir():
        return []
    merged = sorted(
        (path for path in folder.iterdir() if path.is_dir() and not path.name.startswith(".")),
        key=lambda path: path.stat().st_mtime,
        reverse=True,
    )
    removed = []
    for stale in merged[keep:]:
        shutil.rmtree(stale, ignore_errors=True)
        # A process that has the GGUF open keeps reading it (an unlinked file lives while open).
        for gguf in (cache / "gguf").glob(f"{stale.name}-*.gguf"):
            gguf.unlink(missing_ok=True)
        removed.append(stale.name)
    return removed
