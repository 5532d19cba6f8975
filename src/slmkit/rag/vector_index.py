"""Dense vector search. FAISS is the embedded default; another store (e.g. pgvector) implements the
same :class:`VectorIndex` protocol and slots in behind :class:`~slmkit.rag.retrieval.Retriever`."""

from __future__ import annotations

from pathlib import Path
from typing import Protocol

import faiss
import numpy as np


class VectorIndex(Protocol):
    """Inner-product search over L2-normalised vectors (so scores are cosine similarities)."""

    dim: int

    def __len__(self) -> int: ...

    def add(self, vectors: np.ndarray) -> None:
        """Append vectors; their ids continue from ``len(self)``."""
        ...

    def search(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """Return ``(scores, ids)``, each ``(len(queries), k)``; missing slots have id -1."""
        ...

    def vectors(self, ids: np.ndarray) -> np.ndarray:
        """The stored vectors for ``ids``."""
        ...

    def copy(self) -> VectorIndex:
        """An independent copy: adding to it leaves this index as it was."""
        ...


class FaissIndex:
    """Exact inner-product search (``IndexFlatIP``): at knowledge-base sizes that fit a laptop
    (1e5-1e6 chunks) exact search takes milliseconds and never misses a neighbour."""

    def __init__(self, index: faiss.Index) -> None:
        self._index = index
        self.dim = index.d

    @classmethod
    def empty(cls, dim: int) -> FaissIndex:
        return cls(faiss.IndexFlatIP(dim))

    @classmethod
    def load(cls, path: Path) -> FaissIndex:
        return cls(faiss.read_index(str(path)))

    def save(self, path: Path) -> None:
        faiss.write_index(self._index, str(path))

    def __len__(self) -> int:
        return self._index.ntotal

    def add(self, vectors: np.ndarray) -> None:
        self._index.add(np.ascontiguousarray(vectors, dtype=np.float32))

    def search(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        k = min(k, len(self))
        if k == 0:
            empty = np.zeros((len(queries), 0))
            return empty.astype(np.float32), empty.astype(np.int64)
        return self._index.search(np.ascontiguousarray(queries, dtype=np.float32), k)

    def vectors(self, ids: np.ndarray) -> np.ndarray:
        return self._index.reconstruct_batch(np.asarray(ids, dtype=np.int64))

    def copy(self) -> FaissIndex:
        return FaissIndex(faiss.clone_index(self._index))
