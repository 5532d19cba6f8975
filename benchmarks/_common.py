"""Shared set-up for the benchmarks: the bundled SQuAD data, its agreed split, and the full KB."""

from __future__ import annotations

import json
import os
import random
import sys
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

from slmkit.data.squad import SquadArticle, bundled_squad, load_squad, split_articles, write_squad_paragraphs
from slmkit.rag.knowledge_base import KnowledgeBase

REPO = Path(__file__).resolve().parent.parent
KB_PATH = Path(os.environ.get("SLMKIT_BENCH_KB", REPO / ".slmkit" / "squad-kb"))
TRAIN_KB_PATH = Path(os.environ.get("SLMKIT_BENCH_TRAIN_KB", REPO / ".slmkit" / "squad-train-kb"))


def squad_articles() -> list[SquadArticle]:
    return load_squad(bundled_squad())


def squad_kb(rebuild: bool = False) -> tuple[KnowledgeBase, dict]:
    """The knowledge base of all 2,067 SQuAD dev paragraphs; built on first use (about 80 s)."""
    if rebuild or not (KB_PATH / "CURRENT").exists():
        kb, report = KnowledgeBase.build(KB_PATH, [str(bundled_squad())], progress=sys.stderr.isatty())
        return kb, {"build_seconds": report.seconds, "chunks_per_second": report.chunks_per_second}
    return KnowledgeBase.open(KB_PATH), {}


def train_kb() -> KnowledgeBase:
    """The knowledge base of the 38 *train* articles only: questions about the eval articles have no
    answer in it (their topics are close to what it holds, so this is a hard abstention test)."""
    if (TRAIN_KB_PATH / "CURRENT").exists():
        return KnowledgeBase.open(TRAIN_KB_PATH)
    TRAIN_KB_PATH.parent.mkdir(parents=True, exist_ok=True)
    source = TRAIN_KB_PATH.parent / "squad-train-paragraphs.json"
    write_squad_paragraphs(split_articles(squad_articles(), "train"), source)
    return KnowledgeBase.build(TRAIN_KB_PATH, [source], progress=False)[0]


def bootstrap_ci(values: Sequence[float], resamples: int = 2000, seed: int = 0) -> list[float]:
    """95 % percentile-bootstrap interval of the mean of ``values`` (resampling the questions)."""
    if not values:
        return [float("nan"), float("nan")]
    rng = random.Random(seed)
    means = sorted(sum(rng.choices(values, k=len(values))) / len(values) for _ in range(resamples))
    return [means[int(0.025 * resamples)], means[int(0.975 * resamples) - 1]]


def emit(record: dict) -> None:
    """Print the benchmark's one JSON line."""
    print(json.dumps(record, sort_keys=True), flush=True)


class PeakSampler:
    """Samples ``read()`` (a memory reading in bytes) every ``interval`` seconds while active;
    ``peak`` is the largest value seen."""

    def __init__(self, read: Callable[[], int], interval: float = 0.02) -> None:
        self.read, self.interval, self.peak = read, interval, 0

    def __enter__(self) -> PeakSampler:
        self._stop = threading.Event()

        def sample() -> None:
            while not self._stop.is_set():
                self.peak = max(self.peak, self.read())
                time.sleep(self.interval)

        self._thread = threading.Thread(target=sample, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
