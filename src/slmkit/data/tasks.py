"""Read fine-tuning datasets, one reader per task format, into chat :class:`Example` records.

Every reader returns examples whose last message is the assistant turn the model learns to produce;
the trainer renders them with the model's chat template and puts the loss on that turn only.

Records come from local ``.json`` files (a list of records) or ``.jsonl`` files (one record per line;
blank lines are skipped). Each example's ``source`` says where it came from: ``file.jsonl:LINE``
(1-based line) or ``file.json#INDEX`` (0-based record index). Its ``id`` is the record's ``id``
field when it has one, else ``<file stem>-<N>`` for the N-th record (0-based). Every problem is an
:class:`InputError` that starts with that location, names the field at fault and lists the fields
the record has. A record whose prompt or target text is empty is skipped with a warning.
"""

from __future__ import annotations

import inspect
import logging
import random
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from slmkit.data.jsonfile import parse_json
from slmkit.data.prompts import ABSTAIN_ANSWER, Passage, qa_messages
from slmkit.data.squad import load_squad, split_articles
from slmkit.errors import ConfigError, InputError

logger = logging.getLogger(__name__)

Task = Literal["squad", "instruction", "chat", "pairs", "multiple_choice"]

MULTIPLE_CHOICE_CUE = "Answer with the letter of the correct option."
CHAT_ROLES = ("system", "user", "assistant")

# A reply that starts with the letter on its own ("C", "C.", "(C)", "**C) ...") ...
_LEADING_LETTER = re.compile(r"^[\s*(\[]*([A-E])(?:[.):,\]*]|\s*$)")
# ... or that says "the answer is C" / "Answer: (C)". The letter must end its word ("answer is Aspirin"
# names no option).
_ANSWER_IS_LETTER = re.compile(r"\b[Aa]nswer(?: is|:)\s*[*(\[]*([A-E])\b")


@dataclass(frozen=True)
class Example:
    """One training example.

    Attributes:
        messages: ``{"role", "content"}`` chat messages (system/user/.../assistant); the LAST message
            is the assistant target.
        id: The record's ``id`` field, a SQuAD question id, or ``<file stem>-<N>``.
        source: Where the record is: ``file.jsonl:LINE``, ``file.json#INDEX`` or, for SQuAD, the
            question's JSON path ``file.json#data[i].paragraphs[j].qas[k]``.
    """

    messages: list[dict[str, str]]
    id: str
    source: str


@dataclass(frozen=True)
class Record:
    """A JSON object read from a dataset file, with where it came from."""

    fields: dict[str, Any]
    where: str
    ordinal: int
    stem: str


# ---- readers -----------------------------------------------------------------------------------


def read_squad_examples(
    path: str | Path,
    split: Literal["train", "eval", "all"] = "all",
    max_per_paragraph: int | None = None,
) -> list[Example]:
    """Question-answering examples with the gold paragraph as context (SQuAD v1.1 format).

    Each question becomes :func:`~slmkit.data.prompts.qa_messages` with one passage (the article
    title, underscores as spaces, and the paragraph) plus the first gold answer as assistant turn; a
    question without answers (SQuAD v2's unanswerable ones) gets ``ABSTAIN_ANSWER``.

    Args:
        path: A SQuAD-format ``.json`` file.
        split: The project's fixed article split (see :func:`~slmkit.data.squad.split_articles`),
            or ``"all"``.
        max_per_paragraph: Keep at most this many questions per paragraph (the first ones);
            ``None`` keeps all.

    Raises:
        InputError: the file is missing, malformed (JSON path named) or holds no questions.
        ConfigError: unknown ``split`` or ``max_per_paragraph`` below 1.
    """
    if split not in ("train", "eval", "all"):
        raise ConfigError(f"unknown SQuAD split '{split}'; use 'train', 'eval' or 'all'")
    if max_per_paragraph is not None and max_per_paragraph < 1:
        raise ConfigError(f"max_per_paragraph must be at least 1 (or None for all), got {max_per_paragraph}")
    articles = load_squad(path)
    if split != "all":
        articles = split_articles(articles, split)
    examples = []
    for article in articles:
        for paragraph in article.paragraphs:
            passage = Passage(article.display_title, paragraph.context)
            for k, qa in enumerate(paragraph.qas[:max_per_paragraph]):
                answer = qa.answers[0] if qa.answers else ABSTAIN_ANSWER
                messages = [*qa_messages(qa.question, [passage]), _assistant(answer)]
                where = f"{path}#data[{article.index}].paragraphs[{paragraph.index}].qas[{k}]"
                example = _example(messages, qa.id, where)
                if example:
                    examples.append(example)
    return _nonempty(examples, path, f" (split '{split}')" if split != "all" else "")


def read_instruction_examples(path: str | Path) -> list[Example]:
    """Instruction-following examples from Alpaca or Dolly records, detected per record.

    Alpaca: ``instruction``, optional ``input``, ``output``. Dolly: ``instruction``, optional
    ``context``, ``response``. The user turn is the instruction, plus a blank line and the
    input/context when that is not empty. There is no system message, so the model's chat template
    applies its own default.

    Raises:
        InputError: missing file, malformed JSON, a record without ``instruction`` or without
            ``output``/``response``, a non-string field, or no examples.
    """
    examples = []
    for record in read_records(path):
        dolly = "response" in record.fields and "output" not in record.fields
        extra_field, target_field = ("context", "response") if dolly else ("input", "output")
        instruction = _text(record, "instruction").strip()
        extra = (_text(record, extra_field, required=False) or "").strip()
        if target_field not in record.fields:
            raise InputError(
                f"{record.where}: missing field 'output' (Alpaca) or 'response' (Dolly); "
                f"this record has fields: {_field_names(record)}"
            )
        target = _text(record, target_field).strip()
        user = f"{instruction}\n\n{extra}" if extra else instruction
        _append(examples, record, [_user(user), _assistant(target)])
    return _nonempty(examples, path)


def read_chat_examples(path: str | Path) -> list[Example]:
    """Conversations from records with ``messages: [{"role", "content"}, ...]``.

    Roles must be ``system`` (first message only), ``user`` or ``assistant``; at least one ``user``
    message is needed and the last message must be ``assistant``. Contents are kept as written;
    other keys of a message are dropped.

    Raises:
        InputError: naming the file, line (or record index), message index and what is wrong.
    """
    examples = []
    for record in read_records(path):
        raw = _field(record, "messages", list, "a list")
        messages = [_chat_message(record, i, message) for i, message in enumerate(raw)]
        _check_conversation(record, messages)
        _append(examples, record, messages)
    return _nonempty(examples, path)


def read_pair_examples(
    path: str | Path,
    input_field: str = "input",
    output_field: str = "output",
    instruction: str | None = None,
) -> list[Example]:
    """Input → output rewriting pairs (e.g. a follow-up question → a standalone question).

    The user turn is ``instruction`` and a blank line (when given) followed by the input; the
    assistant turn is the output. There is no system message.

    Raises:
        InputError: missing file, malformed JSON, a record without a string ``input_field`` or
            ``output_field``, or no examples.
    """
    prefix = f"{instruction.strip()}\n\n" if instruction and instruction.strip() else ""
    examples = []
    for record in read_records(path):
        source = _text(record, input_field).strip()
        target = _text(record, output_field).strip()
        _append(examples, record, [_user(prefix + source if source else ""), _assistant(target)])
    return _nonempty(examples, path)


def read_multiple_choice_examples(
    path: str | Path,
    question_field: str = "question",
    options_field: str = "options",
    answer_field: str = "answer_idx",
) -> list[Example]:
    """Multiple-choice questions (MedQA style) answered with ``"<letter>. <option text>"``.

    Options are an object ``{"A": "...", "B": "..."}`` (kept in file order) or a list, lettered A,
    B, ...; the answer field holds the correct letter. The user turn is the question, a blank line,
    one ``"A. option"`` line per option, a blank line and :data:`MULTIPLE_CHOICE_CUE`. Read a
    model's reply back with :func:`multiple_choice_letter`.

    Raises:
        InputError: missing file, malformed JSON, a missing or non-string question or option, an
            answer that is not one of the option letters, or no examples.
    """
    examples = []
    for record in read_records(path):
        question = _text(record, question_field).strip()
        options = _options(record, options_field)
        letter = _text(record, answer_field).strip()
        if letter not in options:
            raise InputError(
                f"{record.where}: field '{answer_field}' is {letter!r}, which is not one of the option "
                f"letters {', '.join(options)} of field '{options_field}'"
            )
        lines = "\n".join(f"{key}. {text}" for key, text in options.items())
        user = f"{question}\n\n{lines}\n\n{MULTIPLE_CHOICE_CUE}" if question else ""
        _append(examples, record, [_user(user), _assistant(f"{letter}. {options[letter]}")])
    return _nonempty(examples, path)


def multiple_choice_letter(text: str) -> str | None:
    """The option letter (A-E) a model's reply chooses, or None when it names none.

    The reply must start with the letter on its own (``"C"``, ``"C. Tell the..."``, ``"(C)"``) or
    say ``"answer is C"`` / ``"Answer: C"``. Letters are capitals only: a lower-case ``"b"`` or
    an article such as ``"A patient..."`` chooses nothing.
    """
    match = _LEADING_LETTER.match(text) or _ANSWER_IS_LETTER.search(text)
    return match.group(1) if match else None


_READERS: dict[str, Callable[..., list[Example]]] = {
    "squad": read_squad_examples,
    "instruction": read_instruction_examples,
    "chat": read_chat_examples,
    "pairs": read_pair_examples,
    "multiple_choice": read_multiple_choice_examples,
}


def read_task(path: str | Path, task: Task, **options: Any) -> list[Example]:
    """Read ``path`` with the reader of ``task``, passing ``options`` on (e.g. ``split="train"``).

    Raises:
        ConfigError: unknown task, or an option the task's reader does not take (both listed).
        InputError: as raised by the reader.
    """
    reader = _READERS.get(task)
    if reader is None:
        raise ConfigError(f"unknown task '{task}'; known tasks: {', '.join(_READERS)}")
    accepted = list(inspect.signature(reader).parameters)[1:]
    unknown = sorted(set(options) - set(accepted))
    if unknown:
        raise ConfigError(
            f"task '{task}' does not take option(s) {', '.join(unknown)}; "
            f"its options are: {', '.join(accepted) or 'none'}"
        )
    return reader(path, **options)


def split_examples(
    examples: list[Example], val_fraction: float, seed: int
) -> tuple[list[Example], list[Example]]:
    """Shuffle ``examples`` with ``seed`` and cut off ``val_fraction`` of them for validation.

    The validation size is ``round(len * val_fraction)``, kept between 1 and ``len - 1`` when there
    are at least 2 examples, so neither side is empty. Both lists are in shuffled order.

    Returns:
        ``(train, validation)``.

    Raises:
        ConfigError: ``val_fraction`` is not strictly between 0 and 1.
    """
    if isinstance(val_fraction, bool) or not 0 < val_fraction < 1:
        raise ConfigError(f"val_fraction must be between 0 and 1 (exclusive), got {val_fraction}")
    shuffled = list(examples)
    random.Random(seed).shuffle(shuffled)
    # One example cannot be split; otherwise neither side may be empty.
    size = min(max(round(len(shuffled) * val_fraction), 1), len(shuffled) - 1) if len(shuffled) >= 2 else 0
    return shuffled[size:], shuffled[:size]


# ---- files and records -------------------------------------------------------------------------


def read_records(path: str | Path) -> Iterator[Record]:
    """The JSON objects of a ``.json`` list or a ``.jsonl`` file, in order."""
    text = _read_text(path)
    suffix = Path(path).suffix.lower()
    if suffix not in (".json", ".jsonl"):
        raise InputError(
            f"{path}: unsupported file type '{suffix or '(no extension)'}'; task datasets are .json "
            "(a list of records) or .jsonl (one record per line) files"
        )
    rows = _jsonl_rows(path, text) if suffix == ".jsonl" else _json_rows(path, text)
    stem = Path(path).stem
    for ordinal, (where, raw) in enumerate(rows):
        if not isinstance(raw, dict):
            raise InputError(f"{where}: expected a JSON object (a record), got {_kind(raw)}")
        yield Record(fields=raw, where=where, ordinal=ordinal, stem=stem)


def _read_text(path: str | Path) -> str:
    if not Path(path).is_file():
        what = "is a folder, not a file" if Path(path).is_dir() else "no such file"
        raise InputError(f"{path}: {what}. Check the path (relative paths start at {Path.cwd()})")
    try:
        # utf-8-sig drops the byte-order mark some Windows editors write before the first record.
        return Path(path).read_bytes().decode("utf-8-sig")
    except OSError as err:
        raise InputError(f"{path}: cannot read file: {err.strerror or err}") from None
    except UnicodeDecodeError as err:
        # Training on replacement characters would teach them; better to have the file fixed.
        raise InputError(
            f"{path}: not valid UTF-8 (first bad byte at offset {err.start}); re-save the file as UTF-8"
        ) from None


def _jsonl_rows(path: str | Path, text: str) -> Iterator[tuple[str, object]]:
    # Split on "\n" only: str.splitlines() would also split on U+2028 and friends, which JSON allows
    # unescaped inside strings.
    for number, line in enumerate(text.split("\n"), start=1):
        if not line.strip():
            continue
        yield f"{path}:{number}", parse_json(line, path, number)


def _json_rows(path: str | Path, text: str) -> Iterator[tuple[str, object]]:
    data = parse_json(text, path)
    if not isinstance(data, list):
        hint = (
            " (SQuAD files are read by the 'squad' task)" if isinstance(data, dict) and "data" in data else ""
        )
        raise InputError(f"{path}: expected a JSON list of records, got {_kind(data)}{hint}")
    for index, raw in enumerate(data):
        yield f"{path}#{index}", raw


# ---- fields ------------------------------------------------------------------------------------


def _field(record: Record, name: str, kind: type, kind_name: str) -> Any:
    if name not in record.fields:
        raise InputError(
            f"{record.where}: missing field '{name}'; this record has fields: {_field_names(record)}"
        )
    value = record.fields[name]
    if not isinstance(value, kind):
        raise InputError(
            f"{record.where}: field '{name}' should be {kind_name}, got {_kind(value)}; "
            f"this record has fields: {_field_names(record)}"
        )
    return value


def _text(record: Record, name: str, required: bool = True) -> str | None:
    """A string field; an optional one may be missing or null (read as None)."""
    if not required and record.fields.get(name) is None:
        return None
    return _field(record, name, str, "a string")


def _options(record: Record, name: str) -> dict[str, str]:
    """Options as ``{letter: text}``: an object as written, or a list lettered A, B, ..."""
    raw = _field(record, name, (dict, list), "an object or a list")
    if isinstance(raw, list):
        if len(raw) > 26:
            raise InputError(
                f"{record.where}: field '{name}' has {len(raw)} options; at most 26 can be lettered"
            )
        raw = {chr(ord("A") + i): text for i, text in enumerate(raw)}
    if not raw:
        raise InputError(f"{record.where}: field '{name}' holds no options")
    for key, text in raw.items():
        if not isinstance(text, str):
            raise InputError(
                f"{record.where}: field '{name}': option {key} should be a string, got {_kind(text)}"
            )
    return {key.strip(): text.strip() for key, text in raw.items()}


def _record_id(record: Record) -> str:
    value = record.fields.get("id")
    if value is None:
        return f"{record.stem}-{record.ordinal}"
    if isinstance(value, bool) or not isinstance(value, (str, int)):
        raise InputError(f"{record.where}: field 'id' should be a string or an integer, got {_kind(value)}")
    return str(value)


def _field_names(record: Record) -> str:
    return ", ".join(f"'{key}'" for key in record.fields) or "none"


def _kind(value: object) -> str:
    """JSON-flavoured type name for error messages (a user wrote JSON, not Python)."""
    names = {dict: "an object", list: "a list", str: "a string", bool: "a boolean", type(None): "null"}
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return "a number"
    return names.get(type(value), type(value).__name__)


# ---- chat messages -----------------------------------------------------------------------------


def _chat_message(record: Record, index: int, raw: object) -> dict[str, str]:
    where = f"{record.where}: messages[{index}]"
    if not isinstance(raw, dict):
        raise InputError(f'{where}: expected an object {{"role": ..., "content": ...}}, got {_kind(raw)}')
    for key in ("role", "content"):
        if key not in raw:
            keys = ", ".join(f"'{k}'" for k in raw) or "none"
            raise InputError(f"{where}: missing field '{key}'; this message has fields: {keys}")
        if not isinstance(raw[key], str):
            raise InputError(f"{where}: field '{key}' should be a string, got {_kind(raw[key])}")
    if raw["role"] not in CHAT_ROLES:
        raise InputError(f"{where}: role '{raw['role']}' is not one of {', '.join(CHAT_ROLES)}")
    return {"role": raw["role"], "content": raw["content"]}


def _check_conversation(record: Record, messages: list[dict[str, str]]) -> None:
    if not messages:
        raise InputError(
            f"{record.where}: field 'messages' is empty; it needs a user and an assistant message"
        )
    for index, message in enumerate(messages[1:], start=1):
        if message["role"] == "system":
            raise InputError(
                f"{record.where}: messages[{index}]: a system message may only come first (messages[0])"
            )
    last = len(messages) - 1
    if messages[-1]["role"] != "assistant":
        raise InputError(
            f"{record.where}: messages[{last}]: the last message must be the assistant's (the training "
            f"target), got role '{messages[-1]['role']}'"
        )
    if not any(m["role"] == "user" for m in messages):
        raise InputError(f"{record.where}: field 'messages' has no user message before the assistant's")


# ---- examples ----------------------------------------------------------------------------------


def _user(content: str) -> dict[str, str]:
    return {"role": "user", "content": content}


def _assistant(content: str) -> dict[str, str]:
    return {"role": "assistant", "content": content}


def _example(messages: list[dict[str, str]], example_id: str, source: str) -> Example | None:
    """An Example, or None (with a warning) when a user turn or the target is empty."""
    if not messages[-1]["content"].strip() or any(
        not m["content"].strip() for m in messages if m["role"] == "user"
    ):
        logger.warning("%s: empty prompt or target, skipped", source)
        return None
    return Example(messages=messages, id=example_id, source=source)


def _append(examples: list[Example], record: Record, messages: list[dict[str, str]]) -> None:
    example = _example(messages, _record_id(record), record.where)
    if example:
        examples.append(example)


def _nonempty(examples: list[Example], path: str | Path, detail: str = "") -> list[Example]:
    if not examples:
        raise InputError(
            f"{path}{detail}: holds no examples. Check that the file has records and that their "
            "prompt and target fields are not empty."
        )
    return examples
