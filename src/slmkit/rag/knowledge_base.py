"""A knowledge base: chunks of your documents, their embeddings (FAISS) and a BM25 index, on disk."""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np

from slmkit import __version__
from slmkit.config import IndexConfig
from slmkit.errors import KnowledgeBaseError
from slmkit.rag.chunking import chunk_documents
from slmkit.rag.documents import Chunk
from slmkit.rag.ingest import read_sources
from slmkit.rag.lexical_index import BM25Index
from slmkit.rag.storage import current_version, new_version, write_lock
from slmkit.rag.vector_index import FaissIndex

logger = logging.getLogger(__name__)

FORMAT_VERSION = 1


@dataclass(frozen=True)
class IngestReport:
    """What a build or add did."""

    documents: int
    chunks_added: int
    duplicates_skipped: int
    seconds: float

    @property
    def chunks_per_second(self) -> float:
        return self.chunks_added / self.seconds if self.seconds > 0 else 0.0


class KnowledgeBase:
    """Chunks, dense and lexical indexes, and the manifest describing how they were made.

    Build with :meth:`build`, extend with :meth:`add`, open with :meth:`open`. Every write is
    atomic (see :mod:`slmkit.rag.storage`).
    """

    def __init__(
        self,
        path: Path,
        manifest: dict[str, Any],
        chunks: list[Chunk],
        dense: FaissIndex,
        lexical: BM25Index,
        embedder: Any = None,
    ) -> None:
        self.path, self.manifest, self.chunks = path, manifest, chunks
        self.dense, self.lexical = dense, lexical
        self._embedder = embedder

    # -- reading -----------------------------------------------------------------------------
    @classmethod
    def open(cls, path: str | Path, embedder: Any = None) -> KnowledgeBase:
        """Open the live version of the knowledge base at ``path``.

        Raises:
            KnowledgeBaseError: missing, not a knowledge base, or written by an incompatible version.
        """
        path = Path(path)
        version = current_version(path)
        manifest = json.loads((version / "manifest.json").read_text(encoding="utf-8"))
        if manifest.get("format") != FORMAT_VERSION:
            raise KnowledgeBaseError(f"{path}: format {manifest.get('format')} is not supported; rebuild it")
        chunks = _read_chunks(version / "chunks.jsonl")
        dense = FaissIndex.load(version / "dense.faiss")
        lexical = BM25Index.load(version / "bm25", len(chunks))
        return cls(path, manifest, chunks, dense, lexical, embedder)

    @property
    def config(self) -> IndexConfig:
        return IndexConfig.model_validate(self.manifest["config"])

    @property
    def embedder(self) -> Any:
        """The sentence-transformers model the chunks were embedded with (loaded on first use)."""
        if self._embedder is None:
            from slmkit.models.embedder import load_embedder

            self._embedder = load_embedder(self.manifest["config"]["embedder"])
        return self._embedder

    def embed(self, texts: Sequence[str], progress: bool = False) -> np.ndarray:
        """L2-normalised embeddings of ``texts`` (so inner product = cosine similarity)."""
        return self.embedder.encode(
            list(texts),
            batch_size=self.config.batch_size,
            normalize_embeddings=True,
            convert_to_numpy=True,
            show_progress_bar=progress,
        ).astype(np.float32)

    def info(self) -> dict[str, Any]:
        """Counts, model and sizes, as ``slmkit index info`` prints them."""
        version = current_version(self.path)
        sizes = {p.name: p.stat().st_size for p in version.iterdir() if p.is_file()}
        sizes["bm25"] = sum(p.stat().st_size for p in (version / "bm25").rglob("*") if p.is_file())
        return {
            "path": str(self.path),
            "version": version.name,
            "chunks": len(self.chunks),
            "documents": self.manifest["documents"],
            "sources": len(self.manifest["sources"]),
            "embedder": self.manifest["config"]["embedder"],
            "embedding_dim": self.dense.dim,
            "chunk_tokens": self.manifest["config"]["chunking"]["chunk_tokens"],
            "overlap_tokens": self.manifest["config"]["chunking"]["overlap_tokens"],
            "bytes": sizes,
            "total_bytes": sum(sizes.values()),
            "created": self.manifest["created"],
            "updated": self.manifest["updated"],
        }

    # -- writing -----------------------------------------------------------------------------
    @classmethod
    def build(
        cls,
        path: str | Path,
        sources: Sequence[str | Path],
        config: IndexConfig | None = None,
        embedder: Any = None,
        progress: bool = True,
    ) -> tuple[KnowledgeBase, IngestReport]:
        """Create (or replace) the knowledge base at ``path`` from ``sources``.

        The previous contents, if any, stay live until the new version is complete.
        """
        config = config or IndexConfig()
        now = _now()
        empty = cls(
            Path(path),
            {
                "format": FORMAT_VERSION,
                "config": config.model_dump(),
                "created": now,
                "updated": now,
                "documents": 0,
                "sources": {},
                "slmkit": __version__,
            },
            [],
            FaissIndex.empty(0),
            BM25Index.build([]),
            embedder,
        )
        return empty._write_with(sources, progress)

    def add(self, sources: Sequence[str | Path], progress: bool = True) -> tuple[KnowledgeBase, IngestReport]:
        """Append ``sources``; chunks whose content is already present are skipped.

        Only the new chunks are embedded: the vector index is a copy of this version's with their
        vectors appended, and the BM25 index is rebuilt from this version's stored tokens plus theirs.
        The result equals building from all the sources at once. Returns the updated knowledge base
        (this object is left as it was) and a report.
        """
        return self._write_with(sources, progress)

    def _write_with(
        self, sources: Sequence[str | Path], progress: bool
    ) -> tuple[KnowledgeBase, IngestReport]:
        start = time.perf_counter()
        config = self.config
        documents = list(read_sources(sources, config.ingest))
        candidates = chunk_documents(
            documents, self.embedder.tokenizer, config.chunking, start_id=len(self.chunks)
        )
        seen = {c.hash for c in self.chunks}
        fresh: list[Chunk] = []
        for chunk in candidates:
            if chunk.hash not in seen:
                seen.add(chunk.hash)
                fresh.append(_renumber(chunk, len(self.chunks) + len(fresh)))
        chunks = self.chunks + fresh
        # Copied, so this object stays as it was; a build starts empty at the embedder's width.
        width = self.embedder.get_embedding_dimension()
        dense = self.dense.copy() if self.chunks else FaissIndex.empty(width)
        if fresh:
            dense.add(self.embed([c.text for c in fresh], progress=progress))
        lexical = self.lexical.extended([c.text for c in self.chunks], [c.text for c in fresh])
        manifest = dict(self.manifest, updated=_now(), documents=self.manifest["documents"] + len(documents))
        manifest["sources"] = dict(self.manifest["sources"])
        for chunk in fresh:
            manifest["sources"][chunk.source] = manifest["sources"].get(chunk.source, 0) + 1
        manifest["embedding_dim"] = dense.dim

        with write_lock(self.path), new_version(self.path) as staging:
            _write_chunks(staging / "chunks.jsonl", chunks)
            dense.save(staging / "dense.faiss")
            lexical.save(staging / "bm25")
            (staging / "manifest.json").write_text(json.dumps(manifest, indent=2), encoding="utf-8")
        report = IngestReport(
            len(documents), len(fresh), len(candidates) - len(fresh), time.perf_counter() - start
        )
        logger.info(
            "%s: +%d chunks, %d duplicates skipped", self.path, report.chunks_added, report.duplicates_skipped
        )
        return KnowledgeBase(self.path, manifest, chunks, dense, lexical, self._embedder), report


def _renumber(chunk: Chunk, new_id: int) -> Chunk:
    data = chunk.to_dict()
    data["id"] = new_id
    return Chunk.from_dict(data)


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def _write_chunks(path: Path, chunks: Sequence[Chunk]) -> None:
    with path.open("w", encoding="utf-8") as f:
        for chunk in chunks:
            f.write(json.dumps(chunk.to_dict(), ensure_ascii=False) + "\n")


def _read_chunks(path: Path) -> list[Chunk]:
    with path.open(encoding="utf-8") as f:
        return [Chunk.from_dict(json.loads(line)) for line in f if line.strip()]
