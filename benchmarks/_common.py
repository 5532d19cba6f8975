"""Shared set-up for the benchmarks: the bundled SQuAD data, its agreed split, and the full KB."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

from slmkit.data.squad import SquadArticle, bundled_squad, load_squad
from slmkit.rag.knowledge_base import KnowledgeBase

REPO = Path(__file__).resolve().parent.parent
KB_PATH = Path(os.environ.get("SLMKIT_BENCH_KB", REPO / ".slmkit" / "squad-kb"))


def squad_articles() -> list[SquadArticle]:
    return load_squad(bundled_squad())


def squad_kb(rebuild: bool = False) -> tuple[KnowledgeBase, dict]:
    """The knowledge base of all 2,067 SQuAD dev paragraphs; built on first use (about 80 s)."""
    if rebuild or not (KB_PATH / "CURRENT").exists():
        kb, report = KnowledgeBase.build(KB_PATH, [str(bundled_squad())], progress=sys.stderr.isatty())
        return kb, {"build_seconds": report.seconds, "chunks_per_second": report.chunks_per_second}
    return KnowledgeBase.open(KB_PATH), {}


def emit(record: dict) -> None:
    """Print the benchmark's one JSON line."""
    print(json.dumps(record, sort_keys=True), flush=True)
