"""How long a user waits for an answer: ``ask`` in-process per engine, ``slmkit ask`` as a fresh
process, and slmkit's llama.cpp generation against raw llama-cpp-python.

1. **In-process** ``Answerer.ask`` over the full 2,067-paragraph SQuAD KB with the default model and
   settings, on each local engine (the default, llama.cpp; and transformers): p50 / p95 total,
   retrieval, reading (per-passage reading), time to first answer token, and answer quality (SQuAD
   F1; every question is answerable). Questions: every eval paragraph's first question, spread.
2. **Fresh process**: ``slmkit ask QUESTION --kb KB --json`` as a new process (import, model and
   index load from the cache, answer), wall clock, p50 over ``--fresh`` questions after one warm-up
   run (which fills the OS page cache, as any second use does, and writes Python's bytecode cache,
   as any Python does unless PYTHONDONTWRITEBYTECODE is set: some sandboxes and CI images set it,
   and then every start compiles slmkit's sources again, which no installed user pays).
3. **Engine overhead**: the same prompt through slmkit's ``LlamaCppGenerator.generate`` and through
   llama-cpp-python's own ``Llama.generate`` on the same GGUF file: time to first token and decode
   tokens/s. It asks a chat model (``--overhead-model``, the packaged SmolLM2) for a long essay, so
   the decode is long enough to time: a reader's answers are a few tokens.

``ratio`` = slmkit decode tokens/s / raw llama-cpp-python decode tokens/s (≥ 0.95: slmkit adds
nothing that matters to the engine).

    python benchmarks/ask_latency.py [--questions 50] [--fresh 10] [--model slmkit-reader-270m]
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

from _common import KB_PATH, emit, squad_articles, squad_kb
from slmkit.config import AskConfig, BackendConfig, GenerationConfig
from slmkit.data.squad import split_articles
from slmkit.data.squad_metrics import f1_score
from slmkit.models.backends import load_generator
from slmkit.models.registry import DEFAULT_BASE_MODEL, DEFAULT_MODEL
from slmkit.rag.answer import Answerer, strip_markers
from slmkit.rag.retrieval import Retriever

LONG_PROMPT = [
    {
        "role": "user",
        "content": "Write a long, detailed history of the Super Bowl, season by season, starting in 1967.",
    }
]


def sample_questions(n: int) -> list[tuple[str, list[str]]]:
    """Every eval paragraph's first question, spread evenly over the 420 eval paragraphs."""
    paragraphs = [p for a in split_articles(squad_articles(), "eval") for p in a.paragraphs]
    step = max(1, len(paragraphs) // n)
    return [(p.qas[0].question, p.qas[0].answers) for p in paragraphs[::step][:n]]


def pct(values: list[float], q: int) -> float:
    return round(statistics.quantiles(values, n=100)[q - 1], 3) if len(values) > 1 else values[0]


def in_process(model: str, engine: str, questions: list[tuple[str, list[str]]], kb) -> dict:
    config = AskConfig(model=model, backend=BackendConfig(type=engine))
    answerer = Answerer(load_generator(model, config.backend), Retriever(kb, config.retrieval), config)
    answerer.ask("Who won Super Bowl 50?")  # warm-up: first-call caches (vocabulary index, KV)
    rows = []
    for question, golds in questions:
        answer = answerer.ask(question)
        text = "" if answer.abstained else strip_markers(answer.text)
        rows.append((answer.timings, 100 * f1_score(text, golds) if text else 0.0, answer.abstained))
    total = [t["total"] for t, _, _ in rows]
    first = [t["retrieval"] + t.get("reading", 0.0) + t["first_token"] for t, _, a in rows if not a]
    return {
        "p50_s": pct(total, 50),
        "p95_s": pct(total, 95),
        "retrieval_p50_s": pct([t["retrieval"] for t, _, _ in rows], 50),
        "reading_p50_s": pct([t.get("reading", 0.0) for t, _, _ in rows], 50),
        "first_token_p50_s": pct(first, 50) if first else None,
        "f1": round(statistics.fmean(f for _, f, _ in rows), 1),
        "refused_pct": round(100 * statistics.fmean(a for _, _, a in rows), 1),
        "per_passage": answerer.per_passage,
    }


def fresh_process(model: str, questions: list[tuple[str, list[str]]]) -> dict:
    command = [sys.executable, "-m", "slmkit.cli", "ask", "--kb", str(KB_PATH), "--model", model, "--json"]
    env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}  # see the docstring
    subprocess.run([*command, "Who won Super Bowl 50?"], check=True, capture_output=True, env=env)
    seconds = []
    for question, _ in questions:
        start = time.perf_counter()
        subprocess.run([*command, question], check=True, capture_output=True, env=env)
        seconds.append(time.perf_counter() - start)
    return {
        "n": len(seconds),
        "p50_s": pct(seconds, 50),
        "max_s": round(max(seconds), 3),
        "bytecode_cache": True,
    }


def engine_overhead(model: str, tokens: int, repeats: int) -> dict:
    generator = load_generator(model, BackendConfig(type="llama.cpp"))
    llm = generator.llm
    prompt = generator._tokens(LONG_PROMPT)
    config = GenerationConfig(max_new_tokens=tokens)

    def raw() -> tuple[float, float, int]:
        llm.reset()  # no KV reuse between repeats: both sides read the whole prompt
        start, first, count = time.perf_counter(), None, 0
        for _ in llm.generate(prompt, temp=0.0, reset=True):
            first = first or time.perf_counter() - start
            count += 1
            if count >= tokens:
                break
        total = time.perf_counter() - start
        return first, (count - 1) / (total - first), count

    def slmkit() -> tuple[float, float, int]:
        llm.reset()
        generation = generator.generate(LONG_PROMPT, config)
        return generation.first_token_seconds, generation.tokens_per_second, generation.completion_tokens

    results = {}
    for name, run in (("raw_llama_cpp", raw), ("slmkit_llama_cpp", slmkit)):
        runs = [run() for _ in range(repeats)]
        results[name] = {
            "first_token_s": round(statistics.median(r[0] for r in runs), 3),
            "decode_tokens_per_s": round(statistics.median(r[1] for r in runs), 1),
            "tokens": runs[0][2],
            "prompt_tokens": len(prompt),
        }
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--questions", type=int, default=50)
    parser.add_argument("--fresh", type=int, default=10)
    parser.add_argument("--model", default=DEFAULT_MODEL)
    parser.add_argument("--engines", default="llama.cpp,transformers")
    parser.add_argument("--overhead-model", default=DEFAULT_BASE_MODEL)
    parser.add_argument("--decode-tokens", type=int, default=64)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    kb, _ = squad_kb()
    questions = sample_questions(args.questions)
    engines = {e: in_process(args.model, e, questions, kb) for e in args.engines.split(",")}
    fresh = fresh_process(args.model, questions[: args.fresh]) if args.fresh else None
    overhead = engine_overhead(args.overhead_model, args.decode_tokens, args.repeats)
    slmkit, raw = overhead["slmkit_llama_cpp"], overhead["raw_llama_cpp"]
    emit(
        {
            "benchmark": "ask_latency",
            "model": args.model,
            "questions": len(questions),
            "kb": str(Path(KB_PATH)),
            "in_process": engines,
            "fresh_process": fresh,
            "engine_overhead": {"model": args.overhead_model, **overhead},
            "baseline": "raw llama-cpp-python generate on the same GGUF and prompt",
            "ratio": round(slmkit["decode_tokens_per_s"] / raw["decode_tokens_per_s"], 3),
        }
    )


if __name__ == "__main__":
    main()
