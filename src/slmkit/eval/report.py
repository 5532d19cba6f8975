"""Scenario comparison reports: a folder that a user would rather look at than read.

:func:`write_report` turns the results of an experiment grid (one :class:`ScenarioResult` per
scenario, e.g. "smollm2 LoRA · RAG") into::

    report.md      comparison table (best values bold), plot links, provenance; readable on GitHub
    report.html    the same, self-contained (plots inlined as base64 PNG, no external CSS/JS/fonts)
    results.json   everything needed to re-render: scenarios, title, provenance
    plots/*.png    bar charts per metric group, per-example score histograms, latency box plot

:func:`load_results` reads ``results.json`` back, so a report can be re-rendered (or restyled)
without re-running the experiment. Which keys are ranked, and in which direction, is the explicit
:data:`COLUMNS` table; keys it does not know are shown after the known ones but never ranked.
"""

from __future__ import annotations

import base64
import html
import io
import json
import math
import re
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import yaml

# The object-oriented Figure API needs no pyplot: no backend switch, no global figure registry that
# other users of matplotlib in the same process would see, and figures are freed like any object.
from matplotlib.figure import Figure

from slmkit.atomic import atomic_write_bytes, atomic_write_text
from slmkit.errors import InputError

RESULTS_FORMAT = "slmkit-report"
RESULTS_VERSION = 1
HIGHER, LOWER = "higher", "lower"
LATENCY_KEY = "latency_s"


@dataclass(frozen=True)
class ScenarioResult:
    """What one scenario of an experiment measured.

    Attributes:
        name: Row label, unique within a report (e.g. ``"smollm2-lora · rag"``).
        model: Model name or folder.
        method: How the model was trained: ``"base"``, ``"full"``, ``"lora"``, ``"qlora"``, ``"distilled"``...
        context: What the model saw when answering: ``"closed-book"``, ``"gold"`` or ``"retrieved"``.
        metrics: Aggregate scores; percentages on a 0-100 scale (``{"f1": 34.0, "latency_p50_s": 1.3}``).
        per_example: Per-question values for the distribution plots (``{"f1": [...], "latency_s": [...]}``);
            ``None`` marks a question without that value.
        resources: Cost of the scenario (``{"parameters": 134515008, "size_on_disk_mb": 513.0}``).
    """

    name: str
    model: str
    method: str
    context: str
    metrics: dict[str, float] = field(default_factory=dict)
    per_example: dict[str, list[float | None]] = field(default_factory=dict)
    resources: dict[str, float | int | str] = field(default_factory=dict)

    @classmethod
    def from_dict(cls, data: dict[str, Any], where: str = "scenario") -> ScenarioResult:
        """Rebuild from :func:`dataclasses.asdict` output.

        Raises:
            InputError: a field is missing, unknown or of the wrong type (``where`` names the record).
        """
        known = list(cls.__dataclass_fields__)
        unknown = sorted(set(data) - set(known))
        if unknown:
            raise InputError(f"{where}: unknown field(s) {', '.join(unknown)}; known: {', '.join(known)}")
        for required in ("name", "model", "method", "context"):
            if required not in data:
                raise InputError(f"{where}: missing field '{required}'")
        scenario = cls(**data)
        _check_scenario(scenario, where)
        return scenario


@dataclass(frozen=True)
class ReportFiles:
    """Where :func:`write_report` put its output."""

    markdown: Path
    html: Path
    results: Path
    plots: list[Path]


@dataclass(frozen=True)
class Column:
    """How one metric or resource key is labelled, formatted, ranked and plotted.

    Attributes:
        key: Key in ``ScenarioResult.metrics`` or ``.resources``.
        label: Table header and plot legend, unit included.
        unit: Formatting rule, a key of ``_FORMATTERS``.
        better: ``"higher"``, ``"lower"``, or ``None`` when no direction is better (not ranked).
        group: Bar chart the key is drawn in (a key of ``_GROUP_PLOTS``), or ``None``.
    """

    key: str
    label: str
    unit: str
    better: str | None
    group: str | None = None


# Table order and ranking direction. Keys and scales follow slmkit.eval.metrics (percentages 0-100,
# BERTScore/cosine/support/MRR 0-1), latency keys prefixed "latency_". Quality, grounding, retrieval
# and speed come first (what a user chooses on), then cost: fewer parameters, less memory and shorter
# training rank better, since at equal quality the cheaper scenario wins.
COLUMNS: tuple[Column, ...] = (
    Column("exact_match", "EM (%)", "percent", HIGHER, "quality"),
    Column("f1", "F1 (%)", "percent", HIGHER, "quality"),
    Column("rouge1", "ROUGE-1 (%)", "percent", HIGHER),
    Column("rouge2", "ROUGE-2 (%)", "percent", HIGHER),
    Column("rougeL", "ROUGE-L (%)", "percent", HIGHER, "quality"),
    Column("rougeLsum", "ROUGE-Lsum (%)", "percent", HIGHER),
    Column("bleu", "BLEU", "percent", HIGHER, "quality"),
    Column("sentence_bleu", "Sentence BLEU", "percent", HIGHER),
    Column("accuracy", "Accuracy (%)", "percent", HIGHER, "quality"),
    Column("bertscore_f1", "BERTScore F1", "score", HIGHER, "quality"),
    Column("cosine", "Cosine similarity", "score", HIGHER, "quality"),
    Column("unparsed", "Unparsed choices (%)", "percent", LOWER),
    Column("faithfulness", "Faithfulness (%)", "percent", HIGHER, "grounding"),
    Column("mean_support", "Mean support", "score", HIGHER, "grounding"),
    Column("correct_refusals", "Correct refusals (%)", "percent", HIGHER, "grounding"),
    Column("false_refusals", "False refusals (%)", "percent", LOWER, "grounding"),
    Column("recall@1", "Recall@1 (%)", "percent", HIGHER, "retrieval"),
    Column("recall@3", "Recall@3 (%)", "percent", HIGHER, "retrieval"),
    Column("recall@5", "Recall@5 (%)", "percent", HIGHER, "retrieval"),
    Column("mrr@10", "MRR@10", "score", HIGHER, "retrieval"),
    Column("latency_p50_s", "Latency p50 (s)", "seconds", LOWER, "speed"),
    Column("latency_p95_s", "Latency p95 (s)", "seconds", LOWER, "speed"),
    Column("latency_mean_s", "Latency mean (s)", "seconds", LOWER, "speed"),
    Column("tokens_per_s", "Tokens/s", "rate", HIGHER, "speed"),
    Column("peak_rss_gb", "Peak memory (GB)", "gigabytes", LOWER),
    Column("parameters", "Parameters", "count", LOWER),
    Column("trainable_parameters", "Trainable parameters", "count", None),
    Column("size_on_disk_mb", "Size on disk (MB)", "megabytes", LOWER),
    Column("train_time_s", "Training time (s)", "seconds", LOWER),
)
_COLUMNS_BY_KEY = {c.key: c for c in COLUMNS}

# Bar charts: (group, file stem, title). Each chart gets one panel per unit, so latency (s) and
# tokens/s sit side by side instead of sharing an axis.
_GROUP_PLOTS = (
    ("quality", "quality", "Answer quality"),
    ("grounding", "faithfulness_abstention", "Faithfulness & abstention"),
    ("retrieval", "retrieval", "Retrieval"),
    ("speed", "speed", "Speed"),
)
_AXIS_LABELS = {"percent": "%", "score": "score (0-1)", "seconds": "seconds", "rate": "tokens / s"}
_SCENARIO_FIELDS = ("name", "model", "method", "context")


# ---------------------------------------------------------------------------------------------
# Public entry points
# ---------------------------------------------------------------------------------------------


def write_report(
    folder: Path, scenarios: Sequence[ScenarioResult], *, title: str, provenance: dict[str, Any]
) -> ReportFiles:
    """Write ``report.md``, ``report.html``, ``results.json`` and ``plots/*.png`` into ``folder``.

    Args:
        folder: Output folder, created if missing. Existing ``plots/*.png`` are removed first so a
            re-render never leaves a stale plot behind.
        scenarios: One result per scenario, in table order (as returned by :func:`load_results` too).
        title: Report heading.
        provenance: How the results were made (command, config, library versions, model hashes);
            shown verbatim as YAML. Values that are not JSON types are stored as strings.

    Returns:
        The paths written.

    Raises:
        InputError: no scenarios, duplicate scenario names, or a value of the wrong type (the
            scenario and key are named).
    """
    _check_scenarios(scenarios)
    folder.mkdir(parents=True, exist_ok=True)
    plots = _write_plots(folder / "plots", scenarios)
    results = folder / "results.json"
    atomic_write_text(results, _results_json(scenarios, title, provenance))
    headers, rows = _table(scenarios)
    provenance_yaml = _provenance_yaml(provenance)
    markdown = folder / "report.md"
    atomic_write_text(markdown, _render_markdown(title, headers, rows, plots, provenance_yaml, folder))
    page = folder / "report.html"
    atomic_write_text(page, _render_html(title, headers, rows, plots, provenance_yaml))
    return ReportFiles(markdown=markdown, html=page, results=results, plots=[p.path for p in plots])


def load_results(path: Path) -> tuple[list[ScenarioResult], dict[str, Any], str]:
    """Read a ``results.json`` written by :func:`write_report`.

    Returns:
        ``(scenarios, provenance, title)``, ready to pass back to :func:`write_report`.

    Raises:
        InputError: the file is missing, is not JSON, or is not a report results file (the file
            and the scenario at fault are named).
    """
    if not path.is_file():
        raise InputError(f"{path}: no such results file; `slmkit experiment` writes one per report")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise InputError(f"{path}: not valid JSON ({exc.msg}, line {exc.lineno})") from exc
    if not isinstance(data, dict) or data.get("format") != RESULTS_FORMAT:
        raise InputError(f'{path}: not a report results file (expected "format": "{RESULTS_FORMAT}")')
    if data.get("version") != RESULTS_VERSION:
        version = data.get("version")
        raise InputError(f"{path}: results version {version!r}; this slmkit reads version {RESULTS_VERSION}")
    records, provenance, title = data.get("scenarios"), data.get("provenance", {}), data.get("title", "")
    if not isinstance(records, list) or not isinstance(provenance, dict) or not isinstance(title, str):
        raise InputError(f"{path}: expected 'scenarios' (list), 'provenance' (object) and 'title' (string)")
    for i, record in enumerate(records):
        if not isinstance(record, dict):
            raise InputError(f"{path}: scenarios[{i}] is not a JSON object")
    scenarios = [ScenarioResult.from_dict(r, f"{path}: scenarios[{i}]") for i, r in enumerate(records)]
    return scenarios, provenance, title


def format_value(key: str, value: float | int | str | None) -> str:
    """Format one table cell: ``134515008`` parameters -> ``"134.5M"``, 26.71 % -> ``"26.7"``.

    Percentages keep 1 decimal, 0-1 scores 3, seconds 2, sizes in MB 1 and GB 2; parameter counts
    use K/M/B.
    Missing and non-finite values format as ``""`` (a blank cell); strings are returned unchanged.
    """
    if value is None or isinstance(value, str):
        return value or ""
    if not math.isfinite(value):
        return ""
    return _FORMATTERS[column_for(key).unit](value)


def column_for(key: str) -> Column:
    """The :data:`COLUMNS` entry for ``key``, or an unranked column whose unit follows the key's suffix."""
    if key in _COLUMNS_BY_KEY:
        return _COLUMNS_BY_KEY[key]
    for suffix, unit in (("_s", "seconds"), ("_mb", "megabytes"), ("_gb", "gigabytes")):
        if key.endswith(suffix):
            return Column(key, key, unit, None)
    return Column(key, key, "number", None)


# ---------------------------------------------------------------------------------------------
# Validation and results.json
# ---------------------------------------------------------------------------------------------


def _check_scenarios(scenarios: Sequence[ScenarioResult]) -> None:
    if not scenarios:
        raise InputError("no scenarios to report; the experiment produced no results")
    seen: set[str] = set()
    for i, scenario in enumerate(scenarios):
        _check_scenario(scenario, f"scenarios[{i}]")
        if scenario.name in seen:
            raise InputError(
                f"scenarios[{i}]: name '{scenario.name}' appears twice; scenario names must be unique"
            )
        seen.add(scenario.name)


def _check_scenario(scenario: ScenarioResult, where: str) -> None:
    for name in _SCENARIO_FIELDS:
        if not isinstance(getattr(scenario, name), str):
            raise InputError(f"{where}: field '{name}' must be a string")
    where = f"{where} ('{scenario.name}')"
    for name in ("metrics", "per_example", "resources"):
        if not isinstance(getattr(scenario, name), dict):
            raise InputError(f"{where}: field '{name}' must be a mapping of key to value")
    for key, value in scenario.metrics.items():
        if not _is_number(value):
            raise InputError(f"{where}: metrics['{key}'] = {value!r} is not a number")
    for key, value in scenario.resources.items():
        if not (_is_number(value) or isinstance(value, str)):
            raise InputError(f"{where}: resources['{key}'] = {value!r} is neither a number nor a string")
    for key, values in scenario.per_example.items():
        if not isinstance(values, list) or not all(v is None or _is_number(v) for v in values):
            raise InputError(f"{where}: per_example['{key}'] must be a list of numbers or nulls")


def _is_number(value: object) -> bool:
    # bool is an int subclass, but True as a metric is a caller bug, not 1.0.
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _results_json(scenarios: Sequence[ScenarioResult], title: str, provenance: dict[str, Any]) -> str:
    # Strict JSON (no NaN) so any reader, not only Python's, can load the file: non-finite aggregates
    # are dropped (they render as blank cells either way) and non-finite per-example values become null.
    records = []
    for scenario in scenarios:
        record = asdict(scenario)
        for name in ("metrics", "resources"):
            record[name] = {k: v for k, v in record[name].items() if isinstance(v, str) or math.isfinite(v)}
        per_example = record["per_example"].items()
        record["per_example"] = {k: [_finite_or_none(v) for v in values] for k, values in per_example}
        records.append(record)
    data = {
        "format": RESULTS_FORMAT,
        "version": RESULTS_VERSION,
        "title": title,
        "provenance": _jsonable(provenance),
        "scenarios": records,
    }
    return json.dumps(data, indent=2, ensure_ascii=False, allow_nan=False) + "\n"


def _finite_or_none(value: float | None) -> float | None:
    return value if value is not None and math.isfinite(value) else None


def _jsonable(value: Any) -> Any:
    """``value`` as plain JSON types: paths and other objects become strings, NaN becomes null."""
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple, set, frozenset)):
        return [_jsonable(v) for v in value]
    if isinstance(value, float):
        return _finite_or_none(value)
    if value is None or isinstance(value, (str, int, bool)):
        return value
    return str(value)


def _provenance_yaml(provenance: dict[str, Any]) -> str:
    if not provenance:
        return "# no provenance recorded\n"
    return yaml.safe_dump(_jsonable(provenance), sort_keys=False, allow_unicode=True, width=100)


# ---------------------------------------------------------------------------------------------
# Comparison table (shared by the Markdown and HTML renderers)
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Cell:
    text: str
    numeric: bool = False
    best: bool = False


def _table(scenarios: Sequence[ScenarioResult]) -> tuple[list[str], list[list[_Cell]]]:
    """Header labels and one row of cells per scenario, best values per ranked column marked."""
    columns = _present_columns(scenarios)
    values = [_values(s) for s in scenarios]
    headers = ["Scenario", "Model", "Method", "Context"] + [_header(c) for c in columns]
    rows = [[_Cell(getattr(s, name)) for name in _SCENARIO_FIELDS] for s in scenarios]
    for column in columns:
        column_values = [v.get(column.key) for v in values]
        best = _best_rows(column, column_values)
        for i, value in enumerate(column_values):
            rows[i].append(_Cell(format_value(column.key, value), _is_number(value), i in best))
    return headers, rows


def _values(scenario: ScenarioResult) -> dict[str, float | int | str]:
    # One namespace for metrics and resources; a metric wins if a key is (oddly) in both.
    return {**scenario.resources, **scenario.metrics}


def _present_columns(scenarios: Sequence[ScenarioResult]) -> list[Column]:
    """Known columns present in any scenario, in :data:`COLUMNS` order, then unknown keys as first seen."""
    present: dict[str, None] = {}
    for scenario in scenarios:
        present.update(dict.fromkeys(scenario.metrics))
        present.update(dict.fromkeys(scenario.resources))
    known = [c for c in COLUMNS if c.key in present]
    return known + [column_for(k) for k in present if k not in _COLUMNS_BY_KEY]


def _header(column: Column) -> str:
    arrow = {HIGHER: " ↑", LOWER: " ↓"}.get(column.better or "", "")
    return column.label + arrow


def _best_rows(column: Column, values: Sequence[Any]) -> set[int]:
    """Rows holding the best value of a ranked column (all of them on a tie).

    Nothing is marked when fewer than two scenarios have a value or all values are equal: a bold
    cell should mean "this one wins", not "this one was the only one measured".
    """
    numbers = {i: v for i, v in enumerate(values) if _is_number(v) and math.isfinite(v)}
    if column.better is None or len(numbers) < 2 or len(set(numbers.values())) == 1:
        return set()
    best = max(numbers.values()) if column.better == HIGHER else min(numbers.values())
    return {i for i, v in numbers.items() if v == best}


def _format_count(value: float) -> str:
    for divisor, suffix in ((1e9, "B"), (1e6, "M"), (1e3, "K")):
        if abs(value) >= divisor:
            return f"{value / divisor:.1f}{suffix}"
    return f"{value:,.0f}"


def _format_number(value: float) -> str:
    return f"{value:,}" if isinstance(value, int) else f"{value:,.2f}"


_FORMATTERS = {
    "percent": lambda v: f"{v:.1f}",
    "score": lambda v: f"{v:.3f}",
    "seconds": lambda v: f"{v:,.2f}",
    "rate": lambda v: f"{v:,.1f}",
    "megabytes": lambda v: f"{v:,.1f}",
    "gigabytes": lambda v: f"{v:,.2f}",
    "count": _format_count,
    "number": _format_number,
}


# ---------------------------------------------------------------------------------------------
# Plots
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Plot:
    path: Path
    caption: str


def _write_plots(folder: Path, scenarios: Sequence[ScenarioResult]) -> list[_Plot]:
    """Draw every plot whose data exists; a plot with no data is skipped, never drawn empty."""
    folder.mkdir(parents=True, exist_ok=True)
    for stale in folder.glob("*.png"):
        stale.unlink()
    plots = []
    present = _present_columns(scenarios)
    for group, stem, title in _GROUP_PLOTS:
        columns = [c for c in present if c.group == group]
        if columns:
            plots.append(_save(_group_figure(title, columns, scenarios), folder / f"{stem}.png", title))
    for key in _score_keys(scenarios):
        caption = f"Per-example {key} distribution"
        plots.append(_save(_histogram_figure(key, scenarios), folder / f"scores_{_slug(key)}.png", caption))
    if any(_samples(s, LATENCY_KEY) for s in scenarios):
        caption = "Latency per question (box: middle half of the questions, line: median, triangle: mean)"
        plots.append(_save(_latency_figure(scenarios), folder / "latency.png", caption))
    return plots


def _save(figure: Figure, path: Path, caption: str) -> _Plot:
    png = io.BytesIO()
    figure.savefig(png, format="png", dpi=110, bbox_inches="tight")
    atomic_write_bytes(path, png.getvalue())
    figure.clear()  # drop the artists now; with no pyplot registry nothing else holds the figure
    return _Plot(path, caption)


def _slug(key: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", key)


def _group_figure(title: str, columns: Sequence[Column], scenarios: Sequence[ScenarioResult]) -> Figure:
    """One bar panel per unit in the group, scenarios on the x axis, values written on the bars."""
    panels: dict[str, list[Column]] = {}
    for column in columns:
        panels.setdefault(column.unit, []).append(column)
    # Panels are stacked, each as wide as its bar count needs (capped to stay readable on a page).
    width = min(
        16.0, max(6.0, max(0.9 * len(scenarios) * max(1.0, len(cs) / 2) + 1.5 for cs in panels.values()))
    )
    figure = Figure(figsize=(width, 4.2 * len(panels)), layout="constrained")
    figure.suptitle(title)
    axes = figure.subplots(len(panels), 1, squeeze=False)[:, 0]
    for ax, (unit, panel_columns) in zip(axes, panels.items(), strict=True):
        _bar_panel(ax, unit, panel_columns, scenarios)
    return figure


def _bar_panel(ax: Any, unit: str, columns: Sequence[Column], scenarios: Sequence[ScenarioResult]) -> None:
    slot = 0.8 / len(columns)
    for j, column in enumerate(columns):
        # Only scenarios that measured the key get a bar: a missing value is not a zero.
        points = [(i, _values(s)[column.key]) for i, s in enumerate(scenarios) if _has_value(s, column.key)]
        if not points:
            continue
        xs = [i - 0.4 + slot * (j + 0.5) for i, _ in points]
        bars = ax.bar(xs, [v for _, v in points], width=slot * 0.92, label=_header(column))
        labels = [format_value(column.key, v) for _, v in points]
        ax.bar_label(bars, labels=labels, padding=2, fontsize=8)
    for i, scenario in enumerate(scenarios):
        if not any(_has_value(scenario, c.key) for c in columns):
            ax.text(i, 0, "not measured", ha="center", va="bottom", fontsize=8, color="#888888")
    ax.set_xticks(range(len(scenarios)), [s.name for s in scenarios], rotation=20, ha="right")
    ax.set_xlim(-0.6, len(scenarios) - 0.4)  # keep a slot for scenarios without any bar
    ax.set_ylabel(_AXIS_LABELS.get(unit, unit))
    ax.margins(y=0.15)  # head room for the value labels
    ax.grid(axis="y", alpha=0.3)
    if len(columns) > 1:
        ax.legend(fontsize=8)
    else:
        ax.set_title(_header(columns[0]))


def _has_value(scenario: ScenarioResult, key: str) -> bool:
    value = _values(scenario).get(key)
    return _is_number(value) and math.isfinite(value)


def _samples(scenario: ScenarioResult, key: str) -> list[float]:
    """Finite per-example values of ``key`` (``None`` and NaN dropped)."""
    return [v for v in scenario.per_example.get(key, []) if v is not None and math.isfinite(v)]


def _score_keys(scenarios: Sequence[ScenarioResult]) -> list[str]:
    # Keys ending in "_s" are durations or rates (latency_s, tokens_per_s), not scores.
    keys: dict[str, None] = {}
    for scenario in scenarios:
        keys.update(dict.fromkeys(k for k in scenario.per_example if not k.endswith("_s")))
    return [k for k in keys if any(_samples(s, k) for s in scenarios)]


def _histogram_figure(key: str, scenarios: Sequence[ScenarioResult]) -> Figure:
    """Small multiples, one row per scenario, on shared bins so the shapes compare directly."""
    measured = [(s.name, _samples(s, key)) for s in scenarios if _samples(s, key)]
    bins = _shared_bins(v for _, values in measured for v in values)
    figure = Figure(figsize=(7, 1.2 + 1.5 * len(measured)), layout="constrained")
    figure.suptitle(f"Per-example {key}")
    axes = figure.subplots(len(measured), 1, sharex=True, squeeze=False)[:, 0]
    for ax, (name, values) in zip(axes, measured, strict=True):
        ax.hist(values, bins=bins, color="#4c72b0")
        mean = sum(values) / len(values)
        ax.set_title(f"{name}  (n={len(values)}, mean={mean:.2f})", fontsize=9, loc="left")
        ax.set_ylabel("questions")
    axes[-1].set_xlabel(key)
    return figure


def _shared_bins(values: Iterable[float], count: int = 20) -> list[float]:
    values = list(values)
    low, high = min(values), max(values)
    if low == high:  # every answer scored the same: one visible bar instead of a zero-width range
        low, high = low - 0.5, high + 0.5
    return [low + (high - low) * i / count for i in range(count + 1)]


def _latency_figure(scenarios: Sequence[ScenarioResult]) -> Figure:
    measured = [(s.name, _samples(s, LATENCY_KEY)) for s in scenarios if _samples(s, LATENCY_KEY)]
    figure = Figure(figsize=(max(5.0, 1.3 * len(measured) + 2), 4.2), layout="constrained")
    ax = figure.subplots()
    ax.boxplot([values for _, values in measured], showmeans=True)
    ax.set_xticks(range(1, len(measured) + 1), [name for name, _ in measured], rotation=20, ha="right")
    ax.set_ylabel("seconds per question")
    ax.set_title("Latency per question")
    ax.grid(axis="y", alpha=0.3)
    return figure


# ---------------------------------------------------------------------------------------------
# Renderers
# ---------------------------------------------------------------------------------------------

_HOW_TO_READ = (
    "Each row is one scenario: a model, how it was trained (method) and what it saw when answering "
    "(context: closed-book = nothing, gold = the passage that holds the answer, retrieved = passages "
    "found by the retriever). Percentages are on a 0-100 scale; BERTScore, cosine similarity, support "
    "and MRR on 0-1. ↑ marks columns where higher is better, ↓ where lower is better, and the best "
    "value of each such column is in bold; a blank cell means the scenario did not measure that "
    "quantity. The bar charts repeat the headline numbers; the histograms and the latency plot show "
    "what averages hide, e.g. whether a mean F1 of 30 comes from every answer being partly right or "
    "from a third of them being exactly right."
)
_NO_PLOTS = "No plot: the scenarios carry no plottable metrics."


def _render_markdown(
    title: str, headers: list[str], rows: list[list[_Cell]], plots: list[_Plot], provenance: str, folder: Path
) -> str:
    def cell(c: _Cell) -> str:
        text = c.text.replace("|", "\\|").replace("\n", " ")
        return f"**{text}**" if c.best else text

    align = ["---" if i < len(_SCENARIO_FIELDS) else "---:" for i in range(len(headers))]
    lines = [f"# {title}", "", "## How to read this", "", _HOW_TO_READ, "", "## Comparison", ""]
    lines.append("| " + " | ".join(h.replace("|", "\\|") for h in headers) + " |")
    lines.append("| " + " | ".join(align) + " |")
    lines += ["| " + " | ".join(cell(c) for c in row) + " |" for row in rows]
    lines += ["", "## Plots", ""]
    for plot in plots:
        lines += [f"![{plot.caption}]({plot.path.relative_to(folder).as_posix()})", ""]
    if not plots:
        lines += [_NO_PLOTS, ""]
    lines += ["## Provenance", "", "```yaml", provenance.rstrip("\n"), "```", ""]
    return "\n".join(lines)


_CSS = """
body { font-family: system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; margin: 2rem auto;
       max-width: 1200px; padding: 0 1rem; color: #1f2328; line-height: 1.5; }
h1 { margin-bottom: .2rem; } h2 { margin-top: 2rem; border-bottom: 1px solid #d0d7de; }
.scroll { overflow-x: auto; }
table { border-collapse: collapse; font-size: .92rem; }
th, td { padding: .35rem .6rem; border-bottom: 1px solid #d0d7de; white-space: nowrap; }
thead th { background: #f6f8fa; position: sticky; top: 0; text-align: left; }
td.num { text-align: right; font-variant-numeric: tabular-nums; }
td.best { background: #dafbe1; }
tbody tr:hover { background: #f6f8fa; }
figure { margin: 1.5rem 0; } figure img { max-width: 100%; height: auto; }
figcaption { color: #59636e; font-size: .9rem; }
pre { background: #f6f8fa; padding: 1rem; overflow-x: auto; font-size: .85rem; }
"""


def _render_html(
    title: str, headers: list[str], rows: list[list[_Cell]], plots: list[_Plot], provenance: str
) -> str:
    esc = html.escape
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en">',
        f'<head><meta charset="utf-8"><title>{esc(title)}</title><style>{_CSS}</style></head>',
        "<body>",
        f"<h1>{esc(title)}</h1>",
        f"<h2>How to read this</h2><p>{esc(_HOW_TO_READ)}</p>",
        "<h2>Comparison</h2>",
        _html_table(headers, rows),
        "<h2>Plots</h2>",
    ]
    parts += [_html_figure(plot) for plot in plots] or [f"<p>{_NO_PLOTS}</p>"]
    parts += ["<h2>Provenance</h2>", f"<pre><code>{esc(provenance)}</code></pre>", "</body>", "</html>", ""]
    return "\n".join(parts)


def _html_table(headers: list[str], rows: list[list[_Cell]]) -> str:
    head = "".join(f'<th scope="col">{html.escape(h)}</th>' for h in headers)
    body = "\n".join("<tr>" + "".join(_html_cell(c) for c in row) + "</tr>" for row in rows)
    table = f"<table>\n<thead><tr>{head}</tr></thead>\n<tbody>\n{body}\n</tbody>\n</table>"
    return f'<div class="scroll">{table}</div>'


def _html_cell(cell: _Cell) -> str:
    classes = " ".join(name for name, on in (("num", cell.numeric), ("best", cell.best)) if on)
    text = f"<strong>{html.escape(cell.text)}</strong>" if cell.best else html.escape(cell.text)
    return f'<td class="{classes}">{text}</td>' if classes else f"<td>{text}</td>"


def _html_figure(plot: _Plot) -> str:
    # Inlined so the page is one file that can be mailed, attached or opened offline.
    data = base64.b64encode(plot.path.read_bytes()).decode("ascii")
    caption = html.escape(plot.caption)
    image = f'<img src="data:image/png;base64,{data}" alt="{caption}">'
    return f"<figure>{image}<figcaption>{caption}</figcaption></figure>"
