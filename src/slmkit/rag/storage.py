"""Crash-safe on-disk layout of a knowledge base.

A knowledge base folder holds numbered versions and a ``CURRENT`` file naming the live one::

    kb/CURRENT          -> "v000002"
    kb/v000002/         manifest.json, chunks.jsonl, dense.faiss, bm25/

A write builds a complete new version in a temporary folder, renames it into place, then replaces
``CURRENT`` atomically. Readers only ever see a complete version, and a build that is interrupted
(Ctrl-C, kill -9, power loss) leaves the previous version live and intact.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import re
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

from slmkit.atomic import atomic_write_text
from slmkit.errors import KnowledgeBaseError

_VERSION = re.compile(r"^v(\d{6})$")
CURRENT = "CURRENT"


def current_version(kb: Path) -> Path:
    """The live version folder of knowledge base ``kb``.

    Raises:
        KnowledgeBaseError: ``kb`` is missing or is not a knowledge base.
    """
    marker = kb / CURRENT
    if not marker.is_file():
        if not kb.exists():
            raise KnowledgeBaseError(
                f"{kb}: no such knowledge base; create it with `slmkit index build SOURCES --kb {kb}`"
            )
        raise KnowledgeBaseError(
            f"{kb}: not a knowledge base (no {CURRENT} file); build one with `slmkit index build`"
        )
    version = kb / marker.read_text(encoding="utf-8").strip()
    if not version.is_dir():
        raise KnowledgeBaseError(
            f"{kb}: {CURRENT} names {version.name}, which is missing; rebuild the knowledge base"
        )
    return version


@contextlib.contextmanager
def write_lock(kb: Path) -> Iterator[None]:
    """Hold an exclusive lock on ``kb`` so two writers never interleave."""
    kb.mkdir(parents=True, exist_ok=True)
    with open(kb / ".lock", "w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


@contextlib.contextmanager
def new_version(kb: Path) -> Iterator[Path]:
    """Yield an empty folder to write the next version into; publish it only if the block succeeds.

    Must be used under :func:`write_lock`. On any exception the partial folder is removed and the
    previous version stays live.

    Raises:
        KnowledgeBaseError: see :func:`check_writable`.
    """
    check_writable(kb)
    staging = Path(tempfile.mkdtemp(prefix=".staging-", dir=kb))
    try:
        yield staging
        numbers = [int(_VERSION.match(p.name).group(1)) for p in _versions(kb)]
        target = kb / f"v{max(numbers, default=0) + 1:06d}"
        _fsync_tree(staging)
        staging.rename(target)
        atomic_write_text(kb / CURRENT, target.name)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    _remove_stale(kb, keep=target.name)


def check_writable(kb: Path) -> None:
    """Refuse to write a knowledge base into a folder that holds something else.

    Raises:
        KnowledgeBaseError: ``kb`` exists, is not empty and is not a knowledge base.
    """
    if kb.exists() and any(kb.iterdir()) and not (kb / CURRENT).exists() and _versions(kb) == []:
        unexpected = [p.name for p in kb.iterdir() if not p.name.startswith(".")]
        if unexpected:
            raise KnowledgeBaseError(
                f"{kb}: folder exists and is not a knowledge base "
                f"(holds {', '.join(sorted(unexpected)[:5])}); "
                "choose another --kb path so nothing there is overwritten"
            )


def _versions(kb: Path) -> list[Path]:
    return sorted(p for p in kb.iterdir() if p.is_dir() and _VERSION.match(p.name)) if kb.exists() else []


def _fsync_tree(folder: Path) -> None:
    for path in folder.rglob("*"):
        if path.is_file():
            with open(path, "rb") as f:
                os.fsync(f.fileno())


def _remove_stale(kb: Path, keep: str) -> None:
    for path in kb.iterdir():
        if (
            path.is_dir()
            and path.name != keep
            and (_VERSION.match(path.name) or path.name.startswith(".staging-"))
        ):
            shutil.rmtree(path, ignore_errors=True)
