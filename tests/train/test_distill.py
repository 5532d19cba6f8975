"""Knowledge distillation: the loss, new students, method choice, and tiny real runs."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch
from transformers import LlamaConfig, LlamaForCausalLM

from slmkit.config import DistillConfig, StudentArchitecture, parse_config
from slmkit.errors import ConfigError
from slmkit.models.loading import LoadedModel
from slmkit.train.loss import answer_logits, distillation_loss
from slmkit.train.student import build_student, teacher_layer_indices
from slmkit.train.tokenize import IGNORE

ASSETS = Path(__file__).resolve().parent.parent / "assets"
TINY = {"layers": 2, "hidden_size": 64, "heads": 2, "kv_heads": 1, "intermediate_size": 128}


# -- the loss -------------------------------------------------------------------------------------


def _softmax(row: list[float], temperature: float) -> list[float]:
    exps = [math.exp(x / temperature) for x in row]
    return [e / sum(exps) for e in exps]


def test_distillation_loss_matches_a_hand_computed_kl_and_ce():
    student = [[2.0, 0.5, -1.0], [0.0, 1.0, 3.0]]
    teacher = [[1.0, 1.0, 0.0], [-2.0, 0.5, 2.5]]
    targets = [0, 2]
    temperature, alpha = 2.0, 0.3
    kl_rows, ce_rows = [], []
    for s, t, y in zip(student, teacher, targets, strict=True):
        p_s, p_t = _softmax(s, temperature), _softmax(t, temperature)
        kl_rows.append(sum(pt * math.log(pt / ps) for pt, ps in zip(p_t, p_s, strict=True)))
        ce_rows.append(-math.log(_softmax(s, 1.0)[y]))
    kl, ce = sum(kl_rows) / 2, sum(ce_rows) / 2
    expected = alpha * temperature**2 * kl + (1 - alpha) * ce

    loss, got_kl, got_ce = distillation_loss(
        torch.tensor(student), torch.tensor(teacher), torch.tensor(targets), temperature, alpha
    )
    assert float(got_kl) == pytest.approx(kl, rel=1e-5)
    assert float(got_ce) == pytest.approx(ce, rel=1e-5)
    assert float(loss) == pytest.approx(expected, rel=1e-5)


def test_distillation_loss_is_the_cross_entropy_when_alpha_is_zero_and_zero_kl_for_equal_logits():
    logits = torch.tensor([[0.3, -0.2, 1.5, 0.0]])
    targets = torch.tensor([2])
    loss, kl, _ = distillation_loss(logits, logits.clone(), targets, 4.0, 0.0)
    assert float(kl) == pytest.approx(0.0, abs=1e-7)
    assert float(loss) == pytest.approx(float(torch.nn.functional.cross_entropy(logits, targets)))


def test_distillation_loss_ignores_padding_rows_of_a_larger_vocabulary():
    student = torch.tensor([[1.0, 2.0, 0.5]])
    teacher = torch.tensor([[0.5, 1.0, 2.0, -50.0]])  # one padding row past the shared vocabulary
    loss, _, _ = distillation_loss(student, teacher, torch.tensor([1]), 1.0, 1.0)
    expected, _, _ = distillation_loss(student, teacher[:, :3], torch.tensor([1]), 1.0, 1.0)
    assert float(loss) == pytest.approx(float(expected))


def test_kl_over_every_token_averages_all_positions_and_ce_only_labelled_ones():
    student = [[2.0, 0.5, -1.0], [0.0, 1.0, 3.0]]
    teacher = [[1.0, 1.0, 0.0], [-2.0, 0.5, 2.5]]
    temperature = 2.0
    kl_rows = []
    for s, t in zip(student, teacher, strict=True):
        p_s, p_t = _softmax(s, temperature), _softmax(t, temperature)
        kl_rows.append(sum(pt * math.log(pt / ps) for pt, ps in zip(p_t, p_s, strict=True)))
    _, kl, ce = distillation_loss(
        torch.tensor(student), torch.tensor(teacher), torch.tensor([IGNORE, 2]), temperature, 0.5
    )
    assert float(kl) == pytest.approx(sum(kl_rows) / 2, rel=1e-5)  # the prompt row counts for the KL
    assert float(ce) == pytest.approx(-math.log(_softmax(student[1], 1.0)[2]), rel=1e-5)  # not the CE


# -- new students ---------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def tiny_teacher() -> LoadedModel:
    config = LlamaConfig(
        vocab_size=100,
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=5,
        num_attention_heads=4,
        num_key_value_heads=2,
        tie_word_embeddings=True,
    )
    torch.manual_seed(0)
    return LoadedModel("tiny-teacher", LlamaForCausalLM(config).eval(), tokenizer=None, path=None)


def _llama_parameters(vocab: int, layers: int, hidden: int, heads: int, kv_heads: int, mlp: int, tied: bool):
    head = hidden // heads
    attention = hidden * heads * head * 2 + hidden * kv_heads * head * 2  # q, o; k, v (no biases)
    per_layer = attention + 3 * hidden * mlp + 2 * hidden  # gate/up/down; two RMSNorm weights
    return vocab * hidden * (1 if tied else 2) + layers * per_layer + hidden  # + final norm


@pytest.mark.parametrize("tied", [True, False])
def test_new_student_has_the_parameter_count_of_its_architecture(tiny_teacher, tied):
    arch = StudentArchitecture(
        layers=3, hidden_size=24, heads=3, kv_heads=1, intermediate_size=40, tie_embeddings=tied
    )
    student = build_student(tiny_teacher, arch)
    assert student.num_parameters == _llama_parameters(100, 3, 24, 3, 1, 40, tied)
    assert type(student.model) is LlamaForCausalLM and student.model.config.head_dim == 8


def test_new_student_is_reproducible_from_its_seed(tiny_teacher):
    arch = StudentArchitecture(**TINY)
    a, b = build_student(tiny_teacher, arch, seed=3), build_student(tiny_teacher, arch, seed=3)
    assert all(torch.equal(x, y) for x, y in zip(a.model.parameters(), b.model.parameters(), strict=True))


def test_teacher_init_copies_embeddings_and_evenly_spaced_layers(tiny_teacher):
    assert teacher_layer_indices(30, 6) == [0, 6, 12, 17, 23, 29]
    arch = StudentArchitecture(layers=3, hidden_size=32, heads=4, kv_heads=2, intermediate_size=64)
    student = build_student(tiny_teacher, arch, init="teacher").model
    teacher = tiny_teacher.model
    assert torch.equal(student.model.embed_tokens.weight, teacher.model.embed_tokens.weight)
    for mine, theirs in zip(student.model.layers, [0, 2, 4], strict=True):
        assert torch.equal(mine.mlp.down_proj.weight, teacher.model.layers[theirs].mlp.down_proj.weight)


def test_every_token_keeps_each_position_that_predicts_a_real_token(tiny_teacher):
    batch = {
        "input_ids": torch.tensor([[5, 6, 7, 8, 0]]),
        "attention_mask": torch.tensor([[1, 1, 1, 1, 0]]),
        "labels": torch.tensor([[IGNORE, IGNORE, IGNORE, 8, IGNORE]]),
    }
    logits, targets = answer_logits(tiny_teacher.model, batch)
    assert logits.shape == (1, 100) and targets.tolist() == [8]
    logits, targets = answer_logits(tiny_teacher.model, batch, every_token=True)
    assert logits.shape == (3, 100) and targets.tolist() == [IGNORE, IGNORE, 8]  # padding predicts nothing


def test_teacher_init_needs_the_teachers_width(tiny_teacher):
    with pytest.raises(ConfigError, match=r"hidden_size 64 \(teacher 32\).*init: random"):
        build_student(tiny_teacher, StudentArchitecture(**TINY), init="teacher")


def test_student_config_needs_exactly_one_source():
    with pytest.raises(ConfigError, match=r"exactly one of 'model'.*'architecture'"):
        parse_config(DistillConfig, {"student": {}}, "recipe")
    with pytest.raises(ConfigError, match=r"heads .* must divide hidden_size"):
        parse_config(DistillConfig, {"student": {"architecture": {**TINY, "heads": 5}}}, "recipe")


# -- method choice and tiny real runs (real packaged models) --------------------------------------


def _config(tmp_path: Path, **overrides) -> DistillConfig:
    data = {
        "teacher": "smollm2-135m-instruct",
        "student": {"architecture": TINY},
        "output_dir": str(tmp_path / "run"),
        "data": {"path": str(ASSETS / "squad_tiny.json"), "split": "all", "max_seq_len": 192},
        "optim": {"lr": 3e-3, "batch_size": 4, "max_steps": 3, "warmup_ratio": 0.0},
        "bf16": False,
        "seed": 0,
        "eval": {"questions": 0},
    }
    data.update(overrides)
    return parse_config(DistillConfig, data, "test")


@pytest.fixture
def cache_env(monkeypatch, model_cache):
    monkeypatch.setenv("SLMKIT_CACHE", str(model_cache))


@pytest.mark.slow
def test_logit_distillation_between_vocabularies_that_differ_is_refused(cache_env, tmp_path):
    from slmkit.train.distill import distill

    config = _config(tmp_path, student={"model": "gemma3-270m"}, method="logit")
    with pytest.raises(ConfigError) as err:
        distill(config)
    message = str(err.value)
    assert "smollm2-135m-instruct" in message and "gemma3-270m" in message
    assert "method: sequence" in message


@pytest.mark.slow
def test_auto_method_picks_logit_for_a_shared_vocabulary_and_sequence_otherwise(cache_env, tmp_path):
    from slmkit.models.loading import load_tokenizer
    from slmkit.train.distill import choose_method

    smollm, gemma = load_tokenizer("smollm2-135m-instruct"), load_tokenizer("gemma3-270m")
    config = _config(tmp_path)
    assert choose_method(config, smollm, load_tokenizer("smollm2-135m-instruct")) == "logit"
    assert choose_method(config, smollm, gemma) == "sequence"


@pytest.mark.slow
def test_logit_distillation_lowers_the_loss(smollm, tmp_path):
    from slmkit.data.tasks import read_squad_examples
    from slmkit.train.batching import collate
    from slmkit.train.distill import Distillation
    from slmkit.train.tokenize import tokenize_examples

    config = _config(tmp_path, optim={"lr": 3e-3, "batch_size": 4, "max_steps": 8, "warmup_ratio": 0.0})
    examples = tokenize_examples(read_squad_examples(ASSETS / "squad_tiny.json"), smollm.tokenizer, 192)
    student = build_student(smollm, config.student.architecture)
    teacher_weights = [p.detach().clone() for p in smollm.model.parameters()]
    batch = collate(examples[:4], smollm.tokenizer.pad_token_id)
    try:
        run = Distillation(config, examples, examples[:2], student, smollm)
        with torch.no_grad():
            before = float(run.training_loss(batch))
        result = run.train()
        with torch.no_grad():
            after = float(run.training_loss(batch))
    finally:
        smollm.model.requires_grad_(True)  # the session-wide fixture, as other tests expect it
    assert result["finished"] and result["step"] == 8
    assert after < before - 1.0  # nats; 5 steps already lower it by about 1.2
    logged = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert all({"kl", "ce"} <= set(record) for record in logged)  # both parts of the loss, per step
    recipe = (tmp_path / "run" / "final" / "recipe.yaml").read_text()
    assert recipe.startswith("distill:")  # the distillation recipe, not the derived train config
    teacher_now = list(smollm.model.parameters())
    assert all(torch.equal(a, b) for a, b in zip(teacher_weights, teacher_now, strict=True))  # never learns


@pytest.mark.slow
def test_sequence_distillation_caches_teacher_answers_and_resumes_without_regenerating(
    cache_env, tmp_path, monkeypatch
):
    from slmkit.models.generation import TransformersGenerator
    from slmkit.train.distill import TEACHER_ANSWERS, distill

    original = TransformersGenerator.generate
    calls = []

    def counting(self, messages, config, on_text=None):
        if fail_after is not None and len(calls) >= fail_after:
            raise KeyboardInterrupt  # as if killed while the teacher answers
        calls.append(1)
        return original(self, messages, config, on_text)

    monkeypatch.setattr(TransformersGenerator, "generate", counting)
    data = {"path": str(ASSETS / "squad_tiny.json"), "split": "all", "max_seq_len": 192, "max_examples": 3}
    config = _config(
        tmp_path,
        method="sequence",
        teacher_max_new_tokens=6,
        data=data,
        optim={"lr": 1e-3, "batch_size": 2, "max_steps": 2, "warmup_ratio": 0.0},
    )
    fail_after = 2
    with pytest.raises(KeyboardInterrupt):
        distill(config)
    answers = tmp_path / "run" / TEACHER_ANSWERS
    assert len(answers.read_text().splitlines()) == 2

    fail_after = None
    report = distill(config)
    assert len(calls) == 3  # only the missing answer was generated
    lines = [json.loads(line) for line in answers.read_text().splitlines()]
    assert len(lines) == 3 and all(line["answer"] for line in lines)
    assert report["method"] == "sequence" and report["steps"] == 2

    distill(config)  # finished run, every answer cached: the teacher generates nothing
    assert len(calls) == 3


@pytest.mark.slow
def test_cli_distills_and_prints_the_comparison(cache_env, tmp_path):
    from typer.testing import CliRunner

    from slmkit.cli import app

    recipe = tmp_path / "distill.yaml"
    recipe.write_text(
        "distill:\n"
        "  student:\n"
        "    architecture: {layers: 1, hidden_size: 32, heads: 2, intermediate_size: 64}\n"
        f"  output_dir: {tmp_path / 'run'}\n"
        f"  data: {{path: {ASSETS / 'squad_tiny.json'}, split: all, max_seq_len: 160, max_examples: 4}}\n"
        "  optim: {batch_size: 2, max_steps: 5}\n"
        f"  eval: {{questions: 1, path: {ASSETS / 'squad_tiny.json'}, max_new_tokens: 4}}\n",
        encoding="utf-8",
    )
    result = CliRunner().invoke(
        app, ["distill", str(recipe), "--optim.max_steps", "1"], catch_exceptions=False
    )
    assert result.exit_code == 0
    output = result.output
    assert "| parameters | 134.5M |" in output and "logit distillation: 1 steps" in output
    report = json.loads((tmp_path / "run" / "final" / "distill.json").read_text())
    assert report["student_parameters"] < report["teacher_parameters"]
    assert report["disk_compression"] > 10 and set(report["eval"]["student"]) >= {"exact_match", "f1"}


@pytest.mark.slow
def test_cli_logit_method_with_different_vocabularies_is_one_clear_error(
    cache_env, tmp_path, monkeypatch, capsys
):
    from slmkit.cli import main

    recipe = tmp_path / "distill.yaml"
    recipe.write_text("distill:\n  student:\n    model: gemma3-270m\n  method: logit\n", encoding="utf-8")
    monkeypatch.setattr("sys.argv", ["slmkit", "distill", str(recipe)])
    with pytest.raises(SystemExit) as exit_info:
        main()
    output = capsys.readouterr().err
    assert exit_info.value.code == 2 and output.startswith("error:")
    assert "gemma3-270m" in output and "method: sequence" in output and "Traceback" not in output
