"""lm-evaluation-harness bridge: task checks before any model loads, bundled offline tasks, result parsing."""

from __future__ import annotations

import importlib.metadata
import json
import time

import numpy as np
import pytest

from slmkit.errors import ConfigError
from slmkit.eval.harness import (
    HarnessResult,
    TaskUnavailableError,
    harness_task_manager,
    run_harness,
    squad_answer_pairs,
)

# A model name that cannot load: a test that reaches model loading fails with ModelNotFoundError, which
# proves the task checks ran first.
NO_MODEL = "no-such-model"


@pytest.fixture(scope="module")
def user_tasks(tmp_path_factory):
    """A user's --include-path folder holding one group over a bundled task and a hub task."""
    folder = tmp_path_factory.mktemp("user_tasks")
    (folder / "med_pair.yaml").write_text("group: med_pair\ntask:\n  - medqa_local\n  - truthfulqa_mc2\n")
    return folder


@pytest.fixture(scope="module")
def task_index(user_tasks):
    """The task index for ``user_tasks``: parsing ~14,000 YAMLs takes ~10 s once per process and folder
    set, so every test here passes the same include_path and reuses it."""
    return harness_task_manager(user_tasks)


def test_unknown_task_lists_close_matches_before_loading_the_model(task_index, user_tasks):
    with pytest.raises(ConfigError) as err:
        run_harness(NO_MODEL, ["medqa_local", "helaswag"], include_path=user_tasks)
    message = str(err.value)
    assert "unknown lm-eval task 'helaswag'" in message
    assert "did you mean: hellaswag" in message
    assert "slmkit's own tasks: medqa_local, squad_local" in message


def test_offline_hub_task_fails_fast_naming_its_dataset(task_index, user_tasks, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    start = time.perf_counter()
    with pytest.raises(TaskUnavailableError) as err:
        run_harness(NO_MODEL, ["hellaswag"], include_path=user_tasks)
    assert time.perf_counter() - start < 10
    assert str(err.value).startswith(
        "task 'hellaswag' needs the Hugging Face dataset 'Rowan/hellaswag', which cannot be downloaded "
        "offline (HF_HUB_OFFLINE=1)"
    )


def test_offline_check_looks_inside_the_users_groups(task_index, user_tasks):
    with pytest.raises(TaskUnavailableError) as err:
        run_harness(NO_MODEL, ["med_pair"], include_path=user_tasks)
    assert "task 'truthfulqa_mc2' (part of 'med_pair') needs the Hugging Face dataset " in str(err.value)
    assert "'truthfulqa/truthful_qa' (config 'multiple_choice')" in str(err.value)


def test_code_executing_task_needs_confirmation(task_index, user_tasks):
    with pytest.raises(ConfigError, match=r"humaneval execute code written by the model.*confirm_run_unsafe"):
        run_harness(NO_MODEL, ["humaneval"], include_path=user_tasks)
    # Confirmed, the run gets past that check (and, offline, stops at the uncached dataset).
    with pytest.raises(TaskUnavailableError, match="'openai/openai_humaneval'"):
        run_harness(NO_MODEL, ["humaneval"], include_path=user_tasks, confirm_run_unsafe_code=True)


@pytest.mark.parametrize(
    ("options", "fragment"),
    [
        ({"tasks": []}, "one or more task names"),
        ({"tasks": "medqa_local"}, "one or more task names"),
        ({"tasks": ["medqa_local"], "limit": 0}, "limit must be > 0"),
        ({"tasks": ["medqa_local"], "num_fewshot": -1}, "num_fewshot must be >= 0"),
        ({"tasks": ["medqa_local"], "batch_size": 0}, "batch_size must be >= 1"),
        ({"tasks": ["medqa_local"], "include_path": "/no/such/dir"}, "include_path /no/such/dir: no such"),
    ],
)
def test_bad_options_are_config_errors(options, fragment):
    with pytest.raises(ConfigError, match=fragment):
        run_harness(NO_MODEL, **options)


def test_medqa_local_builds_offline_from_package_data(task_index):
    task = task_index.load(["medqa_local"])["tasks"]["medqa_local"]
    docs = list(task.test_docs())
    assert len(docs) == 100
    prompt = task.doc_to_text(docs[0])
    assert prompt.startswith("Question: A junior orthopaedic surgery resident is completing a carpal tunnel")
    assert prompt.endswith("ethics committee\nD. Refuse to dictate the operative report\nAnswer:")
    assert task.doc_to_choice(docs[0]) == ["A", "B", "C", "D"]
    # The first three answers in the file are B, D, B.
    assert [task.doc_to_target(d) for d in docs[:3]] == [1, 3, 1]


def test_squad_answer_pairs_put_gold_and_distractor_from_the_same_paragraph():
    records = squad_answer_pairs()["test"]
    assert len(records) == 413  # eval paragraphs with a distractor, one question each
    first, second = records[0], records[1]
    assert first["question"] == "Which NFL team represented the AFC at Super Bowl 50?"
    assert first["choices"] == ["Denver Broncos", "Carolina Panthers"] and first["label"] == 0
    # The gold answer alternates position, so always picking one choice scores 0.5.
    assert second["label"] == 1
    assert [r["label"] for r in records.select(range(6))] == [0, 1, 0, 1, 0, 1]
    assert all(choice in r["context"] for r in records.select(range(20)) for choice in r["choices"])
    assert len(squad_answer_pairs(max_questions=5)["test"]) == 5


def test_result_parses_lm_eval_output():
    raw = {
        "results": {
            "medqa_local": {
                "alias": "medqa_local",
                "sample_len": 8,
                "acc,none": np.float64(0.25),
                "acc_stderr,none": 0.16366,
            },
            "gsm8k": {
                "alias": "gsm8k",
                "exact_match,strict-match": 0.5,
                "exact_match_stderr,strict-match": 0.1,
                "exact_match,flexible-extract": 0.75,
                "exact_match_stderr,flexible-extract": "N/A",
            },
            "pair": {"alias": "pair", "acc,none": 0.4, "acc_stderr,none": "N/A"},
        },
        "group_subtasks": {"pair": ["medqa_local", "gsm8k"]},
        "n-shot": {"medqa_local": 0, "gsm8k": 5},
        "n-samples": {
            "medqa_local": {"original": 100, "effective": 8},
            "gsm8k": {"original": 1319, "effective": 2},
        },
        "samples": {"medqa_local": [{"doc": "..."}]},
        "config": {"model": object(), "dtype": {"float32"}},
    }
    result = HarnessResult.from_lm_eval("smollm2-135m-instruct", raw, "0.4.13")

    assert result.metrics == {
        "medqa_local": {"acc": 0.25, "acc_stderr": 0.16366},
        "gsm8k": {
            "exact_match,strict-match": 0.5,
            "exact_match_stderr,strict-match": 0.1,
            "exact_match,flexible-extract": 0.75,
        },
        "pair": {"acc": 0.4},
    }
    assert result.samples == {"medqa_local": 8, "gsm8k": 2, "pair": 10}
    assert result.num_fewshot == {"medqa_local": 0, "gsm8k": 5}
    assert "samples" not in result.raw and result.raw["config"]["dtype"] == ["float32"]
    assert result.to_markdown().splitlines() == [
        "| Task | n | Shots | Metric | Value | Stderr |",
        "|---|---:|---:|---|---:|---:|",
        "| medqa_local | 8 | 0 | acc | 0.2500 | 0.1637 |",
        "| gsm8k | 2 | 5 | exact_match,strict-match | 0.5000 | 0.1000 |",
        "| gsm8k | 2 | 5 | exact_match,flexible-extract | 0.7500 |  |",
        "| pair | 10 |  | acc | 0.4000 |  |",
    ]


def test_result_saves_as_json(tmp_path):
    result = HarnessResult("m", {"t": {"acc": 0.5}}, {"t": 4}, {"t": 0}, "0.4.13", {"results": {}})
    result.save(tmp_path / "out.json")
    assert json.loads((tmp_path / "out.json").read_text()) == {
        "model": "m",
        "metrics": {"t": {"acc": 0.5}},
        "samples": {"t": 4},
        "num_fewshot": {"t": 0},
        "lm_eval_version": "0.4.13",
        "raw": {"results": {}},
        "provenance": {},
    }


@pytest.mark.slow
def test_medqa_local_on_the_default_model(smollm, task_index, user_tasks):
    result = run_harness(smollm, ["medqa_local"], limit=8, include_path=user_tasks)
    assert set(result.metrics) == {"medqa_local"}
    assert 0.0 <= result.metrics["medqa_local"]["acc"] <= 1.0
    assert "acc_stderr" in result.metrics["medqa_local"]
    assert result.samples == {"medqa_local": 8}
    assert result.lm_eval_version == importlib.metadata.version("lm_eval")
    assert "| medqa_local | 8 | 0 | acc |" in result.to_markdown()
    json.dumps(result.raw)  # serialisable as returned
    assert result.raw["n-samples"]["medqa_local"] == {"original": 100, "effective": 8}
    assert len(next(iter(result.provenance["model"]["sha256"].values()))) == 64
    assert result.provenance["config"]["tasks"] == ["medqa_local"]
    assert result.provenance["versions"]["lm-eval"] == result.lm_eval_version
