"""A knowledge base: chunks of your documents, their embeddings and a keyword index, in files (FAISS +
BM25, versioned folders) or in PostgreSQL (pgvector + full-text search, :mod:`slmkit.rag.postgres_store`).

A build or add streams: documents are read, chunked, embedded and written ``write_batch`` chunks at
a time, so memory holds one batch of text whatever the corpus size (plus the vector index itself).
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import shutil
import time
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Protocol

import numpy as np
from tqdm.auto import tqdm

from slmkit import __version__
from slmkit.atomic import atomic_folder
from slmkit.config import IndexConfig
from slmkit.data.prompts import titled_text
from slmkit.errors import KnowledgeBaseError
from slmkit.rag.chunk_file import ChunkFile, ChunkFileWriter
from slmkit.rag.chunking import chunk_documents
from slmkit.rag.documents import Chunk, Document
from slmkit.rag.ingest import read_sources
from slmkit.rag.lexical_index import BM25Index, BM25Writer
from slmkit.rag.storage import check_writable, current_version, new_version, write_lock
from slmkit.rag.vector_index import FaissIndex, VectorIndex

logger = logging.getLogger(__name__)

FORMAT_VERSION = 1
# Query adapters a knowledge base holds (``slmkit index tune``), beside its version folders.
QUERY_ADAPTERS = "query-adapters"


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


class KnowledgeBaseWriter(Protocol):
    """Where a build or add writes: a new version folder, or a PostgreSQL transaction."""

    base_manifest: dict[str, Any]

    def fresh(self, candidates: Sequence[Chunk]) -> list[Chunk]:
        """The candidates not yet stored (nor earlier in this write), with their new ids."""
        ...

    def append(self, chunks: Sequence[Chunk], vectors: np.ndarray) -> None: ...

    def finish(self, manifest: dict[str, Any], progress: bool = False) -> None:
        """Write the manifest; the content is published when the writer's context exits cleanly.
        ``progress``: show a bar for index building that takes long (BM25 over a large corpus, a
        server's HNSW build)."""
        ...

    def opened(self, embedder: Any) -> KnowledgeBase:
        """The knowledge base as published (call after the context exits)."""
        ...


class KnowledgeBase:
    """Chunks, dense and lexical indexes, and the manifest describing how they were made.

    Build with :meth:`build`, extend with :meth:`add`, open with :meth:`open`. Every write is
    atomic (see :mod:`slmkit.rag.storage`, and transactions for a PostgreSQL store).

    Attributes:
        chunks: A sequence of :class:`Chunk` (row ``i`` is chunk id ``i``), read on demand.
        dense: The vector index (:class:`~slmkit.rag.vector_index.VectorIndex`).
        lexical: The keyword index (``search(query, k)``).
        store: The :class:`~slmkit.rag.postgres_store.PostgresStore` holding it, or None for files.
    """

    def __init__(
        self,
        path: Path,
        manifest: dict[str, Any],
        chunks: Sequence[Chunk],
        dense: VectorIndex,
        lexical: Any,
        embedder: Any = None,
        store: Any = None,
    ) -> None:
        self.path, self.manifest, self.chunks = path, manifest, chunks
        self.dense, self.lexical = dense, lexical
        self._embedder = embedder
        self._query_encoders: dict[str, Any] = {}
        self._query_model: Any = None
        self.store = store

    # -- reading -----------------------------------------------------------------------------
    @classmethod
    def open(cls, path: str | Path, embedder: Any = None) -> KnowledgeBase:
        """Open the live version of the knowledge base at ``path`` (its files, or the PostgreSQL
        store its manifest names).

        Raises:
            KnowledgeBaseError: missing, not a knowledge base, written by an incompatible version,
                or a PostgreSQL store that cannot be reached.
        """
        path = Path(path)
        version = current_version(path)
        manifest = json.loads((version / "manifest.json").read_text(encoding="utf-8"))
        if manifest.get("format") != FORMAT_VERSION:
            raise KnowledgeBaseError(f"{path}: format {manifest.get('format')} is not supported; rebuild it")
        if manifest.get("store"):
            from slmkit.rag.postgres_store import PostgresStore

            kb = PostgresStore.open(manifest["store"], manifest["table"], str(path)).knowledge_base(
                path, embedder
            )
            for key in ("query_embedder", "retrieval"):  # set by `tuned` in the folder's pointer
                if manifest.get(key):
                    kb.manifest[key] = manifest[key]
            return kb
        config = _index_config(manifest)
        chunks = ChunkFile(version)
        dense = FaissIndex.load(version / "dense.faiss", config.vector_index)
        lexical = BM25Index.load(version / "bm25", len(chunks))
        return cls(path, manifest, chunks, dense, lexical, embedder)

    @property
    def config(self) -> IndexConfig:
        return _index_config(self.manifest)

    def indexed_texts(self, chunks: Iterable[Chunk]) -> Iterator[str]:
        """What the embedder and BM25 index for ``chunks`` (see ``IndexConfig.chunk_titles``)."""
        titles = self.config.chunk_titles
        return (titled_text(c.title, c.text) if titles else c.text for c in chunks)

    @property
    def embedder(self) -> Any:
        """The sentence-transformers model the chunks were embedded with (loaded on first use)."""
        if self._embedder is None:
            from slmkit.models.embedder import load_embedder

            self._embedder = load_embedder(self.manifest["config"]["embedder"])
        return self._embedder

    def embed(self, texts: Sequence[str], progress: bool = False) -> np.ndarray:
        """L2-normalised embeddings of ``texts`` (so inner product = cosine similarity)."""
        return self._encode(self.embedder, texts, progress)

    def _encode(self, model: Any, texts: Sequence[str], progress: bool = False) -> np.ndarray:
        return model.encode(
            list(texts),
            batch_size=self.config.batch_size,
            normalize_embeddings=True,
            convert_to_numpy=True,
            show_progress_bar=progress,
        ).astype(np.float32)

    def embed_queries(self, questions: Sequence[str], engine: str = "auto") -> np.ndarray:
        """Embeddings of questions for search, like :meth:`embed` but on ``engine`` (``auto``: llama.cpp
        where installed, which starts in a fraction of a second; see slmkit.models.query_encoder). An
        embedder handed to this knowledge base (tests, callers that already hold one) is used as is,
        unless questions go through a query adapter (``slmkit index tune``): the adapter then wins.
        """
        if self._embedder is not None and self.query_embedder == self.config.embedder:
            return self.embed(questions)
        if engine not in self._query_encoders:
            from slmkit.models.query_encoder import load_query_encoder

            name = self.query_embedder
            fallback = self.embed if name == self.config.embedder else self._embed_with_query_model
            self._query_encoders[engine] = load_query_encoder(name, engine, fallback)
        return self._query_encoders[engine](questions)

    @property
    def query_embedder(self) -> str:
        """What embeds questions (``index.query_embedder``): the embedder, or a query adapter, such as
        the one ``slmkit index tune`` wrote into this knowledge base (a path relative to it)."""
        name = self.manifest.get("query_embedder") or self.config.query_embedder or self.config.embedder
        held = self.path / name
        return str(held) if not Path(name).is_absolute() and held.is_dir() else name

    @property
    def lexical_weight(self) -> float | None:
        """The hybrid fusion weight chosen for this knowledge base by ``slmkit index tune`` on its own
        question pairs (``retrieval.lexical_weight`` when a configuration leaves it unset), or None."""
        weight = self.manifest.get("retrieval", {}).get("lexical_weight")
        return float(weight) if weight is not None else None

    def _embed_with_query_model(self, questions: Sequence[str]) -> np.ndarray:
        if self._query_model is None:
            from slmkit.models.embedder import load_embedder

            self._query_model = load_embedder(self.query_embedder)
        return self._encode(self._query_model, questions)

    def info(self) -> dict[str, Any]:
        """Counts, model and sizes, as ``slmkit index info`` prints them."""
        info: dict[str, Any] = {"path": str(self.path)}
        if self.store is not None:
            info.update(store=self.store.address, table=self.store.table)
            sizes = self.store.sizes()
        else:
            version = current_version(self.path)
            info["version"] = version.name
            sizes = {p.name: p.stat().st_size for p in version.iterdir() if p.is_file()}
            sizes["bm25"] = sum(p.stat().st_size for p in (version / "bm25").rglob("*") if p.is_file())
        return {
            **info,
            "chunks": len(self.chunks),
            "documents": self.manifest["documents"],
            "sources": len(self.manifest["sources"]),
            "embedder": self.manifest["config"]["embedder"],
            "query_embedder": self.query_embedder,
            "lexical_weight": self.lexical_weight,  # None: the configuration's (index tune sets it)
            "embedding_dim": self.dense.dim,
            "vector_index": self.manifest.get("vector_index", "flat"),
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

        The previous contents, if any, stay live until the new ones are complete: a new version
        folder is published, or for a PostgreSQL store (``config.store``) one transaction commits.
        """
        config = config or IndexConfig()
        now = _now()
        manifest = {
            "format": FORMAT_VERSION,
            "config": config.model_dump(),
            "created": now,
            "updated": now,
            "documents": 0,
            "sources": {},
            "chunks": 0,
            "slmkit": __version__,
        }
        empty = cls(Path(path), manifest, [], FaissIndex.empty(0), None, embedder)
        if not config.store:
            return empty._write_with(sources, progress, _FolderWriter(empty))
        from slmkit.rag.postgres_store import PostgresStore

        check_writable(empty.path)  # before the build, not after it
        store = PostgresStore.for_build(config.store, empty.path)
        manifest["config"]["store"] = f"{store.address}#{store.table}"  # never a password
        dim = empty.embedder.get_embedding_dimension()
        kb, report = empty._write_with(sources, progress, store.writer(manifest, replace=True, dim=dim))
        # The folder records where the knowledge base lives, once its content is committed.
        with write_lock(empty.path), new_version(empty.path) as staging:
            pointer = {"format": FORMAT_VERSION, "store": store.address, "table": store.table}
            (staging / "manifest.json").write_text(json.dumps(pointer, indent=2), encoding="utf-8")
        return kb, report

    def add(self, sources: Sequence[str | Path], progress: bool = True) -> tuple[KnowledgeBase, IngestReport]:
        """Append ``sources``; chunks whose content is already present are skipped.

        Only the new chunks are embedded and tokenized: their vectors are added to (a copy of) this
        version's vector index, which is neither rebuilt nor retrained, and the BM25 index is rebuilt
        from this version's stored tokens plus theirs. The result equals building from all the
        sources at once. Returns the updated knowledge base (this object is left as it was) and a
        report. In a PostgreSQL store the add is one transaction, seen by every reader at commit.
        """
        if self.store is not None:
            return self._write_with(sources, progress, self.store.writer(self.manifest, replace=False))
        return self._write_with(sources, progress, _FolderWriter(self))

    def tuned(self, query_adapter: Path | None = None, lexical_weight: float | None = None) -> KnowledgeBase:
        """Publish a new version that embeds questions through ``query_adapter`` (a query adapter
        folder, see slmkit.models.query_adapter; copied into ``query-adapters/`` of the knowledge base)
        and/or fuses hybrid rankings at ``lexical_weight`` (see :attr:`lexical_weight`): what ``slmkit
        index tune`` learnt. Chunks and vectors stay as they are (the files are hard-linked into the
        new version): until the new version is published, which is atomic, the previous one stays live.

        Raises:
            KnowledgeBaseError: ``query_adapter`` is not a query adapter, or targets another embedder;
                ``lexical_weight`` is outside [0, 1].
        """
        if lexical_weight is not None and not 0.0 <= lexical_weight <= 1.0:
            raise KnowledgeBaseError(f"lexical_weight {lexical_weight} is outside [0, 1]")
        relative = self._check_query_adapter(query_adapter) if query_adapter is not None else None
        with write_lock(self.path):
            if query_adapter is not None:
                with atomic_folder(self.path / relative) as copied:
                    shutil.copytree(query_adapter, copied, dirs_exist_ok=True)
            version = current_version(self.path)
            with new_version(self.path) as staging:
                # The version's files are never changed once published: hard links share them.
                for item in version.iterdir():
                    if item.is_dir():
                        shutil.copytree(item, staging / item.name, copy_function=_link_or_copy)
                    elif item.name != "manifest.json":
                        _link_or_copy(item, staging / item.name)
                manifest = json.loads((version / "manifest.json").read_text(encoding="utf-8"))
                # A PostgreSQL store's pointer: its manifest lives in the database.
                pointer = "store" in manifest
                if relative is not None:
                    if pointer:
                        manifest["query_embedder"] = relative
                    else:
                        manifest["config"]["query_embedder"] = relative
                if lexical_weight is not None:
                    retrieval = {**manifest.get("retrieval", {}), "lexical_weight": lexical_weight}
                    manifest["retrieval"] = retrieval
                if not pointer:
                    manifest["updated"] = _now()
                (staging / "manifest.json").write_text(json.dumps(manifest, indent=2), encoding="utf-8")
        return KnowledgeBase.open(self.path, self._embedder)

    def _check_query_adapter(self, adapter: Path) -> str:
        """Where ``adapter`` will be kept in the knowledge base, once checked to fit it."""
        from slmkit.models.query_adapter import is_query_adapter, read_query_adapter

        adapter = Path(adapter)
        if not is_query_adapter(adapter):
            raise KnowledgeBaseError(f"{adapter}: not a query adapter folder")
        target = read_query_adapter(adapter)["embedder"]
        if target != self.config.embedder:
            raise KnowledgeBaseError(
                f"{adapter}: trained for embedder '{target}', but {self.path} is embedded with "
                f"'{self.config.embedder}'"
            )
        return f"{QUERY_ADAPTERS}/{datetime.now(timezone.utc):%Y%m%dT%H%M%S%f}"

    def _write_with(
        self, sources: Sequence[str | Path], progress: bool, writer: Any
    ) -> tuple[KnowledgeBase, IngestReport]:
        start = time.perf_counter()
        with writer:
            documents, candidates, added = self._ingest(sources, writer, progress)
            manifest = dict(writer.base_manifest, updated=_now())
            manifest["documents"] = manifest["documents"] + documents
            manifest["sources"] = dict(manifest["sources"])
            for source, count in added.items():
                manifest["sources"][source] = manifest["sources"].get(source, 0) + count
            manifest["chunks"] = manifest.get("chunks", 0) + sum(added.values())
            writer.finish(manifest, progress)
        kb = writer.opened(self._embedder)
        count = sum(added.values())
        report = IngestReport(documents, count, candidates - count, time.perf_counter() - start)
        logger.info(
            "%s: +%d chunks, %d duplicates skipped", self.path, report.chunks_added, report.duplicates_skipped
        )
        return kb, report

    def _ingest(
        self, sources: Sequence[str | Path], writer: KnowledgeBaseWriter, progress: bool
    ) -> tuple[int, int, dict[str, int]]:
        """Read, chunk, dedupe, embed and hand to ``writer`` about ``write_batch`` chunks at a time.

        Returns how many documents were read, how many chunks they made (duplicates included) and
        how many chunks each source added.
        """
        config = self.config
        documents = candidates = 0
        added: dict[str, int] = {}
        bar = None  # opened on the first batch, after the sources were found to exist
        for batch in _batches(read_sources(sources, config.ingest), config.write_batch):
            if bar is None:
                bar = tqdm(desc="index", unit="chunk", disable=not progress, dynamic_ncols=True)
            documents += len(batch)
            chunks = chunk_documents(batch, self.embedder.tokenizer, config.chunking)
            candidates += len(chunks)
            fresh = writer.fresh(chunks)
            if fresh:
                writer.append(fresh, self.embed(list(self.indexed_texts(fresh))))
            for chunk in fresh:
                added[chunk.source] = added.get(chunk.source, 0) + 1
            bar.update(len(chunks))
        if bar is not None:
            bar.close()
        return documents, candidates, added


def _batches(documents: Iterator[Document], chunks_per_batch: int) -> Iterator[list[Document]]:
    """Documents grouped so each group makes about ``chunks_per_batch`` chunks."""
    batch: list[Document] = []
    estimate = 0
    for document in documents:
        batch.append(document)
        # About one chunk per 1,000 characters (200 MiniLM tokens): a cheap estimate of chunks made.
        estimate += 1 + len(document.text) // 1000
        if estimate >= chunks_per_batch:
            yield batch
            batch, estimate = [], 0
    if batch:
        yield batch


class _FolderWriter:
    """Writes a new version folder: the previous version's content, then each batch of new chunks.

    The version is published (``CURRENT`` switched) when the ``with`` block ends without an error;
    on any error, or a kill, the previous version stays live.
    """

    def __init__(self, kb: KnowledgeBase) -> None:
        self.kb, self.base_manifest = kb, kb.manifest
        self._stack = contextlib.ExitStack()

    def __enter__(self) -> _FolderWriter:
        try:
            self._open()
        except BaseException as err:
            self._stack.__exit__(type(err), err, err.__traceback__)
            raise
        return self

    def _open(self) -> None:
        kb = self.kb
        self._stack.enter_context(write_lock(kb.path))
        previous = kb.chunks if isinstance(kb.chunks, ChunkFile) else None
        if previous is not None and current_version(kb.path) != previous.path.parent:
            # Adding to an older version would drop what the other writer added.
            raise KnowledgeBaseError(
                f"{kb.path}: another writer changed the knowledge base since it was opened "
                f"(now {current_version(kb.path).name}); open it again and repeat the add"
            )
        self.staging = self._stack.enter_context(new_version(kb.path))
        self.chunks = ChunkFileWriter(self.staging, previous)
        width = kb.embedder.get_embedding_dimension()
        if previous is not None:
            self.dense = kb.dense.copy()
        else:
            self.dense = FaissIndex.empty(width, kb.config.vector_index)
        texts = kb.indexed_texts(kb.chunks) if previous is not None else ()
        self.lexical = BM25Writer(self.staging / "bm25", kb.lexical if previous is not None else None, texts)

    def __exit__(self, *exc: object) -> None:
        # Dropped before the new version is opened: the vector index can be large.
        self.dense = self.lexical = self.chunks = None  # type: ignore[assignment]
        self._stack.__exit__(*exc)

    def fresh(self, candidates: Sequence[Chunk]) -> list[Chunk]:
        return self.chunks.fresh(candidates)

    def append(self, chunks: Sequence[Chunk], vectors: np.ndarray) -> None:
        self.chunks.append(chunks)
        self.dense.add(vectors)
        self.lexical.append(list(self.kb.indexed_texts(chunks)))

    def finish(self, manifest: dict[str, Any], progress: bool = False) -> None:
        self.chunks.close()
        self.dense.save(self.staging / "dense.faiss")
        self.lexical.close(progress)
        manifest.update(embedding_dim=self.dense.dim, vector_index=self.dense.kind)
        (self.staging / "manifest.json").write_text(json.dumps(manifest, indent=2), encoding="utf-8")

    def opened(self, embedder: Any) -> KnowledgeBase:
        return KnowledgeBase.open(self.kb.path, embedder)


def _link_or_copy(source: str | Path, target: str | Path) -> None:
    """Hard-link ``source`` to ``target``, or copy it where the file system cannot link."""
    try:
        os.link(source, target)
    except OSError:
        shutil.copy2(source, target)


def _index_config(manifest: dict[str, Any]) -> IndexConfig:
    """The manifest's index settings; one written before ``chunk_titles`` existed indexed text only."""
    return IndexConfig.model_validate({"chunk_titles": False, **manifest["config"]})


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")
