"""The shipped reader and its gates on WikiQA: questions people typed into Bing, over Wikipedia
summaries. Neither the domain's questions nor their style (lower case or all capitals, rarely a
question mark) were trained on or tuned to; this is how the defaults fare on input like a new user's.

WikiQA's test split (data/wikiqa, 633 questions) labels each sentence of the question's article
summary 1 if it answers the question. 243 questions have such a sentence (*answerable*); for the
other 390 the article is about the question's topic but does not answer it (*unanswerable*: the
right reply is "I don't know", and a hard one, since the passage is on topic).

Settings, on the same questions, with the default ``AskConfig``:

- **gold**: the question with its own article summary (``Answerer.answer_from``);
- **open**: ``ask`` over a knowledge base of all 633 test articles (built once, cached in .slmkit/).

An answer is *correct* when, normalised as SQuAD's script does, it lies within a sentence labelled
as answering (the reader answers with a span, or for a yes/no question with a whole sentence); a
refusal is neither. Reported per setting: answerable questions answered correctly, answered wrongly
and refused; unanswerable questions refused; each with a 95 % bootstrap interval. ``ratio`` = the
reader's correct share on answerable gold questions / that of the *lead* baseline, which answers
every question with its article's first sentence (a strong baseline on WikiQA, whose answers are
often the first sentence), in the same run.

    python benchmarks/reader_wikiqa.py                      # all 633 questions, both settings (~10 min)
    python benchmarks/reader_wikiqa.py --questions 100 --settings gold
"""

from __future__ import annotations

import argparse
import csv
import gzip
import io
import json
import statistics
from dataclasses import dataclass
from pathlib import Path

from tqdm.auto import tqdm

from _common import REPO, bootstrap_ci, emit
from slmkit.config import AskConfig
from slmkit.data.squad_metrics import normalize_answer
from slmkit.rag.answer import Answer, Answerer, passage_hit, strip_markers
from slmkit.rag.knowledge_base import KnowledgeBase

DATA = REPO / "data" / "wikiqa" / "WikiQA-test.tsv.gz"
KB_PATH = REPO / ".slmkit" / "wikiqa-test-kb"
SETTINGS = ("gold", "open")


@dataclass(frozen=True)
class Question:
    question: str
    title: str
    sentences: tuple[str, ...]
    labels: tuple[int, ...]

    @property
    def passage(self) -> str:
        return " ".join(self.sentences)

    @property
    def answerable(self) -> bool:
        return any(self.labels)


def load_questions() -> list[Question]:
    """The test split, one entry per question, sentences in their article's order."""
    rows: dict[str, list[dict[str, str]]] = {}
    with gzip.open(DATA, "rt", encoding="utf-8") as f:
        for row in csv.DictReader(f, delimiter="\t", quoting=csv.QUOTE_NONE):
            rows.setdefault(row["QuestionID"], []).append(row)
    questions = []
    for group in rows.values():
        group.sort(key=lambda r: int(r["SentenceID"].rsplit("-", 1)[1]))
        questions.append(
            Question(
                group[0]["Question"],
                group[0]["DocumentTitle"],
                tuple(r["Sentence"] for r in group),
                tuple(int(r["Label"]) for r in group),
            )
        )
    return questions


def wikiqa_kb(questions: list[Question]) -> KnowledgeBase:
    """A knowledge base of every test article summary (one record each), built once."""
    if (KB_PATH / "CURRENT").exists():
        return KnowledgeBase.open(KB_PATH)
    articles = {q.title: q.passage for q in questions}
    source = KB_PATH.parent / "wikiqa-test-articles.jsonl"
    source.parent.mkdir(parents=True, exist_ok=True)
    buffer = io.StringIO()
    for title, text in articles.items():
        buffer.write(json.dumps({"title": title, "text": text}) + "\n")
    source.write_text(buffer.getvalue(), encoding="utf-8")
    return KnowledgeBase.build(KB_PATH, [str(source)], progress=False)[0]


def judge(question: Question, reply: str | None) -> str:
    """``correct``, ``wrong`` or ``refused`` for an answerable question; ``refused`` or ``answered``
    for an unanswerable one."""
    if reply is None:
        return "refused"
    if not question.answerable:
        return "answered"
    said = normalize_answer(reply)
    right = [
        normalize_answer(s) for s, label in zip(question.sentences, question.labels, strict=True) if label
    ]
    return "correct" if said and any(said in sentence for sentence in right) else "wrong"


def summarize(outcomes: list[tuple[Question, str]]) -> dict:
    answerable = [o for q, o in outcomes if q.answerable]
    unanswerable = [o for q, o in outcomes if not q.answerable]

    def share(values: list[str], wanted: str) -> dict:
        hits = [1.0 if v == wanted else 0.0 for v in values]
        mean = statistics.fmean(hits) if hits else float("nan")
        return {"share": round(mean, 3), "ci95": [round(x, 3) for x in bootstrap_ci(hits)]}

    return {
        "answerable": len(answerable),
        "correct": share(answerable, "correct"),
        "wrong": share(answerable, "wrong"),
        "wrongly_refused": share(answerable, "refused"),
        "unanswerable": len(unanswerable),
        "refused_unanswerable": share(unanswerable, "refused"),
    }


def reply_text(answer: Answer) -> str | None:
    return None if answer.abstained else strip_markers(answer.text)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--questions", type=int, default=None, help="The first N questions (all 633).")
    parser.add_argument("--settings", default=",".join(SETTINGS), help="Comma-separated: gold, open.")
    parser.add_argument("--output", type=Path, default=None, help="Per-question rows (JSONL).")
    args = parser.parse_args()
    settings = [s for s in args.settings.split(",") if s]
    unknown = set(settings) - set(SETTINGS)
    if unknown:
        parser.error(f"unknown setting(s) {', '.join(sorted(unknown))}; choose from {', '.join(SETTINGS)}")
    questions = load_questions()[: args.questions]
    kb = wikiqa_kb(load_questions()) if "open" in settings else None
    answerer = Answerer.load(kb, AskConfig())
    rows, record, latencies = [], {}, []
    lead = [(q, judge(q, q.sentences[0])) for q in questions]
    record["lead"] = summarize(lead)
    for setting in settings:
        outcomes = []
        for q in tqdm(questions, desc=setting, unit="q"):
            if setting == "gold":
                answer = answerer.answer_from(q.question, [passage_hit(q.title, q.passage)])
            else:
                answer = answerer.ask(q.question)
                latencies.append(answer.timings["total"])
            outcome = judge(q, reply_text(answer))
            outcomes.append((q, outcome))
            rows.append(
                {
                    "setting": setting,
                    "question": q.question,
                    "title": q.title,
                    "answerable": q.answerable,
                    "answer": answer.text,
                    "reason": answer.reason,
                    "outcome": outcome,
                }
            )
        record[setting] = summarize(outcomes)
    if latencies:
        record["open"]["ask_p50_s"] = round(statistics.median(latencies), 3)
    if args.output:
        args.output.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    gold = record.get("gold", {}).get("correct", {}).get("share")
    baseline = record["lead"]["correct"]["share"]
    emit(
        {
            "benchmark": "reader_wikiqa",
            "questions": len(questions),
            "model": answerer.generator.name,
            **record,
            "ratio": round(gold / baseline, 3) if gold is not None and baseline else None,
        }
    )


if __name__ == "__main__":
    main()
