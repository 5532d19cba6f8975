"""Put a trained reranker into the package, with its recipe, its scores and its model card.

    python scripts/ship_reranker.py runs/reranker-minilm/final --benchmark runs/bench/retrieval_squad.json

Writes ``src/slmkit/assets/rerankers/<name>/``: ``model.safetensors`` and ``reranker.json`` as
training wrote them (fp16, frozen word embeddings left out), ``recipe.yaml``, ``scores.json`` (the
benchmark's JSON line as printed) and ``README.md``, the model card rendered from those files.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "src"))

from slmkit.atomic import atomic_folder, atomic_write_text  # noqa: E402
from slmkit.models.model_card import benchmark_record, render_reranker_card  # noqa: E402
from slmkit.models.reranker import RERANKER_FILE, WEIGHTS_FILE  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("final", type=Path, help="The folder training wrote (output_dir/final).")
    parser.add_argument("--name", default="slmkit-reranker-minilm")
    parser.add_argument("--recipe", type=Path, default=REPO / "recipes" / "reranker-minilm.yaml")
    parser.add_argument("--benchmark", type=Path, help="benchmarks/retrieval_squad.py's JSON line, saved.")
    args = parser.parse_args()

    target = REPO / "src" / "slmkit" / "assets" / "rerankers" / args.name
    with atomic_folder(target) as staging:  # the packaged reranker is never half-written
        for name in (WEIGHTS_FILE, RERANKER_FILE):
            shutil.copy(args.final / name, staging / name)
        shutil.copy(args.recipe, staging / "recipe.yaml")
        scores = {"benchmark": benchmark_record(args.benchmark)} if args.benchmark else {}
        (staging / "scores.json").write_text(json.dumps(scores, indent=2, sort_keys=True) + "\n")
        atomic_write_text(staging / "README.md", render_reranker_card(staging, args.name))
    size = sum(p.stat().st_size for p in target.iterdir()) / 2**20
    print(f"wrote {target} ({size:.1f} MB) from {args.final}")


if __name__ == "__main__":
    main()
