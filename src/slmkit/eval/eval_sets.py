"""Evaluation datasets: SQuAD files, QA JSONL with references, multiple choice, plain text.

Each loader returns :class:`EvalItem` records (or, for plain text, the texts to score for
perplexity), so the evaluation run treats every format the same way.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from slmkit.data.squad import bundled_squad, is_squad, load_squad, split_articles
from slmkit.data.tasks import read_multiple_choice_examples, read_records
from slmkit.errors import InputError

EvalFormat = Literal["auto", "squad", "qa", "multiple_choice", "text"]
BUNDLED_SQUAD = "bundled:squad"
_OPTION_LINE = re.compile(r"^([A-Z])\. (.*)$")


@dataclass(frozen=True)
class EvalItem:
    """One question to evaluate.

    Attributes:
        id: Stable id (SQuAD question id, the record's ``id`` or ``file:line``).
        question: The question (for multiple choice: the whole user turn with its lettered options).
        references: Gold answers (for multiple choice: the correct letter).
        context: The gold passage, when the dataset has one.
        title: The passage's title (SQuAD article), shown with the gold context.
        choices: Option letter -> text, for multiple choice.
        answerable: False for a question the dataset marks unanswerable (SQuAD 2.0 ``is_impossible``):
            it has no references, and the right reply is to abstain.
    """

    id: str
    question: str
    references: tuple[str, ...]
    context: str | None = None
    title: str = ""
    choices: dict[str, str] | None = None
    answerable: bool = True


@dataclass
class EvalSet:
    """A loaded evaluation dataset: its format, its questions, or its texts (format ``text``)."""

    path: str
    format: str
    items: list[EvalItem] = field(default_factory=list)
    texts: list[str] = field(default_factory=list)


def resolve_path(path: str) -> Path:
    """``bundled:squad`` is the SQuAD v1.1 dev set shipped with slmkit; anything else is a file."""
    return bundled_squad() if path == BUNDLED_SQUAD else Path(path)


def detect_format(path: Path) -> str:
    """Guess the format from the file: SQuAD JSON, ``.txt``/``.md`` text, MC or QA records."""
    suffix = path.suffix.lower()
    if suffix in (".txt", ".md"):
        return "text"
    if suffix == ".json" and path.is_file():
        import json

        try:
            if is_squad(json.loads(path.read_text(encoding="utf-8"))):
                return "squad"
        except (ValueError, UnicodeDecodeError):
            pass  # read_records reports the error with the file's name
    first = next(iter(read_records(path)), None)
    if first is not None and "options" in first.fields:
        return "multiple_choice"
    return "qa"


def load_eval_set(
    path: str, fmt: EvalFormat = "auto", split: str = "eval", limit: int | None = None
) -> EvalSet:
    """Read an evaluation dataset.

    Args:
        path: A file, or ``bundled:squad``.
        fmt: ``auto`` detects it (see :func:`detect_format`).
        split: For SQuAD files: ``eval`` (the held-out articles), ``train`` or ``all``.
        limit: Keep ``limit`` questions (or texts) spread evenly over the dataset, so a small
            sample still covers every article rather than the first one only.

    Raises:
        InputError: missing file, malformed record, a record without a reference (the field is
            named), or no questions at all.
    """
    source = resolve_path(path)
    if not source.is_file():
        raise InputError(f"{path}: no such dataset file")
    kind = detect_format(source) if fmt == "auto" else fmt
    loaders = {"squad": _squad_items, "qa": _qa_items, "multiple_choice": _multiple_choice_items}
    if kind == "text":
        texts = [t for t in re.split(r"\n\s*\n", source.read_text(encoding="utf-8")) if t.strip()]
        texts = spread(texts, limit)
        if not texts:
            raise InputError(f"{path}: no text to score")
        return EvalSet(str(path), kind, texts=texts)
    items = loaders[kind](source, split) if kind == "squad" else loaders[kind](source)
    items = spread(items, limit)
    if not items:
        raise InputError(f"{path}: no questions to evaluate")
    return EvalSet(str(path), kind, items=items)


def spread(values: list, limit: int | None) -> list:
    """``limit`` values at evenly spaced positions (all of them when ``limit`` is None or larger)."""
    if not limit or limit >= len(values):
        return values
    return [values[i * len(values) // limit] for i in range(limit)]


def _squad_items(path: Path, split: str) -> list[EvalItem]:
    """One item per question; SQuAD 2.0 impossible questions become unanswerable (abstention) items."""
    articles = load_squad(path)
    if split != "all":
        articles = split_articles(articles, split)
    return [
        EvalItem(
            qa.id, qa.question, tuple(qa.answers), p.context, a.display_title, answerable=not qa.is_impossible
        )
        for a in articles
        for p in a.paragraphs
        for qa in p.qas
    ]


def _qa_items(path: Path) -> list[EvalItem]:
    """Records with ``question`` and ``answers`` (a list) or ``answer`` (a string); optional
    ``context``, ``title`` and ``id``.

    ``answers`` may also be the Hugging Face ``squad``/``squad_v2`` layout that ``Dataset.to_json``
    writes, ``{"text": [...], "answer_start": [...]}``, the commonest published QA JSONL; there an
    empty ``text`` list is SQuAD 2.0's unanswerable question, an abstention item.
    """
    items = []
    for record in read_records(path):
        fields = record.fields
        question = fields.get("question")
        if not isinstance(question, str) or not question.strip():
            raise InputError(f"{record.where}: missing or empty field 'question'")
        answers = fields.get("answers", fields.get("answer"))
        unanswerable = False
        if isinstance(answers, dict) and isinstance(answers.get("text"), list):
            answers = answers["text"]
            unanswerable = not answers
        elif isinstance(answers, str):
            answers = [answers]
        if (
            not isinstance(answers, list)
            or not all(isinstance(a, str) for a in answers)
            or not (answers or unanswerable)
        ):
            raise InputError(
                f"{record.where}: no reference answer: give field 'answers' (a list of strings, or "
                "{'text': [...]} as Hugging Face's SQuAD files have it) or 'answer' (a string); "
                f"the record has {', '.join(sorted(fields)) or 'no fields'}"
            )
        context = fields.get("context")
        items.append(
            EvalItem(
                str(fields.get("id", record.where)),
                question.strip(),
                tuple(answers),
                context if isinstance(context, str) else None,
                str(fields.get("title", "")),
                answerable=not unanswerable,
            )
        )
    return items


def _multiple_choice_items(path: Path) -> list[EvalItem]:
    items = []
    for example in read_multiple_choice_examples(path):
        user, target = example.messages[-2]["content"], example.messages[-1]["content"]
        choices = {m.group(1): m.group(2) for line in user.splitlines() if (m := _OPTION_LINE.match(line))}
        items.append(EvalItem(example.id, user, (target.split(".", 1)[0],), choices=choices))
    return items
