"""Crash-safe files: atomic writes (readers, and a crash, see the old content or the new, never half
of it), and append-only JSONL journals that a resumed job reads back and extends."""

from __future__ import annotations

import contextlib
import json
import logging
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

logger = logging.getLogger(__name__)


def atomic_write_text(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` so readers see either the old or the new content, never a mix."""
    _atomic_write(path, text, "w")


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` so readers see either the old or the new content, never a mix."""
    _atomic_write(path, data, "wb")


def _atomic_write(path: Path, content: str | bytes, mode: str) -> None:
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    # mkstemp creates the file owner-only (0600); give it the mode a plain open() would.
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(tmp, 0o666 & ~umask)
    try:
        with os.fdopen(fd, mode, encoding="utf-8" if mode == "w" else None) as f:
            f.write(content)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


@contextlib.contextmanager
def atomic_folder(target: Path) -> Iterator[Path]:
    """Yield an empty folder beside ``target`` to fill; when the block ends without an error it
    replaces ``target``, otherwise it is removed. Readers never see a half-written ``target``."""
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{target.name}-", dir=target.parent))
    try:
        yield staging
        shutil.rmtree(target, ignore_errors=True)
        staging.rename(target)
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def atomic_write_json(path: Path, data: Any) -> None:
    """:func:`atomic_write_text` of ``data`` as indented JSON (non-JSON values written as strings)."""
    atomic_write_text(path, json.dumps(data, indent=2, ensure_ascii=False, default=str))


def read_journal(path: Path) -> list[str]:
    """The complete lines of an append-only JSONL journal (none if ``path`` does not exist).

    A last line cut off by a crash is dropped and the file truncated to the last complete line, so
    the next :func:`append_journal` starts a line of its own instead of gluing onto the fragment.
    """
    if not path.exists():
        return []
    data = path.read_bytes()
    if data and not data.endswith(b"\n"):
        data = data[: data.rfind(b"\n") + 1]
        os.truncate(path, len(data))
        logger.warning("%s: dropped an incomplete last line (an interrupted write)", path)
    return data.decode("utf-8").splitlines()


def append_journal(journal: IO[str], record: Any) -> None:
    """Append ``record`` as one JSON line to an open journal and push it to disk before returning."""
    journal.write(json.dumps(record, ensure_ascii=False) + "\n")
    journal.flush()
    os.fsync(journal.fileno())
