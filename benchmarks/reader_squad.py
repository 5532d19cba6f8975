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
    python benchmarks/reader_squad.py --base none --max-no-answer 0.95 > run.json   # then, for any
    python benchmarks/reader_squad.py --rescore run.json --max-no-answer 0.8   # lower threshold
"""

from __future__ import annotations

import argparse
import json
import statistics
from pathlib import Path

from tqdm.auto import tqdm

from _common import REPO, bootstrap_ci, emit, squad_kb, train_kb
from slmkit.config import DEFAULT_LEXICAL_WEIGHT, AskConfig, BackendConfig
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
    min_relevance: float | None = None,
    rerank_weight: float | None = None,
    lexical_weight: float | None = None,
) -> list[dict]:
    config = AskConfig(model=model, backend=BackendConfig(type=backend))
    if max_no_answer is not None:
        config.abstention.max_no_answer = max_no_answer
    if min_relevance is not None:
        config.abstention.min_relevance = min_relevance
    if reranker != "default":
        config.retrieval.reranker = None if reranker == "none" else reranker
    if rerank_weight is not None:
        config.retrieval.rerank_weight = rerank_weight
    if lexical_weight is not None:
        config.retrieval.lexical_weight = lexical_weight
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
    parser.add_argument("--min-relevance", type=float, default=None, help="default: the shipped one")
    parser.add_argument("--rerank-weight", type=float, default=None, help="default: the shipped one")
    parser.add_argument("--lexical-weight", type=float, default=None, help="default: the shipped one")
    parser.add_argument("--output", type=Path, default=REPO / "runs" / "bench" / "reader_squad.jsonl")
    parser.add_argument(
        "--rescore",
        type=Path,
        help="a run's saved JSON line: print it as if run at a lower --max-no-answer (nothing is re-run)",
    )
    args = parser.parse_args()
    if args.rescore:
        rescore(args.rescore, args.max_no_answer)
        return
    if args.max_no_answer is None:  # the run records the threshold it used (0.0 is a valid one)
        args.max_no_answer = AskConfig().abstention.max_no_answer
    if args.min_relevance is None:
        args.min_relevance = AskConfig().abstention.min_relevance
    if args.rerank_weight is None:
        args.rerank_weight = AskConfig().retrieval.rerank_weight
    if args.lexical_weight is None:
        args.lexical_weight = DEFAULT_LEXICAL_WEIGHT  # the squad knowledge bases have none of their own

    source = str(bundled_squad())
    items = load_eval_set(source, "squad", "eval", args.questions).items
    closed = load_eval_set(source, "squad", "eval", args.closed or args.questions).items
    # Different questions from those of the open-book set where possible (every 5th shifted by 2).
    pool = load_eval_set(source, "squad", "eval", None).items
    absent = pool[2 :: max(1, len(pool) // args.absent)][: args.absent]
    kbs = {"full": squad_kb()[0], "train": train_kb()}

    options = (
        args.reranker,
        args.settings,
        args.max_no_answer,
        args.min_relevance,
        args.rerank_weight,
        args.lexical_weight,
    )
    rows = evaluate(args.reader, args.backend, kbs, items, absent, closed, *options)
    if args.base != "none":
        n = args.base_questions
        rows += evaluate(
            args.base, args.backend, kbs, spread(items, n), spread(absent, n), spread(closed, n), *options
        )
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    emit(
        {
            "benchmark": "reader_squad",
            "backend": resolve_backend(BackendConfig(type=args.backend)),
            "reranker": AskConfig().retrieval.reranker if args.reranker == "default" else args.reranker,
            "max_no_answer": args.max_no_answer,
            "min_relevance": args.min_relevance,
            "rerank_weight": args.rerank_weight,
            "lexical_weight": args.lexical_weight,
            "questions": len(items),
            "absent_questions": len(absent),
            **scores(rows, args.reader, args.base, args.base_questions),
            "rows": str(args.output),
        }
    )


def scores(rows: list[dict], reader: str, base: str, base_questions: int | None) -> dict:
    """The JSON line's results: each model's summary, and the reader against the base model on the
    questions the base model was asked (``ratio`` = reader / base gold F1 there)."""
    reader_rows = [r for r in rows if r["model"] == reader]
    record: dict = {"results": {reader: summarize(reader_rows)}, "baseline": base, "ratio": None}
    if base == "none":
        return record
    base_rows = [r for r in rows if r["model"] == base]
    record["results"][base] = summarize(base_rows)
    asked = {(r["setting"], r["id"]) for r in base_rows}
    shared = summarize([r for r in reader_rows if (r["setting"], r["id"]) in asked])
    if base_questions is not None:
        gold = sum(r["setting"] == "gold" for r in base_rows)
        record.update(base_questions=gold, reader_on_base_questions=shared)
    base_f1 = record["results"][base]["gold"]["f1"]
    record["ratio"] = round(shared["gold"]["f1"] / base_f1, 3) if base_f1 else None
    return record


def rescore(run: Path, max_no_answer: float | None) -> None:
    """Print a run's JSON line as if it had been run at ``max_no_answer`` (at most the run's own).

    The reader-confidence gate comes after retrieval's gates and before generation, and refuses when
    the reader's lowest no-answer probability reaches the threshold; an answer given does not depend
    on it. So a run at a high threshold, with that probability in each row, tells exactly what any
    lower one would have refused, without reading the questions again. The re-scored rows are
    written beside the run's, with the threshold in their name.
    """
    if max_no_answer is None:
        raise SystemExit("--rescore needs --max-no-answer")
    record = json.loads(run.read_text(encoding="utf-8").strip().splitlines()[-1])
    if "max_no_answer" not in record:
        raise SystemExit(f"{run}: written before runs recorded their max_no_answer; run it again")
    if max_no_answer > record["max_no_answer"]:
        raise SystemExit(
            f"{run}: run at max_no_answer {record['max_no_answer']}; only a lower one can be re-scored"
        )
    source = Path(record["rows"])
    rows = [json.loads(line) for line in source.read_text(encoding="utf-8").splitlines() if line.strip()]
    reader = [r for r in rows if r["model"] != record["baseline"]]
    if any(r.get("no_answer") is None for r in reader if r["setting"] != "closed" and not r["abstained"]):
        raise SystemExit(f"{source}: rows without the reader's no-answer probability cannot be re-scored")
    for r in reader:
        if not r["abstained"] and r.get("no_answer") is not None and r["no_answer"] >= max_no_answer:
            r.update(abstained=True, reason="reader confidence (re-scored)", answer="", em=0.0, f1=0.0)
    output = source.with_name(f"{source.stem}-at-{max_no_answer:.2f}{source.suffix}")
    output.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    reader_name = next(iter(record["results"]))
    base_questions = record.get("base_questions")
    record.update(scores(rows, reader_name, record["baseline"], base_questions))
    emit({**record, "max_no_answer": max_no_answer, "rescored_from": str(run), "rows": str(output)})


def spread(items: list[EvalItem], n: int | None) -> list[EvalItem]:
    """``n`` of ``items`` spread evenly over the list (all of them when ``n`` is None)."""
    if n is None or n >= len(items):
        return items
    return items[:: len(items) // n][:n]


if __name__ == "__main__":
    main()
