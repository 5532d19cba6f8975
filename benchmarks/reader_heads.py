"""Generative reader or extractive span head, on the same backbone and the same training budget?

Both start from the packaged SmolLM2-135M (a Llama: transformers has ``LlamaForQuestionAnswering``),
get LoRA (r=32 on every linear layer) and ``--steps`` optimizer steps of 16 questions from the SQuAD
*train* articles (gold paragraph), then answer the same ``--questions`` eval-article questions from
their gold paragraph:

- **generative**: slmkit's reader layout and loss (``slmkit train`` with ``data.context: passage``,
  no negatives here) and greedy decoding kept to a span of the paragraph (grounded decoding);
- **extractive**: ``LlamaForQuestionAnswering`` (question first, then the paragraph, so every
  paragraph token has seen the question through causal attention), start/end logits, the best
  span of at most 30 tokens.

Prints one JSON line: EM/F1 of each and training tokens/s; ``ratio`` = extractive F1 / generative F1.

    python benchmarks/reader_heads.py [--steps 60] [--questions 200]
"""

from __future__ import annotations

import argparse
import random
import statistics
import sys
import tempfile
import time

import torch
from peft import LoraConfig, get_peft_model
from tqdm.auto import tqdm
from transformers import LlamaForQuestionAnswering

from _common import emit
from slmkit.config import AskConfig, BackendConfig, TrainConfig
from slmkit.data.prompts import Passage, reader_messages
from slmkit.data.squad import bundled_squad, load_squad, split_articles
from slmkit.data.squad_metrics import exact_match, f1_score
from slmkit.data.tasks import Example
from slmkit.eval.eval_sets import load_eval_set
from slmkit.models.generation import TransformersGenerator
from slmkit.models.loading import load_causal_lm, load_tokenizer
from slmkit.rag.answer import Answerer, passage_hit, strip_markers
from slmkit.train.finetune import FineTune
from slmkit.train.tokenize import tokenize_examples

MODEL = "smollm2-135m-instruct"
TARGETS = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]
BATCH, MAX_SPAN, MAX_LEN = 16, 30, 512


def train_questions(n: int, seed: int = 0) -> list[tuple[str, str, str, str, int]]:
    """(question, title, paragraph, answer, answer_start) of ``n`` train-article questions."""
    items = [
        (qa.question, a.display_title, p.context, qa.answers[0], qa.answer_starts[0])
        for a in split_articles(load_squad(bundled_squad()), "train")
        for p in a.paragraphs
        for qa in p.qas
        if qa.answers
    ]
    random.Random(seed).shuffle(items)
    return items[:n]


def generative(items, eval_items, steps: int) -> dict:
    examples = [
        Example([*reader_messages(q, Passage(t, c)), {"role": "assistant", "content": a}], f"q{i}", "squad")
        for i, (q, t, c, a, _) in enumerate(items)
    ]
    loaded = load_causal_lm(MODEL)
    with tempfile.TemporaryDirectory(prefix="slmkit-heads-") as out:
        config = TrainConfig(
            model=MODEL,
            output_dir=out,
            lora={"r": 32, "alpha": 64, "target_modules": TARGETS},
            optim={"lr": 2e-4, "batch_size": 8, "grad_accum": 2, "max_steps": steps, "warmup_ratio": 0.03},
            save_every=10_000,
            eval_every=10_000,
        )
        run = FineTune(config, tokenize_examples(examples, loaded.tokenizer, MAX_LEN), [], loaded)
        summary = run.train()
        model = run.model.merge_and_unload()
    loaded.model = model.eval()
    config = AskConfig(model=MODEL, reading="per-passage", backend=BackendConfig(type="transformers"))
    answerer = Answerer(TransformersGenerator(loaded), None, config)
    predictions = []
    for item in eval_items:
        answer = answerer.answer_from(item.question, [passage_hit(item.title, item.context)])
        predictions.append("" if answer.abstained else strip_markers(answer.text))
    return {**score(predictions, eval_items), "train_tokens_per_s": round(summary["tokens_per_second"], 1)}


def encode_extractive(tokenizer, question: str, title: str, context: str):
    prefix = f"Question: {question}\nContext: {title}\n"
    encoded = tokenizer(prefix + context, return_offsets_mapping=True, truncation=True, max_length=MAX_LEN)
    return encoded, len(prefix)


def extractive(items, eval_items, steps: int) -> dict:
    tokenizer = load_tokenizer(MODEL)
    # The span head's backbone is the causal LM's: from_pretrained would not find it (the QA class
    # keeps its backbone under another attribute name, so every weight would load as "missing" and
    # start random), so the backbone's weights are copied in explicitly and strictly.
    causal = load_causal_lm(MODEL).model
    model = LlamaForQuestionAnswering(causal.config)
    getattr(model, model.base_model_prefix).load_state_dict(causal.base_model.state_dict(), strict=True)
    del causal
    model.config.pad_token_id = tokenizer.pad_token_id or tokenizer.eos_token_id
    lora = LoraConfig(
        r=32, lora_alpha=64, lora_dropout=0.05, target_modules=TARGETS, modules_to_save=["qa_outputs"]
    )
    model = get_peft_model(model, lora)
    batches = []
    for question, title, context, answer, start_char in items:
        encoded, offset = encode_extractive(tokenizer, question, title, context)
        start_char, end_char = offset + start_char, offset + start_char + len(answer)
        spans = encoded["offset_mapping"]
        start = next((i for i, (a, b) in enumerate(spans) if a <= start_char < b), None)
        end = next((i for i, (a, b) in enumerate(spans) if a < end_char <= b), None)
        if start is not None and end is not None and end >= start:
            batches.append((encoded["input_ids"], start, end))
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=2e-4)
    # Linear warm-up over 3 steps, then linear decay: the generative run's schedule, near enough.
    schedule = lambda s: min(1.0, (s + 1) / 3) * (1 - s / steps)  # noqa: E731
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, schedule)
    model.train()
    tokens, started = 0, time.perf_counter()
    for step in tqdm(range(steps), desc="extractive train", unit="step", mininterval=30):
        chunk = batches[step * BATCH : (step + 1) * BATCH]
        for i in range(0, len(chunk), 8):
            micro = chunk[i : i + 8]
            width = max(len(ids) for ids, _, _ in micro)
            ids = torch.full((len(micro), width), model.config.pad_token_id)
            mask = torch.zeros((len(micro), width), dtype=torch.long)
            for row, (seq, _, _) in enumerate(micro):
                ids[row, : len(seq)], mask[row, : len(seq)] = torch.tensor(seq), 1
            out = model(
                input_ids=ids,
                attention_mask=mask,
                start_positions=torch.tensor([s for _, s, _ in micro]),
                end_positions=torch.tensor([e for _, _, e in micro]),
            )
            (out.loss * len(micro) / len(chunk)).backward()
            tokens += int(mask.sum())
        optimizer.step()
        scheduler.step()
        optimizer.zero_grad()
    seconds = time.perf_counter() - started
    model.eval()
    predictions = []
    with torch.inference_mode():
        for item in tqdm(eval_items, desc="extractive eval", unit="q", mininterval=30):
            encoded, offset = encode_extractive(tokenizer, item.question, item.title, item.context)
            out = model(input_ids=torch.tensor([encoded["input_ids"]]))
            starts, ends = out.start_logits[0], out.end_logits[0]
            spans = encoded["offset_mapping"]
            inside = [i for i, (a, _) in enumerate(spans) if a >= offset]
            best, answer = -1e9, ""
            for i in inside:
                for j in range(i, min(i + MAX_SPAN, len(spans))):
                    value = float(starts[i] + ends[j])
                    if value > best:
                        best, answer = value, (item.context[spans[i][0] - offset : spans[j][1] - offset])
            predictions.append(answer.strip())
    return {**score(predictions, eval_items), "train_tokens_per_s": round(tokens / seconds, 1)}


def score(predictions: list[str], eval_items) -> dict:
    pairs = list(zip(predictions, eval_items, strict=True))
    em = [100 * exact_match(p, i.references) if p else 0.0 for p, i in pairs]
    f1 = [100 * f1_score(p, i.references) if p else 0.0 for p, i in pairs]
    return {"em": round(statistics.fmean(em), 1), "f1": round(statistics.fmean(f1), 1)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=60)
    parser.add_argument("--questions", type=int, default=200)
    args = parser.parse_args()
    items = train_questions(args.steps * BATCH)
    eval_items = load_eval_set(str(bundled_squad()), "squad", "eval", args.questions).items
    results = {"generative": generative(items, eval_items, args.steps)}
    print(f"generative: {results['generative']}", file=sys.stderr, flush=True)  # kept if the rest fails
    results["extractive"] = extractive(items, eval_items, args.steps)
    emit(
        {
            "benchmark": "reader_heads",
            "model": MODEL,
            "steps": args.steps,
            "train_questions": len(items),
            "eval_questions": len(eval_items),
            "results": results,
            "baseline": "generative reader, same backbone and budget",
            "ratio": round(results["extractive"]["f1"] / results["generative"]["f1"], 3)
            if results["generative"]["f1"]
            else None,
        }
    )


if __name__ == "__main__":
    main()
