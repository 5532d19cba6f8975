"""Per-passage reading: each retrieved passage is read on its own; the answers compete by confidence.

A reader (trained with ``data.context: passage``) replies to one passage with the span that answers
the question, or with nothing when the passage does not answer it. The probability it gives to
ending its reply at once is its "no answer in this passage" probability, read off one forward pass
per passage before anything is generated. The answer then comes from the passage with the lowest
such probability, and if even that one is too likely to hold no answer, slmkit abstains (the
reader-confidence gate in slmkit.rag.abstention). This is how extractive open-domain readers
compare paragraphs (Clark & Gardner, 2018, "Simple and Effective Multi-Paragraph Reading
Comprehension"), with the empty answer playing the role of their no-answer score; for a small
model it is cheaper to train than one prompt with every passage, the answer can be kept a span of
one passage, and the citation is that passage.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

from slmkit.data.prompts import Passage, reader_messages
from slmkit.models.generation import Messages, PassageScorer
from slmkit.rag.retrieval import Hit


@dataclass(frozen=True)
class Reading:
    """What the reader made of one passage before answering.

    Attributes:
        hit: The passage as retrieved (or the gold passage, for evaluation).
        passage: Its text as the prompt shows it (cut when it did not fit the prompt budget).
        messages: The reader's prompt for it.
        no_answer: The reader's probability that the passage holds no answer.
    """

    hit: Hit
    passage: Passage
    messages: Messages
    no_answer: float


def read_passages(
    scorer: PassageScorer,
    question: str,
    hits: Sequence[Hit],
    fit: Callable[[Passage], Passage] = lambda passage: passage,
    sure_below: float = 0.0,
) -> list[Reading]:
    """Read the hits' passages in rank order (``fit`` cuts one that exceeds the prompt budget).

    With ``sure_below`` > 0, reading stops at the first passage whose no-answer probability is
    below it: the best-ranked passage usually holds the answer, and a reader that is sure of it
    need not read the rest (most of a question's CPU time is reading). The readings returned are
    those of the passages read.
    """
    if sure_below <= 0:  # all passages in one call: a backend may order or batch them as it likes
        passages = [fit(Passage(h.chunk.title, h.chunk.text)) for h in hits]
        prompts = [reader_messages(question, p) for p in passages]
        scores = scorer.no_answer_probabilities(prompts)
        return [
            Reading(hit, passage, messages, score)
            for hit, passage, messages, score in zip(hits, passages, prompts, scores, strict=True)
        ]
    readings: list[Reading] = []
    for hit in hits:  # one at a time, fitting only the passages actually read
        passage = fit(Passage(hit.chunk.title, hit.chunk.text))
        messages = reader_messages(question, passage)
        readings.append(Reading(hit, passage, messages, scorer.no_answer_probabilities([messages])[0]))
        if readings[-1].no_answer < sure_below:
            break
    return readings


def most_confident(readings: Sequence[Reading]) -> Reading:
    """The reading surest to hold the answer; on a tie, the better-ranked passage."""
    return min(readings, key=lambda r: r.no_answer)
