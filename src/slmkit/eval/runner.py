"""``slmkit eval``: answer every question of a dataset one way, score it, and keep everything.

Three ways to give the model its context, so their gap is measured rather than assumed:

- ``closed-book``: the question alone (what the model knows by heart);
- ``gold``: the dataset's own passage (reading ability, with retrieval taken out of the picture);
- ``retrieved``: slmkit's full answerer over a knowledge base: retrieval, abstention gates,
  citations (what a user gets).

A run writes ``predictions.jsonl`` (one :class:`~slmkit.eval.predictions.Prediction` per question)
and ``metrics.json`` (scores, how each was computed, resources and provenance) to ``output_dir``.
"""

from __future__ import annotations

import logging
import resource
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tqdm.auto import tqdm

from slmkit.atomic import atomic_write_json
from slmkit.config import EvalConfig
from slmkit.errors import ConfigError, InputError
from slmkit.eval.eval_sets import EvalItem, EvalSet, load_eval_set, resolve_path
from slmkit.eval.metrics import METRIC_NAMES, MetricResult, compute_metrics
from slmkit.eval.predictions import Prediction, write_predictions
from slmkit.eval.provenance import file_sha256, model_fingerprint, provenance
from slmkit.models.backends import load_generator, resolve_backend, transformers_generator
from slmkit.models.generation import Generator
from slmkit.models.loading import LoadedModel, load_causal_lm
from slmkit.rag.answer import Answerer, passage_hit, strip_markers
from slmkit.rag.knowledge_base import KnowledgeBase
from slmkit.rag.retrieval import Retriever

logger = logging.getLogger(__name__)

PERPLEXITY = "perplexity"
KNOWN_METRICS = (*METRIC_NAMES, PERPLEXITY)
_ANSWER_METRICS = ["squad", "rouge", "bleu", "bertscore", "cosine", "abstention", "latency"]


def default_metrics(fmt: str, context: str) -> list[str]:
    """Every metric that applies to this data format and context mode."""
    if fmt == "text":
        return [PERPLEXITY]
    if fmt == "multiple_choice":
        return ["accuracy", "latency"]
    extra = {"closed-book": [], "gold": ["faithfulness"], "retrieved": ["faithfulness", "retrieval"]}
    return _ANSWER_METRICS + extra[context]


@dataclass
class EvalResult:
    """What :func:`run_eval` measured; ``scores`` merges every metric's aggregates into one dict."""

    config: EvalConfig
    predictions: list[Prediction]
    metrics: dict[str, MetricResult]
    scores: dict[str, float]
    per_example: dict[str, list[float | None]]
    resources: dict[str, Any]
    provenance: dict[str, Any]
    output_dir: Path
    notes: dict[str, str] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {
            "scores": self.scores,
            "notes": self.notes,
            "resources": self.resources,
            "provenance": self.provenance,
        }

    def to_markdown(self) -> str:
        rows = [f"| {k} | {_fmt(v)} |" for k, v in self.scores.items()]
        return "| metric | value |\n|---|---|\n" + "\n".join(rows)


def _fmt(value: float) -> str:
    return f"{value:.4g}" if isinstance(value, float) else str(value)


def check_config(config: EvalConfig, fmt: str) -> list[str]:
    """The metrics to compute, after refusing combinations that cannot be measured.

    Raises:
        ConfigError: an unknown metric (the known ones are listed), ``retrieved`` without a KB,
            ``gold`` without gold passages, or a context mode the data format does not support.
    """
    metrics = config.metrics or default_metrics(fmt, config.context)
    unknown = [m for m in metrics if m not in KNOWN_METRICS]
    if unknown:
        raise ConfigError(
            f"metrics: unknown metric(s) {', '.join(unknown)}; known: {', '.join(KNOWN_METRICS)}"
        )
    if fmt == "text":
        if metrics != [PERPLEXITY]:
            raise ConfigError(f"a plain-text dataset is scored by perplexity only, not {', '.join(metrics)}")
        return metrics
    if config.context == "retrieved" and not config.kb:
        raise ConfigError("context 'retrieved' needs a knowledge base: set kb (or --kb), or use closed-book")
    if fmt == "multiple_choice" and config.context != "closed-book":
        raise ConfigError("multiple-choice questions are evaluated closed-book; set context: closed-book")
    if PERPLEXITY in metrics:
        raise ConfigError("perplexity is measured on a plain-text dataset (.txt), not on questions")
    return metrics


def run_eval(
    config: EvalConfig,
    *,
    loaded: LoadedModel | None = None,
    kb: KnowledgeBase | None = None,
    progress: bool = True,
) -> EvalResult:
    """Evaluate ``config.model`` on ``config.data`` as ``config.context`` says and save the results.

    Args:
        config: What to evaluate and how.
        loaded: An already loaded model (skips loading ``config.model``).
        kb: An already opened knowledge base (skips opening ``config.kb``).
        progress: Show a progress bar.

    Raises:
        ConfigError: see :func:`check_config`.
        InputError: a bad dataset (file, line and field named) or knowledge base.
    """
    data = config.data
    dataset = load_eval_set(data.path, data.format, data.split, data.limit)
    metric_names = check_config(config, dataset.format)
    if config.context == "gold" and any(i.context is None for i in dataset.items):
        missing = next(i.id for i in dataset.items if i.context is None)
        raise ConfigError(f"context 'gold' needs a passage for every question; {missing} has no 'context'")
    generator: Generator
    engine = resolve_backend(config.backend, config.model, config.device)
    if dataset.format == "text" or loaded is not None or engine == "transformers":
        loaded = loaded or load_causal_lm(config.model, config.dtype, device=config.device)
        generator = transformers_generator(loaded)
    else:
        generator = load_generator(config.model, config.backend, dtype=config.dtype, device=config.device)
    if dataset.format == "text" and loaded is not None and loaded.is_encoder_decoder:
        raise ConfigError(
            f"perplexity needs a causal LM; {config.model} is an encoder-decoder: evaluate it on questions"
        )
    if dataset.format != "text" and config.context == "retrieved" and kb is None:
        kb = KnowledgeBase.open(config.kb)
    started = time.perf_counter()
    if dataset.format == "text":
        results, predictions = _perplexity(loaded, dataset), []
    else:
        predictions = _predict(config, dataset, generator, kb, progress)
        results = compute_metrics(metric_names, predictions)
    return _save(config, dataset, loaded, kb, predictions, results, time.perf_counter() - started)


def _predict(
    config: EvalConfig, dataset: EvalSet, generator: Generator, kb: KnowledgeBase | None, progress: bool
) -> list[Prediction]:
    retriever = Retriever(kb, config.retrieval) if kb is not None else None
    answerer = Answerer(generator, retriever, config.ask_config())
    in_kb = _paragraphs_in_kb(kb, dataset.items) if kb is not None else {}
    bar = tqdm(
        dataset.items, desc=f"eval {config.context}", unit="q", disable=not progress, dynamic_ncols=True
    )
    return [_predict_one(config.context, item, answerer, in_kb) for item in bar]


def _predict_one(context: str, item: EvalItem, answerer: Answerer, in_kb: dict[str, bool]) -> Prediction:
    common = {"id": item.id, "question": item.question, "references": item.references}
    if item.choices is not None:
        generation = answerer.generator.generate(
            [{"role": "user", "content": item.question}], answerer.config.generation
        )
        return Prediction(
            **common,
            prediction=generation.text.strip(),
            choices=item.choices,
            latency_s=generation.seconds,
            generated_tokens=generation.completion_tokens,
        )
    if context == "gold":
        # The same path as a retrieved answer, minus retrieval: prompt fitting, reading, gates, citations.
        answer = answerer.answer_from(item.question, [passage_hit(item.title, item.context or "")])
        return Prediction(
            **common,
            prediction=strip_markers(answer.text),
            contexts=(item.context or "",),
            gold_context=item.context if item.answerable else None,
            answerable=item.answerable,
            abstained=answer.abstained,
            latency_s=answer.timings["total"],
            generated_tokens=answer.completion_tokens,
            extra={"reason": answer.reason},
        )
    answer = answerer.ask(item.question, use_retrieval=context == "retrieved")
    # Unanswerable: the dataset says so (SQuAD 2.0), or the knowledge base lacks the gold passage.
    answerable = item.answerable and (in_kb.get(item.context, True) if item.context else True)
    if not answerable:
        common["references"] = ()
    return Prediction(
        **common,
        prediction=strip_markers(answer.text),
        contexts=tuple(h.chunk.text for h in answer.hits),
        gold_context=item.context if answerable else None,
        answerable=answerable,
        abstained=answer.abstained,
        latency_s=answer.timings["total"],
        generated_tokens=answer.completion_tokens,
        extra={"reason": answer.reason, "citations": [c.chunk_id for c in answer.citations]},
    )


def score_predictions(config: EvalConfig, path: str | Path) -> EvalResult:
    """Score answers produced elsewhere (another system, a bigger model's API) against the dataset.

    ``path`` is JSONL with at least ``id`` and ``prediction`` per line; ``abstained``, ``contexts``
    and ``latency_s`` are used when present. References come from ``config.data``, joined by id.

    Raises:
        InputError: a malformed line, a missing field, an id not in the dataset, or dataset
            questions without a prediction (file, line and ids named).
    """
    from slmkit.data.tasks import read_records

    dataset = load_eval_set(config.data.path, config.data.format, config.data.split, config.data.limit)
    metric_names = [m for m in check_config(config, dataset.format) if m != "retrieval" or config.kb]
    items = {item.id: item for item in dataset.items}
    predictions, seen = [], set()
    for record in read_records(path):
        fields = record.fields
        for name in ("id", "prediction"):
            if not isinstance(fields.get(name), str):
                raise InputError(f"{record.where}: missing or non-string field '{name}'")
        item = items.get(fields["id"])
        if item is None:
            raise InputError(
                f"{record.where}: id {fields['id']!r} is not a question of {config.data.path} "
                f"(split {config.data.split}); predictions and references must share ids"
            )
        seen.add(item.id)
        predictions.append(
            Prediction(
                id=item.id,
                question=item.question,
                prediction=fields["prediction"],
                references=item.references,
                contexts=tuple(fields.get("contexts") or ()),
                gold_context=item.context if item.answerable else None,
                answerable=item.answerable,
                abstained=bool(fields.get("abstained", False)),
                latency_s=fields.get("latency_s"),
                choices=item.choices,
            )
        )
    missing = [i for i in items if i not in seen]
    if missing:
        raise InputError(
            f"{path}: {len(missing)} question(s) of {config.data.path} have no prediction, e.g. "
            f"{', '.join(missing[:5])}; predict every question or set data.limit"
        )
    started = time.perf_counter()
    results = compute_metrics(metric_names, predictions)
    return _save(config, dataset, None, None, predictions, results, time.perf_counter() - started)


def _normalise(text: str) -> str:
    return " ".join(text.split())


def _paragraphs_in_kb(kb: KnowledgeBase, items: Sequence[EvalItem]) -> dict[str, bool]:
    """For each gold passage: does the knowledge base hold it (some chunk of it)? A question whose
    passage is absent is unanswerable from the KB: the right reply is to abstain."""
    chunks = [_normalise(c.text) for c in kb.chunks]
    passages = {i.context for i in items if i.context}
    return {p: any(c and c in _normalise(p) for c in chunks) for p in passages}


def _perplexity(loaded: LoadedModel, dataset: EvalSet) -> dict[str, MetricResult]:
    from slmkit.eval.perplexity import perplexity

    result = perplexity(loaded.model, loaded.tokenizer, dataset.texts)
    scores = {"perplexity": result.perplexity, "mean_nll": result.mean_nll, "n_tokens": result.tokens}
    notes = "sliding-window perplexity (transformers guide), token-weighted over all texts"
    return {PERPLEXITY: MetricResult(PERPLEXITY, scores, {"perplexity": result.per_text}, notes)}


def peak_rss_gb() -> float:
    """This process's peak resident memory in GiB.

    Read from ``VmHWM`` on Linux: ``getrusage``'s ``ru_maxrss`` carries the parent's high-water
    mark across fork+exec, so a child spawned by a 15 GB trainer would report 15 GB.
    """
    status = Path("/proc/self/status")
    if status.exists():
        for line in status.read_text().splitlines():
            if line.startswith("VmHWM:"):
                return round(int(line.split()[1]) / 2**20, 2)
    scale = 2**30 if sys.platform == "darwin" else 2**20  # bytes on macOS, KiB elsewhere
    return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / scale, 2)


def _resources(
    loaded: LoadedModel | None, seconds: float, questions: int
) -> tuple[dict[str, Any], dict[str, Any]]:
    fingerprint = model_fingerprint(loaded.path if loaded else None)
    return {
        "parameters": loaded.num_parameters if loaded else None,
        "size_on_disk_mb": round(fingerprint["size_bytes"] / 2**20, 1) if fingerprint["size_bytes"] else None,
        "peak_rss_gb": peak_rss_gb(),
        "eval_time_s": round(seconds, 1),
        "questions": questions,
    }, fingerprint


def _save(
    config: EvalConfig,
    dataset: EvalSet,
    loaded: LoadedModel | None,
    kb: KnowledgeBase | None,
    predictions: list[Prediction],
    results: dict[str, MetricResult],
    seconds: float,
) -> EvalResult:
    output = Path(config.output_dir)
    output.mkdir(parents=True, exist_ok=True)
    scores = {k: v for r in results.values() for k, v in r.scores.items() if k != "n_scored"}
    per_example = {k: v for r in results.values() for k, v in r.per_example.items()}
    resources, fingerprint = _resources(loaded, seconds, len(predictions) or len(dataset.texts))
    record = provenance(
        config.model_dump(),
        model=fingerprint,
        dataset={
            "path": dataset.path,
            "format": dataset.format,
            "sha256": file_sha256(resolve_path(dataset.path)),
        },
        knowledge_base=_kb_record(kb),
    )
    result = EvalResult(
        config,
        predictions,
        results,
        scores,
        per_example,
        resources,
        record,
        output,
        notes={name: r.notes for name, r in results.items()},
    )
    if predictions:
        write_predictions(output / "predictions.jsonl", predictions)
    atomic_write_json(output / "metrics.json", result.to_dict())
    return result


def _kb_record(kb: KnowledgeBase | None) -> dict[str, Any] | None:
    if kb is None:
        return None
    info = kb.info()
    return {k: info.get(k) for k in ("path", "version", "chunks", "documents", "embedder") if k in info}
