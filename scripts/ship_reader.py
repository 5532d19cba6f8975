"""Put a trained reader into the package: its adapter in bf16, how it was trained, what it scores.

    python scripts/ship_reader.py runs/reader-gemma3 --benchmark runs/bench/reader_squad.json \
        --calibration runs/bench/reader_calibration.json
    python scripts/ship_reader.py --scores-only --benchmark ... --calibration ...   # same weights,
        # new scores: after a change to what surrounds the reader (retrieval, gates) was re-measured

Writes ``src/slmkit/assets/readers/<name>/``: ``adapter_model.safetensors`` (the LoRA weights cast
to bf16: half the bytes, and LoRA deltas lose nothing that matters at that precision),
``adapter_config.json``, ``recipe.yaml``, ``metrics.jsonl`` (the training curve), ``training.json``
(steps, time, tokens/s), ``scores.json`` (the benchmark's and calibration's JSON lines as printed) and
``README.md``, the model card rendered from those files, so every number in it has one source.
``benchmarks/check_reader_card.py`` re-checks a fresh benchmark run against ``scores.json``.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
from pathlib import Path

import torch
import yaml
from safetensors.torch import load_file, save_file

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "src"))

from slmkit.atomic import atomic_folder, atomic_write_text  # noqa: E402
from slmkit.models.model_card import benchmark_record, read_json_lines, render_reader_card  # noqa: E402
from slmkit.train.checkpoint import checkpoint_state, export_adapter  # noqa: E402


def adapter_folder(run: Path) -> Path:
    """The run's final adapter, or its best one when the run has not finished."""
    for candidate in (run / "final" / "adapter", run / "best" / "adapter"):
        if (candidate / "adapter_config.json").is_file():
            return candidate
    raise SystemExit(f"{run}: no final/adapter or best/adapter folder")


def best_step(metrics: Path) -> int | None:
    """The step of the lowest validation loss: the one ``best/adapter`` holds."""
    validated = [r for r in read_json_lines(metrics) if "val_loss" in r]
    return min(validated, key=lambda r: r["val_loss"])["step"] if validated else None


def write_reader(
    staging: Path,
    source: Path,
    run: Path,
    name: str,
    checkpoint_step: int | None,
    note: str | None,
    benchmark: Path | None,
    calibration: Path | None,
) -> None:
    """Fill ``staging`` with the packaged reader: bf16 adapter, recipe, curve, scores, model card."""
    weights = load_file(source / "adapter_model.safetensors")
    weights = {k: v.to(torch.bfloat16) for k, v in weights.items()}
    save_file(weights, staging / "adapter_model.safetensors", metadata={"format": "pt"})
    config = json.loads((source / "adapter_config.json").read_text())
    recipe = yaml.safe_load((source / "recipe.yaml").read_text())
    config["base_model_name_or_path"] = recipe["train"]["model"]
    if isinstance(config.get("target_modules"), list):  # peft writes a set: keep the diff stable
        config["target_modules"] = sorted(config["target_modules"])
    (staging / "adapter_config.json").write_text(json.dumps(config, indent=2, sort_keys=True) + "\n")
    shutil.copy(source / "recipe.yaml", staging / "recipe.yaml")
    final = source.parent
    for file in ("metrics.jsonl", "training.json"):
        for folder in (final, run):
            if (folder / file).is_file():
                shutil.copy(folder / file, staging / file)
                break
    if not (staging / "training.json").is_file():  # an unfinished run: its best adapter, so far
        state = checkpoint_state(run) or {}
        progress = {k: state.get(k) for k in ("step", "tokens", "seconds")}
        progress["tokens_per_second"] = state["tokens"] / state["seconds"] if state.get("seconds") else 0
        if checkpoint_step is not None:
            progress.update(
                adapter_step=checkpoint_step, adapter_chosen_by="the last checkpoint: it scored best"
            )
        else:
            progress.update(adapter_step=best_step(run / "metrics.jsonl"))
        (staging / "training.json").write_text(json.dumps({"finished": False, **progress}, indent=2))
    if note:  # how the run went where its recipe alone does not say (a resumed schedule)
        write_note(staging, note)
    write_scores(staging, name, benchmark, calibration)


def write_note(staging: Path, note: str) -> None:
    """Put ``note`` into ``training.json`` (the card's line on how the run went)."""
    training = json.loads((staging / "training.json").read_text(encoding="utf-8"))
    (staging / "training.json").write_text(json.dumps({**training, "note": note}, indent=2))


def write_scores(staging: Path, name: str, benchmark: Path | None, calibration: Path | None) -> None:
    """``scores.json`` from the benchmark's and calibration's JSON lines, and the card rendered anew."""
    scores = {}
    for key, path in (("benchmark", benchmark), ("calibration", calibration)):
        if path:
            scores[key] = benchmark_record(path)
    (staging / "scores.json").write_text(json.dumps(scores, indent=2, sort_keys=True) + "\n")
    atomic_write_text(staging / "README.md", render_reader_card(staging, name))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run", type=Path, nargs="?", help="The training run's output_dir.")
    parser.add_argument(
        "--scores-only",
        action="store_true",
        help="Keep the packaged reader's weights and training record; replace its scores (and card).",
    )
    parser.add_argument("--name", default="slmkit-reader-270m")
    parser.add_argument(
        "--checkpoint", action="store_true", help="Ship the last checkpoint's adapter, not best/ or final/."
    )
    parser.add_argument(
        "--note", help="A line for the model card on how the run went (kept in training.json)."
    )
    parser.add_argument("--benchmark", type=Path, help="benchmarks/reader_squad.py's JSON line, saved.")
    parser.add_argument("--calibration", type=Path, help="benchmarks/reader_calibration.py's JSON line.")
    args = parser.parse_args()
    target = REPO / "src" / "slmkit" / "assets" / "readers" / args.name
    if args.scores_only:
        if not args.benchmark:
            parser.error("--scores-only needs --benchmark (and usually --calibration)")
        with atomic_folder(target) as staging:
            for file in target.iterdir():
                shutil.copy(file, staging / file.name)
            if args.note:  # what changed around the same weights replaces the old note
                write_note(staging, args.note)
            write_scores(staging, args.name, args.benchmark, args.calibration)
        print(f"re-scored {target}")
        return
    if args.run is None:
        parser.error("the training run's output_dir is required (or --scores-only)")

    step = None
    if args.checkpoint:  # the run's last checkpoint, when a benchmark showed it reads better
        source = args.run / "checkpoint-adapter"
        step = export_adapter(args.run, source)
        print(f"exported the step-{step} checkpoint's adapter to {source}")
    else:
        source = adapter_folder(args.run)
    with atomic_folder(target) as staging:  # the packaged reader is never half-written
        write_reader(
            staging,
            source,
            args.run,
            args.name,
            step,
            args.note,
            args.benchmark,
            args.calibration,
        )
    size = sum(p.stat().st_size for p in target.iterdir()) / 2**20
    print(f"wrote {target} ({size:.1f} MB) from {source}")


if __name__ == "__main__":
    main()
