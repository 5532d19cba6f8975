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
from slmkit.data.prompts import ABSTAIN_ANSWER, Passage, qa_messages
from slmkit.errors import InputError
from slmkit.models.generation import Generation, Generator
from slmkit.rag.abstention import (
    Decision,
    check_coverage,
    check_relevance,
    check_support,
    is_refusal,
    support_score,
)
from slmkit.rag.knowledge_base import KnowledgeBase
from slmkit.rag.retrieval import Hit, Retriever

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
        timings: Seconds for ``retrieval``, ``generation``, ``first_token`` and ``total``.
        prompt_tokens, completion_tokens, tokens_per_second: Generation cost.
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
    finish_reason: str = "stop"

    def to_dict(self) -> dict[str, Any]:
        """The ``--json`` form: answer, citations, abstained, reason, timings, token counts."""
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
                    "score": h.score,
                    "similarity": h.dense_score,
                }
                for h in self.hits
            ],
            "raw_answer": self.raw_text,
            "timings": self.timings,
            "prompt_tokens": self.prompt_tokens,
            "completion_tokens": self.completion_tokens,
            "tokens_per_second": self.tokens_per_second,
            "finish_reason": self.finish_reason,
        }


class Answerer:
    """Retrieves, prompts the generator, cites and abstains.

    Args:
        generator: Any :class:`~slmkit.models.generation.Generator` backend.
        retriever: Searches the knowledge base; None answers closed-book.
        config: Retrieval, abstention and generation settings.
    """

    def __init__(
        self, generator: Generator, retriever: Retriever | None = None, config: AskConfig | None = None
    ) -> None:
        self.generator = generator
        self.retriever = retriever
        self.config = config or AskConfig()

    @classmethod
    def load(cls, kb: str | Path | KnowledgeBase | None = None, config: AskConfig | None = None) -> Answerer:
        """Load the configured model on its backend (default: the packaged SmolLM2) and, if given, a KB."""
        from slmkit.models.backends import load_generator

        config = config or AskConfig()
        generator = load_generator(config.model, config.backend, dtype=config.dtype)
        retriever = None
        if kb is not None:
            retriever = Retriever(
                kb if isinstance(kb, KnowledgeBase) else KnowledgeBase.open(kb), config.retrieval
            )
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
            InputError: the question is empty, or alone does not fit in the model's window.
        """
        question = question.strip()
        if not question:
            raise InputError("the question is empty")
        start = time.perf_counter()
        if self.retriever is None or not use_retrieval:
            generation = self._generate(qa_messages(question, None, history), on_text)
            text = generation.text
            abstained = is_refusal(text)
            return self._finish(question, text, abstained, None, [], [], generation, start, 0.0)

        retrieval = self.config.retrieval
        hits = self.retriever.search(question, top_k=retrieval.top_k, mode=retrieval.mode)
        retrieval_s = time.perf_counter() - start
        decision = check_relevance(max((h.dense_score for h in hits), default=None), self.config.abstention)
        if not decision.abstain:
            decision = check_coverage(question, [h.chunk.text for h in hits], self.config.abstention)
        if decision.abstain:
            return self._finish(
                question, ABSTAIN_ANSWER, True, decision.reason, hits, [], None, start, retrieval_s
            )

        messages, used = self._fit_context(question, hits, history)
        generation = self._generate(messages, on_text)
        contexts = [h.chunk.text for h in used]
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

    def _generate(self, messages: list[dict[str, str]], on_text: Callable[[str], None] | None) -> Generation:
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
        bare = self.generator.count_tokens(qa_messages(question, [], history))
        if bare > budget:
            raise InputError(
                f"the question (with chat history) takes {bare} tokens, more than the {budget}-token prompt "
                "budget; shorten it or raise generation.max_prompt_tokens"
            )
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
            passages[0], cut = self._truncate(question, passages[0], history, budget)
            messages = qa_messages(question, passages, history)
        if dropped or cut:
            message = (
                f"context trimmed to fit the {budget}-token prompt budget: dropped {dropped} passage(s)"
                + (f", cut {cut} characters from passage 1" if cut else "")
            )
            warnings.warn(message, ContextTrimmedWarning, stacklevel=3)
            logger.warning(message)
        return messages, used

    def _truncate(
        self, question: str, passage: Passage, history: Sequence[tuple[str, str]], budget: int
    ) -> tuple[Passage, int]:
        # Binary search on characters: token counts are monotone in the prefix length.
        low, high = 0, len(passage.text)
        while low < high:
            mid = (low + high + 1) // 2
            trial = [Passage(passage.title, passage.text[:mid])]
            if self.generator.count_tokens(qa_messages(question, trial, history)) <= budget:
                low = mid
            else:
                high = mid - 1
        return Passage(passage.title, passage.text[:low]), len(passage.text) - low

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
    scored = [(support_score(answer, [h.chunk.text], question), h) for h in used]
    best = max((s for s, _ in scored), default=0.0)
    return [
        Citation(i, h.chunk.id, h.chunk.title, h.chunk.source, h.chunk.position, h.score, support)
        for i, (support, h) in enumerate(scored, start=1)
        if support >= min_support or (support == best and best > 0)
    ]


def strip_markers(text: str) -> str:
    return re.sub(r"\s*\[\d+\]", "", text).strip()


__all__ = ["Answer", "Answerer", "Citation", "ContextTrimmedWarning", "Decision", "cite", "strip_markers"]
