"""Query adapters for a knowledge base: pairs, hold-out, training, publishing, and a killed run."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from slmkit.config import DEFAULT_LEXICAL_WEIGHT, QueryTuneConfig
from slmkit.errors import InputError
from slmkit.rag.knowledge_base import KnowledgeBase
from slmkit.rag.storage import current_version
from slmkit.train.query_tuning import (
    LEXICAL_WEIGHTS,
    FusionChoice,
    QueryPair,
    choose_lexical_weight,
    read_pairs,
    split_heldout,
    tune_query_encoder,
)

REPO = Path(__file__).resolve().parents[2]
TINY = REPO / "tests" / "assets" / "squad_tiny.json"


def _write(path: Path, rows: list) -> Path:
    path.write_text(
        "".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in rows), encoding="utf-8"
    )
    return path


@pytest.fixture
def own_kb(tmp_path, embedder):
    """A fresh copy of the tiny knowledge base: these tests publish new versions of it."""
    kb, _ = KnowledgeBase.build(tmp_path / "kb", [str(TINY)], embedder=embedder, progress=False)
    return kb


def _tiny_pairs(kb: KnowledgeBase) -> list[dict]:
    """Every tiny-SQuAD question with its paragraph as the passage, plus a few written by hand."""
    data = json.loads(TINY.read_text(encoding="utf-8"))
    rows = [
        {"question": qa["question"], "passage": p["context"]}
        for article in data["data"]
        for p in article["paragraphs"]
        for qa in p["qas"]
    ]
    for chunk in kb.chunks:
        rows.append({"question": f"What does this say: {chunk.text.split()[0]}?", "chunk_id": chunk.id})
    return rows


def test_pairs_by_chunk_id_and_by_passage(tmp_path, tiny_kb):
    rows = _tiny_pairs(tiny_kb)
    pairs, unmatched = read_pairs(_write(tmp_path / "pairs.jsonl", rows), tiny_kb)
    assert unmatched == 0 and len(pairs) == len(rows)
    by_passage = {p.question: p.positives for p in pairs}
    for row in rows:
        if "passage" in row:  # each passage is matched to the chunk cut from it, and only that one
            (chunk_id,) = by_passage[row["question"]]
            assert (
                tiny_kb.chunks[chunk_id].text in row["passage"]
                or row["passage"] in tiny_kb.chunks[chunk_id].text
            )


def test_a_passage_from_elsewhere_matches_nothing(tmp_path, tiny_kb):
    rows = [
        {"question": "Who won?", "chunk_id": 0},
        {"question": "What is a lion?", "passage": "Lions are large cats living in African savannas."},
    ]
    pairs, unmatched = read_pairs(_write(tmp_path / "p.jsonl", rows), tiny_kb)
    assert [p.positives for p in pairs] == [(0,)] and unmatched == 1


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ("{not json", "p.jsonl:2: not valid JSON"),
        ("[1, 2]", "p.jsonl:2: expected a JSON object"),
        ('{"chunk_id": 0}', "p.jsonl:2: 'question' must be a non-empty string"),
        ('{"question": "Why?", "chunk_id": 99}', "p.jsonl:2: chunk id 99 is not in"),
        ('{"question": "Why?", "chunk_id": "0"}', "p.jsonl:2: 'chunk_id' must be an integer"),
        ('{"question": "Why?"}', "p.jsonl:2: give 'chunk_id'"),
    ],
)
def test_bad_pairs_name_the_file_and_line(tmp_path, tiny_kb, line, message):
    path = _write(tmp_path / "p.jsonl", [{"question": "Who won?", "chunk_id": 0}, line])
    with pytest.raises(InputError, match=message.replace("?", r"\?").replace("[", r"\[")):
        read_pairs(path, tiny_kb)


def test_heldout_chunks_are_held_out_whole():
    pairs = [QueryPair(f"q{i}", (i % 10, (i + 1) % 10)) for i in range(50)]
    train, heldout = split_heldout(pairs, 0.2, seed=0)
    assert train and heldout and len(train) + len(heldout) <= 50
    seen = {c for p in train for c in p.positives}
    # No chunk of a held-out question is a training question's (real data: Medical Meadow's repeated
    # answers, kept once, made a held-out question and a training one share a chunk; training then
    # looked up a chunk it had excluded and failed).
    assert all(not seen.intersection(p.positives) for p in heldout)
    assert {p.question for p in train}.isdisjoint(p.question for p in heldout)


def test_tune_then_publish_a_new_version(tmp_path, own_kb):
    pairs, _ = read_pairs(_write(tmp_path / "p.jsonl", _tiny_pairs(own_kb)), own_kb)
    before_version = current_version(own_kb.path)
    result = tune_query_encoder(
        own_kb, pairs, tmp_path / "adapter", QueryTuneConfig(epochs=2, holdout=0.0, lr=1e-3), progress=False
    )
    info = json.loads((result.adapter / "query_adapter.json").read_text())
    assert info["embedder"] == "all-minilm-l6-v2" and info["train_pairs"] == len(pairs)
    assert (result.adapter / "adapter_model.safetensors").is_file()

    tuned = own_kb.tuned(result.adapter)
    assert current_version(own_kb.path) != before_version
    assert Path(tuned.query_embedder).parent == own_kb.path / "query-adapters"
    assert KnowledgeBase.open(own_kb.path).info()["query_embedder"] == tuned.query_embedder
    # Chunks and vectors are the previous version's: nothing was re-embedded.
    ids = np.arange(len(own_kb.chunks))
    np.testing.assert_array_equal(tuned.dense.vectors(ids), own_kb.dense.vectors(ids))
    # Questions now go through the adapter (a different vector from the plain embedder's).
    reopened = KnowledgeBase.open(own_kb.path)
    question = ["Who won Super Bowl 50?"]
    plain = own_kb.embed(question)
    adapted = reopened.embed_queries(question, engine="sentence-transformers")
    assert float(plain[0] @ adapted[0]) < 0.9999
    # The knowledge base returned keeps the embedder it was handed, and its questions go through the
    # adapter too (they did not: an in-process benchmark measured the plain embedder twice).
    assert tuned._embedder is own_kb._embedder
    through_tuned = tuned.embed_queries(question, engine="sentence-transformers")
    np.testing.assert_allclose(through_tuned, adapted, atol=1e-5)
    np.testing.assert_allclose(own_kb.embed_queries(question), plain, atol=1e-6)


def test_an_adapter_for_another_embedder_is_refused(tmp_path, own_kb):
    adapter = tmp_path / "other"
    adapter.mkdir()
    (adapter / "adapter_model.safetensors").write_bytes(b"")
    (adapter / "query_adapter.json").write_text(json.dumps({"embedder": "bge-small"}))
    with pytest.raises(Exception, match="trained for embedder 'bge-small'"):
        own_kb.tuned(adapter)


_ENV = dict(os.environ, HF_HUB_OFFLINE="1", TOKENIZERS_PARALLELISM="false")


def _tune_until_training(
    tmp_path: Path, kb: KnowledgeBase, epochs: int
) -> tuple[subprocess.Popen, list, Path]:
    """``(process, command, log)``: `slmkit index tune` on the tiny pairs (x40) in a real process,
    returned once its training runs (its progress bar counts steps)."""
    pairs = _write(tmp_path / "p.jsonl", _tiny_pairs(kb) * 40)
    command = [sys.executable, "-c", "from slmkit.cli import main; main()", "index", "tune"]
    command += ["--kb", str(kb.path), "--pairs", str(pairs), "--epochs", str(epochs), "--holdout", "0"]
    log = tmp_path / "tune.log"
    # Output goes to a file: a pipe nobody reads would fill up with progress bars and block the child.
    with log.open("wb") as out:
        process = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT, env=_ENV)
    deadline = time.monotonic() + 300
    while "tune:" not in log.read_text(errors="replace"):
        assert process.poll() is None, log.read_text(errors="replace")[-2000:]
        assert time.monotonic() < deadline, "timed out waiting for training to start"
        time.sleep(0.1)
    return process, command, log


def test_a_killed_tune_leaves_the_knowledge_base_as_it_was(tmp_path, own_kb):
    """SIGKILL during training: the live version, its manifest and its answers are untouched."""
    version = current_version(own_kb.path)
    manifest = (version / "manifest.json").read_bytes()
    process, _, _ = _tune_until_training(tmp_path, own_kb, epochs=50)
    process.send_signal(signal.SIGKILL)  # without warning
    process.wait()
    assert current_version(own_kb.path) == version
    assert (version / "manifest.json").read_bytes() == manifest
    reopened = KnowledgeBase.open(own_kb.path)
    assert reopened.query_embedder == "all-minilm-l6-v2"
    assert len(reopened.chunks) == len(own_kb.chunks)


def _adapter_weights(folder: Path) -> dict:
    from safetensors.numpy import load_file

    return load_file(str(folder / "adapter_model.safetensors"))


def test_a_stopped_tune_resumes_and_ends_as_the_uninterrupted_run(tmp_path, own_kb, monkeypatch, caplog):
    import logging

    from slmkit.interrupt import Interrupted
    from slmkit.train import query_tuning

    pairs, _ = read_pairs(_write(tmp_path / "p.jsonl", _tiny_pairs(own_kb) * 3), own_kb)
    config = QueryTuneConfig(epochs=2, batch_size=8, holdout=0.0, save_every=2, dropout=0.1)
    whole = tune_query_encoder(own_kb, pairs, tmp_path / "whole", config, progress=False)

    checkpoint = tmp_path / "checkpoint"
    asked = iter([None, None, None, signal.SIGTERM])  # a stop asked for during the 4th step
    monkeypatch.setattr(query_tuning, "stop_requested", lambda: next(asked, None))
    with pytest.raises(Interrupted):
        tune_query_encoder(own_kb, pairs, tmp_path / "resumed", config, False, checkpoint)
    assert not (tmp_path / "resumed").exists()
    assert _checkpoint_step(checkpoint) == 4  # saved at the stop, past the periodic one at step 2

    monkeypatch.undo()
    with caplog.at_level(logging.INFO, logger="slmkit.train.query_tuning"):
        resumed = tune_query_encoder(own_kb, pairs, tmp_path / "resumed", config, False, checkpoint)
    assert "resuming query tuning from step 4" in caplog.text
    expected, got = _adapter_weights(whole.adapter), _adapter_weights(resumed.adapter)
    assert expected.keys() == got.keys()
    for name in expected:  # dropout included: the RNG state is part of the checkpoint
        np.testing.assert_allclose(got[name], expected[name], rtol=0, atol=1e-6)

    # A checkpoint of other settings is not resumed from.
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="slmkit.train.query_tuning"):
        other = config.model_copy(update={"lr": 1e-3})
        tune_query_encoder(own_kb, pairs, tmp_path / "other", other, False, checkpoint)
    assert "checkpoint of another tuning run" in caplog.text and "resuming" not in caplog.text


def _checkpoint_step(checkpoint: Path) -> int:
    from slmkit.train.checkpoint import checkpoint_state

    return checkpoint_state(checkpoint)["step"]


def test_sigterm_stops_the_cli_tune_at_a_checkpoint_and_the_same_command_resumes(tmp_path, own_kb):
    """A real SIGTERM to a real `slmkit index tune`: it says how to resume and exits 143, having
    published nothing; the same command then finishes, publishes, and removes the checkpoint."""
    version = current_version(own_kb.path)
    process, command, log = _tune_until_training(tmp_path, own_kb, epochs=3)
    process.send_signal(signal.SIGTERM)
    assert process.wait(timeout=60) == 143
    said = log.read_text(errors="replace")
    assert "stopped by SIGTERM" in said and "resume with" in said and "index tune" in said
    checkpoint = own_kb.path / ".tune-checkpoint"
    step = _checkpoint_step(checkpoint)
    assert step >= 1
    assert current_version(own_kb.path) == version  # nothing published

    finished = subprocess.run(command, capture_output=True, text=True, env=_ENV, timeout=600)
    assert finished.returncode == 0, finished.stderr[-2000:]
    assert json.loads(finished.stdout[finished.stdout.index("{") :])["published"] is True
    assert current_version(own_kb.path) != version
    assert not checkpoint.exists()


def test_the_cli_tunes_reports_and_publishes(tmp_path, own_kb):
    from typer.testing import CliRunner

    from slmkit.cli import app

    rows = _tiny_pairs(own_kb)  # before the tune: publishing retires the version own_kb reads from
    pairs = _write(tmp_path / "p.jsonl", rows)
    args = [
        "index",
        "tune",
        "--kb",
        str(own_kb.path),
        "--pairs",
        str(pairs),
        "--epochs",
        "1",
        "--holdout",
        "0",
    ]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout[result.stdout.index("{") :])
    assert report["published"] is True and report["pairs"] == len(rows)
    assert report["unmatched_passages"] == 0
    info = KnowledgeBase.open(own_kb.path).info()
    assert Path(info["query_embedder"]).parent == own_kb.path / "query-adapters"
    fusion = report["lexical_weight"]
    assert fusion["before"] == DEFAULT_LEXICAL_WEIGHT and fusion["chosen"] in LEXICAL_WEIGHTS
    # No hold-out: a weight other than the current one is published as chosen on the training questions.
    assert fusion["published"] == (fusion["chosen"] != DEFAULT_LEXICAL_WEIGHT)
    assert info["lexical_weight"] == (fusion["chosen"] if fusion["published"] else None)
    assert not [p for p in own_kb.path.iterdir() if p.name.startswith(".tune-")]  # staging removed


def test_the_cli_without_pairs_has_a_teacher_write_them_first(tmp_path, embedder, monkeypatch):
    from dataclasses import replace

    from typer.testing import CliRunner

    from fakes import ScriptedTeacher
    from slmkit.cli import app
    from slmkit.data.squad import bundled_squad, load_squad, split_articles, write_squad_paragraphs

    # Paragraphs long enough for synth (the tiny ones are below its min_chunk_words).
    articles = split_articles(load_squad(bundled_squad()), "train")[:3]
    source = tmp_path / "paragraphs.json"
    write_squad_paragraphs([replace(a, paragraphs=a.paragraphs[:4]) for a in articles], source)
    kb, _ = KnowledgeBase.build(tmp_path / "kb", [source], embedder=embedder, progress=False)
    teacher = ScriptedTeacher(
        {
            "gave their name to Normandy": "Question: In what country is Normandy located?\nAnswer: France",
            "Norman dynasty had a major": "Question: What did the Normans become exponents of?\n"
            "Answer: Catholic orthodoxy",
        }
    )
    monkeypatch.setattr("slmkit.models.backends.load_generator", lambda *args, **kwargs: teacher)
    args = ["index", "tune", "--kb", str(kb.path), "--questions", "2", "--epochs", "1", "--holdout", "0"]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout[result.stdout.index("{") :])
    assert report["pairs"] == 2 and report["published"] is True
    written = (kb.path / ".tune-synth" / "pairs.jsonl").read_text(encoding="utf-8")
    assert "In what country is Normandy located?" in written
    # Kept for a later tune: asked again, the teacher is not asked again.
    asked = len(teacher.seen)
    assert CliRunner().invoke(app, args).exit_code == 0
    assert len(teacher.seen) == asked


def test_the_cli_names_a_bad_pairs_line(tmp_path, own_kb):
    from typer.testing import CliRunner

    from slmkit.cli import app

    pairs = _write(tmp_path / "p.jsonl", [{"question": "Who won?", "chunk_id": 0}, "{oops"])
    result = CliRunner().invoke(app, ["index", "tune", "--kb", str(own_kb.path), "--pairs", str(pairs)])
    # The console entry point prints an InputError as one line and exits with 2 (slmkit.cli.main).
    assert isinstance(result.exception, InputError)
    assert f"{pairs}:2: not valid JSON" in str(result.exception)


def test_the_fusion_weight_is_chosen_on_training_questions_and_checked_on_held_out_ones(tmp_path, own_kb):
    pairs, _ = read_pairs(_write(tmp_path / "p.jsonl", _tiny_pairs(own_kb)), own_kb)
    config = QueryTuneConfig(holdout=0.3)
    choice = choose_lexical_weight(own_kb, pairs, config)
    assert choice.current == DEFAULT_LEXICAL_WEIGHT and set(choice.train) == set(LEXICAL_WEIGHTS)
    best = max((r["recall@1"], r["mrr@20"]) for r in choice.train.values())
    assert (choice.train[choice.chosen]["recall@1"], choice.train[choice.chosen]["mrr@20"]) == best
    train, heldout = split_heldout(pairs, config.holdout, config.seed)
    assert heldout and choice.heldout_current["recall@20"] >= choice.heldout_current["recall@1"]
    # Weight 0 is dense search over the fused candidates: the same recall as the embedder alone.
    from slmkit.train.query_tuning import dense_recall

    plain = dense_recall(own_kb, own_kb.embed_queries([p.question for p in train]), train)
    assert choice.train[0.0]["recall@1"] == plain["recall@1"]


@pytest.mark.parametrize(
    ("current", "chosen", "held_current", "held_chosen", "improved"),
    [
        (0.6, 0.6, (0.5, 0.6), (0.5, 0.6), False),  # nothing new
        (0.6, 0.2, (0.5, 0.6), (0.7, 0.8), True),
        (0.6, 0.2, (0.5, 0.6), (0.5, 0.6), True),  # as good on held-out questions, better on training ones
        (0.6, 0.2, (0.5, 0.6), (0.4, 0.9), False),  # recall@1 first
        (0.6, 0.2, None, None, True),  # no hold-out: trust the training questions
    ],
)
def test_a_chosen_weight_is_published_only_if_held_out_questions_agree(
    current, chosen, held_current, held_chosen, improved
):
    def scores(pair):
        return {"recall@1": pair[0], "mrr@20": pair[1]} if pair else {}

    choice = FusionChoice(current, chosen, {}, scores(held_current), scores(held_chosen))
    assert choice.improved is improved
