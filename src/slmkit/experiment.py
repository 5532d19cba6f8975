"""``slmkit experiment``: a grid of models × context modes, evaluated alike, in one report.

Models come ready (a packaged name or folder) or from a training recipe, trained on first use and
reused afterwards. Each model is evaluated in its own process (``isolate``), so the memory column
is that model's own peak, not the largest of everything the experiment loaded before it. A
scenario whose results are on disk for the same configuration is not run again, so an
interrupted experiment resumes where it stopped.
"""

from __future__ import annotations

import contextlib
import json
import logging
import multiprocessing
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from slmkit.atomic import atomic_write_json
from slmkit.config import (
    EvalConfig,
    ExperimentConfig,
    ExperimentKB,
    ExperimentModel,
    TrainConfig,
    load_yaml,
    parse_config,
    set_dotted,
)
from slmkit.errors import ConfigError
from slmkit.eval.provenance import provenance
from slmkit.eval.report import ReportFiles, ScenarioResult, write_report

logger = logging.getLogger(__name__)

# Per-example scores kept for the report's histograms (besides latency).
_HISTOGRAM_KEYS = ("f1", "cosine", "accuracy")


@dataclass
class ModelPlan:
    """A model ready to evaluate: where its weights are and what training cost, if any."""

    entry: ExperimentModel
    path: str
    method: str
    training: dict[str, Any]


@dataclass
class ExperimentResult:
    scenarios: list[ScenarioResult]
    report: ReportFiles


def load_experiment(path: str | Path) -> ExperimentConfig:
    """Read the ``experiment:`` section of a matrix YAML (see ``recipes/experiment-*.yaml``)."""
    data = load_yaml(path)
    if "experiment" not in data:
        raise ConfigError(f"{path}: no 'experiment:' section")
    return parse_config(ExperimentConfig, data["experiment"], f"{path} [experiment]")


def run_experiment(config: ExperimentConfig) -> ExperimentResult:
    """Prepare every model and knowledge base, evaluate each scenario, write the report.

    Raises:
        ConfigError: a bad matrix (e.g. 'retrieved' without a kb section, an unknown metric).
        InputError: bad data, recipe or knowledge-base sources.
    """
    output = Path(config.output_dir)
    kb_path = _ensure_kb(config.kb) if "retrieved" in config.contexts else None
    if "retrieved" in config.contexts and kb_path is None:
        raise ConfigError("contexts include 'retrieved' but the experiment has no 'kb' section")
    plans = [_prepare_model(entry) for entry in config.models]
    scenarios: list[ScenarioResult] = []
    for plan in plans:
        evals = [_eval_config(config, plan, context, kb_path) for context in config.contexts]
        scenarios += _evaluate_model(plan, evals, config.isolate)
    record = provenance(
        config.model_dump(),
        models={p.entry.name: _model_record(p, config) for p in plans},
        knowledge_base=str(kb_path) if kb_path else None,
    )
    report = write_report(output, scenarios, title=config.title, provenance=record)
    return ExperimentResult(scenarios, report)


def _model_record(plan: ModelPlan, config: ExperimentConfig) -> dict[str, Any]:
    """Path, method and weight hashes (as the model's first scenario recorded them)."""
    metrics = Path(_eval_config(config, plan, config.contexts[0], None).output_dir) / "metrics.json"
    model = json.loads(metrics.read_text())["provenance"]["model"] if metrics.exists() else {}
    return {
        "path": plan.path,
        "method": plan.method,
        "sha256": model.get("sha256"),
        "training": plan.training,
    }


# -- preparation -----------------------------------------------------------------------------
def _ensure_kb(settings: ExperimentKB | None) -> Path | None:
    if settings is None:
        return None
    path = Path(settings.path)
    if (path / "CURRENT").exists():
        return path
    from slmkit.rag.knowledge_base import KnowledgeBase

    sources = list(settings.sources) or [_squad_eval_source(path, settings.holdout_articles)]
    KnowledgeBase.build(path, sources)
    return path


def _squad_eval_source(kb_path: Path, holdout: int) -> str:
    """The bundled SQuAD eval articles minus the last ``holdout`` ones, as a paragraphs file."""
    from slmkit.data.squad import bundled_squad, load_squad, split_articles, write_squad_paragraphs

    articles = split_articles(load_squad(bundled_squad()), "eval")
    if holdout >= len(articles):
        raise ConfigError(f"kb.holdout_articles: {holdout} would leave no article of {len(articles)}")
    kept = articles[: len(articles) - holdout]
    source = kb_path.parent / f"{kb_path.name}-source.json"
    source.parent.mkdir(parents=True, exist_ok=True)
    write_squad_paragraphs(kept, source)
    return str(source)


def _prepare_model(entry: ExperimentModel) -> ModelPlan:
    if entry.model is not None:
        return ModelPlan(entry, entry.model, entry.method or "base", {})
    data = load_yaml(entry.train)["train"]
    for key, value in entry.overrides.items():
        set_dotted(data, key, value)
    train = parse_config(TrainConfig, data, f"{entry.train} [train]")
    final = Path(train.output_dir) / "final"
    if not (final / "training.json").exists():
        from slmkit.train.run import finetune

        logger.info("training %s from %s", entry.name, entry.train)
        finetune(train)
    training = json.loads((final / "training.json").read_text())
    return ModelPlan(entry, str(final), entry.method or train.method, training)


def _eval_config(config: ExperimentConfig, plan: ModelPlan, context: str, kb: Path | None) -> EvalConfig:
    slug = f"{plan.entry.name}-{context}".replace("/", "_")
    return EvalConfig(
        model=plan.path,
        context=context,
        kb=str(kb) if kb and context == "retrieved" else None,
        data=config.data,
        metrics=config.metrics,
        output_dir=str(Path(config.output_dir) / "scenarios" / slug),
        retrieval=config.retrieval,
        abstention=config.abstention,
        generation=config.generation,
    )


# -- evaluation ------------------------------------------------------------------------------
def _evaluate_model(plan: ModelPlan, evals: list[EvalConfig], isolate: bool) -> list[ScenarioResult]:
    cached = [_cached_scenario(e) for e in evals]
    todo = [e for e, c in zip(evals, cached, strict=True) if c is None]
    fresh: list[dict[str, Any]] = []
    if todo and isolate:
        # spawn, not fork: a forked child would inherit this process's memory and its peak.
        context = multiprocessing.get_context("spawn")
        with ProcessPoolExecutor(1, mp_context=context, initializer=_die_with_parent) as pool:
            fresh = pool.submit(_evaluate_in_process, plan, todo).result()
    elif todo:
        fresh = _evaluate_in_process(plan, todo)
    results = iter(fresh)
    return [ScenarioResult.from_dict(c if c is not None else next(results)) for c in cached]


def _die_with_parent() -> None:
    """Linux: have the kernel end this worker when the experiment process dies (Ctrl-C, kill), so
    an interrupted experiment leaves no evaluation running on, writing results nobody asked for."""
    import ctypes
    import signal

    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # 1 = PR_SET_PDEATHSIG


def _evaluate_in_process(plan: ModelPlan, evals: list[EvalConfig]) -> list[dict[str, Any]]:
    from slmkit.eval.runner import peak_rss_gb, run_eval
    from slmkit.models.loading import load_causal_lm

    loaded = load_causal_lm(plan.path, evals[0].dtype)
    kb = None
    out = []
    for config in evals:
        if config.kb and kb is None:
            from slmkit.rag.knowledge_base import KnowledgeBase

            kb = KnowledgeBase.open(config.kb)
        result = run_eval(config, loaded=loaded, kb=kb if config.kb else None)
        latencies = [p.latency_s for p in result.predictions]
        per_example = {k: result.per_example[k] for k in _HISTOGRAM_KEYS if k in result.per_example}
        resources = {
            **{k: v for k, v in result.resources.items() if k in ("parameters", "size_on_disk_mb")},
            "peak_rss_gb": peak_rss_gb(),
        }
        if plan.training:
            resources["train_time_s"] = round(plan.training.get("seconds", 0.0), 1)
            resources["trainable_parameters"] = plan.training.get("trainable_parameters")
        scenario = ScenarioResult(
            name=f"{plan.entry.name} · {config.context}",
            model=plan.entry.model or plan.entry.train or plan.path,
            method=plan.method,
            context=config.context,
            metrics=result.scores,
            per_example={**per_example, "latency_s": latencies},
            resources={k: v for k, v in resources.items() if v is not None},
        )
        data = asdict(scenario)
        _write_json(
            Path(config.output_dir) / "scenario.json", {"config": config.model_dump(), "scenario": data}
        )
        out.append(data)
    return out


def _cached_scenario(config: EvalConfig) -> dict[str, Any] | None:
    """A scenario already evaluated with exactly this configuration (resume after interruption)."""
    path = Path(config.output_dir) / "scenario.json"
    if not path.exists():
        return None
    saved = json.loads(path.read_text())
    try:
        # Read back through the model: a field added since (at its default) changes nothing measured.
        then = EvalConfig.model_validate(saved.get("config") or {})
    except ValidationError:  # a field removed or renamed since: evaluate again
        return None
    return saved["scenario"] if then == config else None


def _write_json(path: Path, data: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_json(path, data)
