"""Questions embedded by llama.cpp match sentence-transformers, so a fresh `ask` need not import it."""

from __future__ import annotations

import numpy as np
import pytest

from slmkit.errors import ConfigError
from slmkit.models.query_encoder import load_query_encoder

pytest.importorskip("llama_cpp", reason="needs llama-cpp-python (the llama extra)")

QUESTIONS = [
    "Which NFL team represented the AFC at Super Bowl 50?",
    "What is the Irish term for private schools?",
    "Wer war Dschingis Khan? — naïve café, 1,234.5 km, e.g. the U.S.",
    "?",
]


def _st_encode(embedder):
    def encode(texts):
        return embedder.encode(list(texts), normalize_embeddings=True, convert_to_numpy=True).astype(
            np.float32
        )

    return encode


@pytest.fixture(scope="module")
def llama_encode(embedder, model_cache, monkeypatch_module):
    monkeypatch_module.setenv("SLMKIT_CACHE", str(model_cache))  # the GGUF is converted once per cache
    calls: list[list[str]] = []
    fallback = _st_encode(embedder)

    def counted(texts):
        calls.append(list(texts))
        return fallback(texts)

    return load_query_encoder("all-minilm-l6-v2", "llama.cpp", counted), calls


@pytest.fixture(scope="module")
def monkeypatch_module():
    with pytest.MonkeyPatch.context() as patch:
        yield patch


def test_llama_cpp_gives_sentence_transformers_vectors(llama_encode, embedder):
    ours = llama_encode[0](QUESTIONS)
    reference = _st_encode(embedder)(QUESTIONS)
    assert ours.shape == reference.shape == (len(QUESTIONS), 384) and ours.dtype == np.float32
    assert np.allclose(np.linalg.norm(ours, axis=1), 1.0, atol=1e-5)
    assert (ours * reference).sum(axis=1).min() > 0.9999


def test_a_question_past_the_input_limit_goes_to_sentence_transformers(llama_encode, embedder):
    """sentence-transformers truncates at 256 tokens; llama.cpp would read it all, so it hands it over."""
    long = "Which team won the game that was played " + "after a very long season " * 60 + "?"
    encode, fallback_calls = llama_encode
    fallback_calls.clear()
    ours = encode([QUESTIONS[0], long])
    assert fallback_calls == [[long]]
    assert np.allclose(ours[1], _st_encode(embedder)([long])[0], atol=1e-6)


def test_retrieval_ranks_the_same_with_either_engine(squad_kb, model_cache, monkeypatch):
    from slmkit.config import RetrievalConfig
    from slmkit.rag.knowledge_base import KnowledgeBase
    from slmkit.rag.retrieval import Retriever

    monkeypatch.setenv("SLMKIT_CACHE", str(model_cache))
    kb = KnowledgeBase.open(squad_kb.path)  # no embedder handed over: queries use the configured engine
    questions = [
        "Where was Super Bowl 50 played?",
        "Who did the Broncos beat in the AFC Championship?",
        "What language is spoken in Warsaw?",
    ]
    ranked = {}
    for engine in ("llama.cpp", "sentence-transformers"):
        retriever = Retriever(kb, RetrievalConfig(query_encoder=engine))
        hits = retriever.search_many(questions, top_k=5)
        ranked[engine] = [[(h.chunk.id, h.dense_score or 0.0) for h in row] for row in hits]
    ours, reference = ranked["llama.cpp"], ranked["sentence-transformers"]
    assert [[c for c, _ in row] for row in ours] == [[c for c, _ in row] for row in reference]
    assert np.allclose(
        [s for row in ours for _, s in row], [s for row in reference for _, s in row], atol=1e-3
    )


def test_engine_choices(embedder):
    fallback = _st_encode(embedder)
    assert load_query_encoder("all-minilm-l6-v2", "sentence-transformers", fallback) is fallback
    with pytest.raises(ConfigError, match="unknown query_encoder 'onnx'"):
        load_query_encoder("all-minilm-l6-v2", "onnx", fallback)


def test_a_query_adapter_runs_on_llama_cpp_with_the_same_vectors(tmp_path, tiny_kb, model_cache, monkeypatch):
    """A knowledge base's query adapter (index tune) is merged once and converted like any embedder:
    llama.cpp then gives the vectors sentence-transformers gives with the adapter merged."""
    from slmkit.config import QueryTuneConfig
    from slmkit.models.embedder import load_embedder, resolve_embedder_path
    from slmkit.train.query_tuning import QueryPair, tune_query_encoder

    monkeypatch.setenv("SLMKIT_CACHE", str(model_cache))  # llama.cpp's converter is fetched once per cache
    pairs = [QueryPair(f"Which passage is number {c.id}?", (c.id,)) for c in tiny_kb.chunks] * 4
    adapter = tune_query_encoder(
        tiny_kb, pairs, tmp_path / "adapter", QueryTuneConfig(epochs=2, holdout=0.0, lr=1e-3), progress=False
    ).adapter
    merged = load_embedder(str(adapter))
    assert resolve_embedder_path(str(adapter)) == resolve_embedder_path(str(adapter))  # cached, same folder
    encode = load_query_encoder(str(adapter), "llama.cpp", _st_encode(merged))
    ours, reference = encode(QUESTIONS[:3]), _st_encode(merged)(QUESTIONS[:3])
    assert (ours * reference).sum(axis=1).min() > 0.9999
    plain = _st_encode(load_embedder("all-minilm-l6-v2"))(QUESTIONS[:3])
    assert (ours * plain).sum(axis=1).min() < 0.9999  # the adapter changed them
