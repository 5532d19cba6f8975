"""The chunks of a knowledge-base version on disk, read one at a time, written in batches.

``chunks.jsonl`` holds one chunk per line, row ``i`` being chunk id ``i``. Beside it,
``chunks.offsets.npy`` (the byte offset of each line, and the file's length) lets a reader fetch any
chunk without reading the others, and ``chunks.keys.npy`` (the first 64 bits of each chunk's content
hash) lets an add skip duplicates without parsing every chunk. Memory is 16 bytes per chunk; texts
stay on disk. Versions written before these two files existed are scanned once when opened.
"""

from __future__ import annotations

import json
import os
import shutil
from array import array
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import overload

import numpy as np

from slmkit.rag.documents import Chunk

CHUNKS_FILE = "chunks.jsonl"
OFFSETS_FILE = "chunks.offsets.npy"
KEYS_FILE = "chunks.keys.npy"


def hash_key(content_hash: str) -> int:
    """The first 64 bits of a chunk's SHA-256 content hash, as an unsigned integer."""
    return int(content_hash[:16], 16)


class ChunkFile(Sequence[Chunk]):
    """The chunks of one version, as a sequence: ``chunks[i]``, slices, ``len`` and iteration."""

    def __init__(self, folder: Path) -> None:
        self.path = folder / CHUNKS_FILE
        offsets_path = folder / OFFSETS_FILE
        # Opened now, not on first use: a later writer may remove this version's folder, and an open
        # descriptor (and memory map) keeps reading the file it names.
        self._fd = os.open(self.path, os.O_RDONLY)
        if offsets_path.is_file():
            self._offsets = np.load(offsets_path, mmap_mode="r")
        else:
            self._offsets = _scan_offsets(self.path)
        keys_path = folder / KEYS_FILE
        self._keys = np.load(keys_path, mmap_mode="r") if keys_path.is_file() else None

    def __del__(self) -> None:
        fd = getattr(self, "_fd", None)
        if fd is not None:
            os.close(fd)

    def __len__(self) -> int:
        return len(self._offsets) - 1

    @overload
    def __getitem__(self, index: int) -> Chunk: ...

    @overload
    def __getitem__(self, index: slice) -> list[Chunk]: ...

    def __getitem__(self, index: int | slice) -> Chunk | list[Chunk]:
        if isinstance(index, slice):
            return [self[i] for i in range(*index.indices(len(self)))]
        if index < 0:
            index += len(self)
        if not 0 <= index < len(self):
            raise IndexError(f"chunk id {index} out of range (the knowledge base holds {len(self)} chunks)")
        start, end = int(self._offsets[index]), int(self._offsets[index + 1])
        return Chunk.from_dict(json.loads(os.pread(self._fd, end - start, start)))

    def __iter__(self) -> Iterator[Chunk]:
        with self.path.open(encoding="utf-8") as f:
            for line in f:
                if line.strip():
                    yield Chunk.from_dict(json.loads(line))

    def keys(self) -> np.ndarray:
        """The 64-bit content-hash keys of every chunk, in id order."""
        if self._keys is None:
            self._keys = np.fromiter((hash_key(c.hash) for c in self), dtype=np.uint64, count=len(self))
        return np.asarray(self._keys)


class ChunkFileWriter:
    """Writes a new version's chunk files: this version's chunks (copied as bytes), then new ones.

    Example:
        >>> writer = ChunkFileWriter(staging, previous)
        >>> fresh = writer.fresh(candidates)   # duplicates dropped, ids assigned
        >>> writer.append(fresh)
        >>> writer.close()
    """

    def __init__(self, folder: Path, previous: ChunkFile | None) -> None:
        self.folder = folder
        path = folder / CHUNKS_FILE
        self._offsets = array("q", [0])
        self._keys = array("Q")
        known = np.zeros(0, dtype=np.uint64)
        if previous is not None and len(previous):
            shutil.copyfile(previous.path, path)
            self._offsets = array("q", np.asarray(previous._offsets, dtype=np.int64).tolist())
            known = previous.keys()
            self._keys = array("Q", known.tolist())
        self._known = np.sort(known)
        self._new_keys: set[int] = set()
        self._file = path.open("ab")

    def __len__(self) -> int:
        return len(self._offsets) - 1

    def fresh(self, candidates: Sequence[Chunk]) -> list[Chunk]:
        """The candidates whose content is not yet written (nor earlier in ``candidates``),
        renumbered to follow the chunks written so far."""
        fresh: list[Chunk] = []
        for chunk in candidates:
            key = hash_key(chunk.hash)
            if key in self._new_keys or _contains(self._known, key):
                continue
            self._new_keys.add(key)
            fresh.append(_renumber(chunk, len(self) + len(fresh)))
        return fresh

    def append(self, chunks: Sequence[Chunk]) -> None:
        for chunk in chunks:
            line = (json.dumps(chunk.to_dict(), ensure_ascii=False) + "\n").encode("utf-8")
            self._file.write(line)
            self._offsets.append(self._offsets[-1] + len(line))
            self._keys.append(hash_key(chunk.hash))

    def close(self) -> None:
        self._file.close()
        np.save(self.folder / OFFSETS_FILE, np.frombuffer(self._offsets, dtype=np.int64))
        np.save(self.folder / KEYS_FILE, np.frombuffer(self._keys, dtype=np.uint64))


def _contains(sorted_keys: np.ndarray, key: int) -> bool:
    at = int(np.searchsorted(sorted_keys, np.uint64(key)))
    return at < len(sorted_keys) and int(sorted_keys[at]) == key


def _renumber(chunk: Chunk, new_id: int) -> Chunk:
    data = chunk.to_dict()
    data["id"] = new_id
    return Chunk.from_dict(data)


def _scan_offsets(path: Path) -> np.ndarray:
    offsets = array("q", [0])
    with path.open("rb") as f:
        for line in f:
            if line.strip():
                offsets.append(offsets[-1] + len(line))
            else:  # a blank line belongs to no chunk: fold it into the next one's start
                offsets[-1] += len(line)
    return np.frombuffer(offsets, dtype=np.int64)
