"""Scenario reports on synthetic results: table, bold best values, inline plots, round trip."""

from __future__ import annotations

import base64
import json
import math
from html.parser import HTMLParser
from pathlib import Path

import pytest

from slmkit.errors import InputError
from slmkit.eval.report import ScenarioResult, format_value, load_results, write_report

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
BASE, LORA, GEMMA = "smollm2 base · closed-book", "smollm2-lora · rag", "gemma3-270m · rag"
TITLE = "SQuAD grid <v1> & friends"
PROVENANCE = {
    "command": "slmkit experiment matrix.yaml",
    "config": {"top_k": 4, "max_new_tokens": 48},
    "versions": {"torch": "2.13.0", "transformers": "5.23.0"},
    "model_hashes": {"smollm2-135m-instruct": "sha256:ab12"},
}


def _scenarios() -> list[ScenarioResult]:
    base = ScenarioResult(
        BASE,
        "smollm2-135m-instruct",
        "base",
        "closed-book",
        metrics={
            "exact_match": 3.3,
            "f1": 8.8,
            "faithfulness": 40.0,
            "false_refusals": 2.0,
            "latency_p50_s": 0.9,
        },
        per_example={"f1": [0.0, 0.1, 0.5, None], "latency_s": [0.8, 0.9, 1.1, 1.0]},
        resources={"parameters": 134515008, "size_on_disk_mb": 513.0, "peak_rss_gb": 1.2},
    )
    lora = ScenarioResult(
        LORA,
        "runs/smollm2-lora",
        "lora",
        "retrieved",
        metrics={
            "exact_match": 26.7,
            "f1": 34.0,
            "faithfulness": 81.0,
            "false_refusals": 15.0,
            "latency_p50_s": 1.3,
        },
        per_example={"f1": [1.0, 0.4, 0.0, 0.9], "latency_s": [1.2, 1.3, 1.5, 1.4]},
        resources={"parameters": 134515008, "size_on_disk_mb": 513.0, "train_time_s": 1470.0},
    )
    # Missing faithfulness, latency, memory, size, training time and all per-example data.
    metrics, resources = {"exact_match": 20.0, "f1": 30.5}, {"parameters": 268098176}
    gemma = ScenarioResult(GEMMA, "gemma3-270m", "base", "retrieved", metrics=metrics, resources=resources)
    return [base, lora, gemma]


@pytest.fixture(scope="module")
def report(tmp_path_factory):
    folder = tmp_path_factory.mktemp("report")
    return write_report(
        folder, _scenarios(), title=TITLE, provenance={**PROVENANCE, "source": Path("/m.yaml")}
    )


class _PageParser(HTMLParser):
    """Checks that container tags are balanced and collects table rows and image sources."""

    CONTAINERS = frozenset("html head body table thead tbody tr td th figure strong pre code p h1 h2".split())

    def __init__(self) -> None:
        super().__init__()
        self.stack: list[str] = []
        self.errors: list[str] = []
        self.tables = 0
        self.header: list[str] = []
        self.rows: list[list[tuple[str, set[str]]]] = []
        self.images: list[str] = []
        self._cell: tuple[list[str], set[str]] | None = None

    def handle_starttag(self, tag, attrs):
        attributes = dict(attrs)
        if tag == "img":
            self.images.append(attributes.get("src") or "")
        if tag not in self.CONTAINERS:
            return
        self.stack.append(tag)
        self.tables += tag == "table"
        if tag == "tr" and "tbody" in self.stack:
            self.rows.append([])
        if tag in ("td", "th"):
            self._cell = ([], set((attributes.get("class") or "").split()))

    def handle_endtag(self, tag):
        if tag not in self.CONTAINERS:
            return
        if not self.stack or self.stack[-1] != tag:
            self.errors.append(f"</{tag}> closes {self.stack[-1:] or 'nothing'}")
            return
        self.stack.pop()
        if tag in ("td", "th") and self._cell is not None:
            text, classes = "".join(self._cell[0]), self._cell[1]
            if "tbody" in self.stack:
                self.rows[-1].append((text, classes))
            else:
                self.header.append(text)
            self._cell = None

    def handle_data(self, data):
        if self._cell is not None:
            self._cell[0].append(data)


def _parse_html(path: Path) -> _PageParser:
    parser = _PageParser()
    parser.feed(path.read_text(encoding="utf-8"))
    parser.close()
    return parser


def _markdown_table(path: Path) -> list[list[str]]:
    lines = [line for line in path.read_text(encoding="utf-8").splitlines() if line.startswith("| ")]
    return [[cell.strip() for cell in line.strip().strip("|").split("|")] for line in lines]


def _column(table: list[list[str]], header_prefix: str) -> dict[str, str]:
    """Scenario name -> cell of the column whose header starts with ``header_prefix``."""
    index = next(i for i, h in enumerate(table[0]) if h.startswith(header_prefix))
    return {row[0]: row[index] for row in table[2:]}


def test_html_is_balanced_with_one_row_per_scenario(report):
    page = _parse_html(report.html)
    assert page.errors == [] and page.stack == []
    assert page.tables == 1
    assert [row[0][0] for row in page.rows] == [BASE, LORA, GEMMA]
    assert all(len(row) == len(page.header) for row in page.rows)
    assert page.header[:5] == ["Scenario", "Model", "Method", "Context", "EM (%) ↑"]


def test_html_highlights_the_best_value_in_each_direction(report):
    page = _parse_html(report.html)

    def best(header: str) -> list[tuple[str, str]]:
        index = page.header.index(header)
        return [(row[0][0], row[index][0]) for row in page.rows if "best" in row[index][1]]

    assert best("F1 (%) ↑") == [(LORA, "34.0")]  # higher is better
    assert best("False refusals (%) ↓") == [(BASE, "2.0")]  # lower is better
    assert best("Parameters ↓") == [(BASE, "134.5M"), (LORA, "134.5M")]  # a tie marks both


def test_html_is_self_contained_with_inline_pngs(report):
    page = _parse_html(report.html)
    text = report.html.read_text(encoding="utf-8")
    assert len(page.images) == len(report.plots) == 5
    for src in page.images:
        assert src.startswith("data:image/png;base64,")
        assert base64.b64decode(src.removeprefix("data:image/png;base64,")).startswith(PNG_SIGNATURE)
    assert "<link" not in text and "<script" not in text and "http://" not in text and "https://" not in text


def test_html_escapes_text(report):
    text = report.html.read_text(encoding="utf-8")
    assert "<title>SQuAD grid &lt;v1&gt; &amp; friends</title>" in text
    assert "<v1>" not in text
    assert "command: slmkit experiment matrix.yaml" in text  # provenance rendered as YAML


def test_plot_files_are_pngs(report):
    names = sorted(p.name for p in report.plots)
    assert names == [
        "faithfulness_abstention.png",
        "latency.png",
        "quality.png",
        "scores_f1.png",
        "speed.png",
    ]
    for plot in report.plots:
        assert plot.parent == report.markdown.parent / "plots"
        assert plot.stat().st_size > 1000
        assert plot.read_bytes().startswith(PNG_SIGNATURE)


def test_markdown_table_marks_best_values_bold(report):
    table = _markdown_table(report.markdown)
    assert len(table) == 1 + 1 + 3  # header, alignment row, one row per scenario
    assert [row[0] for row in table[2:]] == [BASE, LORA, GEMMA]
    assert all(len(row) == len(table[0]) for row in table)
    assert _column(table, "F1") == {BASE: "8.8", LORA: "**34.0**", GEMMA: "30.5"}
    assert _column(table, "Latency p50") == {BASE: "**0.90**", LORA: "1.30", GEMMA: ""}
    assert _column(table, "Faithfulness") == {BASE: "40.0", LORA: "**81.0**", GEMMA: ""}
    assert _column(table, "Parameters") == {BASE: "**134.5M**", LORA: "**134.5M**", GEMMA: "268.1M"}
    # Equal everywhere it was measured, or measured once: nothing to win, nothing bold.
    assert _column(table, "Size on disk") == {BASE: "513.0", LORA: "513.0", GEMMA: ""}
    assert _column(table, "Training time") == {BASE: "", LORA: "1,470.00", GEMMA: ""}


def test_markdown_columns_follow_the_fixed_order(report):
    header = _markdown_table(report.markdown)[0]
    assert header[4:] == [
        "EM (%) ↑",
        "F1 (%) ↑",
        "Faithfulness (%) ↑",
        "False refusals (%) ↓",
        "Latency p50 (s) ↓",
        "Peak memory (GB) ↓",
        "Parameters ↓",
        "Size on disk (MB) ↓",
        "Training time (s) ↓",
    ]


def test_markdown_links_plots_and_shows_provenance(report):
    text = report.markdown.read_text(encoding="utf-8")
    assert text.startswith(f"# {TITLE}\n")
    for plot in report.plots:
        assert f"](plots/{plot.name})" in text
    assert "```yaml\ncommand: slmkit experiment matrix.yaml\n" in text
    assert "  torch: 2.13.0\n" in text
    assert "source: /m.yaml\n" in text  # a Path is shown as its string


@pytest.mark.parametrize(
    ("key", "value", "expected"),
    [
        ("parameters", 134515008, "134.5M"),
        ("parameters", 1_234_567_890, "1.2B"),
        ("trainable_parameters", 921_600, "921.6K"),
        ("parameters", 812, "812"),
        ("size_on_disk_mb", 513.0, "513.0"),
        ("size_on_disk_mb", 1536.26, "1,536.3"),
        ("peak_rss_gb", 1.9, "1.90"),
        ("f1", 26.66, "26.7"),
        ("bertscore_f1", 0.87654, "0.877"),
        ("exact_match", 100, "100.0"),
        ("latency_p50_s", 1.3, "1.30"),
        ("tokens_per_s", 15.24, "15.2"),
        ("f1", None, ""),
        ("f1", math.nan, ""),
        ("device", "cpu", "cpu"),
        ("cache_mb", 12.34, "12.3"),  # unknown key: unit from its suffix
        ("custom_score", 0.1234, "0.12"),
        ("custom_count", 12345, "12,345"),
    ],
)
def test_format_value(key, value, expected):
    assert format_value(key, value) == expected


def test_results_round_trip_and_rerender(report, tmp_path):
    scenarios, provenance, title = load_results(report.results)
    assert scenarios == _scenarios()
    assert provenance == {**PROVENANCE, "source": "/m.yaml"}
    assert title == TITLE
    again = write_report(tmp_path, scenarios, title=title, provenance=provenance)
    assert again.markdown.read_text(encoding="utf-8") == report.markdown.read_text(encoding="utf-8")
    assert [p.name for p in again.plots] == [p.name for p in report.plots]


def test_results_json_is_strict_json(tmp_path):
    scenario = ScenarioResult(
        "s", "m", "base", "gold", metrics={"f1": math.nan, "em": 1.0}, per_example={"f1": [0.5, math.nan]}
    )
    files = write_report(tmp_path, [scenario], title="t", provenance={"seed": math.inf})

    def reject(constant):
        raise AssertionError(f"non-standard JSON constant {constant}")

    data = json.loads(files.results.read_text(encoding="utf-8"), parse_constant=reject)
    assert data["scenarios"][0]["metrics"] == {"em": 1.0}
    assert data["scenarios"][0]["per_example"] == {"f1": [0.5, None]}
    assert data["provenance"] == {"seed": None}


def test_no_latency_data_gives_no_latency_plot(tmp_path):
    scenarios = [
        ScenarioResult("a", "m1", "base", "gold", metrics={"f1": 10.0}, per_example={"f1": [0.1, 0.2]}),
        ScenarioResult("b", "m2", "lora", "gold", metrics={"f1": 20.0}),
    ]
    files = write_report(tmp_path, scenarios, title="t", provenance={})
    assert [p.name for p in files.plots] == ["quality.png", "scores_f1.png"]
    assert not (tmp_path / "plots" / "latency.png").exists()
    assert "latency" not in files.markdown.read_text(encoding="utf-8").lower().split("## plots")[1]


def test_rerender_removes_stale_plots_and_survives_no_metrics(tmp_path):
    write_report(tmp_path, _scenarios(), title="t", provenance={})
    assert (tmp_path / "plots" / "latency.png").is_file()
    files = write_report(tmp_path, [ScenarioResult("only", "m", "base", "gold")], title="t", provenance={})
    assert files.plots == [] and list((tmp_path / "plots").iterdir()) == []
    assert "No plot" in files.html.read_text(encoding="utf-8")
    assert _markdown_table(files.markdown)[2] == ["only", "m", "base", "gold"]


def test_invalid_scenarios_are_named(tmp_path):
    with pytest.raises(InputError, match="no scenarios"):
        write_report(tmp_path, [], title="t", provenance={})
    twins = [ScenarioResult("x", "m", "base", "gold"), ScenarioResult("x", "n", "lora", "gold")]
    with pytest.raises(InputError, match=r"scenarios\[1\]: name 'x' appears twice"):
        write_report(tmp_path, twins, title="t", provenance={})
    bad = ScenarioResult("y", "m", "base", "gold", metrics={"f1": "high"})  # type: ignore[dict-item]
    with pytest.raises(InputError, match=r"scenarios\[0\] \('y'\): metrics\['f1'\] = 'high' is not a number"):
        write_report(tmp_path, [bad], title="t", provenance={})


def test_load_results_names_the_file_and_record(tmp_path):
    path = tmp_path / "results.json"
    with pytest.raises(InputError, match="no such results file"):
        load_results(path)
    path.write_text("{", encoding="utf-8")
    with pytest.raises(InputError, match="not valid JSON"):
        load_results(path)
    path.write_text(json.dumps({"scenarios": []}), encoding="utf-8")
    with pytest.raises(InputError, match="not a report results file"):
        load_results(path)
    record = {"name": "a", "model": "m", "method": "base", "context": "gold", "colour": "red"}
    data = {"format": "slmkit-report", "version": 1, "title": "t", "provenance": {}, "scenarios": [record]}
    path.write_text(json.dumps(data), encoding="utf-8")
    with pytest.raises(InputError, match=r"results.json: scenarios\[0\]: unknown field\(s\) colour"):
        load_results(path)
