"""Read SQuAD-format files: the knowledge base's sample corpus and the QA training/eval data.

A SQuAD file looks like ``{"data": [{"title", "paragraphs": [{"context", "qas": [...]}]}]}``.
What published files in that format vary in is accepted: an article without ``title`` (titled by
its ``id``/``doc_id``/``document_id`` field, else by the file name and its position), integer question
ids, and SQuAD 2.0's ``is_impossible`` and ``plausible_answers`` (an impossible question has
``answers: []``). :func:`load_squad` validates every element and names the JSON path of the first bad
one, so a hand-made or converted file can be fixed without guessing.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from importlib.resources import files
from pathlib import Path
from typing import Any, Literal

from slmkit.atomic import atomic_write_text
from slmkit.data.jsonfile import parse_json
from slmkit.errors import ConfigError, InputError

Split = Literal["train", "eval"]

# Every 5th article (0, 5, 10, ...) is held out. Splitting by article rather than by question keeps
# eval contexts unseen in training, so eval measures reading, not memorised paragraphs.
_EVAL_EVERY = 5
# Article-level fields that name a document when there is no title, in order of preference.
_DOCUMENT_ID_FIELDS = ("id", "doc_id", "document_id")


def bundled_squad() -> Path:
    """The SQuAD v1.1 dev set shipped with slmkit (CC BY-SA 4.0, see assets/LICENSE-squad.md)."""
    return Path(str(files("slmkit") / "assets" / "squad-v1.1-dev.json"))


@dataclass(frozen=True)
class SquadQuestion:
    """One question with its gold answers (``answers[k]`` starts at ``answer_starts[k]`` in the context).

    ``id`` is a string even where the file has an integer. ``is_impossible`` marks a SQuAD 2.0
    question the paragraph does not answer (its ``answers`` are empty; ``plausible_answers`` holds
    the distractors the file gives, which are never gold).
    """

    id: str
    question: str
    answers: list[str]
    answer_starts: list[int]
    is_impossible: bool = False
    plausible_answers: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class SquadParagraph:
    """A context paragraph; ``index`` is its 0-based position within its article."""

    context: str
    qas: list[SquadQuestion]
    index: int


@dataclass(frozen=True)
class SquadArticle:
    """A titled article; ``index`` is its 0-based position in the file (used by :func:`split_articles`)."""

    title: str
    paragraphs: list[SquadParagraph]
    index: int

    @property
    def display_title(self) -> str:
        """The title as people read it: Wikipedia's underscores as spaces."""
        return self.title.replace("_", " ")


def write_squad_paragraphs(articles: list[SquadArticle], path: Path) -> None:
    """Write the articles' paragraphs, without their questions, as a SQuAD file.

    This is how a knowledge base is made from a subset of articles (e.g. the training split only):
    ingesting the file gives one document per paragraph, with article and paragraph metadata.
    """
    data = [
        {"title": a.title, "paragraphs": [{"context": p.context, "qas": []} for p in a.paragraphs]}
        for a in articles
    ]
    atomic_write_text(path, json.dumps({"version": "1.1", "data": data}))


def is_squad(data: object) -> bool:
    """Whether parsed JSON has the SQuAD shape ``{"data": [{"paragraphs": [...]}, ...]}``.

    Only the outer levels are inspected (``title`` is optional), so a file that is SQuAD-shaped but
    broken deeper down is still recognised and :func:`parse_squad` can name the broken element.
    """
    if not isinstance(data, dict) or not isinstance(data.get("data"), list) or not data["data"]:
        return False
    first = data["data"][0]
    return isinstance(first, dict) and isinstance(first.get("paragraphs"), list)


def load_squad(path: str | Path) -> list[SquadArticle]:
    """Read and validate a SQuAD-format (v1.1 or 2.0) JSON file.

    Raises:
        InputError: the file is missing or unreadable, is not valid JSON (message names line and
            column), or an element is malformed (message names its JSON path, e.g.
            ``dev.json: data[3].paragraphs[7]: missing field 'context'``).
    """
    try:
        text = Path(path).read_text(encoding="utf-8")
    except FileNotFoundError:
        raise InputError(f"{path}: SQuAD file not found") from None
    except (OSError, UnicodeDecodeError) as err:
        raise InputError(f"{path}: cannot read SQuAD file: {err}") from None
    return parse_squad(parse_json(text, path), str(path))


def parse_squad(data: object, where: str) -> list[SquadArticle]:
    """Validate already-parsed SQuAD JSON; ``where`` (usually the file name) prefixes error messages.

    Raises:
        InputError: naming the JSON path of the first malformed element.
    """
    if not isinstance(data, dict):
        raise InputError(f'{where}: expected a SQuAD object {{"data": [...]}}, got {_kind(data)}')
    articles = _field(data, "data", list, where, "")
    return [_parse_article(article, i, where) for i, article in enumerate(articles)]


def split_articles(articles: list[SquadArticle], split: Split) -> list[SquadArticle]:
    """The project's fixed split by article: ``eval`` keeps articles whose index is a multiple of 5.

    Uses each article's ``index`` (its position in the file), so splitting an already filtered list
    gives the same assignment as splitting the whole file.

    Raises:
        ConfigError: ``split`` is neither ``"train"`` nor ``"eval"``.
    """
    if split not in ("train", "eval"):
        raise ConfigError(f"unknown SQuAD split '{split}'; use 'train' or 'eval'")
    want_eval = split == "eval"
    return [a for a in articles if (a.index % _EVAL_EVERY == 0) == want_eval]


def _parse_article(raw: object, index: int, where: str) -> SquadArticle:
    path = f"data[{index}]"
    article = _object(raw, where, path)
    title = _article_title(article, index, where, path)
    paragraphs = _field(article, "paragraphs", list, where, path)
    parsed = [_parse_paragraph(p, j, where, f"{path}.paragraphs[{j}]") for j, p in enumerate(paragraphs)]
    return SquadArticle(title=title, paragraphs=parsed, index=index)


def _article_title(article: dict[str, Any], index: int, where: str, path: str) -> str:
    """The ``title``; else the first document id field; else ``"<file stem>, article <1-based index>"``.

    A null or blank field counts as absent; a field of the wrong type is an error.
    """
    for key in ("title", *_DOCUMENT_ID_FIELDS):
        value = article.get(key)
        if value is not None and str(value).strip():
            return str(_field(article, key, str if key == "title" else (str, int), where, path)).strip()
    return f"{Path(where).stem}, article {index + 1}"


def _parse_paragraph(raw: object, index: int, where: str, path: str) -> SquadParagraph:
    paragraph = _object(raw, where, path)
    context = _field(paragraph, "context", str, where, path)
    qas = _field(paragraph, "qas", list, where, path)
    return SquadParagraph(
        context=context,
        qas=[_parse_question(q, where, f"{path}.qas[{k}]") for k, q in enumerate(qas)],
        index=index,
    )


def _parse_question(raw: object, where: str, path: str) -> SquadQuestion:
    qa = _object(raw, where, path)
    parsed = _parse_answers(qa, "answers", where, path)
    impossible = _field(qa, "is_impossible", bool, where, path) if "is_impossible" in qa else False
    if impossible and parsed:
        raise InputError(
            f"{where}: {path}: 'is_impossible' is true but 'answers' is not empty; an unanswerable "
            "question has \"answers\": [] (put distractors in 'plausible_answers')"
        )
    plausible = _parse_answers(qa, "plausible_answers", where, path) if "plausible_answers" in qa else []
    return SquadQuestion(
        id=str(_field(qa, "id", (str, int), where, path)),
        question=_field(qa, "question", str, where, path),
        answers=[text for text, _ in parsed],
        answer_starts=[start for _, start in parsed],
        is_impossible=impossible,
        plausible_answers=[text for text, _ in plausible],
    )


def _parse_answers(qa: dict[str, Any], key: str, where: str, path: str) -> list[tuple[str, int]]:
    answers = _field(qa, key, list, where, path)
    return [_parse_answer(a, where, f"{path}.{key}[{m}]") for m, a in enumerate(answers)]


def _parse_answer(raw: object, where: str, path: str) -> tuple[str, int]:
    answer = _object(raw, where, path)
    return _field(answer, "text", str, where, path), _field(answer, "answer_start", int, where, path)


def _object(raw: object, where: str, path: str) -> dict[str, Any]:
    if not isinstance(raw, dict):
        raise InputError(f"{where}: {path}: expected an object, got {_kind(raw)}")
    return raw


def _field(obj: dict[str, Any], key: str, kind: type | tuple[type, ...], where: str, path: str) -> Any:
    location = f"{where}: {path}: " if path else f"{where}: "
    if key not in obj:
        raise InputError(f"{location}missing field '{key}'")
    value = obj[key]
    kinds = kind if isinstance(kind, tuple) else (kind,)
    # bool is a subclass of int, but `"answer_start": true` is a broken file, not an offset.
    if not isinstance(value, kinds) or (isinstance(value, bool) and bool not in kinds):
        wanted = " or ".join(_KIND_NAMES[k] for k in kinds)
        raise InputError(f"{location}field '{key}' should be {wanted}, got {_kind(value)}")
    return value


_KIND_NAMES = {str: "a string", int: "an integer", bool: "a boolean", list: "a list", dict: "an object"}


def _kind(value: object) -> str:
    """JSON-flavoured type name for error messages (a user wrote JSON, not Python)."""
    names = {dict: "an object", list: "a list", str: "a string", bool: "a boolean", type(None): "null"}
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return "a number"
    return names.get(type(value), type(value).__name__)
