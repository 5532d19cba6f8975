"""`slmkit experiment` end to end: a trained and a packaged model, two context modes, one report;
a second run reuses the trained model and every finished scenario."""

from __future__ import annotations

import json
from html.parser import HTMLParser
from pathlib import Path

import pytest
import yaml

from slmkit.config import EvalConfig, ExperimentConfig, parse_config
from slmkit.errors import ConfigError
from slmkit.experiment import _cached_scenario, load_experiment, run_experiment

ASSETS = Path(__file__).resolve().parent / "assets"


def test_a_model_needs_exactly_one_source(tmp_path):
    with pytest.raises(ConfigError, match="exactly one of 'model' or 'train'"):
        parse_config(ExperimentConfig, {"models": [{"name": "x"}]}, "matrix")


def test_a_matrix_file_needs_an_experiment_section(tmp_path):
    path = tmp_path / "m.yaml"
    path.write_text("train: {}\n")
    with pytest.raises(ConfigError, match="no 'experiment:' section"):
        load_experiment(path)


def test_a_finished_scenario_is_reused_unless_its_configuration_changed(tmp_path):
    config = EvalConfig(model="smollm2-135m-instruct", context="gold", output_dir=str(tmp_path))
    saved = json.loads(json.dumps(config.model_dump()))
    scenario = {"name": "base · gold", "metrics": {"f1": 12.5}}

    def cached(config_on_disk: dict):
        (tmp_path / "scenario.json").write_text(json.dumps({"config": config_on_disk, "scenario": scenario}))
        return _cached_scenario(config)

    assert cached(saved) == scenario
    # Saved by an older slmkit, before a field existed: the field's default changes nothing measured.
    assert cached({k: v for k, v in saved.items() if k != "backend"}) == scenario
    assert cached({**saved, "context": "closed-book"}) is None  # another scenario
    assert cached({**saved, "generation": {**saved["generation"], "max_new_tokens": 7}}) is None
    assert cached({**saved, "retired_field": 1}) is None  # a field slmkit no longer knows: redo


class _Tags(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.rows = 0
        self.images = 0

    def handle_starttag(self, tag, attrs):
        self.rows += tag == "tr"
        self.images += tag == "img" and dict(attrs).get("src", "").startswith("data:image/png;base64,")


@pytest.mark.slow
def test_experiment_trains_once_evaluates_each_scenario_and_reports(tmp_path, model_cache, monkeypatch):
    monkeypatch.setenv("SLMKIT_CACHE", str(model_cache))
    recipe = tmp_path / "lora.yaml"
    recipe.write_text(
        yaml.safe_dump(
            {
                "train": {
                    "method": "lora",
                    "output_dir": str(tmp_path / "lora-run"),
                    "bf16": False,
                    "data": {"path": str(ASSETS / "squad_tiny.json"), "split": "all", "max_examples": 4},
                    "optim": {"batch_size": 2, "max_steps": 1},
                }
            }
        )
    )
    matrix = tmp_path / "matrix.yaml"
    matrix.write_text(
        yaml.safe_dump(
            {
                "experiment": {
                    "title": "tiny",
                    "output_dir": str(tmp_path / "exp"),
                    "data": {"path": str(ASSETS / "squad_tiny.json"), "split": "all", "limit": 2},
                    "kb": {"path": str(tmp_path / "kb"), "sources": [str(ASSETS / "squad_tiny.json")]},
                    "models": [
                        {"name": "base", "model": "smollm2-135m-instruct"},
                        {"name": "lora", "train": str(recipe)},
                    ],
                    "contexts": ["closed-book", "retrieved"],
                    "metrics": ["squad", "abstention", "latency"],
                    "generation": {"max_new_tokens": 16},
                }
            }
        )
    )
    result = run_experiment(load_experiment(matrix))
    names = [s.name for s in result.scenarios]
    assert names == ["base · closed-book", "base · retrieved", "lora · closed-book", "lora · retrieved"]
    lora = result.scenarios[2]
    assert lora.method == "lora" and lora.resources["train_time_s"] > 0
    assert all(s.resources["peak_rss_gb"] > 0.3 and "f1" in s.metrics for s in result.scenarios)
    models = json.loads(result.report.results.read_text())["provenance"]["models"]
    assert all(len(digest) == 64 for m in models.values() for digest in m["sha256"].values())
    tags = _Tags()
    tags.feed(result.report.html.read_text())
    assert tags.rows == 1 + 4 and tags.images >= 1
    assert all(p.stat().st_size > 0 for p in result.report.plots)

    trained = tmp_path / "lora-run" / "final" / "training.json"
    scenario = tmp_path / "exp" / "scenarios" / "lora-retrieved" / "scenario.json"
    stamps = trained.stat().st_mtime_ns, scenario.stat().st_mtime_ns
    again = run_experiment(load_experiment(matrix))
    assert (trained.stat().st_mtime_ns, scenario.stat().st_mtime_ns) == stamps  # reused, not redone
    assert [s.metrics for s in again.scenarios] == [s.metrics for s in result.scenarios]
