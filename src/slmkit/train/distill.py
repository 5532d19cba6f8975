"""``slmkit distill``: teach a smaller student what a teacher model does.

Two methods, chosen by whether the two models share a vocabulary:

- **logit** (same vocabulary): at every answer token the student matches the teacher's
  temperature-softened next-token distribution, mixed with cross-entropy on the gold answer
  (:func:`slmkit.train.loss.distillation_loss`). Both models read the same token ids, so the
  teacher runs inside the training step.
- **sequence** (any tokenizers; Kim & Rush, 2016, "Sequence-Level Knowledge Distillation"): the
  teacher answers every training prompt once (greedy), and the student is fine-tuned on those
  answers with plain cross-entropy. The answers are cached in ``output_dir/teacher_answers.jsonl``
  as they are generated, so an interrupted run resumes without regenerating them.

Training is :class:`~slmkit.train.finetune.FineTune` with another loss, so batching, checkpoints,
resumption after a kill, validation (cross-entropy on the gold answers), early stopping and the
``final/`` model folder work as for ``slmkit train``. The run ends with ``final/distill.json``:
parameters, bytes on disk, training time and tokens/s, and teacher and student answering the same
SQuAD eval questions.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import torch
from tqdm.auto import tqdm

from slmkit.atomic import append_journal, atomic_write_json, read_journal
from slmkit.config import DistillConfig, GenerationConfig
from slmkit.data.tasks import Example
from slmkit.errors import ConfigError
from slmkit.models.loading import LoadedModel, load_causal_lm, load_tokenizer
from slmkit.train.finetune import FineTune
from slmkit.train.loss import answer_logits, distillation_loss
from slmkit.train.run import load_examples
from slmkit.train.student import build_student
from slmkit.train.tokenize import TokenizedExample, tokenize_examples

logger = logging.getLogger(__name__)

TEACHER_ANSWERS = "teacher_answers.jsonl"
REPORT = "distill.json"


# -- which method ---------------------------------------------------------------------------------


def same_vocabulary(a: Any, b: Any) -> bool:
    """True when two tokenizers map the same strings to the same ids (not merely as many of them)."""
    return a is b or a.get_vocab() == b.get_vocab()


def choose_method(config: DistillConfig, teacher_tokenizer: Any, student_tokenizer: Any) -> str:
    """``logit`` or ``sequence``, as ``config.method`` asks and the vocabularies allow.

    Raises:
        ConfigError: ``method: logit`` for models whose vocabularies differ; names both models and
            suggests ``method: sequence``.
    """
    shared = same_vocabulary(teacher_tokenizer, student_tokenizer)
    if config.method == "auto":
        return "logit" if shared else "sequence"
    if config.method == "logit" and not shared:
        raise ConfigError(
            f"method 'logit' needs teacher and student to share a vocabulary, but teacher "
            f"'{config.teacher}' ({len(teacher_tokenizer)} tokens) and student '{config.student.model}' "
            f"({len(student_tokenizer)} tokens) tokenize differently: their logits do not describe the "
            "same tokens. Use method: sequence (the student learns the teacher's generated answers), "
            "or method: auto"
        )
    return config.method


# -- sequence-level: the teacher's answers --------------------------------------------------------


def _prompt_key(messages: Sequence[dict[str, str]]) -> str:
    return hashlib.sha256(json.dumps(list(messages), sort_keys=True).encode()).hexdigest()


def _read_answers(path: Path) -> dict[str, str]:
    answers: dict[str, str] = {}
    for line in read_journal(path):
        try:
            record = json.loads(line)
            answers[record["prompt_sha256"]] = record["answer"]
        except (ValueError, KeyError, TypeError):
            continue  # not a record this run wrote; its prompt is answered again
    return answers


def teacher_answers(
    teacher: LoadedModel, examples: Sequence[Example], path: Path, max_new_tokens: int
) -> list[Example]:
    """``examples`` with the teacher's greedy answer as the assistant turn.

    Answers already in ``path`` (keyed by a hash of the prompt) are reused; new ones are appended
    one line at a time and flushed, so an interruption loses at most the answer being written.
    Examples the teacher answers with nothing are dropped (with a warning).
    """
    from slmkit.models.generation import TransformersGenerator

    cached = _read_answers(path)
    keys = [_prompt_key(e.messages[:-1]) for e in examples]
    missing = [(k, e) for k, e in zip(keys, examples, strict=True) if k not in cached]
    if len(missing) < len(examples):
        logger.info("reusing %d cached teacher answers from %s", len(examples) - len(missing), path)
    if missing:
        generator = TransformersGenerator(teacher)
        settings = GenerationConfig(max_new_tokens=max_new_tokens)
        path.parent.mkdir(parents=True, exist_ok=True)
        with path.open("a", encoding="utf-8") as f:
            for key, example in tqdm(missing, desc="teacher answers", unit="q", dynamic_ncols=True):
                answer = generator.generate(example.messages[:-1], settings).text
                append_journal(f, {"id": example.id, "prompt_sha256": key, "answer": answer})
                cached[key] = answer
    out = [
        Example([*e.messages[:-1], {"role": "assistant", "content": cached[k]}], e.id, e.source)
        for k, e in zip(keys, examples, strict=True)
        if cached[k].strip()
    ]
    if len(out) < len(examples):
        logger.warning(
            "the teacher gave %d empty answers; those examples are skipped", len(examples) - len(out)
        )
    return out


# -- training -------------------------------------------------------------------------------------


class Distillation(FineTune):
    """:class:`FineTune` of the student whose loss, with a teacher, is the distillation loss.

    Without a teacher (the sequence method: the teacher's knowledge is already in the targets)
    it is plain answer-only cross-entropy.
    """

    def __init__(
        self,
        config: DistillConfig,
        train: Sequence[TokenizedExample],
        val: Sequence[TokenizedExample],
        student: LoadedModel,
        teacher: LoadedModel | None = None,
    ) -> None:
        self.distill_config = config
        super().__init__(config.train_config(), train, val, student)
        self.teacher = None
        self._parts: list[tuple[float, float]] = []
        if teacher is not None:
            self.teacher = teacher.model.to(self.device).eval()
            self.teacher.requires_grad_(False)

    def recipe(self) -> dict[str, Any]:
        return {"distill": self.distill_config.model_dump()}

    def training_loss(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        if self.teacher is None:
            return super().training_loss(batch)
        every_token = self.distill_config.kl_tokens == "all"
        student_logits, targets = answer_logits(self.model, batch, every_token)
        with torch.no_grad():
            teacher_logits, _ = answer_logits(self.teacher, batch, every_token)
        loss, kl, ce = distillation_loss(
            student_logits,
            teacher_logits,
            targets,
            self.distill_config.temperature,
            self.distill_config.alpha,
        )
        self._parts.append((float(kl), float(ce)))
        return loss

    def step_metrics(self) -> dict[str, float]:
        """The KL and cross-entropy parts of the step's loss, averaged over its micro-batches."""
        if not self._parts:
            return {}
        kl, ce = (sum(values) / len(values) for values in zip(*self._parts, strict=True))
        self._parts = []
        return {"kl": round(kl, 5), "ce": round(ce, 5)}


def load_student(config: DistillConfig, teacher: LoadedModel) -> LoadedModel:
    """The existing student model, or a new one built from the teacher (see slmkit.train.student)."""
    if config.student.model is not None:
        return load_causal_lm(config.student.model)
    assert config.student.architecture is not None  # StudentConfig guarantees one of the two
    return build_student(teacher, config.student.architecture, config.student.init, config.seed)


# Scores teacher and student on the same questions (slmkit.eval.distillation.evaluate_pair): handed in
# by the caller, because evaluation sits above training and training never imports it.
PairEvaluator = Callable[[DistillConfig, LoadedModel, LoadedModel], dict[str, Any]]


def distill(config: DistillConfig, evaluate: PairEvaluator | None = None) -> dict[str, Any]:
    """Distil ``config.teacher`` into the student; resumes if ``output_dir`` holds a checkpoint.
    With ``evaluate`` (and ``eval.questions`` > 0) the report compares their answers.

    Returns:
        The report written to ``final/distill.json`` (or, for a run stopped before its last step,
        the training summary).

    Raises:
        ConfigError: logit distillation between different vocabularies, or a student that cannot
            be initialised from the teacher as asked.
    """
    teacher_tokenizer = load_tokenizer(config.teacher)
    student_tokenizer = (
        load_tokenizer(config.student.model) if config.student.model is not None else teacher_tokenizer
    )
    method = choose_method(config, teacher_tokenizer, student_tokenizer)
    teacher = load_causal_lm(config.teacher)
    student = load_student(config, teacher)
    if teacher.is_encoder_decoder or student.is_encoder_decoder:
        raise ConfigError(
            "distillation runs between causal LMs; encoder-decoder (BART, T5) teachers and students "
            "are not supported"
        )
    train, val = load_examples(config.train_config())
    if method == "sequence":
        path = Path(config.output_dir) / TEACHER_ANSWERS
        train = teacher_answers(teacher, train, path, config.teacher_max_new_tokens)
    max_len = min(config.data.max_seq_len, student.context_window, teacher.context_window)
    train_tok = tokenize_examples(train, student.tokenizer, max_len, "training")
    val_tok = tokenize_examples(val, student.tokenizer, max_len, "validation")
    logger.info(
        "%s distillation: %d training and %d validation examples", method, len(train_tok), len(val_tok)
    )
    run = Distillation(config, train_tok, val_tok, student, teacher if method == "logit" else None)
    summary = run.train()
    if not summary["finished"]:
        return summary
    report = build_report(config, method, teacher, summary, evaluate)
    atomic_write_json(Path(summary["model_dir"]) / REPORT, report)
    return report


# -- report ---------------------------------------------------------------------------------------


def safetensors_bytes(folder: Path | None) -> int | None:
    """Total size of the ``*.safetensors`` files in ``folder`` (None when it has none)."""
    if folder is None:
        return None
    files = list(Path(folder).glob("*.safetensors"))
    return sum(f.stat().st_size for f in files) if files else None


def ratio(a: float | None, b: float | None) -> float | None:
    return round(a / b, 3) if a and b else None


def build_report(
    config: DistillConfig,
    method: str,
    teacher: LoadedModel,
    summary: dict[str, Any],
    evaluate: PairEvaluator | None = None,
) -> dict[str, Any]:
    """Compression, training cost and (unless ``eval.questions`` is 0) teacher-vs-student quality."""
    final = Path(summary["model_dir"])
    student = load_causal_lm(str(final))  # the saved folder, as users will load it
    teacher.model.cpu()
    teacher_params, student_params = teacher.num_parameters, student.num_parameters
    teacher_bytes, student_bytes = safetensors_bytes(teacher.path), safetensors_bytes(final)
    report: dict[str, Any] = {
        "method": method,
        "teacher": config.teacher,
        "student": config.student.model or "new: " + json.dumps(config.student.architecture.model_dump()),
        "student_init": config.student.init if config.student.model is None else "pretrained",
        "temperature": config.temperature if method == "logit" else None,
        "alpha": config.alpha if method == "logit" else None,
        "kl_tokens": config.kl_tokens if method == "logit" else None,
        "teacher_parameters": teacher_params,
        "student_parameters": student_params,
        "parameter_compression": ratio(teacher_params, student_params),
        "teacher_safetensors_bytes": teacher_bytes,
        "student_safetensors_bytes": student_bytes,
        "disk_compression": ratio(teacher_bytes, student_bytes),
        "steps": summary["step"],
        "training_seconds": round(summary["seconds"], 1),
        "training_tokens_per_second": round(summary["tokens_per_second"], 1),
        "best_val_loss": summary.get("best_val"),
        "model_dir": str(final),
    }
    if config.eval.questions and evaluate is not None:
        report["eval"] = evaluate(config, teacher, student)
    return report


def format_report(report: dict[str, Any]) -> str:
    """The report as a Markdown table, teacher beside student."""
    quality = report.get("eval") or {}
    teacher, student = quality.get("teacher", {}), quality.get("student", {})

    def mb(n: int | None) -> str:
        return f"{n / 2**20:.1f} MB" if n else "-"

    def score(d: dict, key: str) -> str:
        return f"{d[key]:.1f}" if key in d else "-"

    rows = [
        (
            "parameters",
            f"{report['teacher_parameters'] / 1e6:.1f}M",
            f"{report['student_parameters'] / 1e6:.1f}M",
            f"{report['parameter_compression']}× fewer",
        ),
        (
            "safetensors on disk",
            mb(report["teacher_safetensors_bytes"]),
            mb(report["student_safetensors_bytes"]),
            f"{report['disk_compression']}× smaller" if report["disk_compression"] else "",
        ),
        ("SQuAD gold-context EM", score(teacher, "exact_match"), score(student, "exact_match"), ""),
        (
            "SQuAD gold-context F1",
            score(teacher, "f1"),
            score(student, "f1"),
            f"student/teacher {quality['f1_ratio']}" if quality.get("f1_ratio") is not None else "",
        ),
        ("answer tokens/s", score(teacher, "tokens_per_s"), score(student, "tokens_per_s"), ""),
    ]
    lines = ["| | teacher | student | ratio |", "|---|---|---|---|"]
    lines += [f"| {a} | {b} | {c} | {d} |" for a, b, c, d in rows]
    lines.append(
        f"\n{report['method']} distillation: {report['steps']} steps in {report['training_seconds']:.0f} s "
        f"({report['training_tokens_per_second']:.0f} tok/s); "
        f"{quality.get('questions', 0)} eval questions; student: {report['model_dir']}"
    )
    return "\n".join(lines)
