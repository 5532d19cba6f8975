"""`slmkit eval` end to end on the real default model: each context mode, each data format,
results that carry their provenance, and clear errors for what cannot be measured."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from slmkit.config import EvalConfig, parse_config
from slmkit.data.squad import bundled_squad, load_squad, split_articles
from slmkit.errors import ConfigError, InputError
from slmkit.eval.eval_sets import load_eval_set, spread
from slmkit.eval.predictions import read_predictions
from slmkit.eval.runner import check_config, default_metrics, run_eval, score_predictions

ASSETS = Path(__file__).resolve().parent.parent / "assets"
REPO = Path(__file__).resolve().parent.parent.parent


def _config(tmp_path: Path, **overrides) -> EvalConfig:
    data = {"output_dir": str(tmp_path / "eval"), "generation": {"max_new_tokens": 24}}
    data.update(overrides)
    return parse_config(EvalConfig, data, "test")


def test_defaults_follow_format_and_context():
    assert "retrieval" in default_metrics("squad", "retrieved") and "faithfulness" in default_metrics(
        "qa", "gold"
    )
    assert "retrieval" not in default_metrics("squad", "closed-book")
    assert default_metrics("multiple_choice", "closed-book") == ["accuracy", "latency"]
    assert default_metrics("text", "closed-book") == ["perplexity"]


def test_a_limited_sample_spreads_over_the_dataset():
    assert spread(list(range(10)), 3) == [0, 3, 6]
    assert spread(list(range(4)), 9) == [0, 1, 2, 3]
    titles = {i.title for i in load_eval_set("bundled:squad", limit=20).items}
    assert len(titles) > 5  # many articles, not just the first


def test_unknown_metric_lists_the_known_ones(tmp_path):
    with pytest.raises(ConfigError, match=r"unknown metric\(s\) blue; known: squad, rouge, bleu"):
        check_config(_config(tmp_path, metrics=["blue"], context="closed-book"), "squad")


def test_what_cannot_be_measured_is_refused(tmp_path):
    with pytest.raises(ConfigError, match="needs a knowledge base"):
        check_config(_config(tmp_path), "squad")
    with pytest.raises(ConfigError, match="closed-book"):
        check_config(_config(tmp_path, context="gold"), "multiple_choice")


def test_a_dataset_without_references_names_the_field(tmp_path):
    data = tmp_path / "qa.jsonl"
    data.write_text('{"question": "Who won?", "answers": ["Denver"]}\n{"question": "Where?", "ans": "x"}\n')
    with pytest.raises(
        InputError, match=r"qa\.jsonl:2: no reference answer: give field 'answers'.*has ans, question"
    ):
        run_eval(_config(tmp_path, context="closed-book", data={"path": str(data)}), loaded=object())


def test_prediction_ids_must_match_the_references(tmp_path):
    config = _config(tmp_path, context="closed-book", metrics=["squad"], data={"limit": 2})
    first = load_eval_set("bundled:squad", limit=2).items
    good = tmp_path / "good.jsonl"
    good.write_text(
        "".join(json.dumps({"id": q.id, "prediction": q.references[0]}) + "\n" for q in first[:2])
    )
    result = score_predictions(config, good)
    assert result.scores["exact_match"] == 100.0 and result.scores["f1"] == 100.0
    stray = tmp_path / "stray.jsonl"
    stray.write_text(
        json.dumps({"id": first[0].id, "prediction": "x"}) + "\n" + '{"id": "nope", "prediction": "y"}\n'
    )
    with pytest.raises(InputError, match=r"stray\.jsonl:2: id 'nope' is not a question"):
        score_predictions(config, stray)
    short = tmp_path / "short.jsonl"
    short.write_text(json.dumps({"id": first[0].id, "prediction": "x"}) + "\n")
    with pytest.raises(InputError, match=rf"1 question\(s\) .* have no prediction, e\.g\. {first[1].id}"):
        score_predictions(config, short)


def test_squad_v2_unanswerable_questions_are_scored_as_abstention(tmp_path):
    path = str(ASSETS / "squad_v2_tiny.json")
    dataset = load_eval_set(path, split="all")
    assert dataset.format == "squad"
    assert [(i.id, i.answerable, i.references) for i in dataset.items] == [
        ("101", True, ("about 390 billion",)),
        ("102", False, ()),
        ("201", True, ("1,642 metres",)),
        ("202", False, ()),
    ]
    replies = {"101": ("about 390 billion", False), "102": ("", True), "201": ("1,642 m", False)}
    replies["202"] = ("In 1990.", False)  # an invented answer to an unanswerable question
    predictions = tmp_path / "predictions.jsonl"
    rows = [{"id": i, "prediction": text, "abstained": abstained} for i, (text, abstained) in replies.items()]
    predictions.write_text("".join(json.dumps(row) + "\n" for row in rows))
    config = _config(
        tmp_path, context="closed-book", metrics=["squad", "abstention"], data={"path": path, "split": "all"}
    )
    result = score_predictions(config, predictions)
    # EM/F1 over the two answerable questions only; each unanswerable one is a refusal item.
    assert result.metrics["squad"].scores["n_scored"] == 2 and result.scores["exact_match"] == 50.0
    assert result.scores["n_unanswerable"] == 2 and result.scores["correct_refusals"] == 50.0
    assert result.scores["false_refusals"] == 0.0
    assert [p.gold_context is None for p in result.predictions] == [False, True, False, True]


def test_hugging_face_squad_jsonl_is_read_with_its_unanswerable_questions(tmp_path):
    # What `datasets.load_dataset("squad_v2")["validation"].to_json(...)` writes: one question a line.
    rows = [
        {"id": "a", "title": "Oxygen", "context": "Oxygen is element 8.", "question": "Which element is 8?",
         "answers": {"text": ["Oxygen", "oxygen"], "answer_start": [0, 0]}},
        {"id": "b", "title": "Oxygen", "context": "Oxygen is element 8.", "question": "Which is 9?",
         "answers": {"text": [], "answer_start": []}},
    ]  # fmt: skip
    path = tmp_path / "squad_v2-validation.jsonl"
    path.write_text("".join(json.dumps(row) + "\n" for row in rows))
    dataset = load_eval_set(str(path))
    assert dataset.format == "qa"
    assert [(i.id, i.answerable, i.references, i.context, i.title) for i in dataset.items] == [
        ("a", True, ("Oxygen", "oxygen"), "Oxygen is element 8.", "Oxygen"),
        ("b", False, (), "Oxygen is element 8.", "Oxygen"),
    ]
    path.write_text(json.dumps({"question": "Q?", "answers": {"start": [1]}}) + "\n")
    with pytest.raises(
        InputError, match=r"validation\.jsonl:1: no reference answer: .*has answers, question"
    ):
        load_eval_set(str(path))


def test_gold_context_run_keeps_squad_v2_questions_unanswerable(tmp_path):
    from fakes import ScriptedGenerator
    from slmkit.eval.runner import _predict

    path = str(ASSETS / "squad_v2_tiny.json")
    config = _config(tmp_path, context="gold", data={"path": path, "split": "all"})
    dataset = load_eval_set(path, split="all")
    predictions = _predict(config, dataset, ScriptedGenerator("I don't know."), None, progress=False)
    assert [(p.answerable, p.references != ()) for p in predictions] == [
        (True, True),
        (False, False),
        (True, True),
        (False, False),
    ]
    assert [p.gold_context is not None for p in predictions] == [True, False, True, False]
    assert all(p.contexts for p in predictions)  # the paragraph is still shown to the model


@pytest.mark.slow
def test_closed_book_and_gold_runs_write_predictions_metrics_and_provenance(tmp_path, smollm):
    closed = run_eval(
        _config(tmp_path / "c", context="closed-book", data={"limit": 3}), loaded=smollm, progress=False
    )
    gold = run_eval(_config(tmp_path / "g", context="gold", data={"limit": 3}), loaded=smollm, progress=False)
    for result in (closed, gold):
        assert len(result.predictions) == 3
        for key in ("exact_match", "f1", "rougeL", "bleu", "bertscore_f1", "cosine", "latency_p50_s"):
            assert key in result.scores
        saved = read_predictions(result.output_dir / "predictions.jsonl")
        assert [p.id for p in saved] == [p.id for p in result.predictions]
        record = json.loads((result.output_dir / "metrics.json").read_text())
        assert record["provenance"]["versions"]["transformers"]
        assert len(next(iter(record["provenance"]["model"]["sha256"].values()))) == 64
        assert record["provenance"]["dataset"]["sha256"] and record["resources"]["parameters"] > 1e8
    assert all(p.contexts == (p.gold_context,) for p in gold.predictions)
    assert "faithfulness" in gold.scores or gold.scores.get("correct_refusals") is None
    # Reading the passage helps the untuned model: F1 with the gold paragraph beats closed-book.
    assert gold.scores["f1"] >= closed.scores["f1"]


@pytest.mark.slow
def test_retrieved_run_marks_questions_the_kb_cannot_answer(tmp_path, smollm, squad_kb):
    articles = split_articles(load_squad(bundled_squad()), "eval")
    inside = articles[0].paragraphs[0]  # the squad_kb fixture holds the first 12 paragraphs of 3 articles
    outside = articles[5].paragraphs[0]
    rows = [
        {"id": q.id, "question": q.question, "answers": q.answers, "context": p.context}
        for p in (inside, outside)
        for q in p.qas[:2]
    ]
    data = tmp_path / "qa.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in rows))
    result = run_eval(
        _config(tmp_path, kb=str(squad_kb.path), data={"path": str(data)}),
        loaded=smollm,
        kb=squad_kb,
        progress=False,
    )
    assert [p.answerable for p in result.predictions] == [True, True, False, False]
    assert result.scores["n_unanswerable"] == 2 and result.scores["n_answerable"] == 2
    assert 0 <= result.scores["correct_refusals"] <= 100
    assert result.scores["recall@5"] == 100.0  # both answerable questions find their paragraph
    assert all(p.contexts for p in result.predictions if not p.abstained)


@pytest.mark.slow
def test_multiple_choice_and_perplexity(tmp_path, smollm):
    mc = run_eval(
        _config(
            tmp_path / "mc",
            context="closed-book",
            data={"path": str(REPO / "data/medqa/medqa_usmle_test_200.jsonl"), "limit": 3},
        ),
        loaded=smollm,
        progress=False,
    )
    assert mc.predictions[0].choices and set(mc.predictions[0].choices) == {"A", "B", "C", "D"}
    assert 0 <= mc.scores["accuracy"] <= 100
    text = run_eval(
        _config(tmp_path / "t", data={"path": str(ASSETS / "sample.txt")}), loaded=smollm, progress=False
    )
    assert 1 < text.scores["perplexity"] < 1000 and text.scores["n_tokens"] > 20


@pytest.mark.slow
def test_peak_memory_of_a_spawned_child_is_its_own():
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    import numpy as np

    from slmkit.eval.runner import peak_rss_gb

    ballast = np.ones((3 << 30) // 8)  # 3 GiB touched in this (parent) process
    with ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn")) as pool:
        child = pool.submit(peak_rss_gb).result()
    assert peak_rss_gb() >= 3.0 > child + 1.0  # getrusage would have reported the parent's 3+ GiB
    del ballast
