"""Standard benchmarks (HellaSwag, MMLU, TruthfulQA, HumanEval, ...) through lm-evaluation-harness.

:func:`run_harness` hands an slmkit model, already loaded (so GGUF-dequantised weights work and
lm-eval never loads from the hub), to lm-eval's ``simple_evaluate`` and returns a
:class:`HarnessResult`. Before the model is loaded it checks every requested task: unknown names
(with close matches), tasks that execute model-written code, and, offline, hub datasets that are
not in the local cache all fail in well under a second once lm-eval's task index is built (about
10 s, once per process), instead of after the model has loaded.

slmkit's own tasks live in ``slmkit/assets/harness/`` and are always available: ``medqa_local``
(100 MedQA USMLE questions) and ``squad_local`` (gold vs distractor answers on SQuAD eval
paragraphs). Their data ships inside the package and is loaded by :func:`bundled_jsonl` and
:func:`squad_answer_pairs`, which the task YAMLs name with ``!function``.

lm-eval is an optional dependency (``pip install 'slmkit[harness]'``); it is imported on first use.
"""

from __future__ import annotations

import dataclasses
import difflib
import functools
import json
import os
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from importlib.resources import files
from pathlib import Path
from typing import TYPE_CHECKING, Any

from slmkit.atomic import atomic_write_json
from slmkit.errors import ConfigError, SlmkitError
from slmkit.eval.provenance import model_fingerprint, provenance
from slmkit.models.loading import LoadedModel, hub_offline, load_causal_lm

if TYPE_CHECKING:
    import datasets
    from lm_eval.tasks import TaskManager

# lm-eval suffixes every metric with its filter ("acc,none"); "none" is the no-filter default.
_NO_FILTER = "none"
_GLOB_CHARS = set("*?[")
# Entries lm-eval puts next to the metrics of each task; sample_len is the example count, kept in samples.
_NOT_METRICS = {"name", "alias", "sample_len"}


class TaskUnavailableError(SlmkitError):
    """A benchmark task exists but cannot run here: its dataset cannot be fetched, or lm-eval is missing."""


@dataclass(frozen=True)
class HarnessResult:
    """Scores of one lm-eval run.

    Attributes:
        model: The model as the user named it.
        metrics: Task (or group) -> metric -> value, e.g. ``{"medqa_local": {"acc": 0.31,
            "acc_stderr": 0.05}}``. Metrics computed after a filter keep lm-eval's ``metric,filter`` name
            (``exact_match,strict-match``).
        samples: Task (or group) -> number of examples scored (after ``limit``).
        num_fewshot: Task -> few-shot examples in each prompt.
        lm_eval_version: The lm-evaluation-harness version that produced the scores.
        raw: lm-eval's full results dict, made JSON-serialisable (task configs, versions, timings).
        provenance: Command, settings, library versions and the model's weight hashes.
    """

    model: str
    metrics: dict[str, dict[str, float]]
    samples: dict[str, int]
    num_fewshot: dict[str, int]
    lm_eval_version: str
    raw: dict[str, Any] = field(repr=False)
    provenance: dict[str, Any] = field(default_factory=dict, repr=False)

    @classmethod
    def from_lm_eval(cls, model: str, raw: dict[str, Any], version: str) -> HarnessResult:
        """Build from ``simple_evaluate``'s return value (made JSON-serialisable here)."""
        raw = _json_safe({k: v for k, v in raw.items() if k != "samples"})
        metrics = {task: _metric_values(values) for task, values in raw.get("results", {}).items()}
        shots = {task: int(n) for task, n in raw.get("n-shot", {}).items()}
        return cls(model, metrics, _sample_counts(raw), shots, version, raw)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def save(self, path: Path) -> None:
        """Write :meth:`to_dict` as JSON, atomically (a crash leaves any old file intact)."""
        atomic_write_json(Path(path), self.to_dict())

    def to_markdown(self) -> str:
        """One row per task and metric: ``| Task | n | Shots | Metric | Value | Stderr |``."""
        lines = ["| Task | n | Shots | Metric | Value | Stderr |", "|---|---:|---:|---|---:|---:|"]
        for task, values in self.metrics.items():
            for metric, value in values.items():
                if _is_stderr(metric):
                    continue
                stderr = values.get(_stderr_name(metric))
                lines.append(
                    f"| {task} | {self.samples.get(task, '')} | {self.num_fewshot.get(task, '')} | {metric} "
                    f"| {value:.4f} | {'' if stderr is None else f'{stderr:.4f}'} |"
                )
        return "\n".join(lines) + "\n"


def run_harness(
    model: str | LoadedModel,
    tasks: Sequence[str],
    *,
    limit: int | float | None = None,
    num_fewshot: int | None = None,
    batch_size: int = 4,
    include_path: str | Path | None = None,
    cache: Path | None = None,
    confirm_run_unsafe_code: bool = False,
) -> HarnessResult:
    """Score a model on lm-eval tasks, groups or tags (``hellaswag``, ``mmlu``, ``medqa_local``, ...).

    Tasks are checked and their datasets loaded before the model, so a bad request fails in seconds.

    Args:
        model: Anything :func:`~slmkit.models.loading.load_causal_lm` accepts (packaged name, folder,
            ``.gguf`` file, hub id) or an already loaded model.
        tasks: lm-eval task, group or tag names, glob patterns (``mmlu_*``) or task YAML files.
        limit: Examples per task: a count, or a fraction of the task when below 1. For quick checks only;
            scores on a subset are not comparable with published ones.
        num_fewshot: Few-shot examples per prompt; None keeps each task's default (0 for most).
        batch_size: Requests per forward pass.
        include_path: A folder of extra task YAMLs (one named like a built-in task replaces it).
        cache: Cache root for dequantised GGUF models (default: slmkit's cache).
        confirm_run_unsafe_code: Allow tasks such as ``humaneval`` that **execute code the model writes**
            on this machine (also sets ``HF_ALLOW_CODE_EVAL=1`` for the duration of the run, the
            ``evaluate`` library's own guard). Only enable it in a sandbox you can afford to damage.

    Returns:
        Per-task metrics, sample counts and lm-eval's raw results.

    Raises:
        ConfigError: no tasks, an unknown task (close matches listed), a task both alone and in a requested
            group, a missing ``include_path`` folder, an invalid ``limit``/``num_fewshot``/``batch_size``,
            or a code-executing task without ``confirm_run_unsafe_code``.
        TaskUnavailableError: lm-eval is not installed, or a task's dataset cannot be fetched (for
            example a hub dataset that is not cached while ``HF_HUB_OFFLINE=1``).
        ModelNotFoundError: the model cannot be loaded.
    """
    _check_options(tasks, limit, num_fewshot, batch_size)
    manager = harness_task_manager(include_path)
    names = _resolve_task_names(manager, tasks)
    leaves = [leaf for name in names for leaf in _leaf_configs(manager, name, parent=name)]
    _check_unsafe_code(leaves, confirm_run_unsafe_code)
    if hub_offline():
        _check_datasets_cached(leaves)
    built = _build_tasks(manager, names)
    loaded = model if isinstance(model, LoadedModel) else load_causal_lm(model, cache=cache)
    import lm_eval

    with _code_eval_allowed(confirm_run_unsafe_code):
        raw = lm_eval.simple_evaluate(
            model=_wrap_model(loaded, batch_size),
            tasks=built,
            num_fewshot=num_fewshot,
            limit=limit,
            batch_size=batch_size,
            task_manager=manager,
            log_samples=False,  # per-example logs would hold every prompt; the scores are what we keep
            confirm_run_unsafe_code=confirm_run_unsafe_code,
        )
    result = HarnessResult.from_lm_eval(loaded.name, raw, lm_eval.__version__)
    settings = {"tasks": list(tasks), "limit": limit, "num_fewshot": num_fewshot, "batch_size": batch_size}
    record = provenance(settings, model=model_fingerprint(loaded.path))
    return dataclasses.replace(result, provenance=record)


def list_tasks(include_path: str | Path | None = None) -> list[str]:
    """Every task, group and tag name :func:`run_harness` accepts, sorted (about 15,000 with lm-eval's)."""
    return list(harness_task_manager(include_path).all_tasks)


def harness_task_manager(include_path: str | Path | None = None) -> TaskManager:
    """lm-eval's task index over its own tasks, slmkit's bundled tasks and ``include_path``.

    Indexing parses ~14,000 YAML files (about 10 s), so one index per set of folders is kept for the
    life of the process.

    Raises:
        ConfigError: ``include_path`` is not a folder.
        TaskUnavailableError: lm-eval is not installed.
    """
    folders = [bundled_tasks_dir()]
    if include_path is not None:
        folder = Path(include_path).expanduser()
        if not folder.is_dir():
            raise ConfigError(f"include_path {folder}: no such folder of task YAML files")
        folders.append(folder.resolve())
    return _cached_task_manager(tuple(str(f) for f in folders))


def bundled_tasks_dir() -> Path:
    """The folder of slmkit's own lm-eval task YAMLs (MIT/CC BY-SA data, see its README.md)."""
    return Path(str(files("slmkit") / "assets" / "harness"))


def bundled_jsonl(data_file: str, split: str = "test", **_task_metadata: Any) -> datasets.DatasetDict:
    """Load a JSONL file shipped next to the bundled task YAMLs as a one-split dataset.

    Named by task YAMLs as ``custom_dataset: !function slmkit.eval.harness.bundled_jsonl`` with
    ``dataset_kwargs: {data_file: NAME}``: lm-eval resolves ``data_files`` against the working
    directory, so a relative path in the YAML would break once slmkit is installed elsewhere.

    Args:
        data_file: File name inside :func:`bundled_tasks_dir`, or an absolute path.
        split: Name of the single split.
        _task_metadata: lm-eval passes the task's metadata too; ignored.

    Raises:
        TaskUnavailableError: the file does not exist.
    """
    import datasets

    path = bundled_tasks_dir() / data_file
    if not path.is_file():
        raise TaskUnavailableError(f"bundled task data {path} is missing; reinstall slmkit")
    # The "json" builder is packaged with datasets, so this never contacts the hub.
    return datasets.load_dataset("json", data_files={split: str(path)})


def squad_answer_pairs(max_questions: int | None = None, **_task_metadata: Any) -> datasets.DatasetDict:
    """The ``squad_local`` task's data: gold vs distractor answer for one question per eval paragraph.

    The distractor is the first answer to another question on the same paragraph that shares no word
    with any gold answer (so it is plainly wrong, yet a phrase from the context). The gold answer
    alternates between choice 0 and 1, so a model that always picks one position scores 0.5.

    Args:
        max_questions: Keep only the first N records (None: all, one per eval paragraph that has a
            distractor, about 400).
        _task_metadata: lm-eval passes the task's metadata too; ignored.

    Returns:
        A ``test`` split with ``id``, ``context``, ``question``, ``choices`` and ``label`` (gold index).
    """
    import datasets

    from slmkit.data.squad import bundled_squad, load_squad, split_articles

    records = []
    for article in split_articles(load_squad(bundled_squad()), "eval"):
        for paragraph in article.paragraphs:
            record = _answer_pair(paragraph, gold_first=len(records) % 2 == 0)
            if record is not None:
                records.append(record)
    return datasets.DatasetDict({"test": datasets.Dataset.from_list(records[:max_questions])})


def _answer_pair(paragraph: Any, gold_first: bool) -> dict[str, Any] | None:
    from slmkit.data.squad_metrics import f1_score

    for question in paragraph.qas:
        distractor = next(
            (
                other.answers[0]
                for other in paragraph.qas
                if other is not question and f1_score(other.answers[0], question.answers) == 0.0
            ),
            None,
        )
        if distractor is not None:
            choices = [question.answers[0], distractor] if gold_first else [distractor, question.answers[0]]
            return {
                "id": question.id,
                "context": paragraph.context,
                "question": question.question,
                "choices": choices,
                "label": 0 if gold_first else 1,
            }
    return None


@functools.lru_cache(maxsize=4)
def _cached_task_manager(folders: tuple[str, ...]) -> TaskManager:
    try:
        from lm_eval.tasks import TaskManager
    except ImportError:
        raise TaskUnavailableError(
            "standard benchmarks need lm-evaluation-harness: pip install 'slmkit[harness]'"
        ) from None
    return TaskManager(include_path=list(folders))


def _check_options(
    tasks: Sequence[str], limit: int | float | None, num_fewshot: int | None, batch_size: int
) -> None:
    if isinstance(tasks, str) or not tasks:
        raise ConfigError("tasks: give a list of one or more task names, e.g. ['medqa_local', 'hellaswag']")
    if limit is not None and limit <= 0:
        raise ConfigError(f"limit must be > 0 (a count, or a fraction below 1), got {limit}")
    if num_fewshot is not None and num_fewshot < 0:
        raise ConfigError(f"num_fewshot must be >= 0, got {num_fewshot}")
    if batch_size < 1:
        raise ConfigError(f"batch_size must be >= 1, got {batch_size}")


def _resolve_task_names(manager: TaskManager, tasks: Sequence[str]) -> list[str]:
    """Expand glob patterns; keep known names and task YAML files; reject the rest with suggestions."""
    names: list[str] = []
    for task in tasks:
        if task in manager.task_index or _is_task_file(task):
            names.append(task)
        elif _GLOB_CHARS & set(task) and (matches := manager.match_tasks([task])):
            names.extend(matches)
        else:
            raise ConfigError(_unknown_task_message(task, manager.all_tasks))
    return list(dict.fromkeys(names))


def _is_task_file(task: str) -> bool:
    return task.endswith((".yaml", ".yml")) and Path(task).expanduser().is_file()


def _unknown_task_message(task: str, known: list[str]) -> str:
    close = difflib.get_close_matches(task, known, n=5, cutoff=0.6)
    hint = f"did you mean: {', '.join(close)}?" if close else "no similar task names"
    bundled = ", ".join(sorted(path.stem for path in bundled_tasks_dir().glob("*.yaml")))
    return (
        f"unknown lm-eval task '{task}'; {hint} (slmkit's own tasks: {bundled}; "
        "list all with slmkit.eval.harness.list_tasks(), or add task YAMLs with --include-path)"
    )


def _leaf_configs(
    manager: TaskManager, name: str, parent: str, overrides: dict[str, Any] | None = None
) -> Iterator[tuple[str, str, dict[str, Any]]]:
    """Yield ``(task, requested name, config)`` for each task a name stands for, from the index alone.

    The index holds each YAML parsed but not built (no dataset loaded, ``!function`` left as a path),
    which is enough to see which dataset a task needs and whether it runs code.
    """
    entry = manager.task_index.get(name)
    if entry is None:  # an inline group or task defined inside a group's YAML, or a YAML file path
        if overrides and "group" in overrides:
            for member in _group_members(overrides):
                yield from _leaf_configs(manager, _member_name(member), parent, _member_overrides(member))
        elif overrides and "task" in overrides:
            yield name, parent, overrides
        return
    kind = entry.kind.name
    if kind == "TAG":
        for task in sorted(entry.tags):
            yield from _leaf_configs(manager, task, parent)
    elif kind == "GROUP":
        for member in _group_members(entry.cfg or {}):
            yield from _leaf_configs(manager, _member_name(member), parent, _member_overrides(member))
    else:
        yield name, parent, {**(entry.cfg or {}), **(overrides or {})}


def _group_members(cfg: dict[str, Any]) -> list[str | dict[str, Any]]:
    members = cfg.get("task") or []
    return [members] if isinstance(members, str) else list(members)


def _member_name(member: str | dict[str, Any]) -> str:
    # A group lists members as names, or as dicts naming a task/group plus overrides for it.
    return member if isinstance(member, str) else str(member.get("group") or member.get("task"))


def _member_overrides(member: str | dict[str, Any]) -> dict[str, Any] | None:
    return member if isinstance(member, dict) else None


def _check_unsafe_code(leaves: list[tuple[str, str, dict[str, Any]]], confirmed: bool) -> None:
    unsafe = sorted({task for task, _, cfg in leaves if cfg.get("unsafe_code")})
    if unsafe and not confirmed:
        raise ConfigError(
            f"task(s) {', '.join(unsafe)} execute code written by the model on this machine; pass "
            "confirm_run_unsafe_code=True (CLI: --confirm-run-unsafe-code) to allow it, ideally in a sandbox"
        )


def _check_datasets_cached(leaves: list[tuple[str, str, dict[str, Any]]]) -> None:
    """Offline, fail at once for a hub dataset that is not in the local cache.

    ``datasets.load_dataset_builder`` resolves a dataset from the cache without reading its data, and
    offline it raises ``ConnectionError`` immediately when the dataset was never downloaded.
    """
    import datasets

    checked: set[tuple[str, str | None]] = set()
    for task, parent, cfg in leaves:
        path, config = cfg.get("dataset_path"), cfg.get("dataset_name")
        if cfg.get("custom_dataset") or not isinstance(path, str) or (path, config) in checked:
            continue
        checked.add((path, config))
        kwargs = {k: v for k, v in (cfg.get("dataset_kwargs") or {}).items() if k != "trust_remote_code"}
        try:
            datasets.load_dataset_builder(path, config, **kwargs)
        except ConnectionError:
            raise TaskUnavailableError(_offline_message(task, parent, path, config)) from None


def _offline_message(task: str, parent: str, path: str, config: str | None) -> str:
    where = f"task '{task}'" + (f" (part of '{parent}')" if parent != task else "")
    dataset = f"'{path}'" + (f" (config '{config}')" if config else "")
    return (
        f"{where} needs the Hugging Face dataset {dataset}, which cannot be downloaded offline "
        "(HF_HUB_OFFLINE=1); run online once to cache it, or point a task YAML at local files with "
        "--include-path"
    )


def _build_tasks(manager: TaskManager, names: list[str]) -> list[Any]:
    """Build lm-eval Task/Group objects (this loads every dataset) and return the top-level ones.

    Building before the model is loaded means a dataset that cannot be fetched fails in seconds.
    Only top-level objects are returned: lm-eval rejects a task passed both alone and inside its group.

    Raises:
        TaskUnavailableError: a dataset cannot be fetched or a data file is missing.
        ConfigError: lm-eval rejects a task config, or a task is requested alone and inside a group.
    """
    try:
        loaded = manager.load(names)
    except (ConnectionError, FileNotFoundError) as err:
        hint = (
            " (HF_HUB_OFFLINE=1); run online once to cache it, or point a task YAML at local files with "
            "--include-path"
            if hub_offline()
            else ""
        )
        tasks = ", ".join(names)
        raise TaskUnavailableError(f"cannot load the data for task(s) {tasks}: {err}{hint}") from None
    except ValueError as err:  # lm-eval's word for a bad task config, or a task requested twice
        raise ConfigError(f"tasks {', '.join(names)}: {err}") from None
    children = {child for kids in loaded.get("group_map", {}).values() for child in kids}
    groups = [g for name, g in loaded.get("groups", {}).items() if name not in children]
    return groups + [t for name, t in loaded["tasks"].items() if name not in children]


def _wrap_model(loaded: LoadedModel, batch_size: int) -> Any:
    from lm_eval.models.huggingface import HFLM

    # Passing the model instance (not a path) keeps lm-eval from loading weights itself, so GGUF
    # sources, fine-tunes and anything load_causal_lm resolves are scored exactly as slmkit runs them.
    return HFLM(
        pretrained=loaded.model,
        tokenizer=loaded.tokenizer,
        batch_size=batch_size,
        max_length=loaded.context_window,
    )


@contextmanager
def _code_eval_allowed(allowed: bool) -> Iterator[None]:
    """Set ``HF_ALLOW_CODE_EVAL=1`` (the guard of evaluate's code_eval metric) for one confirmed run."""
    previous = os.environ.get("HF_ALLOW_CODE_EVAL")
    if allowed:
        os.environ["HF_ALLOW_CODE_EVAL"] = "1"
    try:
        yield
    finally:
        if previous is None:
            os.environ.pop("HF_ALLOW_CODE_EVAL", None)
        else:
            os.environ["HF_ALLOW_CODE_EVAL"] = previous


def _json_safe(value: Any) -> Any:
    from lm_eval.utils import handle_non_serializable

    # lm-eval's own converter (numpy scalars -> numbers, sets -> lists, anything else -> str), as used
    # when lm-eval writes its results file.
    return json.loads(json.dumps(value, default=handle_non_serializable))


def _metric_values(values: dict[str, Any]) -> dict[str, float]:
    metrics = {}
    for key, value in values.items():
        if key in _NOT_METRICS or not isinstance(value, (int, float)) or isinstance(value, bool):
            continue  # also skips "N/A" stderrs
        metric, _, filter_name = key.partition(",")
        metrics[metric if filter_name in ("", _NO_FILTER) else key] = float(value)
    return metrics


def _sample_counts(raw: dict[str, Any]) -> dict[str, int]:
    counts = {task: int(n["effective"]) for task, n in raw.get("n-samples", {}).items()}

    def total(name: str) -> int:
        if name in counts:
            return counts[name]
        return sum(total(child) for child in raw.get("group_subtasks", {}).get(name, []))

    return {name: total(name) for name in raw.get("results", {})}


def _is_stderr(metric: str) -> bool:
    return metric.partition(",")[0].endswith("_stderr")


def _stderr_name(metric: str) -> str:
    base, comma, filter_name = metric.partition(",")
    return f"{base}_stderr{comma}{filter_name}"
