"""Synthetic question/answer training data from your own knowledge base (``slmkit synth``).

A teacher model (any :class:`~slmkit.models.generation.Generator`: a local slmkit model or an
OpenAI-compatible server) reads one chunk at a time and writes a question with a short answer taken
from it: a chat model is given an instruction, a base model worked examples to continue
(:func:`few_shot_prompt`). Chunks are visited in a seeded order that moves from document to
document, so the pairs spread over the whole knowledge base. Each pair passes the filters below or
is dropped with its reason:

- ``unparseable``: no question could be read from the teacher's reply;
- ``not_a_question``: the question does not end with a question mark;
- ``question_too_short``: fewer than ``min_question_words`` words;
- ``about_the_text``: the question asks about the passage itself ("What is the passage about?");
- ``answer_too_long``: more than ``max_answer_words`` words (targets should be short spans);
- ``answer_in_question``: the answer is already in the question (nothing to learn);
- ``ungrounded``: the answer is not in its chunk (grounding ``span``), or too few of its claim words
  are (grounding ``support``, see :func:`slmkit.rag.abstention.support_score`);
- ``duplicate``: the question's embedding is too close to an already kept question's.

Every attempt is appended to ``attempts.jsonl`` as soon as it is made, so a crash or a dead teacher
endpoint loses nothing, and running again resumes after the chunks already tried. When a run ends,
the kept pairs become RAFT-style chat training examples (see :mod:`slmkit.train.rag_examples`): the
gold chunk among distractors retrieved from the knowledge base for the question, or, for
``abstain_share`` of them, the distractors alone with the abstention sentence as target. They are
written to ``train.jsonl`` (``slmkit train`` reads it with ``task: chat``), the kept pairs to
``pairs.jsonl``, and what was kept and why the rest was dropped to ``summary.json``.
"""

from __future__ import annotations

import json
import logging
import random
import re
import time
from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from tqdm.auto import tqdm

from slmkit.atomic import append_journal, atomic_write_json, atomic_write_text, read_journal
from slmkit.config import GenerationConfig, SynthConfig, SynthFilterConfig
from slmkit.data.prompts import ABSTAIN_ANSWER, Passage, qa_messages
from slmkit.data.squad_metrics import normalize_answer
from slmkit.errors import BackendUnavailableError, ConfigError, InputError, KnowledgeBaseError
from slmkit.models.generation import Generator
from slmkit.rag.abstention import support_score
from slmkit.rag.documents import Chunk
from slmkit.rag.knowledge_base import KnowledgeBase
from slmkit.rag.retrieval import Retriever
from slmkit.train.rag_examples import raft_messages

logger = logging.getLogger(__name__)

ATTEMPTS_FILE = "attempts.jsonl"
PAIRS_FILE = "pairs.jsonl"
TRAIN_FILE = "train.jsonl"
SUMMARY_FILE = "summary.json"

# Measured on SmolLM2-135M (docs/synthetic-data.md): asked for "Question: ... / Answer: ..." lines it
# mostly echoes them ("What is the answer to the question: ..."), and a system prompt or a worked
# example makes it summarise or copy; asked for a question about one fact, it writes one, and
# answers it in a second call. Stronger teachers may reply with both lines, which parse_pair reads.
TEACHER_INSTRUCTION = (
    "Write a quiz question about one fact in this passage (a name, a number, a date or a place)."
)
# The teacher's own answer, when its reply held only a question, is asked for with the prompt the
# student will see: the same Context / Question / Answer layout, with the chunk as the one passage.
ANSWER_GENERATION = GenerationConfig(max_new_tokens=24)

# Base models (no chat template, e.g. Gemma-3-270M) continue text instead of following an instruction:
# shown worked examples, they write a question about the next passage and, prompted again, answer it
# from the passage. Question first, then answer: asked for an answer span first, Gemma-3-270M wrote
# questions that ignored it (docs/synthetic-data.md). The examples are written for slmkit, not taken
# from any dataset, so no evaluation set leaks into the pairs through the prompt; their answers are
# short spans of their passages, which is what the teacher imitates.
FEW_SHOT_EXAMPLES: tuple[tuple[str, str, str, str], ...] = (
    (
        "Golden Gate Bridge",
        "The Golden Gate Bridge is a suspension bridge spanning the Golden Gate, the one-mile-wide "
        "strait connecting San Francisco Bay and the Pacific Ocean. It opened in 1937 and was, at the "
        "time, the longest suspension bridge in the world, with a main span of 4,200 feet. Its chief "
        "engineer was Joseph Strauss.",
        "Who was the chief engineer of the Golden Gate Bridge?",
        "Joseph Strauss",
    ),
    (
        "Photosynthesis",
        "Photosynthesis takes place mainly in the leaves of plants, inside organelles called "
        "chloroplasts. The green pigment chlorophyll absorbs light energy, which is used to turn carbon "
        "dioxide and water into glucose, releasing oxygen as a by-product.",
        "In which organelles does photosynthesis take place?",
        "chloroplasts",
    ),
)
EXAMPLES_PER_REASON = 2

_LABEL = re.compile(r"^\W*(?:question|q)\s*\d*\s*[:.)-]\s*", re.IGNORECASE)
_ANSWER_MARK = re.compile(r"(?:^|\s|\*)(?:answer|a)\s*\**\s*:", re.IGNORECASE)
_CITATION = re.compile(r"\[\d+\]")
_CLAUSE_BREAK = re.compile(r"[,;:]\s|\s(?:but|and|which|because|while)\s")
# Questions about the text rather than its content ("What is the passage about?").
_META_QUESTION = re.compile(r"\b(?:passage|this question|the question|the text|the context)\b", re.I)
# Words that join a restated question to its answer: "... was the X", "... is in X".
_RESTATEMENT_GLUE = frozenset(
    "is are was were be been the a an of in on at to by for from with as that it its".split()
)


@dataclass
class Attempt:
    """One chunk shown to the teacher and what came of it (a line of ``attempts.jsonl``)."""

    chunk_id: int
    chunk_hash: str
    title: str
    source: str
    position: int
    raw: str
    question: str
    answer: str
    kept: bool
    reason: str | None
    seconds: float
    teacher_calls: int


@dataclass
class SynthResult:
    """What a run produced; ``summary`` is what ``summary.json`` holds."""

    output_dir: Path
    summary: dict[str, Any]
    attempts: list[Attempt] = field(default_factory=list)

    @property
    def kept(self) -> list[Attempt]:
        return [a for a in self.attempts if a.kept]


# ---- the teacher's prompt and reply ------------------------------------------------------------


def teacher_messages(chunk: Chunk) -> list[dict[str, str]]:
    """The prompt asking the teacher for one question and its answer about ``chunk``."""
    return [{"role": "user", "content": f"Passage: {chunk.title}\n{chunk.text}\n\n{TEACHER_INSTRUCTION}"}]


_FEW_SHOT_PREFIX = "".join(
    f"Passage: {title}\n{text}\nQuestion: {q}\nAnswer: {a}\n\n" for title, text, q, a in FEW_SHOT_EXAMPLES
)


def few_shot_prompt(chunk: Chunk, question: str | None = None) -> list[dict[str, str]]:
    """A completion prompt for base-model teachers: the worked examples, then ``chunk`` and
    ``Question:`` to continue, or, given its ``question``, ``Answer:`` to continue."""
    ending = "Question:" if question is None else f"Question: {question}\nAnswer:"
    return [{"role": "user", "content": f"{_FEW_SHOT_PREFIX}Passage: {chunk.title}\n{chunk.text}\n{ending}"}]


def parse_pair(text: str) -> tuple[str, str]:
    """``(question, answer)`` from a teacher's reply; either is ``""`` when missing.

    Reads ``Question: ... Answer: ...`` on one line or two, with or without the ``Question:`` label,
    ``Q:``/``A:`` forms and Markdown bold; only the first pair counts.
    """
    text = text.strip()
    mark = _ANSWER_MARK.search(text)
    head, tail = (text[: mark.start()], text[mark.end() :]) if mark else (text, "")
    lines = [_LABEL.sub("", line).strip(" *") for line in head.splitlines()]
    lines = [line for line in lines if line]
    asked = [line for line in lines if "?" in line]
    question = (asked or lines or [""])[0]
    question = question[: question.index("?") + 1] if "?" in question else question
    answer = tail.strip().split("\n")[0] if tail.strip() else ""
    return question.strip(), _clean_answer(answer)


def strip_restatement(answer: str, question: str) -> str:
    """``answer`` without the words at either end that restate ``question``.

    Small models answer in sentences ("The comb plate is used for swimming", "The Broncos won Super
    Bowl 50"); the words that repeat the question (and, at the start, the function words joining them
    to the rest) are not the answer: "used for swimming", "Broncos". An answer that is all
    restatement is returned unchanged.
    """
    asked = set(normalize_answer(question).split())
    words = answer.split()
    start = 0
    while start < len(words) and (
        not normalize_answer(words[start])
        or normalize_answer(words[start]) in asked
        or normalize_answer(words[start]) in _RESTATEMENT_GLUE
    ):
        start += 1
    end = len(words)
    while end > start and normalize_answer(words[end - 1]) in asked:
        end -= 1
    return " ".join(words[start:end]) if start < end else answer


def _first_line(text: str) -> str:
    return text.strip().split("\n")[0]


def _clean_answer(answer: str) -> str:
    answer = _CITATION.sub("", answer).strip().strip("*").strip()
    answer = answer.strip("\"'“”‘’`").strip()
    return answer.rstrip(".").strip()


# ---- filters -----------------------------------------------------------------------------------


def is_grounded(answer: str, chunk_text: str, question: str, filters: SynthFilterConfig) -> bool:
    """Whether ``answer`` is supported by ``chunk_text`` as ``filters.grounding`` says."""
    if filters.grounding == "span":
        return _contains_words(chunk_text, answer)
    return support_score(answer, [chunk_text], question) >= filters.min_support


def _contains_words(text: str, part: str) -> bool:
    """Whether normalised ``part`` occurs in normalised ``text`` as whole words ("art" is not in "start")."""
    normalized = normalize_answer(part)
    return bool(normalized) and f" {normalized} " in f" {normalize_answer(text)} "


def drop_reason(question: str, answer: str, chunk_text: str, filters: SynthFilterConfig) -> str | None:
    """Why the pair must be dropped (see the module docstring), or None to keep it.

    Near-duplicates are not checked here: that needs the questions kept so far.
    """
    if not question or not answer:
        return "unparseable"
    if not question.endswith("?"):
        return "not_a_question"
    if len(question.split()) < filters.min_question_words:
        return "question_too_short"
    if _META_QUESTION.search(question):
        return "about_the_text"
    if len(answer.split()) > filters.max_answer_words:
        return "answer_too_long"
    if not normalize_answer(answer) or _contains_words(question, answer):
        return "answer_in_question"
    if not is_grounded(answer, chunk_text, question, filters):
        return "ungrounded"
    return None


class DuplicateFilter:
    """Near-duplicate questions by embedding cosine similarity to the questions kept so far."""

    def __init__(self, kb: KnowledgeBase, threshold: float) -> None:
        self.kb, self.threshold = kb, threshold
        self.vectors = np.zeros((0, 0), dtype=np.float32)

    def add(self, questions: Sequence[str]) -> None:
        """Count ``questions`` as kept (e.g. those of an earlier run being resumed)."""
        if questions:
            self.keep(self.kb.embed(questions))

    def is_duplicate(self, question: str) -> tuple[bool, np.ndarray]:
        """``(duplicate, vector)``; pass the vector's question to :meth:`add` once it is kept."""
        vector = self.kb.embed([question])
        duplicate = bool(len(self.vectors)) and float((self.vectors @ vector[0]).max()) >= self.threshold
        return duplicate, vector

    def keep(self, vectors: np.ndarray) -> None:
        """Count the questions of ``vectors`` (rows, as :meth:`is_duplicate` returns) as kept."""
        self.vectors = vectors if not len(self.vectors) else np.vstack([self.vectors, vectors])


# ---- which chunks, in which order --------------------------------------------------------------


def chunk_order(chunks: Sequence[Chunk], seed: int, min_words: int = 1) -> list[Chunk]:
    """Chunks of at least ``min_words`` words, one document after another: the first (shuffled)
    chunk of every (shuffled) document, then the second of each, and so on.

    Documents are grouped by source and title, so SQuAD paragraphs of one article, or sections of one
    Markdown file, count as one document and the pairs spread over articles and files.
    """
    rng = random.Random(seed)
    documents: dict[tuple[str, str], list[Chunk]] = {}
    for chunk in chunks:
        if len(chunk.text.split()) >= min_words:
            documents.setdefault((chunk.source, chunk.title), []).append(chunk)
    groups = list(documents.values())
    rng.shuffle(groups)
    for group in groups:
        rng.shuffle(group)
    return [group[i] for i in range(max(map(len, groups), default=0)) for group in groups if i < len(group)]


# ---- the run -----------------------------------------------------------------------------------


def open_kb(config: SynthConfig) -> KnowledgeBase:
    """The knowledge base ``config.kb`` names ('bundled:squad-train' is built on first use).

    Raises:
        ConfigError: no knowledge base given.
        KnowledgeBaseError: the folder is missing or is not a knowledge base.
    """
    if not config.kb:
        raise ConfigError("give a knowledge base to write questions about: --kb DIR (or kb: in the recipe)")
    if config.kb == "bundled:squad-train":
        from slmkit.data.squad import bundled_squad, load_squad, split_articles
        from slmkit.train.rag_examples import paragraphs_kb

        articles = split_articles(load_squad(bundled_squad()), "train")
        return paragraphs_kb(articles, Path(config.output_dir) / "kb")
    return KnowledgeBase.open(config.kb)


def synthesize(
    kb: KnowledgeBase, teacher: Generator, config: SynthConfig, progress: bool = True
) -> SynthResult:
    """Generate, filter and write question/answer pairs; resume from ``output_dir`` if it has attempts.

    Raises:
        KnowledgeBaseError: the knowledge base holds no chunks (long enough to ask about).
        InputError: ``attempts.jsonl`` in ``output_dir`` was made from a different knowledge base.
        BackendUnavailableError: the teacher stopped answering; the pairs made so far are kept and a
            partial summary is written first, and the message says how to resume.
    """
    out = Path(config.output_dir)
    order = chunk_order(kb.chunks, config.seed, config.min_chunk_words)
    if not order:
        what = "holds no chunks" if not kb.chunks else f"has no chunk of {config.min_chunk_words}+ words"
        raise KnowledgeBaseError(
            f"{kb.path}: the knowledge base {what} to write questions about; add documents with "
            f"`slmkit index add SOURCES --kb {kb.path}`"
        )
    out.mkdir(parents=True, exist_ok=True)
    attempts = read_attempts(out / ATTEMPTS_FILE, kb)
    tried = {a.chunk_id for a in attempts}
    duplicates = DuplicateFilter(kb, config.filters.duplicate_similarity)
    duplicates.add([a.question for a in attempts if a.kept])
    kept = sum(a.kept for a in attempts)
    if attempts:
        logger.info("resuming: %d chunks tried, %d pairs kept before", len(attempts), kept)
    style = prompt_style(config, teacher)
    todo = [c for c in order if c.id not in tried]
    if config.max_chunks is not None:
        todo = todo[: max(0, config.max_chunks - len(attempts))]
    bar = tqdm(total=config.n, initial=min(kept, config.n), desc="pairs", unit="pair", disable=not progress)
    try:
        with (out / ATTEMPTS_FILE).open("a", encoding="utf-8") as log:
            for chunk in todo:
                if kept >= config.n:
                    break
                attempt = _attempt(chunk, teacher, config, duplicates, style)
                append_journal(log, asdict(attempt))
                attempts.append(attempt)
                kept += attempt.kept
                bar.update(attempt.kept)
                bar.set_postfix(tried=len(attempts), dropped=len(attempts) - kept)
    except BackendUnavailableError as err:
        write_outputs(out, kb, attempts, config, teacher.name, style, "partial", len(order))
        raise BackendUnavailableError(
            f"the teacher '{teacher.name}' stopped answering ({err}). Kept {kept} pairs from "
            f"{len(attempts)} chunks in {out / ATTEMPTS_FILE} (partial summary: {out / SUMMARY_FILE}); "
            "run the same command again to resume where it stopped"
        ) from err
    finally:
        bar.close()
    status = "complete"
    if kept < config.n:
        capped = config.max_chunks is not None and len(attempts) >= config.max_chunks
        status = "max_chunks" if capped else "exhausted"
        why = f"max_chunks ({config.max_chunks}) were tried" if capped else "every eligible chunk was tried"
        logger.warning("kept %d of %d requested pairs: %s (see %s)", kept, config.n, why, out / SUMMARY_FILE)
    return write_outputs(out, kb, attempts, config, teacher.name, style, status, len(order))


def prompt_style(config: SynthConfig, teacher: Generator) -> str:
    """``instruct`` or ``few_shot``: what ``config.prompt`` says, ``auto`` deciding by the teacher."""
    if config.prompt != "auto":
        return config.prompt
    return "instruct" if teacher.has_chat_template else "few_shot"


def _attempt(
    chunk: Chunk, teacher: Generator, config: SynthConfig, duplicates: DuplicateFilter, style: str
) -> Attempt:
    start = time.perf_counter()
    if style == "few_shot":
        raw = teacher.generate(few_shot_prompt(chunk), config.generation).text
        question, answer = parse_pair(_first_line(raw))
        answer_prompt = few_shot_prompt(chunk, question)
    else:
        raw = teacher.generate(teacher_messages(chunk), config.generation).text
        question, answer = parse_pair(raw)
        answer_prompt = qa_messages(question, [Passage(chunk.title, chunk.text)])
    calls = 1
    if question.endswith("?") and not answer:
        # The teacher wrote a question and stopped (small instruct models do; the few-shot prompt asks
        # for one line at a time): let it answer the question from the chunk.
        reply = teacher.generate(answer_prompt, ANSWER_GENERATION).text
        raw = f"{raw}\n[answer] {reply}"
        answer = _clean_answer(strip_restatement(_clean_answer(_first_line(reply)), question))
        if len(answer.split()) > config.filters.max_answer_words:
            answer = _clean_answer(_CLAUSE_BREAK.split(answer)[0])  # the first clause, if that is short
        calls = 2
    reason = drop_reason(question, answer, chunk.text, config.filters)
    if reason is None:
        duplicate, vector = duplicates.is_duplicate(question)
        if duplicate:
            reason = "duplicate"
        else:
            duplicates.keep(vector)
    return Attempt(
        chunk.id,
        chunk.hash,
        chunk.title,
        chunk.source,
        chunk.position,
        raw,
        question,
        answer,
        reason is None,
        reason,
        round(time.perf_counter() - start, 3),
        calls,
    )


def read_attempts(path: Path, kb: KnowledgeBase) -> list[Attempt]:
    """The attempts an earlier run logged at ``path`` (none if it does not exist).

    A last line cut off by a crash is dropped (and the file truncated to the last complete line), so
    appending continues cleanly.

    Raises:
        InputError: an attempt names a chunk the knowledge base does not hold (another knowledge base).
    """
    attempts = []
    for number, line in enumerate(read_journal(path), start=1):
        if not line.strip():
            continue
        attempt = Attempt(**json.loads(line))
        if attempt.chunk_id >= len(kb.chunks) or kb.chunks[attempt.chunk_id].hash != attempt.chunk_hash:
            raise InputError(
                f"{path}:{number}: chunk {attempt.chunk_id} is not in {kb.path} as it was when this "
                "attempt was made (another knowledge base, or it changed); use a new --output folder"
            )
        attempts.append(attempt)
    return attempts


# ---- outputs -----------------------------------------------------------------------------------


def training_records(
    kb: KnowledgeBase, pairs: Sequence[Attempt], top_k: int, abstain_share: float, seed: int
) -> list[dict[str, Any]]:
    """RAFT-style chat records (``task: chat``) for the kept pairs, in their order."""
    rng = random.Random(seed)
    hits_per_question = Retriever(kb).search_many([p.question for p in pairs], top_k=top_k * 3)
    records = []
    for pair, hits in zip(pairs, hits_per_question, strict=True):
        gold = kb.chunks[pair.chunk_id]
        # Other chunks of the gold chunk's document overlap it and may hold the answer too.
        distractors = [
            Passage(h.chunk.title, h.chunk.text)
            for h in hits
            if (h.chunk.source, h.chunk.position) != (gold.source, gold.position)
        ]
        messages = raft_messages(
            pair.question,
            [pair.answer],
            Passage(gold.title, gold.text),
            distractors,
            top_k,
            abstain_share,
            rng,
        )
        kind = "abstain" if messages[-1]["content"] == ABSTAIN_ANSWER else "answer"
        records.append(
            {"id": f"synth-{pair.chunk_id}", "kind": kind, "chunk_id": pair.chunk_id, "messages": messages}
        )
    return records


def write_outputs(
    out: Path,
    kb: KnowledgeBase,
    attempts: list[Attempt],
    config: SynthConfig,
    teacher: str,
    prompt: str,
    status: str,
    eligible: int,
) -> SynthResult:
    """Write ``pairs.jsonl``, ``train.jsonl`` and ``summary.json`` (each atomically) from ``attempts``."""
    pairs = [a for a in attempts if a.kept]
    records = training_records(kb, pairs, config.top_k, config.abstain_share, config.seed) if pairs else []
    atomic_write_text(out / PAIRS_FILE, _jsonl(_pair_record(p) for p in pairs))
    atomic_write_text(out / TRAIN_FILE, _jsonl(records))
    summary = _summary(attempts, records, config, teacher, prompt, status, eligible, out)
    atomic_write_json(out / SUMMARY_FILE, summary)
    return SynthResult(out, summary, attempts)


def _pair_record(pair: Attempt) -> dict[str, Any]:
    return {
        "question": pair.question,
        "answer": pair.answer,
        "chunk_id": pair.chunk_id,
        "title": pair.title,
        "source": pair.source,
        "position": pair.position,
    }


def _jsonl(records: Iterator[dict[str, Any]] | Sequence[dict[str, Any]]) -> str:
    return "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records)


def _summary(
    attempts: Sequence[Attempt],
    records: Sequence[dict[str, Any]],
    config: SynthConfig,
    teacher: str,
    prompt: str,
    status: str,
    eligible: int,
    out: Path,
) -> dict[str, Any]:
    kept = sum(a.kept for a in attempts)
    dropped = Counter(a.reason for a in attempts if not a.kept)
    examples: dict[str, list[dict[str, Any]]] = {}
    for attempt in attempts:
        if not attempt.kept and len(examples.setdefault(attempt.reason or "", [])) < EXAMPLES_PER_REASON:
            examples[attempt.reason or ""].append(
                {
                    "chunk_id": attempt.chunk_id,
                    "raw": attempt.raw[:300],
                    "question": attempt.question,
                    "answer": attempt.answer,
                }
            )
    seconds = sum(a.seconds for a in attempts)
    return {
        "status": status,
        "requested": config.n,
        "kept": kept,
        "chunks_tried": len(attempts),
        "chunks_eligible": eligible,
        "dropped": dict(dropped.most_common()),
        "dropped_examples": examples,
        "training_examples": len(records),
        "abstention_examples": sum(r["kind"] == "abstain" for r in records),
        "teacher": teacher,
        "prompt": prompt,
        "teacher_calls": sum(a.teacher_calls for a in attempts),
        "seconds": round(seconds, 1),
        "pairs_per_minute": round(60 * kept / seconds, 2) if seconds > 0 else 0.0,
        "files": {name: str(out / name) for name in (ATTEMPTS_FILE, PAIRS_FILE, TRAIN_FILE)},
        "config": config.model_dump(),
    }


def format_summary(summary: dict[str, Any]) -> str:
    """The summary as the CLI prints it: a small table of kept and dropped pairs."""
    tried = summary["chunks_tried"] or 1
    rows = [("kept", summary["kept"])] + [(f"dropped: {r}", c) for r, c in summary["dropped"].items()]
    lines = [
        f"teacher {summary['teacher']}: {summary['kept']} of {summary['requested']} requested pairs "
        f"({summary['status']}), {summary['chunks_tried']} chunks tried of {summary['chunks_eligible']}, "
        f"{summary['seconds']:.0f}s ({summary['pairs_per_minute']:.1f} pairs/min)",
        "",
        f"| {'outcome':<28} | {'chunks':>6} | {'share':>6} |",
        f"|{'-' * 30}|{'-' * 8}|{'-' * 8}|",
    ]
    lines += [f"| {name:<28} | {count:>6} | {100 * count / tried:>5.1f}% |" for name, count in rows]
    lines.append("")
    lines.append(
        f"{summary['training_examples']} training examples ({summary['abstention_examples']} abstention): "
        f"{summary['files'][TRAIN_FILE]}"
    )
    return "\n".join(lines)
