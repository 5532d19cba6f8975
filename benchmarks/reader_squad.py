"""The shipped reader against the untuned base model, on SQuAD eval articles (never trained on).

For each model, in one process and on the same questions (spread evenly over all 10 eval articles):

- **gold**: the question with its own paragraph (``Answerer.answer_from``, as ``slmkit eval --context
  gold``): EM / F1, and how often the model refused;
- **open book**: ``ask`` over the full knowledge base of all 2,067 paragraphs: EM / F1, and *wrong
  refusals* (every one of these questions is answerable from that KB);
- **closed book**: the question alone: F1;
- **absent**: ``ask`` over a knowledge base of the 38 *train* articles only, on questions about the
  eval articles: the share refused (the right reply here is "I don't know").

EM/F1 follow the official SQuAD v1.1 script; an abstention scores 0. Each mean comes with a 95 %
bootstrap interval over questions; ``ask_p50_s`` is the in-process open-book latency. ``ratio`` =
reader gold F1 / base gold F1 on the questions both answered. Per-question rows go to ``--output``
(JSONL) beside the JSON line.

The untuned base model is the slow one (it writes sentences, the reader a span): ``--base-questions``
gives it an evenly spread subset of each setting's questions; ``ratio`` then compares the two models
on that subset only (``reader_on_base_questions`` has the reader's scores there).

    python benchmarks/reader_squad.py                        # 500 questions, 200 absent (~1.5 h)
    python benchmarks/reader_squad.py --base-questions 100   # the same, base model on 100 of them
    python benchmarks/reader_squad.py --questions 40 --absent 20 --base none   # a quick look
    python benchmarks/reader_squad.py --base none --settings open,absent --reranker none   # ask only,
        # without the reranker (what retrieval changes move; gold and closed book do not retrieve)
    python benchmarks/reader_squad.py --base none --max-no-answer 0.95   # then any lower threshold:
    python benchmarks/reader_squad.py --from-rows runs/bench/reader_squad.jsonl --max-no-answer 0.8
"""

from __future__ import annotations

import argparse
import json
import re
import statistics
from pathlib import Path

from tqdm.auto import tqdm

from _common import REPO, bootstrap_ci, emit, squad_kb, train_kb
from slmkit.config import AskConfig, BackendConfig
from slmkit.data.squad import bundled_squad
from slmkit.data.squad_metrics import exact_match, f1_score
from slmkit.eval.eval_sets import EvalItem, load_eval_set
from slmkit.models.backends import load_generator, resolve_backend
from slmkit.rag.answer import Answer, Answerer, passage_hit, strip_markers
from slmkit.rag.knowledge_base import KnowledgeBase
from slmkit.rag.retrieval import Retriever

SETTINGS = ("gold", "open", "closed", "absent")


def answer(setting: str, answerers: dict[str, Answerer], item: EvalItem) -> Answer:
    if setting == "gold":
        return answerers["full"].answer_from(item.question, [passage_hit(item.title, item.context or "")])
    if setting == "closed":
        return answerers["full"].ask(item.question, use_retrieval=False)
    return answerers["train" if setting == "absent" else "full"].ask(item.question)


def row(setting: str, item: EvalItem, reply: Answer) -> dict:
    text = "" if reply.abstained else strip_markers(reply.text)
    return {
        "setting": setting,
        "id": item.id,
        "question": item.question,
        "answer": text,
        "abstained": reply.abstained,
        "reason": reply.reason,
        "em": 100 * exact_match(text, item.references) if text else 0.0,
        "f1": 100 * f1_score(text, item.references) if text else 0.0,
        "seconds": reply.timings["total"],
        # the reader's lowest no-answer probability: a run at a high max_no_answer shows what any
        # lower threshold would have refused (the answers given do not depend on it)
        "no_answer": min(reply.no_answer) if reply.no_answer else None,
    }


def summarize(rows: list[dict]) -> dict:
    by = {s: [r for r in rows if r["setting"] == s] for s in SETTINGS}
    summary: dict = {}
    for setting in ("gold", "open", "closed"):
        if not by[setting]:
            continue  # not asked (--settings)
        f1 = [r["f1"] for r in by[setting]]
        em = [r["em"] for r in by[setting]]
        refused = [100.0 * r["abstained"] for r in by[setting]]
        summary[setting] = {
            "n": len(f1),
            "em": round(statistics.fmean(em), 2),
            "f1": round(statistics.fmean(f1), 2),
            "f1_ci95": [round(v, 2) for v in bootstrap_ci(f1)],
            "refused_pct": round(statistics.fmean(refused), 2),
            "refused_ci95": [round(v, 2) for v in bootstrap_ci(refused)],
            "p50_s": round(statistics.median(r["seconds"] for r in by[setting]), 3),
        }
    refused = [100.0 * r["abstained"] for r in by["absent"]]
    if refused:
        summary["absent"] = {
            "n": len(refused),
            "refused_pct": round(statistics.fmean(refused), 2),
            "refused_ci95": [round(v, 2) for v in bootstrap_ci(refused)],
        }
    if "open" in summary:
        summary["ask_p50_s"] = summary["open"]["p50_s"]
    return summary


def evaluate(
    model: str,
    backend: str,
    kbs: dict[str, KnowledgeBase],
    items: list[EvalItem],
    absent: list[EvalItem],
    closed: list[EvalItem],
    reranker: str = "default",
    settings: tuple[str, ...] = SETTINGS,
    max_no_answer: float | None = None,
) -> list[dict]:
    config = AskConfig(model=model, backend=BackendConfig(type=backend))
    if max_no_answer is not None:
        config.abstention.max_no_answer = max_no_answer
    if reranker != "default":
        config.retrieval.reranker = None if reranker == "none" else reranker
    generator = load_generator(model, config.backend)
    answerers = {n: Answerer(generator, Retriever(kb, config.retrieval), config) for n, kb in kbs.items()}
    plan = [("gold", i) for i in items] + [("open", i) for i in items]
    plan += [("closed", i) for i in closed] + [("absent", i) for i in absent]
    plan = [(setting, item) for setting, item in plan if setting in settings]
    rows = []
    for setting, item in tqdm(plan, desc=model, unit="q", dynamic_ncols=True):
        rows.append({"model": model, **row(setting, item, answer(setting, answerers, item))})
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reader", default="slmkit-reader-270m")
    parser.add_argument("--base", default="smollm2-135m-instruct", help="'none' to skip the baseline.")
    parser.add_argument("--questions", type=int, default=500, help="Eval questions (gold and open book).")
    parser.add_argument("--closed", type=int, default=None, help="Closed-book questions (default: same).")
    parser.add_argument("--absent", type=int, default=200, help="Eval questions asked of the train-only KB.")
    parser.add_argument(
        "--base-questions", type=int, default=None, help="Base model: this many of each setting's questions."
    )
    parser.add_argument("--backend", default="auto")
    parser.add_argument(
        "--reranker", default="default", help="retrieval.reranker for ask: a name, 'none', or the default's"
    )
    parser.add_argument(
        "--settings",
        type=lambda v: tuple(x for x in v.split(",") if x),
        default=SETTINGS,
        help="comma-separated subset of gold,open,closed,absent (default: all)",
    )
    parser.add_argument("--max-no-answer", type=float, default=None, help="default: the shipped one")
    parser.add_argument("--output", type=Path, default=REPO / "runs" / "bench" / "reader_squad.jsonl")
    parser.add_argument(
        "--from-rows",
        type=Path,
        help="re-score a run's --output rows at a lower --max-no-answer instead of running the models",
    )
    args = parser.parse_args()
    if args.from_rows:
        rethreshold(args.from_rows, args.max_no_answer)
        return

    source = str(bundled_squad())
    items = load_eval_set(source, "squad", "eval", args.questions).items
    closed = load_eval_set(source, "squad", "eval", args.closed or args.questions).items
    # Different questions from those of the open-book set where possible (every 5th shifted by 2).
    pool = load_eval_set(source, "squad", "eval", None).items
    absent = pool[2 :: max(1, len(pool) // args.absent)][: args.absent]
    kbs = {"full": squad_kb()[0], "train": train_kb()}

    options = (args.reranker, args.settings, args.max_no_answer)
    rows = evaluate(args.reader, args.backend, kbs, items, absent, closed, *options)
    results = {args.reader: summarize(rows)}
    extra: dict = {}
    ratio = None
    if args.base != "none":
        n = args.base_questions
        sets = [spread(items, n), spread(absent, n), spread(closed, n)]
        base_rows = evaluate(args.base, args.backend, kbs, *sets, *options)
        results[args.base] = summarize(base_rows)
        asked = {(r["setting"], r["id"]) for r in base_rows}
        shared = summarize([r for r in rows if (r["setting"], r["id"]) in asked])
        if n is not None:
            extra = {"base_questions": len(sets[0]), "reader_on_base_questions": shared}
        base_f1 = results[args.base]["gold"]["f1"]
        ratio = round(shared["gold"]["f1"] / base_f1, 3) if base_f1 else None
        rows += base_rows
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    emit(
        {
            "benchmark": "reader_squad",
            "backend": resolve_backend(BackendConfig(type=args.backend)),
            "reranker": AskConfig().retrieval.reranker if args.reranker == "default" else args.reranker,
            "max_no_answer": args.max_no_answer or AskConfig().abstention.max_no_answer,
            "questions": len(items),
            "absent_questions": len(absent),
            "results": results,
            "baseline": args.base,
            **extra,
            "ratio": ratio,
            "rows": str(args.output),
        }
    )


def rethreshold(path: Path, max_no_answer: float | None) -> None:
    """Print each model's summary as if run at ``max_no_answer`` (at most the run's own threshold).

    The reader-confidence gate comes after retrieval's gates and before generation, and refuses when
    the reader's lowest no-answer probability reaches the threshold; an answer given does not depend
    on it. So a run at a high threshold, with the probability in each row, tells exactly what any
    lower one would have refused, without reading the questions again.
    """
    if max_no_answer is None:
        raise SystemExit("--from-rows needs --max-no-answer")
    rows = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    ran_at = {float(m) for r in rows for m in re.findall(r"max_no_answer ([0-9.]+)\)", r["reason"] or "")}
    if ran_at and max_no_answer > min(ran_at):
        raise SystemExit(f"{path}: run at max_no_answer {min(ran_at)}; only a lower one can be re-scored")
    for r in rows:
        if not r["abstained"] and r.get("no_answer") is not None and r["no_answer"] >= max_no_answer:
            r.update(abstained=True, reason="reader confidence (re-scored)", answer="", em=0.0, f1=0.0)
    models = dict.fromkeys(r["model"] for r in rows)
    results = {m: summarize([r for r in rows if r["model"] == m]) for m in models}
    # a model that does not read passage by passage (or rows written before no_answer was kept)
    unchanged = [
        m for m in models if not any(r.get("no_answer") is not None for r in rows if r["model"] == m)
    ]
    emit(
        {
            "benchmark": "reader_squad",
            "rescored_from": str(path),
            "max_no_answer": max_no_answer,
            "results": results,
            "not_rescored": unchanged,
            "ratio": None,
        }
    )


def spread(items: list[EvalItem], n: int | None) -> list[EvalItem]:
    """``n`` of ``items`` spread evenly over the list (all of them when ``n`` is None)."""
    if n is None or n >= len(items):
        return items
    return items[:: len(items) // n][:n]


if __name__ == "__main__":
    main()
