"""A new user's trial: published documents, hand-written questions, everything at its defaults.

`data/realworld` holds eight documents as Debian installs them (licence texts without an extension,
a README, a hard-wrapped spec, two HTML generators, a typeset PDF with an outline; see its
SOURCE.md) and 29 questions: 23 they answer, 6 they do not. The knowledge base is built from the
folder exactly as ``slmkit index build --kb KB data/realworld/docs`` builds it (rebuilt on every run:
reading the files is part of what is measured), and each question is asked as ``slmkit ask`` asks
it, with the default ``AskConfig``.

A reply is *right* when it contains one of the question's expected strings (lower-cased), or, for
a question the documents do not answer, when slmkit abstains. Reported: answerable questions right,
wrong and refused; unanswerable ones refused; ``right`` over all 29 with a 95 % bootstrap interval
(29 questions: a trial, not a measurement to tune to). ``ratio`` = the default model's right share /
that of the untuned SmolLM2-135M-Instruct (the default before the reader) on the same knowledge
base, in the same run.

    python benchmarks/realworld_docs.py                # ~3 min on 2 cores
    python benchmarks/realworld_docs.py --base none    # the default model only (~1 min)
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
from pathlib import Path

from _common import REPO, bootstrap_ci, emit
from slmkit.config import AskConfig
from slmkit.rag.answer import Answerer, strip_markers
from slmkit.rag.knowledge_base import KnowledgeBase

DATA = REPO / "data" / "realworld"


def load_questions() -> list[dict]:
    return [json.loads(line) for line in (DATA / "questions.jsonl").read_text(encoding="utf-8").splitlines()]


def judge(question: dict, answer_text: str, abstained: bool) -> str:
    """``right``, ``wrong`` or ``refused`` (an unanswerable question refused is ``right``)."""
    if not question["answers"]:
        return "right" if abstained else "wrong"
    if abstained:
        return "refused"
    said = strip_markers(answer_text).lower()
    return "right" if any(expected.lower() in said for expected in question["answers"]) else "wrong"


def run(model: str, kb: KnowledgeBase, questions: list[dict]) -> tuple[dict, list[dict]]:
    answerer = Answerer.load(kb, AskConfig(model=model))
    rows, latencies = [], []
    for question in questions:
        answer = answerer.ask(question["question"])
        latencies.append(answer.timings["total"])
        outcome = judge(question, answer.text, answer.abstained)
        rows.append({"model": model, **question, "reply": answer.text, "outcome": outcome})
    answerable = [r["outcome"] for r in rows if r["answers"]]
    unanswerable = [r["outcome"] for r in rows if not r["answers"]]
    right = [1.0 if r["outcome"] == "right" else 0.0 for r in rows]
    summary = {
        "answerable": len(answerable),
        "answerable_right": answerable.count("right"),
        "answerable_wrong": answerable.count("wrong"),
        "answerable_refused": answerable.count("refused"),
        "unanswerable": len(unanswerable),
        "unanswerable_refused": unanswerable.count("right"),
        "right_share": round(statistics.fmean(right), 3),
        "right_ci95": [round(x, 3) for x in bootstrap_ci(right)],
        "ask_p50_s": round(statistics.median(latencies), 3),
    }
    return summary, rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default=AskConfig().model)
    parser.add_argument("--base", default="smollm2-135m-instruct", help="'none' to skip the baseline")
    parser.add_argument("--output", type=Path, default=None, help="Per-question rows (JSONL).")
    args = parser.parse_args()
    questions = load_questions()
    record: dict = {"benchmark": "realworld_docs", "questions": len(questions)}
    rows: list[dict] = []
    with tempfile.TemporaryDirectory() as tmp:
        kb, _ = KnowledgeBase.build(Path(tmp) / "kb", [str(DATA / "docs")], progress=False)
        record["chunks"] = len(kb.chunks)
        for label, model in (("default", args.model), ("base", args.base)):
            if model == "none":
                continue
            record[label], model_rows = run(model, kb, questions)
            record[label]["model"] = model
            rows += model_rows
    if args.output:
        args.output.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    base = record.get("base", {}).get("right_share")
    record["ratio"] = round(record["default"]["right_share"] / base, 3) if base else None
    emit(record)


if __name__ == "__main__":
    main()
