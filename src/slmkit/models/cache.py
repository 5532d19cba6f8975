"""Where slmkit keeps derived artefacts (dequantized models, assembled GGUFs)."""

from __future__ import annotations

import os
from pathlib import Path


def cache_dir() -> Path:
    """The cache root: ``$SLMKIT_CACHE``, else ``$XDG_CACHE_HOME/slmkit``, else ``~/.cache/slmkit``."""
    if explicit := os.environ.get("SLMKIT_CACHE"):
        return Path(explicit).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base).expanduser() / "slmkit"
