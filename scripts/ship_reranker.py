"""Put a trained reranker into the package, with its recipe, its scores and its model card.

    python scripts/ship_reranker.py runs/reranker-minilm/final --benchmark runs/bench/retrieval_squad.json \
        --weights runs/bench/reranker_weight.json
    python scripts/ship_reranker.py --scores-only --benchmark ... --weights ...   # same weights, new scores

Writes ``src/slmkit/assets/rerankers/<name>/``: ``model.safetensors`` and ``reranker.json`` as
training wrote them (fp16, frozen word embeddings left out), ``recipe.yaml``, ``scores.json`` (the
benchmarks' JSON lines as printed: retrieval_squad.py's, and reranker_weight.py's sweep of
``retrieval.rerank_weight`` on held-out train questions) and ``README.md``, the model card rendered
from those files. A reranker trained further from another (``rerank.init``) also keeps that one's
``reranker.json`` as ``started_from.json``: the card describes both stages.
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
from slmkit.models.model_card import (  # noqa: E402
    RERANKER_RECIPES,
    STARTED_FROM_FILE,
    benchmark_record,
    render_reranker_card,
)
from slmkit.models.reranker import (  # noqa: E402
    RERANKER_FILE,
    WEIGHTS_FILE,
    read_reranker_info,
    resolve_reranker_path,
)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("final", type=Path, nargs="?", help="The folder training wrote (output_dir/final).")
    parser.add_argument(
        "--scores-only",
        action="store_true",
        help="Keep the packaged reranker's weights, recipe and training record; replace its scores and card.",
    )
    parser.add_argument("--name", default="slmkit-reranker-minilm")
    parser.add_argument(
        "--recipe", type=Path, help="The recipe it was trained with (default: the shipped reranker's)."
    )
    parser.add_argument("--benchmark", type=Path, help="benchmarks/retrieval_squad.py's JSON line, saved.")
    parser.add_argument("--weights", type=Path, help="benchmarks/reranker_weight.py's JSON line, saved.")
    args = parser.parse_args()
    if args.scores_only and not args.benchmark:
        parser.error("--scores-only needs --benchmark (and usually --weights)")
    if not args.scores_only and args.final is None:
        parser.error("the training run's final folder is required (or --scores-only)")

    target = REPO / "src" / "slmkit" / "assets" / "rerankers" / args.name
    with atomic_folder(target) as staging:  # the packaged reranker is never half-written
        if args.scores_only:
            for name in (WEIGHTS_FILE, RERANKER_FILE, "recipe.yaml", STARTED_FROM_FILE):
                if (target / name).exists():
                    shutil.copy(target / name, staging / name)
        else:
            for name in (WEIGHTS_FILE, RERANKER_FILE):
                shutil.copy(args.final / name, staging / name)
            # A further epoch (rerank.init): keep the training record of what it started from.
            init = read_reranker_info(args.final).get("config", {}).get("init")
            if init:
                shutil.copy(resolve_reranker_path(init) / RERANKER_FILE, staging / STARTED_FROM_FILE)
            recipe = args.recipe or REPO / RERANKER_RECIPES[1 if init else 0]
            shutil.copy(recipe, staging / "recipe.yaml")
        scores = {}
        for key, path in (("benchmark", args.benchmark), ("weights", args.weights)):
            if path:
                scores[key] = benchmark_record(path)
        (staging / "scores.json").write_text(json.dumps(scores, indent=2, sort_keys=True) + "\n")
        atomic_write_text(staging / "README.md", render_reranker_card(staging, args.name))
    size = sum(p.stat().st_size for p in target.iterdir()) / 2**20
    print(f"wrote {target} ({size:.1f} MB) from {args.final or 'the packaged files'}")


if __name__ == "__main__":
    main()
