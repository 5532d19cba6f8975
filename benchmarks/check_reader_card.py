"""Do the shipped reader's card scores still hold? Compare a fresh benchmark run with ``scores.json``.

    python benchmarks/reader_squad.py > runs/bench/reader_squad.json
    python benchmarks/check_reader_card.py runs/bench/reader_squad.json

Each score on the card (EM/F1 per setting, refusal rates, for every model) must lie within the
fresh run's 95 % bootstrap interval widened by ``--slack`` points (the card and the run may use
different question samples or machines). Prints one JSON line; exits 1 on any mismatch.
``ratio`` = the share of checked scores that hold.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from _common import emit
from slmkit.models.registry import PACKAGED_MODELS

CHECKED = (("gold", "f1", "f1_ci95"), ("open", "f1", "f1_ci95"), ("open", "refused_pct", "refused_ci95"))
CHECKED += (("gold", "refused_pct", "refused_ci95"), ("absent", "refused_pct", "refused_ci95"))


def compare(card: dict, fresh: dict, slack: float) -> list[dict]:
    checks = []
    for model, result in card.get("results", {}).items():
        for setting, key, interval in CHECKED:
            measured = fresh.get("results", {}).get(model, {}).get(setting, {})
            if key not in measured:
                continue
            low, high = measured[interval]
            value = result[setting][key]
            checks.append(
                {
                    "model": model,
                    "score": f"{setting}.{key}",
                    "card": value,
                    "fresh": measured[key],
                    "ok": low - slack <= value <= high + slack,
                }
            )
    return checks


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("fresh", type=Path, help="A file holding reader_squad.py's JSON line.")
    parser.add_argument("--name", default="slmkit-reader-270m")
    parser.add_argument("--slack", type=float, default=2.0, help="Points allowed outside the interval.")
    args = parser.parse_args()
    folder = PACKAGED_MODELS[args.name].locate(Path())
    card = json.loads((folder / "scores.json").read_text())["benchmark"]
    fresh = json.loads(args.fresh.read_text().strip().splitlines()[-1])
    checks = compare(card, fresh, args.slack)
    held = sum(c["ok"] for c in checks)
    emit({"benchmark": "check_reader_card", "checks": checks, "ratio": round(held / len(checks), 3)})
    sys.exit(0 if checks and held == len(checks) else 1)


if __name__ == "__main__":
    main()
