"""FAISS index types: recall of HNSW and IVF-PQ against exact search, adds without retraining,
and knowledge bases that use them (synthetic vectors and a hashing embedder: no model loads)."""

from __future__ import annotations

import json
from pathlib import Path

import faiss
import numpy as np
import pytest

from fakes import HashEmbedder
from slmkit.config import IndexConfig, VectorIndexConfig
from slmkit.data.prompts import titled_text
from slmkit.errors import ConfigError
from slmkit.rag.knowledge_base import KnowledgeBase
from slmkit.rag.retrieval import Retriever
from slmkit.rag.vector_index import FaissIndex

ASSETS = Path(__file__).resolve().parent.parent / "assets"


def _clustered(n: int, dim: int = 32, seed: int = 0) -> np.ndarray:
    """Unit vectors around 50 random centres: neighbourhoods as real embeddings have them."""
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((50, dim))
    vectors = centres[rng.integers(0, 50, n)] + 0.6 * rng.standard_normal((n, dim))
    return (vectors / np.linalg.norm(vectors, axis=1, keepdims=True)).astype(np.float32)


def _recall_at_10(index: FaissIndex, vectors: np.ndarray, queries: np.ndarray) -> float:
    exact = FaissIndex.empty(vectors.shape[1])
    exact.add(vectors)
    _, truth = exact.search(queries, 10)
    _, found = index.search(queries, 10)
    return float(np.mean([len(set(t) & set(f)) / 10 for t, f in zip(truth, found, strict=True)]))


@pytest.mark.parametrize(
    ("config", "floor"),
    [
        (VectorIndexConfig(type="hnsw"), 0.85),  # measured 0.92
        (VectorIndexConfig(type="ivf-pq", train_size=3000, pq_bytes=8, nprobe=16), 0.55),
    ],
)
def test_approximate_indexes_find_most_exact_neighbours(config, floor):
    vectors, queries = _clustered(6000), _clustered(100, seed=1)
    index = FaissIndex.empty(32, config)
    for start in range(0, len(vectors), 500):  # added in batches, as a streaming build does
        index.add(vectors[start : start + 500])
    assert len(index) == 6000 and index.kind == config.type
    assert _recall_at_10(index, vectors, queries) >= floor
    scores, ids = index.search(queries[:5], 3)
    cosines = np.einsum("qd,qkd->qk", queries[:5], vectors[ids])
    # Scores are cosines, as exact search gives them (PQ reconstructs vectors approximately).
    assert scores == pytest.approx(cosines, abs=0.02 if config.type == "hnsw" else 0.3)


def test_adds_after_reloading_neither_rebuild_nor_retrain(tmp_path):
    vectors = _clustered(5000)
    index = FaissIndex.empty(32, VectorIndexConfig(type="ivf-pq", train_size=1000, pq_bytes=8))
    index.add(vectors[:4000])
    index.save(tmp_path / "ivf.faiss")

    def centroids(ivf):
        return faiss.downcast_index(ivf.quantizer).reconstruct_n(0, 10)

    trained = centroids(faiss.read_index(str(tmp_path / "ivf.faiss")))
    loaded = FaissIndex.load(tmp_path / "ivf.faiss", index.config)
    loaded.add(vectors[4000:])
    assert len(loaded) == 5000 and loaded.kind == "ivf-pq"
    assert np.array_equal(centroids(loaded._index), trained)
    decoded = loaded.vectors(np.array([10, 4500]))  # PQ-decoded: close to, not equal to, the originals
    assert decoded.shape == (2, 32) and np.allclose(decoded, vectors[[10, 4500]], atol=0.5)
    _, ids = loaded.search(vectors[4000:4100], 5)
    assert np.mean([i in row for i, row in zip(range(4000, 4100), ids, strict=True)]) >= 0.9


def test_ivf_pq_on_too_few_vectors_stays_exact(caplog):
    index = FaissIndex.empty(32, VectorIndexConfig(type="ivf-pq"))
    index.add(_clustered(200))
    _, ids = index.search(_clustered(200)[:3], 1)
    assert ids[:, 0].tolist() == [0, 1, 2] and index.kind == "flat"
    assert "kept in an exact (flat) index" in caplog.text


def test_pq_bytes_must_divide_the_width():
    with pytest.raises(ConfigError, match=r"pq_bytes \(7\) must divide the embedding width \(32\)"):
        FaissIndex.empty(32, VectorIndexConfig(type="ivf-pq", pq_bytes=7))


def test_knowledge_base_with_hnsw_builds_adds_and_records_its_index(tmp_path, minilm_tokenizer):
    embedder = HashEmbedder(minilm_tokenizer)
    config = IndexConfig(vector_index=VectorIndexConfig(type="hnsw"), write_batch=8)
    kb, report = KnowledgeBase.build(
        tmp_path / "kb", [ASSETS / "squad_tiny.json"], config, embedder=embedder, progress=False
    )
    extra = tmp_path / "extra.txt"
    extra.write_text("Ctenophores are marine invertebrates that swim with combs of cilia.", encoding="utf-8")
    added, add_report = KnowledgeBase.open(kb.path, embedder=embedder).add([extra], progress=False)
    assert add_report.chunks_added == 1 and len(added.dense) == len(added.chunks) == report.chunks_added + 1
    manifest = json.loads((kb.path / (kb.path / "CURRENT").read_text() / "manifest.json").read_text())
    assert manifest["vector_index"] == "hnsw" and manifest["config"]["vector_index"]["type"] == "hnsw"
    new = added.chunks[-1]  # a query equal to what was embedded (its title, then its text) is found at 1.0
    hits = Retriever(added).search(titled_text(new.title, new.text), top_k=1, mode="dense")
    assert hits[0].chunk.source == str(extra) and hits[0].dense_score == pytest.approx(1.0, abs=1e-4)
