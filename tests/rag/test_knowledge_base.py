"""Knowledge base build / add / open / info, dedupe, and crash safety (real MiniLM embedder)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from slmkit.config import IndexConfig
from slmkit.data.prompts import titled_text
from slmkit.errors import InputError, KnowledgeBaseError
from slmkit.rag import lexical_index
from slmkit.rag.knowledge_base import KnowledgeBase
from slmkit.rag.retrieval import Retriever

ASSETS = Path(__file__).resolve().parent.parent / "assets"


@pytest.fixture
def small_kb(tmp_path, embedder):
    kb, report = KnowledgeBase.build(
        tmp_path / "kb", [ASSETS / "squad_tiny.json"], embedder=embedder, progress=False
    )
    return kb, report


def test_build_writes_chunks_with_provenance(small_kb):
    kb, report = small_kb
    assert report.chunks_added == len(kb.chunks) > 0
    assert [c.id for c in kb.chunks] == list(range(len(kb.chunks)))
    first = kb.chunks[0]
    assert first.source.endswith("squad_tiny.json") and first.title and len(first.hash) == 64
    assert len(kb.dense) == len(kb.chunks)


def test_open_round_trips_and_retrieval_scores_are_cosines(small_kb, embedder):
    built, _ = small_kb
    kb = KnowledgeBase.open(built.path, embedder=embedder)
    assert [c.to_dict() for c in kb.chunks] == [c.to_dict() for c in built.chunks]
    question = built.chunks[0].text.split(".")[0]
    for mode in ("dense", "bm25", "hybrid"):
        hits = Retriever(kb).search(question, top_k=2, mode=mode)
        assert hits[0].chunk.id == 0, mode
        assert -1.0 <= hits[0].dense_score <= 1.0 and hits[0].rank == 1
    bm25_hit = Retriever(kb).search(question, top_k=1, mode="bm25")[0]
    assert bm25_hit.bm25_score is not None and bm25_hit.bm25_score > 0
    vector = kb.embed([question])[0]
    assert bm25_hit.dense_score == pytest.approx(float(vector @ kb.dense.vectors(np.array([0]))[0]), abs=1e-5)


def test_add_appends_and_skips_duplicates(small_kb, embedder, tmp_path):
    kb, _ = small_kb
    before = len(kb.chunks)
    extra = tmp_path / "extra.txt"
    extra.write_text("Ctenophores are marine invertebrates that swim with combs of cilia.", encoding="utf-8")
    kb2, report = kb.add([ASSETS / "squad_tiny.json", extra], progress=False)
    assert report.chunks_added == 1
    assert report.duplicates_skipped == before
    assert len(kb2.chunks) == before + 1 and kb2.chunks[-1].id == before
    reopened = KnowledgeBase.open(kb.path, embedder=embedder)
    assert len(reopened.chunks) == before + 1 and len(reopened.dense) == before + 1
    assert Retriever(reopened).search("comb jellies cilia", top_k=1)[0].chunk.source == str(extra)


class CountingEmbedder:
    """The real embedder, recording every text it is asked to encode."""

    def __init__(self, inner):
        self.inner, self.encoded = inner, []

    def encode(self, texts, **kwargs):
        self.encoded.extend(texts)
        return self.inner.encode(texts, **kwargs)

    def __getattr__(self, name):
        return getattr(self.inner, name)


def _searches(kb):
    """Ids and scores of the top hits for a few queries in every mode."""
    retriever = Retriever(kb)
    queries = ["Who won Super Bowl 50?", "comb jellies cilia", "Where is Warsaw?", "stadium in California"]
    results = [retriever.search(q, top_k=4, mode=m) for q in queries for m in ("dense", "bm25", "hybrid")]
    return [[h.chunk.id for h in hits] for hits in results], [h.score for hits in results for h in hits]


def test_incremental_add_embeds_only_new_chunks_and_equals_a_full_build(tmp_path, embedder, monkeypatch):
    extra = tmp_path / "extra.md"
    extra.write_text(
        "# Ctenophores\nComb jellies swim with combs of cilia. Dr. Mills counted 150 species.\n\n"
        "# Sponges\nSponges filter water through their pores.",
        encoding="utf-8",
    )
    counting = CountingEmbedder(embedder)
    built, _ = KnowledgeBase.build(
        tmp_path / "kb", [ASSETS / "squad_tiny.json"], embedder=counting, progress=False
    )
    counting.encoded.clear()
    tokenized = []
    real_tokenize = lexical_index.tokenize

    def counting_tokenize(texts):
        tokenized.extend(texts)
        return real_tokenize(texts)

    monkeypatch.setattr(lexical_index, "tokenize", counting_tokenize)
    added, report = KnowledgeBase.open(built.path, embedder=counting).add(
        [ASSETS / "squad_tiny.json", extra], progress=False
    )
    # What is embedded and tokenized is each chunk's title, then its text (IndexConfig.chunk_titles).
    new_texts = [titled_text(c.title, c.text) for c in added.chunks[len(built.chunks) :]]
    assert report.chunks_added == len(new_texts) == 2
    assert counting.encoded == new_texts  # the old chunks are neither embedded nor tokenized again
    assert tokenized == new_texts
    monkeypatch.undo()

    full, _ = KnowledgeBase.build(
        tmp_path / "full", [ASSETS / "squad_tiny.json", extra], embedder=embedder, progress=False
    )
    reopened = KnowledgeBase.open(added.path, embedder=embedder)
    assert [c.to_dict() for c in reopened.chunks] == [c.to_dict() for c in full.chunks]
    (ids, scores), (full_ids, full_scores) = _searches(reopened), _searches(full)
    assert ids == full_ids
    # Embedding in other batches moves a cosine by float rounding only.
    assert scores == pytest.approx(full_scores, abs=1e-5)


def test_add_to_a_kb_without_stored_tokens_tokenizes_again(small_kb, embedder, tmp_path):
    kb, _ = small_kb
    version = kb.path / (kb.path / "CURRENT").read_text()
    (version / "bm25" / lexical_index.TOKENS_FILE).unlink()  # as written before tokens were kept
    extra = tmp_path / "extra.txt"
    extra.write_text("Ctenophores are marine invertebrates that swim with combs of cilia.", encoding="utf-8")
    added, _ = KnowledgeBase.open(kb.path, embedder=embedder).add([extra], progress=False)
    assert Retriever(added).search("ctenophores cilia", top_k=1, mode="bm25")[0].chunk.source == str(extra)
    new_version = kb.path / (kb.path / "CURRENT").read_text()
    assert new_version != version and (new_version / "bm25" / lexical_index.TOKENS_FILE).is_file()
    reopened = KnowledgeBase.open(kb.path, embedder=embedder)
    assert [h.chunk.id for h in Retriever(reopened).search("Warsaw", top_k=1, mode="bm25")] == [
        h.chunk.id for h in Retriever(kb).search("Warsaw", top_k=1, mode="bm25")
    ]


def test_info_reports_counts_model_and_sizes(small_kb):
    kb, _ = small_kb
    info = kb.info()
    assert info["chunks"] == len(kb.chunks)
    assert info["embedder"] == "all-minilm-l6-v2" and info["embedding_dim"] == 384
    assert info["bytes"]["dense.faiss"] > 0 and info["total_bytes"] > info["bytes"]["dense.faiss"]


def test_interrupted_add_leaves_previous_version_intact(small_kb, embedder, monkeypatch, tmp_path):
    kb, _ = small_kb
    before = [c.to_dict() for c in kb.chunks]
    extra = tmp_path / "extra.txt"
    extra.write_text("Some new text about a different topic entirely.", encoding="utf-8")

    def crash(*args, **kwargs):
        raise KeyboardInterrupt  # as if the user pressed Ctrl-C while the index was being written

    monkeypatch.setattr("slmkit.rag.vector_index.FaissIndex.save", crash)
    with pytest.raises(KeyboardInterrupt):
        kb.add([extra], progress=False)
    monkeypatch.undo()
    reopened = KnowledgeBase.open(kb.path, embedder=embedder)
    assert [c.to_dict() for c in reopened.chunks] == before
    assert not [p for p in kb.path.iterdir() if p.name.startswith(".staging-")]


def test_missing_knowledge_base_is_a_clear_error(tmp_path):
    with pytest.raises(KnowledgeBaseError, match="no such knowledge base"):
        KnowledgeBase.open(tmp_path / "nope")


def test_build_refuses_to_overwrite_a_folder_that_is_not_a_kb(tmp_path, embedder):
    target = tmp_path / "my-documents"
    target.mkdir()
    (target / "thesis.docx").write_text("precious", encoding="utf-8")
    with pytest.raises(KnowledgeBaseError, match="not a knowledge base"):
        KnowledgeBase.build(target, [ASSETS / "sample.txt"], embedder=embedder, progress=False)
    assert (target / "thesis.docx").read_text(encoding="utf-8") == "precious"


def test_build_from_only_empty_sources_fails_and_writes_nothing(tmp_path, embedder):
    empty = tmp_path / "empty.txt"
    empty.write_text("   \n", encoding="utf-8")
    with pytest.raises(InputError, match="no text"):
        KnowledgeBase.build(tmp_path / "kb", [empty], embedder=embedder, progress=False)
    assert not (tmp_path / "kb" / "CURRENT").exists()


def test_manifest_records_how_the_kb_was_made(small_kb):
    kb, _ = small_kb
    manifest = json.loads((kb.path / (kb.path / "CURRENT").read_text() / "manifest.json").read_text())
    assert manifest["config"]["embedder"] == "all-minilm-l6-v2"
    assert manifest["config"]["chunking"]["chunk_tokens"] == 200
    assert sum(manifest["sources"].values()) == len(kb.chunks)


def test_add_to_a_version_another_writer_replaced_is_refused(small_kb, embedder, tmp_path):
    kb, _ = small_kb
    stale = KnowledgeBase.open(kb.path, embedder=embedder)
    first, second = tmp_path / "first.txt", tmp_path / "second.txt"
    first.write_text("Ctenophores swim with combs of cilia.", encoding="utf-8")
    second.write_text("Sponges filter water through their pores.", encoding="utf-8")
    KnowledgeBase.open(kb.path, embedder=embedder).add([first], progress=False)
    with pytest.raises(KnowledgeBaseError, match="another writer changed the knowledge base"):
        stale.add([second], progress=False)  # would have dropped first.txt's chunk
    assert KnowledgeBase.open(kb.path, embedder=embedder).chunks[-1].source == str(first)


def test_a_build_with_progress_shows_the_lexical_indexing_bars(tmp_path, embedder, capsys):
    KnowledgeBase.build(tmp_path / "kb", [ASSETS / "squad_tiny.json"], embedder=embedder, progress=True)
    assert "BM25S Compute Scores" in capsys.readouterr().err  # the index step that takes minutes at 1M


def test_chunks_are_found_by_their_section_titles(tmp_path, embedder):
    doc = tmp_path / "licence.md"
    doc.write_text(
        "# Termination\nYour rights end thirty days after the notice.\n\n"
        "# Warranty\nThe program is provided as is, without promises of any kind.",
        encoding="utf-8",
    )
    titled, _ = KnowledgeBase.build(tmp_path / "titled", [doc], embedder=embedder, progress=False)
    hit = Retriever(titled).search("termination", top_k=1, mode="bm25")[0]
    assert "thirty days" in hit.chunk.text and "Termination" in hit.chunk.title
    config = IndexConfig(chunk_titles=False)
    plain, _ = KnowledgeBase.build(tmp_path / "plain", [doc], config, embedder=embedder, progress=False)
    assert not Retriever(plain).search("termination", top_k=1, mode="bm25")  # the word is only a title
    # The title moves the chunk's vector towards what the section is about.
    question = titled.embed(["When does termination happen?"])[0]
    assert (
        question @ titled.dense.vectors(np.array([hit.chunk.id]))[0]
        > question @ plain.dense.vectors(np.array([hit.chunk.id]))[0]
    )


def test_a_kb_built_before_chunk_titles_keeps_indexing_text_only(small_kb, embedder, tmp_path):
    kb, _ = small_kb
    manifest_path = kb.path / (kb.path / "CURRENT").read_text() / "manifest.json"
    manifest = json.loads(manifest_path.read_text())
    del manifest["config"]["chunk_titles"]  # as an earlier slmkit wrote it
    manifest_path.write_text(json.dumps(manifest))
    old = KnowledgeBase.open(kb.path, embedder=embedder)
    assert old.config.chunk_titles is False
    extra = tmp_path / "extra.txt"
    extra.write_text("Ctenophores swim with combs of cilia.", encoding="utf-8")
    counting = CountingEmbedder(embedder)
    added, _ = KnowledgeBase.open(kb.path, embedder=counting).add([extra], progress=False)
    assert counting.encoded == ["Ctenophores swim with combs of cilia."]  # no title: as the rest
    assert added.config.chunk_titles is False


def test_a_tuned_fusion_weight_is_the_default_until_a_configuration_sets_one(small_kb, tmp_path):
    from slmkit.config import DEFAULT_LEXICAL_WEIGHT, RetrievalConfig

    kb, _ = small_kb
    assert kb.lexical_weight is None and Retriever(kb).lexical_weight == DEFAULT_LEXICAL_WEIGHT
    question = kb.chunks[1].text.split(".")[0]
    tuned = kb.tuned(lexical_weight=0.0)  # index tune's choice: dense order over the fused candidates
    assert tuned.lexical_weight == 0.0 and KnowledgeBase.open(kb.path).info()["lexical_weight"] == 0.0
    assert Retriever(tuned).lexical_weight == 0.0
    assert Retriever(tuned, RetrievalConfig(lexical_weight=0.7)).lexical_weight == 0.7  # stated wins
    dense = [h.chunk.id for h in Retriever(tuned).search(question, top_k=5, mode="dense")]
    assert [h.chunk.id for h in Retriever(tuned).search(question, top_k=5)] == dense
    # An add keeps what index tune chose; nothing was re-embedded by tuning.
    extra = tmp_path / "extra.txt"
    extra.write_text("Ctenophores are marine invertebrates that swim with combs of cilia.", encoding="utf-8")
    added, _ = tuned.add([extra], progress=False)
    assert added.lexical_weight == 0.0 and KnowledgeBase.open(kb.path).lexical_weight == 0.0
    with pytest.raises(KnowledgeBaseError, match="outside"):
        added.tuned(lexical_weight=1.5)
