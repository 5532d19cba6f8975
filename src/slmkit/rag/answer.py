"""Answer a question from the knowledge base, with citations, or abstain."""

from __future__ import annotations

import logging
import re
import time
import warnings
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from slmkit.config import AskConfig
from slmkit.data.prompts import (
    ABSTAIN_ANSWER,
    CLOSED_BOOK_ABSTAIN_ANSWER,
    Passage,
    qa_messages,
    reader_messages,
    titled_text,
)
from slmkit.errors import ConfigError, InputError
from slmkit.models.generation import Generation, Generator, PassageScorer
from slmkit.rag.abstention import (
    Decision,
    check_coverage,
    check_reader_confidence,
    check_relevance,
    check_support,
    is_refusal,
    support_score,
)
from slmkit.rag.documents import Chunk, content_hash
from slmkit.rag.knowledge_base import KnowledgeBase
from slmkit.rag.reading import Reading, most_confident, read_passages
from slmkit.rag.retrieval import Hit, Retriever
from slmkit.rag.sentence_answers import (
    DEFINITION_POOL,
    defined_term,
    defining_first,
    definition,
    evidence,
    is_polar,
)

logger = logging.getLogger(__name__)


class ContextTrimmedWarning(UserWarning):
    """Retrieved context was cut to fit the model's window or the prompt budget."""


@dataclass(frozen=True)
class Citation:
    """A source the answer rests on; ``index`` is the ``[n]`` marker in the answer text."""

    index: int
    chunk_id: int
    title: str
    source: str
    position: int
    score: float
    support: float


@dataclass
class Answer:
    """The reply to one question.

    Attributes:
        question: The question asked.
        text: What to show: the answer with ``[n]`` citation markers, or the abstention sentence.
        abstained: True when slmkit declined to answer.
        reason: Why it abstained (None otherwise).
        citations: Sources cited by the markers in ``text``.
        hits: All retrieved chunks that went into the prompt, best first.
        raw_text: The model's output before post-processing ("" when it was not asked).
        timings: Seconds for ``retrieval``, ``reading`` (per-passage reading), ``generation``,
            ``first_token`` and ``total``.
        prompt_tokens, completion_tokens, tokens_per_second: Generation cost.
        no_answer: Per-passage reading only: the reader's no-answer probability for each hit.
        finish_reason: ``length`` when the token limit (``generation.max_new_tokens``) cut the
            answer, else ``stop`` (as in OpenAI's API).
    """

    question: str
    text: str
    abstained: bool
    reason: str | None = None
    citations: list[Citation] = field(default_factory=list)
    hits: list[Hit] = field(default_factory=list)
    raw_text: str = ""
    timings: dict[str, float] = field(default_factory=dict)
    prompt_tokens: int = 0
    completion_tokens: int = 0
    tokens_per_second: float = 0.0
    no_answer: list[float] = field(default_factory=list)
    finish_reason: str = "stop"

    def to_dict(self) -> dict[str, Any]:
        """The ``--json`` form: answer, citations, abstained, reason, the retrieved passages (with
        their text, so a client can show what a citation points at), timings, token counts."""
        return {
            "question": self.question,
            "answer": self.text,
            "abstained": self.abstained,
            "reason": self.reason,
            "citations": [asdict(c) for c in self.citations],
            "retrieved": [
                {
                    "chunk_id": h.chunk.id,
                    "title": h.chunk.title,
                    "source": h.chunk.source,
                    "position": h.chunk.position,
                    "text": h.chunk.text,
                    "score": h.score,
                    "similarity": h.dense_score,
                    **({"no_answer": self.no_answer[i]} if self.no_answer else {}),
                }
                for i, h in enumerate(self.hits)
            ],
            "raw_answer": self.raw_text,
            "timings": self.timings,
            "prompt_tokens": self.prompt_tokens,
            "completion_tokens": self.completion_tokens,
            "tokens_per_second": self.tokens_per_second,
            "finish_reason": self.finish_reason,
        }


class Answerer:
    """Retrieves, reads, cites and abstains.

    Two ways of reading the retrieved passages (``config.reading``): *joint*, all passages in one
    prompt (any instruction-following model); *per-passage*, each passage read on its own by a
    reader model and the answer taken from the one it is surest about (slmkit.rag.reading).

    Args:
        generator: Any :class:`~slmkit.models.generation.Generator` backend.
        retriever: Searches the knowledge base; None answers closed-book.
        config: Reading, retrieval, abstention and generation settings.

    Raises:
        ConfigError: per-passage reading asked of a backend that cannot score passages.
    """

    def __init__(
        self, generator: Generator, retriever: Retriever | None = None, config: AskConfig | None = None
    ) -> None:
        self.generator = generator
        self.retriever = retriever
        self.config = config or AskConfig()
        self.per_passage = self._reads_per_passage()
        grounded = self.config.generation.grounded
        self.grounded = self.per_passage if grounded == "auto" else bool(grounded)

    def _reads_per_passage(self) -> bool:
        mode = self.config.reading
        scorer = isinstance(self.generator, PassageScorer)
        if mode == "per-passage" and not scorer:
            raise ConfigError(
                f"reading: per-passage needs a backend that scores passages (transformers or llama.cpp); "
                f"{type(self.generator).__name__} does not: use reading: joint"
            )
        if mode == "auto":
            from slmkit.models.loading import is_reader

            return scorer and is_reader(self.generator.name)
        return mode == "per-passage"

    @classmethod
    def load(cls, kb: str | Path | KnowledgeBase | None = None, config: AskConfig | None = None) -> Answerer:
        """Load the configured model on its backend (default: the packaged reader) and, if given, a KB."""
        from concurrent.futures import ThreadPoolExecutor

        from slmkit.models.backends import load_generator

        config = config or AskConfig()
        # The model loads on a second thread while this one opens the knowledge base: llama.cpp
        # reads the weights and the vocabulary in C with the GIL released, so a fresh `slmkit ask`
        # waits for the longer of the two, not for both. An error on either side is raised here.
        with ThreadPoolExecutor(max_workers=1, thread_name_prefix="slmkit-load") as pool:
            loading = pool.submit(
                load_generator, config.model, config.backend, dtype=config.dtype, device=config.device
            )
            retriever = None
            if kb is not None:
                retriever = Retriever(
                    kb if isinstance(kb, KnowledgeBase) else KnowledgeBase.open(kb), config.retrieval
                )
            generator = loading.result()
        return cls(generator, retriever, config)

    def ask(
        self,
        question: str,
        history: Sequence[tuple[str, str]] = (),
        on_text: Callable[[str], None] | None = None,
        use_retrieval: bool = True,
    ) -> Answer:
        """Answer ``question``; stream the model's text to ``on_text`` while it is generated.

        Raises:
            InputError: the question is empty or has no word (only punctuation or symbols), or
                alone does not fit in the model's window.
        """
        question = question.strip()
        if not question:
            raise InputError("the question is empty")
        if not any(character.isalnum() for character in question):
            # Nothing to retrieve by: every passage would score alike, and the reader answer at random.
            raise InputError(f"the question has no word to answer: {question[:40]!r}")
        start = time.perf_counter()
        if self.retriever is None or not use_retrieval:
            generation = self._generate(qa_messages(question, None, history), on_text)
            text = generation.text
            if not text.strip():  # a reader asked without a passage typically stops at once
                reason = "the model gave no answer"
                return self._finish(
                    question, CLOSED_BOOK_ABSTAIN_ANSWER, True, reason, [], [], generation, start, 0.0
                )
            return self._finish(question, text, is_refusal(text), None, [], [], generation, start, 0.0)

        retrieval = self.config.retrieval
        if term := defined_term(question):
            # At least the pool, so a definition ranked below top_k can move up; never fewer than top_k.
            pool = max(retrieval.top_k, DEFINITION_POOL)
            hits = defining_first(term, self.retriever.search(question, pool, retrieval.mode))
            hits = hits[: retrieval.top_k]
        else:
            hits = self.retriever.search(question, top_k=retrieval.top_k, mode=retrieval.mode)
        retrieval_s = time.perf_counter() - start
        decision = check_relevance(max((h.dense_score for h in hits), default=None), self.config.abstention)
        if not decision.abstain:
            # A chunk's title counts as its content (it is indexed with it: IndexConfig.chunk_titles).
            titled = [titled_text(h.chunk.title, h.chunk.text) for h in hits]
            decision = check_coverage(question, titled, self.config.abstention)
        if decision.abstain:
            return self._finish(
                question, ABSTAIN_ANSWER, True, decision.reason, hits, [], None, start, retrieval_s
            )
        return self.answer_from(question, hits, history, on_text, start=start, retrieval_s=retrieval_s)

    def answer_from(
        self,
        question: str,
        hits: Sequence[Hit],
        history: Sequence[tuple[str, str]] = (),
        on_text: Callable[[str], None] | None = None,
        *,
        start: float | None = None,
        retrieval_s: float = 0.0,
    ) -> Answer:
        """Answer from given passages: the retrieved ones (:meth:`ask`), or a dataset's own passage
        (``slmkit eval --context gold``, see :func:`passage_hit`). Everything after retrieval runs
        here: fitting the prompt, reading, generating, the support and reader-confidence gates, and
        citations, so every caller gets the same answer for the same passages.

        Raises:
            InputError: the question alone does not fit in the model's window.
        """
        start = time.perf_counter() if start is None else start
        if self.per_passage:
            return self._answer_per_passage(question.strip(), list(hits), on_text, start, retrieval_s)
        messages, used = self._fit_context(question, list(hits), history)
        contexts = [t for h in used for t in shown(Passage(h.chunk.title, h.chunk.text))]
        generation = self._generate(messages, on_text, contexts)
        decision = check_support(generation.text, contexts, self.config.abstention, question)
        if decision.abstain:
            return self._finish(
                question, ABSTAIN_ANSWER, True, decision.reason, used, [], generation, start, retrieval_s
            )
        citations = cite(generation.text, used, self.config.abstention.min_support, question)
        text = strip_markers(generation.text) + " " + "".join(f"[{c.index}]" for c in citations)
        return self._finish(
            question, text.strip(), False, None, used, citations, generation, start, retrieval_s
        )

    def _answer_per_passage(
        self,
        question: str,
        hits: list[Hit],
        on_text: Callable[[str], None] | None,
        start: float,
        retrieval_s: float,
    ) -> Answer:
        budget = self.prompt_budget()
        self._check_question_fits(reader_messages(question, Passage("", "")), budget)
        reading_start = time.perf_counter()
        readings = read_passages(
            self.generator,  # type: ignore[arg-type]  # checked in __init__
            question,
            hits,
            lambda passage: self._fit_passage(lambda p: reader_messages(question, p), passage, budget),
            self.config.sure_below,
        )
        reading_s = time.perf_counter() - reading_start
        hits = [r.hit for r in readings]  # the passages read (reading may stop early)
        no_answer = [r.no_answer for r in readings]
        best = most_confident(readings)
        decision = check_reader_confidence(best.no_answer, len(readings), self.config.abstention)
        generation = None
        span = ""
        if decision.abstain and (term := defined_term(question)):
            decision, span, best = self._definition(term, readings, best, decision)
            if not decision.abstain and on_text is not None:
                on_text(span)
        elif not decision.abstain:
            polar = is_polar(question)
            # A yes/no question's span is shown once checked: it may give way to a sentence.
            generation = self._generate(best.messages, None if polar else on_text, shown(best.passage))
            decision = check_support(generation.text, shown(best.passage), self.config.abstention, question)
            span = generation.text.strip()
            if polar and decision.abstain:
                decision, span = self._polar_evidence(question, best, decision)
            if polar and not decision.abstain and on_text is not None:
                on_text(span)
        if decision.abstain:
            answer = self._finish(
                question, ABSTAIN_ANSWER, True, decision.reason, hits, [], generation, start, retrieval_s
            )
        else:
            citations = cite_span(span, readings, best)
            text = f"{span} " + "".join(f"[{c.index}]" for c in citations)
            answer = self._finish(
                question, text, False, None, hits, citations, generation, start, retrieval_s
            )
        answer.no_answer = no_answer
        answer.timings["reading"] = reading_s
        return answer

    @staticmethod
    def _definition(
        term: str, readings: list[Reading], best: Reading, unsure: Decision
    ) -> tuple[Decision, str, Reading]:
        """A "What is X?" question the reader found no span for: the first sentence of the passages
        read, in rank order, that defines X (slmkit.rag.sentence_answers), and its passage."""
        for reading in readings:
            if found := definition(term, reading.passage.text):
                return Decision(False), found, reading
        reason = f"{unsure.reason}, and no sentence of them defines '{term}'"
        return Decision(True, reason), "", best

    @staticmethod
    def _polar_evidence(question: str, best: Reading, unsupported: Decision) -> tuple[Decision, str]:
        """A yes/no question whose span the passage does not support (the reader said "No", which
        no passage contains): the sentence that bears on it, if one does (slmkit.rag.sentence_answers)."""
        found = evidence(question, best.passage.text, best.passage.title)
        if found:
            return Decision(False), found
        reason = f"{unsupported.reason}; a yes/no question, and no sentence of the passage read bears on it"
        return Decision(True, reason), ""

    def _generate(
        self,
        messages: Sequence[dict[str, str]],
        on_text: Callable[[str], None] | None,
        spans: Sequence[str] | None = None,
    ) -> Generation:
        if self.grounded and spans:
            return self.generator.generate(messages, self.config.generation, on_text, spans=spans)
        return self.generator.generate(messages, self.config.generation, on_text)

    def prompt_budget(self) -> int:
        """Tokens the prompt may take: the smaller of the budget and the window, less the answer."""
        generation = self.config.generation
        return min(generation.max_prompt_tokens, self.generator.context_window) - generation.max_new_tokens

    def _fit_context(
        self, question: str, hits: list[Hit], history: Sequence[tuple[str, str]]
    ) -> tuple[list[dict[str, str]], list[Hit]]:
        """Build the prompt, dropping the lowest-ranked passages (then cutting the last one) to fit."""
        budget = self.prompt_budget()
        self._check_question_fits(qa_messages(question, [], history), budget)
        used = list(hits)
        passages = [Passage(h.chunk.title, h.chunk.text) for h in used]
        messages = qa_messages(question, passages, history)
        dropped = 0
        while len(passages) > 1 and self.generator.count_tokens(messages) > budget:
            passages.pop()
            used.pop()
            dropped += 1
            messages = qa_messages(question, passages, history)
        cut = 0
        if self.generator.count_tokens(messages) > budget:
            cut = len(passages[0].text)
            render = lambda p: qa_messages(question, [p], history)  # noqa: E731
            passages[0] = self._fit_passage(render, passages[0], budget)
            cut -= len(passages[0].text)
            messages = qa_messages(question, passages, history)
        if dropped or cut:
            message = (
                f"context trimmed to fit the {budget}-token prompt budget: dropped {dropped} passage(s)"
                + (f", cut {cut} characters from passage 1" if cut else "")
            )
            warnings.warn(message, ContextTrimmedWarning, stacklevel=3)
            logger.warning(message)
        return messages, used

    def _check_question_fits(self, bare: Sequence[dict[str, str]], budget: int) -> None:
        tokens = self.generator.count_tokens(bare)
        if tokens > budget:
            raise InputError(
                f"the question (with chat history) takes {tokens} tokens, more than the {budget}-token "
                "prompt budget; shorten it or raise generation.max_prompt_tokens"
            )

    def _fit_passage(
        self, render: Callable[[Passage], Sequence[dict[str, str]]], passage: Passage, budget: int
    ) -> Passage:
        """``passage``, cut at the end as little as needed for ``render(passage)`` to fit ``budget``."""
        if self.generator.count_tokens(render(passage)) <= budget:
            return passage
        # Binary search on characters: token counts are monotone in the prefix length.
        low, high = 0, len(passage.text)
        while low < high:
            mid = (low + high + 1) // 2
            if self.generator.count_tokens(render(Passage(passage.title, passage.text[:mid]))) <= budget:
                low = mid
            else:
                high = mid - 1
        return Passage(passage.title, passage.text[:low])

    def _finish(
        self,
        question: str,
        text: str,
        abstained: bool,
        reason: str | None,
        hits: list[Hit],
        citations: list[Citation],
        generation: Generation | None,
        start: float,
        retrieval_s: float,
    ) -> Answer:
        timings = {
            "retrieval": retrieval_s,
            "generation": generation.seconds if generation else 0.0,
            "first_token": generation.first_token_seconds if generation else 0.0,
            "total": time.perf_counter() - start,
        }
        return Answer(
            question=question,
            text=text,
            abstained=abstained,
            reason=reason,
            citations=citations,
            hits=hits,
            raw_text=generation.text if generation else "",
            timings=timings,
            prompt_tokens=generation.prompt_tokens if generation else 0,
            completion_tokens=generation.completion_tokens if generation else 0,
            tokens_per_second=generation.tokens_per_second if generation else 0.0,
            finish_reason=self._finish_reason(generation) if generation and not abstained else "stop",
        )

    def _finish_reason(self, generation: Generation) -> str:
        """The backend's own word, else ``length`` when the answer used the whole token limit."""
        if generation.finish_reason:
            return generation.finish_reason
        return "length" if generation.completion_tokens >= self.config.generation.max_new_tokens else "stop"


def cite(answer: str, used: Sequence[Hit], min_support: float, question: str = "") -> list[Citation]:
    """The passages that support ``answer``'s claim: every passage at least ``min_support``-supportive,
    and always the most supportive one. Markers follow prompt order, so ``[n]`` is passage n."""
    scored = [(support_score(answer, shown(Passage(h.chunk.title, h.chunk.text)), question), h) for h in used]
    best = max((s for s, _ in scored), default=0.0)
    return [
        Citation(i, h.chunk.id, h.chunk.title, h.chunk.source, h.chunk.position, h.score, support)
        for i, (support, h) in enumerate(scored, start=1)
        if support >= min_support or (support == best and best > 0)
    ]


def cite_span(answer: str, readings: Sequence[Reading], best: Reading) -> list[Citation]:
    """Per-passage reading: the passage the answer was read from, and every other passage that holds
    the same answer text; ``[n]`` is the passage's place among the hits."""
    wanted = " ".join(answer.lower().split())
    citations = []
    for i, reading in enumerate(readings, start=1):
        text = " ".join("\n".join(shown(reading.passage)).lower().split())
        if reading is best or (wanted and wanted in text):
            h = reading.hit
            support = support_score(answer, shown(reading.passage))
            citations.append(
                Citation(i, h.chunk.id, h.chunk.title, h.chunk.source, h.chunk.position, h.score, support)
            )
    return citations


def shown(passage: Passage) -> list[str]:
    """The texts an answer may be read from: the passage and its title, both in the prompt. A
    section's name is often the answer ("Which lint detects broken links?"), and documents split by
    headings carry it in the chunk's title, not its text."""
    return [text for text in (passage.title, passage.text) if text]


def passage_hit(title: str, text: str, source: str = "", position: int = 0) -> Hit:
    """A passage given rather than retrieved (a dataset's gold passage), as a hit for
    :meth:`Answerer.answer_from`; its id is -1 since no knowledge base holds it."""
    chunk = Chunk(-1, text, source, title, position, 0, 0, len(text), content_hash(text))
    return Hit(chunk, 1.0, 1.0, None, 1)


def strip_markers(text: str) -> str:
    return re.sub(r"\s*\[\d+\]", "", text).strip()


__all__ = [
    "Answer",
    "Answerer",
    "Citation",
    "ContextTrimmedWarning",
    "Decision",
    "cite",
    "cite_span",
    "passage_hit",
    "strip_markers",
]
