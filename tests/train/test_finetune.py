"""Fine-tuning on the real packaged SmolLM2: labels, loss, training, resumption, outputs."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from slmkit.config import TrainConfig, parse_config
from slmkit.data.prompts import Passage, qa_messages
from slmkit.data.tasks import read_squad_examples
from slmkit.errors import ConfigError, InputError
from slmkit.models.loading import load_causal_lm
from slmkit.train.batching import collate
from slmkit.train.checkpoint import export_adapter
from slmkit.train.finetune import FineTune
from slmkit.train.loss import answer_loss
from slmkit.train.tokenize import IGNORE, tokenize_example, tokenize_examples

pytestmark = pytest.mark.slow
ASSETS = Path(__file__).resolve().parent.parent / "assets"


@pytest.fixture(scope="module")
def examples(smollm):
    found = read_squad_examples(ASSETS / "squad_tiny.json")
    return tokenize_examples(found, smollm.tokenizer, 256)


def test_labels_cover_the_answer_and_the_end_of_turn_token(smollm):
    messages = [
        *qa_messages("Who won?", [Passage("SB", "Denver won.")]),
        {"role": "assistant", "content": "Denver"},
    ]
    example, truncated = tokenize_example(messages, smollm.tokenizer, 512)
    labelled = [t for t, label in zip(example.input_ids, example.labels, strict=True) if label != IGNORE]
    assert smollm.tokenizer.decode(labelled) == "Denver<|im_end|>"
    assert labelled[-1] == smollm.tokenizer.pad_token_id  # SmolLM2's pad IS <|im_end|>: still a label
    assert not truncated


def test_truncation_keeps_the_answer(smollm):
    messages = [
        *qa_messages("Who won?", [Passage("SB", "word " * 600)]),
        {"role": "assistant", "content": "Denver"},
    ]
    example, truncated = tokenize_example(messages, smollm.tokenizer, 128)
    assert truncated and len(example) == 128
    labelled = [t for t, label in zip(example.input_ids, example.labels, strict=True) if label != IGNORE]
    assert smollm.tokenizer.decode(labelled) == "Denver<|im_end|>"


def test_answer_only_loss_equals_the_models_own_loss(smollm, examples):
    batch = collate(examples[:3], smollm.tokenizer.pad_token_id)
    with torch.no_grad():
        ours, count = answer_loss(smollm.model, batch)
        reference = smollm.model(**batch).loss
    assert count == int((batch["labels"][:, 1:] != IGNORE).sum())
    assert float(ours) == pytest.approx(float(reference), rel=1e-4)


def _config(tmp_path: Path, **overrides) -> TrainConfig:
    data = {
        "model": "smollm2-135m-instruct",
        "method": "lora",
        "output_dir": str(tmp_path / "run"),
        "bf16": False,
        "eval_every": 2,
        "save_every": 1,
        "seed": 1,
        "optim": {"lr": 1e-3, "batch_size": 2, "max_steps": 4, "warmup_ratio": 0.0},
    }
    data.update(overrides)
    return parse_config(TrainConfig, data, "test")


def _fresh(model_cache):
    return load_causal_lm("smollm2-135m-instruct", cache=model_cache)


def test_lora_training_lowers_the_loss_and_writes_a_usable_model(tmp_path, examples, model_cache):
    config = _config(tmp_path, optim={"lr": 2e-3, "batch_size": 2, "max_steps": 6, "warmup_ratio": 0.0})
    run = FineTune(config, examples, examples[:2], _fresh(model_cache))
    before = run.evaluate()
    result = run.train()
    assert result["finished"] and result["step"] == 6
    assert run.evaluate() < before
    final = Path(result["model_dir"])
    assert (final / "model.safetensors").exists() and (final / "recipe.yaml").exists()
    assert (final / "adapter" / "adapter_model.safetensors").exists()  # kept for `slmkit merge`
    reloaded = load_causal_lm(str(final))  # a plain model folder: LoRA merged
    assert reloaded.num_parameters == pytest.approx(134.5e6, rel=0.01)
    metrics = [
        json.loads(line) for line in (Path(config.output_dir) / "metrics.jsonl").read_text().splitlines()
    ]
    assert [m["step"] for m in metrics] == [1, 2, 3, 4, 5, 6]
    assert any("val_loss" in m for m in metrics) and (Path(config.output_dir) / "best").is_dir()
    assert list((Path(config.output_dir) / "tensorboard").glob("events.out.tfevents.*"))


def test_resume_after_interruption_reaches_the_same_loss(tmp_path, examples, model_cache):
    straight = FineTune(_config(tmp_path / "a"), examples, examples[:2], _fresh(model_cache))
    straight.train()
    expected = straight.evaluate()

    interrupted = FineTune(_config(tmp_path / "b"), examples, examples[:2], _fresh(model_cache))
    assert not interrupted.train(stop_after=2)["finished"]  # as if killed after step 2
    # The checkpoint's adapter, exported as PEFT writes adapters: best/ holds the same step here.
    run_dir = Path(interrupted.config.output_dir)
    assert export_adapter(run_dir, tmp_path / "exported") == 2
    exported = load_file(tmp_path / "exported" / "adapter_model.safetensors")
    saved = load_file(run_dir / "best" / "adapter" / "adapter_model.safetensors")
    assert exported.keys() == saved.keys() and all(torch.equal(exported[k], saved[k]) for k in saved)
    resumed = FineTune(_config(tmp_path / "b"), examples, examples[:2], _fresh(model_cache))
    result = resumed.train()
    assert result["finished"] and result["step"] == 4
    assert resumed.evaluate() == pytest.approx(expected, rel=1e-5)


def test_full_fine_tune_trains_every_parameter(tmp_path, examples, model_cache):
    config = _config(tmp_path, method="full", optim={"lr": 1e-5, "batch_size": 2, "max_steps": 1})
    run = FineTune(config, examples, [], _fresh(model_cache))
    trainable = sum(p.numel() for p in run.model.parameters() if p.requires_grad)
    assert trainable == run.loaded.num_parameters
    assert run.train()["finished"]


def test_empty_training_set_is_an_input_error(tmp_path):
    with pytest.raises(InputError, match="empty"):
        FineTune(_config(tmp_path), [], [], loaded=object())


def test_unknown_recipe_key_lists_the_valid_ones(tmp_path):
    with pytest.raises(ConfigError, match=r"learning_rate.*valid keys here:.*\blr\b"):
        parse_config(TrainConfig, {"optim": {"learning_rate": 1}}, "recipe")


def test_base_model_labels_follow_the_plain_layout(model_cache):
    gemma = load_causal_lm("gemma3-270m", cache=model_cache)
    messages = [
        *qa_messages("Who won?", [Passage("SB", "Denver won.")]),
        {"role": "assistant", "content": "Denver"},
    ]
    example, _ = tokenize_example(messages, gemma.tokenizer, 512)
    assert example.input_ids[0] == gemma.tokenizer.bos_token_id
    assert gemma.tokenizer.decode(example.input_ids).endswith("Question: Who won?\nAnswer: Denver\n")
    labelled = [t for t, label in zip(example.input_ids, example.labels, strict=True) if label != IGNORE]
    assert gemma.tokenizer.decode(labelled) == " Denver\n"  # generation for base models stops at "\n"
