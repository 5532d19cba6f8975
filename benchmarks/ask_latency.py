"""End-to-end ``ask`` latency and answer quality on 50 SQuAD eval questions (full 2,067-paragraph KB).

For each question: slmkit's full path (hybrid retrieval, gates, generation with streaming,
citations), then — as the baseline, in the same process — a bare transformers ``generate`` on the
identical prompt. ``ratio`` = slmkit p50 / bare-generate p50 over the questions that reached the
model: what retrieval and slmkit's bookkeeping add on top of the unavoidable generation cost.
(Questions abstained before generating cost only retrieval; they are in ``p50_seconds``.)

Quality (the default model, not fine-tuned): share of replies containing a gold answer, SQuAD
EM/F1 of the reply, share abstained (every question here is answerable, so abstaining is wrong).

    python benchmarks/ask_latency.py [--questions 50] [--model smollm2-135m-instruct]
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

from _common import emit, squad_articles, squad_kb
from slmkit.config import AskConfig
from slmkit.data.prompts import Passage, qa_messages
from slmkit.data.squad import split_articles
from slmkit.eval.squad_metrics import exact_match, f1_score, normalize_answer
from slmkit.models.generation import TransformersGenerator
from slmkit.models.loading import load_causal_lm
from slmkit.rag.answer import Answerer
from slmkit.rag.retrieval import Retriever


def sample_questions(n: int) -> list[tuple[str, list[str]]]:
    """Every eval paragraph's first question, spread evenly over the 420 eval paragraphs."""
    paragraphs = [p for a in split_articles(squad_articles(), "eval") for p in a.paragraphs]
    step = max(1, len(paragraphs) // n)
    return [(p.qas[0].question, p.qas[0].answers) for p in paragraphs[::step][:n]]


def percentile(values: list[float], q: float) -> float:
    return round(statistics.quantiles(values, n=100)[int(q) - 1], 3)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--questions", type=int, default=50)
    parser.add_argument("--model", default="smollm2-135m-instruct")
    args = parser.parse_args()
    kb, _ = squad_kb()
    config = AskConfig(model=args.model)
    loaded = load_causal_lm(config.model, config.dtype)
    generator = TransformersGenerator(loaded)
    answerer = Answerer(generator, Retriever(kb), config)
    answerer.ask("warm-up question about Super Bowl 50?")

    totals, retrieval, first_token, rates, baseline, generated = [], [], [], [], [], []
    gold_in_reply = em = f1 = abstained = 0
    questions = sample_questions(args.questions)
    for question, golds in questions:
        answer = answerer.ask(question)
        totals.append(answer.timings["total"])
        retrieval.append(answer.timings["retrieval"])
        abstained += answer.abstained
        if answer.completion_tokens:
            first_token.append(answer.timings["first_token"])
            rates.append(answer.tokens_per_second)
            baseline.append(_bare_generate_seconds(loaded, question, answer, config))
            generated.append(answer.timings["total"])
        reply = answer.raw_text or answer.text
        gold_in_reply += any(normalize_answer(g) in normalize_answer(reply) for g in golds)
        em += exact_match(reply, golds)
        f1 += f1_score(reply, golds)
    n = len(questions)
    emit(
        {
            "benchmark": "ask_latency",
            "model": args.model,
            "questions": n,
            "p50_seconds": round(statistics.median(totals), 3),
            "p95_seconds": percentile(totals, 95),
            "retrieval_p50_seconds": round(statistics.median(retrieval), 4),
            "first_token_p50_seconds": round(statistics.median(first_token), 3) if first_token else None,
            "decode_tokens_per_second": round(statistics.mean(rates), 2) if rates else None,
            "gold_in_reply": round(gold_in_reply / n, 3),
            "exact_match": round(100 * em / n, 1),
            "f1": round(100 * f1 / n, 1),
            "abstained": round(abstained / n, 3),
            "baseline": "bare transformers generate, same prompt",
            "baseline_p50_seconds": round(statistics.median(baseline), 3) if baseline else None,
            "generated_p50_seconds": round(statistics.median(generated), 3) if generated else None,
            "ratio": round(statistics.median(generated) / statistics.median(baseline), 3)
            if baseline
            else None,
        }
    )


def _bare_generate_seconds(loaded, question: str, answer, config: AskConfig) -> float:
    passages = [Passage(h.chunk.title, h.chunk.text) for h in answer.hits]
    inputs = loaded.tokenizer.apply_chat_template(
        qa_messages(question, passages), add_generation_prompt=True, return_tensors="pt", return_dict=True
    )
    start = time.perf_counter()
    with torch.inference_mode():
        loaded.model.generate(
            **inputs,
            max_new_tokens=config.generation.max_new_tokens,
            do_sample=False,
            pad_token_id=loaded.tokenizer.pad_token_id,
        )
    return time.perf_counter() - start


if __name__ == "__main__":
    main()
