"""The defaults the docs quote are the defaults the code has: a calibrated threshold changes in
config.py, and a table in the docs that still shows the old one misleads every reader of it."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from slmkit.config import AbstentionConfig, AskConfig

DOCS = Path(__file__).resolve().parent.parent / "docs"


def _setting(config: object, dotted: str) -> object:
    for part in dotted.split("."):
        config = getattr(config, part)
    return config


def _same(documented: str, value: object) -> bool:
    documented = documented.strip("` ")
    if isinstance(value, float):
        return float(documented) == value
    return documented == str(value)


def test_reader_settings_table_quotes_the_ask_defaults() -> None:
    rows = re.findall(r"^\| `([a-z_.]+)` \| ([^|]+) \|", (DOCS / "reader.md").read_text(), re.M)
    assert len(rows) >= 4, "the settings table in docs/reader.md was not found"
    config = AskConfig()
    wrong = [(name, doc) for name, doc in rows if not _same(doc, _setting(config, name))]
    assert not wrong, f"docs/reader.md quotes defaults the code does not have: {wrong}"


@pytest.mark.parametrize(
    ("gate", "field"),
    [
        ("relevance", "min_relevance"),
        ("coverage", "min_coverage"),
        ("reader confidence", "max_no_answer"),
        ("support", "min_support"),
    ],
)
def test_abstention_gates_table_quotes_the_defaults(gate: str, field: str) -> None:
    text = (DOCS / "abstention.md").read_text()
    row = re.search(rf"^\|[^\n]*\*\*{gate}\*\*[^\n]*\| ([0-9.]+) \|$", text, re.M)
    assert row, f"no row for the {gate} gate in docs/abstention.md"
    assert float(row.group(1)) == getattr(AbstentionConfig(), field)
