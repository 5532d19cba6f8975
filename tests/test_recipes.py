"""Every shipped recipe validates against the config schema."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from slmkit.config import (
    AskConfig,
    DistillConfig,
    EvalConfig,
    ExperimentConfig,
    IndexConfig,
    RerankerTrainConfig,
    SynthConfig,
    TrainConfig,
    load_yaml,
    parse_config,
)
from slmkit.models.loading import is_hub_id

REPO = Path(__file__).resolve().parent.parent
RECIPES = sorted((REPO / "recipes").glob("*.yaml"))
SECTIONS = {
    "index": IndexConfig,
    "ask": AskConfig,
    "train": TrainConfig,
    "distill": DistillConfig,
    "eval": EvalConfig,
    "experiment": ExperimentConfig,
    "synth": SynthConfig,
    "rerank": RerankerTrainConfig,
}


def test_there_are_recipes():
    assert RECIPES


@pytest.mark.parametrize("recipe", RECIPES, ids=lambda p: p.name)
def test_recipe_validates_and_starts_with_its_command(recipe):
    text = recipe.read_text(encoding="utf-8")
    assert "slmkit " in text.split("\n\n")[0], "a recipe begins with the command that runs it"
    data = load_yaml(recipe)
    assert set(data) <= set(SECTIONS), f"unknown sections: {set(data) - set(SECTIONS)}"
    for section, model in SECTIONS.items():
        if section in data:
            parse_config(model, data[section], f"{recipe.name} [{section}]")
    for entry in data.get("experiment", {}).get("models", []):
        if "train" in entry:  # a matrix names recipes that must exist and be valid themselves
            assert (REPO / entry["train"]).is_file(), entry["train"]


TRAIN_RECIPES = [r for r in RECIPES if "train" in load_yaml(r)]
# Recipes for hub models run where the hub is reachable; offline, each is smoke-run on the tiny random
# model of its family (tests/families.py), so its data, method, targets and optimizer are exercised.
HUB_FAMILIES = {
    "microsoft/phi-2": "phi",
    "microsoft/phi-1_5": "phi",
    "Qwen/Qwen2-0.5B": "qwen2",
    "distilbert/distilgpt2": "gpt2",
    "openai-community/gpt2": "gpt2",
    "facebook/bart-large-xsum": "bart",
    "mistralai/Mistral-7B-v0.1": "mistral",
    "meta-llama/Llama-3.1-8B": "llama",
}
HUB_RECIPES = [r for r in TRAIN_RECIPES if is_hub_id(str(load_yaml(r)["train"].get("model", "")))]


def test_there_is_a_recipe_for_each_seed_hub_model():
    assert {load_yaml(r)["train"]["model"] for r in HUB_RECIPES} == set(HUB_FAMILIES)


@pytest.mark.parametrize("recipe", HUB_RECIPES, ids=lambda p: p.name)
def test_hub_recipe_states_the_memory_it_needs(recipe):
    header = recipe.read_text(encoding="utf-8").split("\n\n")[0]
    stated = re.search(r"pre-flight estimate.*: [\d.]+ GiB on CUDA,\s*#\s*[\d.]+ GiB on CPU", header)
    assert stated, f"{recipe.name}: say the memory it needs (python scripts/recipe_memory.py)"


@pytest.mark.slow
@pytest.mark.parametrize("recipe", TRAIN_RECIPES, ids=lambda p: p.name)
def test_train_recipe_smoke_run(recipe, tmp_path, monkeypatch, model_cache, tiny_model):
    """Every training recipe runs for real, CPU-sized: 2 steps on 8 examples (hub models: on the tiny
    model of their family)."""
    from slmkit.train.run import finetune

    monkeypatch.setenv("SLMKIT_CACHE", str(model_cache))
    monkeypatch.chdir(REPO)  # recipes name their data relative to the repository root
    data = load_yaml(recipe)["train"]
    if data.get("model") in HUB_FAMILIES:
        data["model"] = str(tiny_model(HUB_FAMILIES[data["model"]]))
    data["output_dir"] = str(tmp_path / "run")
    data["data"] = {**data.get("data", {}), "max_examples": 8, "max_val_examples": 4, "max_seq_len": 384}
    if data["data"].get("task", "squad") == "squad":
        # Tiny SQuAD file: a retrieved-context recipe then builds its knowledge base in seconds.
        data["data"].update(
            path=str(Path(__file__).parent / "assets" / "squad_tiny.json"), split="all", top_k=2
        )
    if data["data"].get("path", "").startswith("runs/"):
        # Data another command writes (`slmkit synth`): a tiny file in the same format stands in.
        data["data"]["path"] = str(Path(__file__).parent / "assets" / "tasks" / "synth_tiny.jsonl")
    data["optim"] = {**data.get("optim", {}), "max_steps": 2, "batch_size": 2, "grad_accum": 1}
    result = finetune(parse_config(TrainConfig, data, recipe.name))
    assert result["finished"] and result["step"] == 2
    assert (tmp_path / "run" / "final" / "model.safetensors").exists()


DISTILL_RECIPES = [r for r in RECIPES if "distill" in load_yaml(r)]


def test_there_is_a_distillation_recipe():
    assert DISTILL_RECIPES


@pytest.mark.slow
@pytest.mark.parametrize("recipe", DISTILL_RECIPES, ids=lambda p: p.name)
def test_distill_recipe_smoke_run(recipe, tmp_path, monkeypatch, model_cache):
    """Every distillation recipe runs for real, CPU-sized: 2 steps on 8 examples, no eval questions."""
    from slmkit.train.distill import distill

    monkeypatch.setenv("SLMKIT_CACHE", str(model_cache))
    monkeypatch.chdir(REPO)
    data = load_yaml(recipe)["distill"]
    data["output_dir"] = str(tmp_path / "run")
    data["data"] = {
        **data.get("data", {}),
        "path": str(Path(__file__).parent / "assets" / "squad_tiny.json"),
        "split": "all",
        "max_examples": 8,
        "max_val_examples": 4,
        "max_seq_len": 256,
    }
    data["optim"] = {**data.get("optim", {}), "max_steps": 2, "batch_size": 2, "grad_accum": 1}
    data["eval"] = {"questions": 0}
    report = distill(parse_config(DistillConfig, data, recipe.name))
    assert report["steps"] == 2 and report["parameter_compression"] > 1
    assert (tmp_path / "run" / "final" / "model.safetensors").exists()
