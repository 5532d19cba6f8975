"""A knowledge base that lives in PostgreSQL: chunks, their vectors (pgvector, HNSW index) and their
keyword index (PostgreSQL full-text search) in one table, its manifest in another.

Several processes, on several machines, can serve and extend the same knowledge base: every search
reads the live table, and every build or add is one transaction, so readers see all of an add or
none of it, and a build or add that is killed (even ``kill -9``) leaves the previous content as it
was. Writers are serialised by an advisory lock per table.

Layout, for a table named ``T``::

    T                       id (chunk id), text, source, title, position, chunk_index, start_char,
                            end_char, hash (unique), metadata (jsonb), embedding vector(dim),
                            tsv tsvector (generated from text, or title and text: chunk_titles)
    T_hnsw, T_tsv, T_hash   HNSW (inner product), GIN and unique indexes
    slmkit_knowledge_bases  name = T, manifest (jsonb): config, counts, sources

A build writes a new table beside the old one and swaps them (drop, rename) just before it commits,
so readers are blocked only for the swap, not for the build. Needs ``pip install 'slmkit[postgres]'``
(psycopg 3 and pgvector) and a server with the pgvector extension; ``make postgres`` starts one.

Keyword search uses ``ts_rank`` over the question's lexemes OR-ed together (a question rarely holds
all of a passage's words): PostgreSQL's ranking, not BM25, so hybrid results differ a little from
those of a files knowledge base (docs/scaling.md).
"""

from __future__ import annotations

import contextlib
import logging
import re
import threading
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any, overload
from urllib.parse import urlsplit

import numpy as np

from slmkit.config import VectorIndexConfig
from slmkit.errors import ConfigError, KnowledgeBaseError
from slmkit.rag.documents import Chunk

logger = logging.getLogger(__name__)

MANIFESTS = "slmkit_knowledge_bases"
_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,39}$")
_COLUMNS = "id, text, source, title, position, chunk_index, start_char, end_char, hash, metadata"


def _modules() -> tuple[Any, Any, Any]:
    try:
        import psycopg
        from pgvector.psycopg import register_vector
        from psycopg import sql
    except ImportError as err:
        raise ConfigError(
            f"a PostgreSQL knowledge base needs psycopg and pgvector ({err.name} is missing): "
            "pip install 'slmkit[postgres]'"
        ) from None
    return psycopg, sql, register_vector


def split_address(address: str, default_table: str | None = None) -> tuple[str, str, str]:
    """``(connection string, address to record, table)`` of ``postgresql://...#TABLE``.

    The recorded address has no password (libpq reads it from PGPASSWORD or ~/.pgpass), so a
    knowledge-base folder never holds one.

    Raises:
        ConfigError: not a postgresql:// address, or a table name that is not a plain identifier.
    """
    url, _, table = address.partition("#")
    parts = urlsplit(url)
    if parts.scheme not in ("postgresql", "postgres"):
        raise ConfigError(f"store '{address}': expected a postgresql://USER@HOST:PORT/DB address")
    table = table or default_table or ""
    if not _NAME.match(table):
        raise ConfigError(
            f"store '{address}': table name '{table}' must be a letter or _ followed by up to 39 letters, "
            "digits or _; give one after '#', e.g. postgresql://localhost/slmkit#my_kb"
        )
    recorded = url
    if parts.password is not None:
        user, _, host = parts.netloc.rpartition("@")
        recorded = url.replace(parts.netloc, f"{user.split(':', 1)[0]}@{host}", 1)
    return url, recorded, table


def default_table(kb_path: Path) -> str:
    """``slmkit_`` and the knowledge-base folder's name, reduced to a plain identifier."""
    return "slmkit_" + (re.sub(r"[^a-z0-9_]+", "_", kb_path.resolve().name.lower()).strip("_") or "kb")[:32]


class PostgresStore:
    """One knowledge base in a PostgreSQL database: the table ``table`` and its manifest row.

    Attributes:
        address: The server and database, without password (as recorded in the KB folder).
        table: The chunk table's name.
        chunks, dense, lexical: Live views of the table (:class:`PgChunks`, :class:`PgVectorIndex`,
            :class:`PgTextSearch`).
    """

    def __init__(self, conninfo: str, address: str, table: str, where: str) -> None:
        self._conninfo, self.address, self.table, self.where = conninfo, address, table, where
        self._conn: Any = None
        self._lock = threading.Lock()
        self.chunks = PgChunks(self)
        self.dense = PgVectorIndex(self)
        self.lexical = PgTextSearch(self)

    @classmethod
    def open(cls, address: str, table: str, where: str) -> PostgresStore:
        """The store of an existing knowledge base (``where`` names it in errors).

        Raises:
            KnowledgeBaseError: the server cannot be reached, or holds no such knowledge base.
        """
        conninfo, recorded, table = split_address(f"{address.partition('#')[0]}#{table}")
        store = cls(conninfo, recorded, table, where)
        store.manifest()  # fail now, with the address, if the knowledge base is not there
        return store

    @classmethod
    def for_build(cls, address: str, kb_path: Path) -> PostgresStore:
        conninfo, recorded, table = split_address(address, default_table(kb_path))
        return cls(conninfo, recorded, table, str(kb_path))

    # -- connection --------------------------------------------------------------------------
    def connect(self, autocommit: bool) -> Any:
        """A new connection (its user registers pgvector's types once the extension exists).

        Raises:
            KnowledgeBaseError: the server cannot be reached.
        """
        psycopg, _, _ = _modules()
        try:
            return psycopg.connect(self._conninfo, autocommit=autocommit)
        except psycopg.OperationalError as err:
            raise KnowledgeBaseError(
                f"{self.where}: cannot connect to PostgreSQL at {self.address}: {str(err).strip()}. Is the "
                "server running (`make postgres` starts a local one) and the password in PGPASSWORD or "
                "~/.pgpass?"
            ) from None

    @property
    def conn(self) -> Any:
        """The reading connection (autocommit: each query sees everything committed before it)."""
        with self._lock:
            if self._conn is None or self._conn.closed:
                conn = self.connect(autocommit=True)
                _, _, register_vector = _modules()
                register_vector(conn)
                self._conn = conn
            return self._conn

    def query(self, statement: Any, params: Sequence[Any] = ()) -> list[tuple]:
        psycopg, _, _ = _modules()
        try:
            return self.conn.execute(statement, params).fetchall()
        except psycopg.errors.UndefinedTable:
            raise KnowledgeBaseError(
                f"{self.where}: table {self.table} is missing from {self.address}; rebuild the "
                f"knowledge base with `slmkit index build SOURCES --kb {self.where} "
                f"--store {self.address}#{self.table}`"
            ) from None

    def ident(self, suffix: str = "") -> Any:
        _, sql, _ = _modules()
        return sql.Identifier(self.table + suffix)

    # -- reading -----------------------------------------------------------------------------
    def manifest(self) -> dict[str, Any]:
        """The knowledge base's manifest as last committed.

        Raises:
            KnowledgeBaseError: no knowledge base of this name in the database.
        """
        psycopg, _, _ = _modules()
        try:
            rows = self.conn.execute(
                f"SELECT manifest FROM {MANIFESTS} WHERE name = %s", (self.table,)
            ).fetchall()
        except psycopg.errors.UndefinedTable:
            rows = []
        if not rows:
            raise KnowledgeBaseError(
                f"{self.where}: no knowledge base '{self.table}' in {self.address}; build it with "
                f"`slmkit index build SOURCES --kb {self.where} --store {self.address}#{self.table}`"
            )
        return rows[0][0]

    def knowledge_base(self, path: Path, embedder: Any = None) -> Any:
        from slmkit.rag.knowledge_base import KnowledgeBase

        manifest = self.manifest()
        self.dense.configure(manifest)
        return KnowledgeBase(path, manifest, self.chunks, self.dense, self.lexical, embedder, self)

    def sizes(self) -> dict[str, int]:
        """Bytes of the table and of each index, as PostgreSQL counts them."""
        _, sql, _ = _modules()
        names = {"table": self.table, "hnsw index": f"{self.table}_hnsw", "text index": f"{self.table}_tsv"}
        sizes = {}
        for label, name in names.items():
            function = "pg_table_size" if label == "table" else "pg_relation_size"
            statement = sql.SQL("SELECT coalesce({}(to_regclass(%s)), 0)").format(sql.Identifier(function))
            sizes[label] = int(self.query(statement, (name,))[0][0])
        return sizes

    # -- writing -----------------------------------------------------------------------------
    def writer(self, base_manifest: dict[str, Any], replace: bool, dim: int | None = None) -> PostgresWriter:
        """A transaction that builds (``replace``) or extends the knowledge base."""
        return PostgresWriter(self, base_manifest, replace, dim)


def _row_chunk(row: tuple) -> Chunk:
    id_, text, source, title, position, chunk_index, start, end, hash_, metadata = row
    return Chunk(int(id_), text, source, title, position, chunk_index, start, end, hash_, metadata)


class PgChunks(Sequence[Chunk]):
    """The chunks of the live table, fetched by id (ids run from 0 without gaps)."""

    def __init__(self, store: PostgresStore) -> None:
        self.store = store

    def __len__(self) -> int:
        return int(self.store.manifest().get("chunks", 0))

    @overload
    def __getitem__(self, index: int) -> Chunk: ...

    @overload
    def __getitem__(self, index: slice) -> list[Chunk]: ...

    def __getitem__(self, index: int | slice) -> Chunk | list[Chunk]:
        _, sql, _ = _modules()
        if isinstance(index, slice):
            start, stop, step = index.indices(len(self))
            rows = self.store.query(
                sql.SQL("SELECT " + _COLUMNS + " FROM {} WHERE id >= %s AND id < %s ORDER BY id").format(
                    self.store.ident()
                ),
                (start, stop),
            )
            return [_row_chunk(row) for row in rows][::step]
        if index < 0:
            index += len(self)
        rows = self.store.query(
            sql.SQL("SELECT " + _COLUMNS + " FROM {} WHERE id = %s").format(self.store.ident()), (index,)
        )
        if not rows:
            raise IndexError(f"chunk id {index} is not in {self.store.table}")
        return _row_chunk(rows[0])

    def __iter__(self) -> Iterator[Chunk]:
        size, page = len(self), 1000
        for start in range(0, size, page):
            yield from self[start : min(start + page, size)]


class PgVectorIndex:
    """Inner-product search with pgvector's HNSW index (``<#>`` is the negated inner product)."""

    def __init__(self, store: PostgresStore) -> None:
        self.store = store
        self.dim = 0
        self._ef_search = VectorIndexConfig().ef_search
        self._ef_set: int | None = None

    def configure(self, manifest: dict[str, Any]) -> None:
        self.dim = int(manifest.get("embedding_dim", 0))
        self._ef_search = int(manifest["config"].get("vector_index", {}).get("ef_search", self._ef_search))

    def __len__(self) -> int:
        return len(self.store.chunks)

    def search(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        _, sql, _ = _modules()
        # An HNSW scan returns at most ef_search rows, so it is raised to k when k is larger.
        ef = max(k, self._ef_search)
        if ef != self._ef_set:
            self.store.query(sql.SQL("SELECT set_config('hnsw.ef_search', %s, false)"), (str(ef),))
            self._ef_set = ef
        statement = sql.SQL(
            "SELECT id, embedding <#> %s AS distance FROM {} ORDER BY distance LIMIT %s"
        ).format(self.store.ident())
        scores = np.zeros((len(queries), k), dtype=np.float32)
        ids = np.full((len(queries), k), -1, dtype=np.int64)
        for row, query in enumerate(np.asarray(queries, dtype=np.float32)):
            for col, (id_, distance) in enumerate(self.store.query(statement, (query, k))):
                ids[row, col], scores[row, col] = id_, -distance
        return scores, ids

    def vectors(self, ids: np.ndarray) -> np.ndarray:
        _, sql, _ = _modules()
        wanted = [int(i) for i in ids]
        rows = self.store.query(
            sql.SQL("SELECT id, embedding FROM {} WHERE id = ANY(%s)").format(self.store.ident()), (wanted,)
        )
        found = {int(id_): vector.to_numpy() for id_, vector in rows}
        return np.stack([found[i] for i in wanted]).astype(np.float32)


class PgTextSearch:
    """Keyword search with PostgreSQL's full-text search: the question's lexemes (English stemming,
    stop words dropped) OR-ed together, ranked by ``ts_rank`` normalised by document length."""

    def __init__(self, store: PostgresStore) -> None:
        self.store = store

    def search(self, query: str, k: int) -> tuple[np.ndarray, np.ndarray]:
        _, sql, _ = _modules()
        statement = sql.SQL(
            "SELECT id, ts_rank(tsv, q, 1) AS score FROM {}, "
            "(SELECT replace(plainto_tsquery('english', %s)::text, ' & ', ' | ')::tsquery AS q) AS query "
            "WHERE tsv @@ q ORDER BY score DESC, id LIMIT %s"
        ).format(self.store.ident())
        rows = self.store.query(statement, (query, k))
        return (
            np.array([score for _, score in rows], dtype=np.float32),
            np.array([id_ for id_, _ in rows], dtype=np.int64),
        )


class PostgresWriter:
    """One transaction that builds or extends a knowledge base; commits when its ``with`` block ends
    without an error, rolls back otherwise (and the server rolls back a writer that was killed)."""

    def __init__(
        self, store: PostgresStore, base_manifest: dict[str, Any], replace: bool, dim: int | None
    ) -> None:
        self.store, self.base_manifest, self.replace, self.dim = store, base_manifest, replace, dim
        self.target = store.ident("__build") if replace else store.ident()
        self._next_id = 0

    def __enter__(self) -> PostgresWriter:
        self.conn = self.store.connect(autocommit=False)
        try:
            self._begin()
        except BaseException:
            self.conn.rollback()
            self.conn.close()
            raise
        return self

    def _begin(self) -> None:
        psycopg, sql, register_vector = _modules()
        conn, store = self.conn, self.store
        conn.execute("SELECT pg_advisory_xact_lock(hashtext(%s))", (f"slmkit:{store.table}",))
        try:
            with conn.transaction():
                conn.execute("CREATE EXTENSION IF NOT EXISTS vector")
        except psycopg.errors.InsufficientPrivilege:
            raise KnowledgeBaseError(
                f"{store.where}: the pgvector extension is not installed in {store.address} and this user "
                "may not install it; ask an administrator to run CREATE EXTENSION vector there"
            ) from None
        register_vector(conn)
        conn.execute(
            f"CREATE TABLE IF NOT EXISTS {MANIFESTS} (name text PRIMARY KEY, manifest jsonb NOT NULL)"
        )
        if self.replace:
            conn.execute(sql.SQL("DROP TABLE IF EXISTS {}").format(self.target))
            # What full-text search indexes: as the folder's BM25 does (IndexConfig.chunk_titles).
            indexed = (
                "title || E'\\n' || text" if self.base_manifest["config"].get("chunk_titles") else "text"
            )
            conn.execute(
                sql.SQL(
                    "CREATE TABLE {} (id bigint PRIMARY KEY, text text NOT NULL, source text NOT NULL, "
                    "title text NOT NULL, position integer NOT NULL, chunk_index integer NOT NULL, "
                    "start_char integer NOT NULL, end_char integer NOT NULL, hash text NOT NULL, "
                    "metadata jsonb NOT NULL, embedding vector({}) NOT NULL, "
                    f"tsv tsvector GENERATED ALWAYS AS (to_tsvector('english', {indexed})) STORED)"
                ).format(self.target, sql.Literal(self.dim))
            )
            conn.execute(
                sql.SQL("CREATE UNIQUE INDEX {} ON {} (hash)").format(
                    store.ident("__build_hash"), self.target
                )
            )
            return
        # An add: continue from what is committed now (another process may have added since this
        # knowledge base was opened).
        self.base_manifest = self._live_manifest()
        (last,) = conn.execute(sql.SQL("SELECT max(id) FROM {}").format(self.target)).fetchone()
        self._next_id = 0 if last is None else int(last) + 1

    def _live_manifest(self) -> dict[str, Any]:
        rows = self.conn.execute(
            f"SELECT manifest FROM {MANIFESTS} WHERE name = %s", (self.store.table,)
        ).fetchall()
        if not rows:
            raise KnowledgeBaseError(f"{self.store.where}: the knowledge base {self.store.table} is gone")
        return rows[0][0]

    def fresh(self, candidates: Sequence[Chunk]) -> list[Chunk]:
        _, sql, _ = _modules()
        hashes = list({c.hash for c in candidates})
        stored = self.conn.execute(
            sql.SQL("SELECT hash FROM {} WHERE hash = ANY(%s)").format(self.target), (hashes,)
        ).fetchall()
        seen = {h for (h,) in stored}
        fresh = []
        for chunk in candidates:
            if chunk.hash in seen:
                continue
            seen.add(chunk.hash)
            data = chunk.to_dict()
            data["id"] = self._next_id + len(fresh)
            fresh.append(Chunk.from_dict(data))
        return fresh

    def append(self, chunks: Sequence[Chunk], vectors: np.ndarray) -> None:
        _, sql, _ = _modules()
        from psycopg.types.json import Jsonb

        statement = sql.SQL("COPY {} (" + _COLUMNS + ", embedding) FROM STDIN").format(self.target)
        with self.conn.cursor().copy(statement) as copy:
            for chunk, vector in zip(chunks, np.asarray(vectors, dtype=np.float32), strict=True):
                copy.write_row(
                    (
                        chunk.id,
                        chunk.text,
                        chunk.source,
                        chunk.title,
                        chunk.position,
                        chunk.chunk_index,
                        chunk.start,
                        chunk.end,
                        chunk.hash,
                        Jsonb(chunk.metadata),
                        vector,
                    )
                )
        self._next_id += len(chunks)

    def finish(self, manifest: dict[str, Any], progress: bool = False) -> None:
        """Index a built table and swap it in; record the manifest (all inside the transaction).

        ``progress``: a bar for each index the server builds (HNSW over a million rows takes tens of
        minutes), read from PostgreSQL's ``pg_stat_progress_create_index`` on a second connection.
        """
        _, sql, _ = _modules()
        from psycopg.types.json import Jsonb

        conn, store = self.conn, self.store
        index = VectorIndexConfig.model_validate(manifest["config"].get("vector_index", {}))
        if self.replace:
            raise_build_memory(conn, index.build_memory_mb)
            with _index_progress(store, conn, progress, "HNSW index"):
                conn.execute(
                    sql.SQL(
                        "CREATE INDEX {} ON {} USING hnsw (embedding vector_ip_ops) "
                        "WITH (m = {}, ef_construction = {})"
                    ).format(
                        store.ident("__build_hnsw"),
                        self.target,
                        sql.Literal(index.hnsw_m),
                        sql.Literal(index.ef_construction),
                    )
                )
            with _index_progress(store, conn, progress, "text index"):
                conn.execute(
                    sql.SQL("CREATE INDEX {} ON {} USING gin (tsv)").format(
                        store.ident("__build_tsv"), self.target
                    )
                )
            # Readers wait from here to the commit only: the old table is dropped, the new one renamed.
            conn.execute(sql.SQL("DROP TABLE IF EXISTS {}").format(store.ident()))
            conn.execute(sql.SQL("ALTER TABLE {} RENAME TO {}").format(self.target, store.ident()))
            for suffix in ("_hash", "_hnsw", "_tsv"):
                conn.execute(
                    sql.SQL("ALTER INDEX {} RENAME TO {}").format(
                        store.ident("__build" + suffix), store.ident(suffix)
                    )
                )
        manifest.update(embedding_dim=self.dim or manifest.get("embedding_dim"), vector_index="pgvector-hnsw")
        conn.execute(
            f"INSERT INTO {MANIFESTS} (name, manifest) VALUES (%s, %s) "
            "ON CONFLICT (name) DO UPDATE SET manifest = excluded.manifest",
            (store.table, Jsonb(manifest)),
        )

    def __exit__(self, kind: object, error: object, traceback: object) -> None:
        with contextlib.closing(self.conn):
            if kind is None:
                self.conn.commit()
            else:
                self.conn.rollback()

    def opened(self, embedder: Any) -> Any:
        return self.store.knowledge_base(Path(self.store.where), embedder)


_PROGRESS_POLL_S = 1.0


def raise_build_memory(conn: Any, megabytes: int) -> None:
    """Give this transaction's index builds ``megabytes`` of ``maintenance_work_mem`` unless the
    server already allows more: pgvector builds an HNSW graph much faster when it fits in memory."""
    _, sql, _ = _modules()
    allowed = conn.execute("SELECT pg_size_bytes(current_setting('maintenance_work_mem'))").fetchone()[0]
    if allowed < megabytes * 2**20:
        conn.execute(sql.SQL("SET LOCAL maintenance_work_mem = {}").format(sql.Literal(f"{megabytes}MB")))


@contextlib.contextmanager
def _index_progress(store: PostgresStore, conn: Any, enabled: bool, what: str) -> Iterator[None]:
    """While the body runs a ``CREATE INDEX`` on ``conn``, show the server's progress as a bar.

    PostgreSQL reports an index build's progress in ``pg_stat_progress_create_index`` (blocks of
    the table scanned, then tuples); a thread polls it from a second connection. Best effort: a
    failed poll ends the bar, never the build.
    """
    if not enabled:
        yield
        return
    from tqdm.auto import tqdm

    pid, done = conn.info.backend_pid, threading.Event()

    def poll() -> None:
        bar = tqdm(desc=what, unit="block", dynamic_ncols=True)
        try:
            with contextlib.closing(store.connect(autocommit=True)) as watcher:
                while not done.wait(_PROGRESS_POLL_S):
                    row = watcher.execute(
                        "SELECT phase, blocks_total, blocks_done, tuples_total, tuples_done "
                        "FROM pg_stat_progress_create_index WHERE pid = %s",
                        (pid,),
                    ).fetchone()
                    if row is None:
                        continue
                    phase, blocks_total, blocks_done, tuples_total, tuples_done = row
                    # Scanning the table counts blocks; a later phase (sorting, loading) counts tuples.
                    total, n, unit = (
                        (tuples_total, tuples_done, "row")
                        if tuples_total
                        else (blocks_total, blocks_done, "block")
                    )
                    bar.unit, bar.total = unit, total or None
                    bar.n = n
                    bar.set_postfix_str(phase, refresh=False)
                    bar.refresh()
        except Exception as err:  # the bar is best effort; the build itself reports its own errors
            logger.debug("index progress unavailable: %s", err)
        finally:
            bar.close()

    thread = threading.Thread(target=poll, name="index-progress", daemon=True)
    thread.start()
    try:
        yield
    finally:
        done.set()
        thread.join()
