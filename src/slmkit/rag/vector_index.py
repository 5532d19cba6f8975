"""Dense vector search. FAISS is the embedded default; PostgreSQL with pgvector
(:mod:`slmkit.rag.postgres_store`) implements the same :class:`VectorIndex` protocol, and both slot in
behind :class:`~slmkit.rag.retrieval.Retriever`.

FAISS index types (``index.vector_index.type``):

- ``flat``: exact inner-product search; never misses a neighbour, 4 × dim bytes per vector.
- ``hnsw``: an HNSW graph over the full vectors; approximate, with a recall set by ``ef_search``.
- ``ivf-pq``: vectors clustered (IVF) and compressed by product quantization to ``pq_bytes`` each;
  the clusters are trained once, on the first ``train_size`` vectors of a build, and later vectors
  (including every ``index add``) are only assigned, never retrained.

The approximate types compare L2 distances, which on L2-normalised vectors rank exactly as cosine
similarity does (``|a - b|² = 2 - 2 cos``); scores are converted back to cosines.
"""

from __future__ import annotations

import logging
import math
from pathlib import Path
from typing import Protocol

import faiss
import numpy as np

from slmkit.config import VectorIndexConfig
from slmkit.errors import ConfigError

logger = logging.getLogger(__name__)

# Fewer vectors than this cannot train useful IVF clusters and PQ codebooks (256 centroids each).
MIN_IVF_TRAINING = 1000


class VectorIndex(Protocol):
    """Inner-product search over L2-normalised vectors (so scores are cosine similarities):
    what :class:`~slmkit.rag.retrieval.Retriever` reads. How vectors get in is each store's own."""

    dim: int

    def __len__(self) -> int: ...

    def search(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """Return ``(scores, ids)``, each ``(len(queries), k)``; missing slots have id -1."""
        ...

    def vectors(self, ids: np.ndarray) -> np.ndarray:
        """The stored vectors for ``ids`` (decoded approximations for compressed indexes)."""
        ...


def index_kind(index: faiss.Index) -> str:
    """``flat``, ``hnsw`` or ``ivf-pq``: the type of a FAISS index as the config names it."""
    if isinstance(index, faiss.IndexHNSW):
        return "hnsw"
    if isinstance(index, faiss.IndexIVF):
        return "ivf-pq"
    return "flat"


class FaissIndex:
    """A FAISS index of one of the three types; vector ids are rows, in the order added.

    An ``ivf-pq`` index buffers its first ``train_size`` vectors, trains on them, then adds them and
    every later vector directly; :meth:`save` (or :meth:`finish`) trains on what the buffer holds if
    it never filled.
    """

    def __init__(self, index: faiss.Index | None, config: VectorIndexConfig, dim: int) -> None:
        self._index, self.config, self.dim = index, config, dim
        self._pending: list[np.ndarray] = []  # ivf-pq vectors waiting for training
        self._pending_count = 0
        if index is not None:
            self._set_search_parameters()

    @classmethod
    def empty(cls, dim: int, config: VectorIndexConfig | None = None) -> FaissIndex:
        config = config or VectorIndexConfig()
        if config.type == "flat":
            return cls(faiss.IndexFlatIP(dim), config, dim)
        if config.type == "hnsw":
            index = faiss.IndexHNSWFlat(dim, config.hnsw_m, faiss.METRIC_L2)
            index.hnsw.efConstruction = config.ef_construction
            return cls(index, config, dim)
        _pq_bytes(dim, config)  # fail on a bad setting before any work
        return cls(None, config, dim)

    @classmethod
    def load(cls, path: Path, config: VectorIndexConfig | None = None) -> FaissIndex:
        index = faiss.read_index(str(path))
        return cls(index, config or VectorIndexConfig(type=index_kind(index)), index.d)

    @property
    def kind(self) -> str:
        """The type this index really is (an ``ivf-pq`` too small to train stays ``flat``)."""
        return self.config.type if self._index is None else index_kind(self._index)

    def save(self, path: Path) -> None:
        self.finish()
        faiss.write_index(self._index, str(path))

    def __len__(self) -> int:
        return (self._index.ntotal if self._index is not None else 0) + self._pending_count

    def add(self, vectors: np.ndarray) -> None:
        """Append vectors (ids continue from ``len(self)``); no index is rebuilt or retrained."""
        vectors = np.ascontiguousarray(vectors, dtype=np.float32)
        if self._index is not None:
            self._index.add(vectors)
            return
        self._pending.append(vectors)
        self._pending_count += len(vectors)
        if self._pending_count >= self.config.train_size:
            self.finish()

    def finish(self) -> None:
        """Train an ``ivf-pq`` index on the vectors buffered so far and add them (no-op otherwise)."""
        if self._index is not None:
            return
        sample = np.concatenate(self._pending) if self._pending else np.zeros((0, self.dim), np.float32)
        self._pending, self._pending_count = [], 0
        if len(sample) < MIN_IVF_TRAINING:
            logger.warning(
                "ivf-pq needs at least %d vectors to train; %d chunks are kept in an exact (flat) index",
                MIN_IVF_TRAINING,
                len(sample),
            )
            self._index = faiss.IndexFlatIP(self.dim)
        else:
            self._index = _trained_ivf_pq(sample, self.config)
        self._index.add(sample)
        self._set_search_parameters()

    def search(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        k = min(k, len(self))
        if k == 0:
            empty = np.zeros((len(queries), 0))
            return empty.astype(np.float32), empty.astype(np.int64)
        self.finish()
        scores, ids = self._index.search(np.ascontiguousarray(queries, dtype=np.float32), k)
        if self._index.metric_type == faiss.METRIC_L2:
            scores = np.where(ids >= 0, 1.0 - scores / 2.0, scores).astype(np.float32)
        return scores, ids

    def vectors(self, ids: np.ndarray) -> np.ndarray:
        self.finish()
        if isinstance(self._index, faiss.IndexIVF) and self._index.direct_map.type == faiss.DirectMap.NoMap:
            self._index.make_direct_map()  # once: id -> (list, offset), kept up to date by later adds
        return self._index.reconstruct_batch(np.asarray(ids, dtype=np.int64))

    def copy(self) -> FaissIndex:
        """An independent copy: adding to it leaves this index as it was."""
        self.finish()
        return FaissIndex(faiss.clone_index(self._index), self.config, self.dim)

    def _set_search_parameters(self) -> None:
        if isinstance(self._index, faiss.IndexHNSW):
            self._index.hnsw.efSearch = self.config.ef_search
        elif isinstance(self._index, faiss.IndexIVF):
            self._index.nprobe = self.config.nprobe


def _pq_bytes(dim: int, config: VectorIndexConfig) -> int:
    if config.pq_bytes is None:
        # dim / 8 bytes (48 for 384-dim MiniLM vectors: 32x smaller than flat), or the nearest
        # smaller divisor of dim.
        return next(m for m in range(max(1, dim // 8), 0, -1) if dim % m == 0)
    if dim % config.pq_bytes:
        raise ConfigError(
            f"index.vector_index.pq_bytes ({config.pq_bytes}) must divide the embedding width ({dim})"
        )
    return config.pq_bytes


def _trained_ivf_pq(sample: np.ndarray, config: VectorIndexConfig) -> faiss.Index:
    dim = sample.shape[1]
    lists = config.ivf_lists or int(4 * math.sqrt(len(sample)))
    lists = max(1, min(lists, len(sample) // 39))  # FAISS wants at least 39 training points per list
    quantizer = faiss.IndexFlatL2(dim)
    index = faiss.IndexIVFPQ(quantizer, dim, lists, _pq_bytes(dim, config), 8, faiss.METRIC_L2)
    logger.info("training ivf-pq (%d lists) on %d vectors", lists, len(sample))
    index.train(sample)
    return index
