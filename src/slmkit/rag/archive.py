"""What reading a damaged zip archive raises: the container of EPUB, DOCX and PPTX files."""

from __future__ import annotations

import zipfile
import zlib

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

__all__ = ["DAMAGED_ZIP"]
