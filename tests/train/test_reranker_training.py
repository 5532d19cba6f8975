"""Training a cross-encoder reranker: hard negatives, the held-out split, and a real (tiny) run."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from slmkit.config import RerankerTrainConfig
from slmkit.data.squad import load_squad
from slmkit.data.squad_metrics import normalize_answer
from slmkit.errors import ConfigError
from slmkit.models.reranker import FROZEN, load_reranker, read_reranker_info
from slmkit.rag.retrieval import Retriever
from slmkit.train.reranker import (
    WEIGHT_GRID,
    _hold_out,
    rerank_questions,
    squad_questions,
    train_reranker,
    training_rows,
)

REPO = Path(__file__).resolve().parents[2]
TINY = REPO / "tests" / "assets" / "squad_tiny.json"


def test_each_question_gets_the_chunk_of_its_own_paragraph(tiny_kb):
    questions = squad_questions(load_squad(TINY), tiny_kb)
    assert len(questions) == 4
    for q in questions:
        assert (q.positive.metadata["article"], q.positive.metadata["paragraph"]) == q.paragraph
        assert any(a in normalize_answer(q.positive.text) for a in q.answers)


def test_hard_negatives_come_from_other_paragraphs_and_never_hold_the_answer(tiny_kb):
    questions = squad_questions(load_squad(TINY), tiny_kb)
    rows = training_rows(questions, Retriever(tiny_kb), negatives=1, pool=5, seed=0)
    assert rows, "the tiny file has three paragraphs: every question has another one to confuse"
    positives = {q.question: q for q in questions}
    for row in rows:
        q = positives[row["question"]]
        assert row["positive"].endswith(q.positive.text)
        assert row["negative_1"] != row["positive"]
        assert not any(a in normalize_answer(row["negative_1"]) for a in q.answers)


def test_held_out_questions_are_whole_paragraphs(tiny_kb):
    questions = squad_questions(load_squad(TINY), tiny_kb)
    train, held = _hold_out(questions, 1, seed=0)
    assert held and train
    assert not {q.paragraph for q in held} & {q.paragraph for q in train}


def _tiny_config(tmp_path, tiny_kb, **overrides) -> RerankerTrainConfig:
    fields = dict(
        squad=str(TINY),
        split="all",
        kb=str(tiny_kb.path),
        output_dir=str(tmp_path / "run"),
        negatives=1,
        pool=5,
        batch_size=2,
        holdout=0,
        save_steps=1,
    )
    return RerankerTrainConfig(**(fields | overrides))


def test_a_tiny_run_writes_a_reranker_that_loads_and_ranks(tmp_path, tiny_kb):
    final = train_reranker(_tiny_config(tmp_path, tiny_kb))
    info = read_reranker_info(final)
    assert info["base"] == "all-minilm-l6-v2" and info["steps"] >= 1
    assert info["loss_curve"] and all(np.isfinite(e["loss"]) for e in info["loss_curve"])
    # Checkpoints were written on the way (a rerun resumes from them).
    assert list((tmp_path / "run").glob("checkpoint-*"))

    from safetensors import safe_open

    with safe_open(str(final / "model.safetensors"), "pt") as weights:
        keys = set(weights.keys())
        assert not keys & set(FROZEN), "frozen word embeddings come from the base, not the folder"
        assert all(weights.get_tensor(k).dtype.is_floating_point for k in keys)

    reranker = load_reranker(str(final))
    scores = reranker.scores("Who won?", ["a", "b", "c"])
    assert scores.shape == (3,) and np.isfinite(scores).all()

    from slmkit.config import RetrievalConfig

    plain = Retriever(tiny_kb).search("What is the capital of Poland?", top_k=3)
    reranked = Retriever(tiny_kb, RetrievalConfig(reranker=str(final), rerank_depth=3)).search(
        "What is the capital of Poland?", top_k=3
    )
    assert {h.chunk.id for h in reranked} == {h.chunk.id for h in plain}
    assert [h.rank for h in reranked] == [1, 2, 3]
    assert [h.score for h in reranked] == sorted((h.score for h in reranked), reverse=True)


def test_a_further_epoch_starts_from_the_given_reranker(tmp_path, tiny_kb):
    # A learning rate too small to move anything: the result scores as its starting point does
    # (a fresh head would score at random).
    config = _tiny_config(tmp_path, tiny_kb, init="slmkit-reranker-minilm", lr=1e-12, seed=1)
    final = train_reranker(config)
    assert read_reranker_info(final)["config"]["init"] == "slmkit-reranker-minilm"
    question = "What is the capital of Poland?"
    passages = [h.chunk.text for h in Retriever(tiny_kb).search(question, top_k=3)]
    start = load_reranker("slmkit-reranker-minilm", "transformers").scores(question, passages)
    further = load_reranker(str(final), "transformers").scores(question, passages)
    np.testing.assert_allclose(further, start, atol=0.02)


def test_a_starting_reranker_that_reads_another_length_is_refused(tmp_path, tiny_kb):
    config = _tiny_config(tmp_path, tiny_kb, init="slmkit-reranker-minilm", max_length=128)
    with pytest.raises(ConfigError, match=r"rerank\.init: slmkit-reranker-minilm .* 256 tokens"):
        train_reranker(config)


def test_the_held_out_questions_do_not_move_with_the_seed(tmp_path, tiny_kb):
    held = [
        {q.question for q in rerank_questions(_tiny_config(tmp_path, tiny_kb, holdout=1, seed=s))[2]}
        for s in (0, 1, 2)
    ]
    assert held[0] and held[0] == held[1] == held[2]


def test_the_cli_trains_and_reports_held_out_recall(tmp_path, tiny_kb):
    from typer.testing import CliRunner

    from slmkit.cli import app

    recipe = tmp_path / "rerank.yaml"
    recipe.write_text(
        "rerank:\n"
        f"  squad: {TINY}\n  split: all\n  kb: {tiny_kb.path}\n  output_dir: {tmp_path / 'run'}\n"
        "  negatives: 1\n  pool: 5\n  batch_size: 2\n  holdout: 1\n",
        encoding="utf-8",
    )
    result = CliRunner().invoke(app, ["rerank", "train", str(recipe), "--lr", "1e-5"])
    assert result.exit_code == 0, result.output
    report = json.loads(result.output[result.output.rindex('{\n  "reranker"') :])
    assert report["heldout_questions"] >= 1
    assert set(report["heldout_after"]) == {"recall@1", "recall@3", "recall@5", "mrr"}
    # The weight sweep for retrieval.rerank_weight: every grid weight, each a recall table.
    assert set(report["heldout_by_weight"]) == {str(w) for w in WEIGHT_GRID}
    assert all(0.0 <= r["recall@1"] <= r["recall@5"] <= 1.0 for r in report["heldout_by_weight"].values())
    assert read_reranker_info(Path(report["reranker"]))["config"]["lr"] == 1e-5


def test_a_misspelt_key_names_the_recipe_and_the_key(tmp_path):
    from typer.testing import CliRunner

    from slmkit.cli import app
    from slmkit.errors import ConfigError

    recipe = tmp_path / "rerank.yaml"
    recipe.write_text("rerank:\n  negativs: 3\n", encoding="utf-8")
    with pytest.raises(ConfigError, match=r"rerank\.yaml \[rerank\]: unknown key 'negativs'"):
        CliRunner().invoke(app, ["rerank", "train", str(recipe)], catch_exceptions=False)
