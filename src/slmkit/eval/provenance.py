"""What a result needs to be reproduced: command, config, library versions, data and model hashes."""

from __future__ import annotations

import hashlib
import platform
import shlex
import sys
from datetime import datetime, timezone
from importlib import metadata
from pathlib import Path
from typing import Any

LIBRARIES = (
    "slmkit",
    "torch",
    "transformers",
    "peft",
    "sentence-transformers",
    "faiss-cpu",
    "bm25s",
    "rouge-score",
    "sacrebleu",
    "bert-score",
    "lm-eval",
)
_WEIGHT_SUFFIXES = (".safetensors", ".bin", ".gguf")


def library_versions() -> dict[str, str]:
    """Installed versions of the libraries that shape a number (absent ones are left out)."""
    versions = {"python": platform.python_version()}
    for name in LIBRARIES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    return versions


def file_sha256(path: Path, chunk: int = 1 << 22) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        while block := f.read(chunk):
            digest.update(block)
    return digest.hexdigest()


def weight_files(folder: Path | None) -> list[Path]:
    if folder is None or not folder.is_dir():
        return []
    return sorted(p for p in folder.iterdir() if p.suffix in _WEIGHT_SUFFIXES)


def model_fingerprint(folder: Path | None) -> dict[str, Any]:
    """SHA-256 of each weight file and their total size (empty for hub models loaded by id)."""
    files = weight_files(folder)
    return {
        "folder": str(folder) if folder else None,
        "sha256": {p.name: file_sha256(p) for p in files},
        "size_bytes": sum(p.stat().st_size for p in files),
    }


def provenance(config: dict[str, Any], **extra: Any) -> dict[str, Any]:
    """The record every result file carries (``extra``: model and data hashes, KB version, ...)."""
    return {
        "command": shlex.join(["slmkit", *sys.argv[1:]]) if Path(sys.argv[0]).name == "slmkit" else None,
        "argv": list(sys.argv),
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "config": config,
        "versions": library_versions(),
        "platform": platform.platform(),
        **extra,
    }
