"""Generation speed: slmkit's llama.cpp backend vs raw llama-cpp-python vs transformers ``generate``.

All three read the same RAG prompt (five SQuAD passages and a question, about 400-700 tokens) and
decode greedily; the two llama.cpp runs use the same GGUF file. Prompt processing (tokens/s up to
the first generated token) and decoding (tokens/s after it) are reported apart, because RAG
prompts are long and answers short. Each engine runs ``--repeats`` times; the medians are reported.

``ratio`` = slmkit llama.cpp decode tok/s / raw llama-cpp-python decode tok/s (goal >= 0.95):
what slmkit's backend wrapper costs on top of the engine it drives.

    python benchmarks/generation_speed.py [--quant q8_0] [--max-new-tokens 64] [--repeats 3]
"""

from __future__ import annotations

import argparse
import os
import statistics
import time

import torch

from _common import emit, squad_articles
from slmkit.config import GenerationConfig
from slmkit.data.prompts import Passage, qa_messages
from slmkit.data.squad import split_articles
from slmkit.models.generation import TransformersGenerator
from slmkit.models.gguf_export import export_gguf
from slmkit.models.llama_cpp import LlamaCppGenerator, open_llama
from slmkit.models.loading import load_causal_lm

MODEL = "smollm2-135m-instruct"


def rag_messages() -> list[dict[str, str]]:
    article = split_articles(squad_articles(), "eval")[0]
    passages = [Passage(article.title, p.context) for p in article.paragraphs[:5]]
    # An open question, so the greedy answer runs long enough to time the decoding.
    question = "Describe everything the passages say about the game, in detail."
    return qa_messages(question, passages)


def time_slmkit(generator, messages, config) -> dict:
    g = generator.generate(messages, config)
    return {
        "prompt_tokens": g.prompt_tokens,
        "new_tokens": g.completion_tokens,
        "prompt_tps": g.prompt_tokens / g.first_token_seconds,
        "decode_tps": g.tokens_per_second,
        "seconds": g.seconds,
        "text": g.text,
    }


def time_raw_llama(llm, tokens: list[int], max_new: int) -> dict:
    """The engine alone: llama-cpp-python's own generate loop on the prompt's tokens."""
    import llama_cpp

    vocab = llm._model.vocab
    llm.reset()
    start = time.perf_counter()
    first, out = None, []
    for token in llm.generate(tokens, temp=0.0, reset=True):
        if first is None:
            first = time.perf_counter() - start
        if llama_cpp.llama_vocab_is_eog(vocab, token) or len(out) >= max_new:
            break
        out.append(token)
    seconds = time.perf_counter() - start
    return {
        "prompt_tokens": len(tokens),
        "new_tokens": len(out),
        "prompt_tps": len(tokens) / first,
        "decode_tps": (len(out) - 1) / (seconds - first) if len(out) > 1 else 0.0,
        "seconds": seconds,
    }


def median(runs: list[dict], key: str) -> float:
    return round(statistics.median(r[key] for r in runs), 1)


def summary(runs: list[dict]) -> dict:
    return {
        "prompt_tokens": runs[0]["prompt_tokens"],
        "new_tokens": runs[0]["new_tokens"],
        "prompt_tok_s": median(runs, "prompt_tps"),
        "decode_tok_s": median(runs, "decode_tps"),
        "seconds": round(statistics.median(r["seconds"] for r in runs), 3),
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--quant", default="q8_0", choices=["f16", "q8_0", "q4_k_m"])
    parser.add_argument("--max-new-tokens", type=int, default=64)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    messages = rag_messages()
    config = GenerationConfig(max_new_tokens=args.max_new_tokens)
    gguf = export_gguf(MODEL, quant=args.quant).path

    slmkit_llama = LlamaCppGenerator(gguf, MODEL)
    tokens = slmkit_llama._tokens(messages)
    # A second, independent engine instance on the same file: no shared KV cache between the two.
    import llama_cpp

    threads = os.cpu_count() or 1
    raw = open_llama(
        llama_cpp,
        model_path=str(gguf),
        n_ctx=slmkit_llama.context_window,
        n_threads=threads,
        n_threads_batch=threads,
        verbose=False,
    )
    results: dict[str, list[dict]] = {"raw_llama_cpp": [], "slmkit_llama_cpp": []}
    time_raw_llama(raw, tokens, 4)  # warm-up: first calls pay for allocation
    time_slmkit(slmkit_llama, messages, GenerationConfig(max_new_tokens=4))
    for _ in range(args.repeats):  # interleaved, so machine noise hits both alike
        results["raw_llama_cpp"].append(time_raw_llama(raw, tokens, args.max_new_tokens))
        slmkit_llama.llm.reset()  # no prompt-prefix reuse: measure the full prompt as raw does
        results["slmkit_llama_cpp"].append(time_slmkit(slmkit_llama, messages, config))
    del raw, slmkit_llama

    for dtype in ("float32", "bfloat16"):
        loaded = load_causal_lm(MODEL, dtype)
        generator = TransformersGenerator(loaded)
        time_slmkit(generator, messages, GenerationConfig(max_new_tokens=4))
        with torch.inference_mode():
            results[f"transformers_{dtype}"] = [
                time_slmkit(generator, messages, config) for _ in range(args.repeats)
            ]
        del loaded, generator

    report = {name: summary(runs) for name, runs in results.items()}
    ratio = report["slmkit_llama_cpp"]["decode_tok_s"] / report["raw_llama_cpp"]["decode_tok_s"]
    emit(
        {
            "benchmark": "generation_speed",
            "model": MODEL,
            "gguf": args.quant,
            "threads": threads,
            "engines": report,
            "baseline": "raw llama-cpp-python generate on the same GGUF and prompt tokens",
            "ratio": round(ratio, 3),
            "prompt_ratio": round(
                report["slmkit_llama_cpp"]["prompt_tok_s"] / report["raw_llama_cpp"]["prompt_tok_s"], 3
            ),
            "vs_transformers_fp32_decode": round(
                report["slmkit_llama_cpp"]["decode_tok_s"] / report["transformers_float32"]["decode_tok_s"], 2
            ),
        }
    )


if __name__ == "__main__":
    main()
