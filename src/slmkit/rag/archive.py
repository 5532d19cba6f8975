"""Damaged zip archives (the container of EPUB, DOCX and PPTX files): what reading one raises, and
what slmkit says of it."""

from __future__ import annotations

import zipfile
import zlib
from pathlib import Path

from slmkit.errors import InputError

# A truncated download or a damaged archive fails in the zip reader as any of these: a bad header
# or a member failing its CRC (BadZipFile), a member cut short (EOFError), a broken deflate stream
# (zlib.error), a zip version or compression method zipfile lacks (NotImplementedError), or a
# password (RuntimeError). To the user they all mean the same thing: the file is damaged.
DAMAGED_ZIP: tuple[type[Exception], ...] = (
    zipfile.BadZipFile,
    EOFError,
    zlib.error,
    NotImplementedError,
    RuntimeError,
)


def unreadable_office_file(path: str | Path, err: Exception, kind: str, suffix: str) -> InputError:
    """The error for an Office file (``kind`` "Word", ``suffix`` ".docx") that cannot be read: most
    often a legacy binary file (".doc") renamed, or a download cut short."""
    return InputError(
        f"{path}: not a readable {kind} {suffix} file ({err or type(err).__name__}). Legacy "
        f"{suffix[:-1]} files must be saved as {suffix} first; otherwise check that the file is complete."
    )


__all__ = ["DAMAGED_ZIP", "unreadable_office_file"]
