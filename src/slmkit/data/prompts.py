"""The "Context / Question / Answer" prompt layout, shared by answering and training.

Training and inference must see the same layout, so both build their messages here; the model's
own chat template (or a plain layout for base models) wraps them.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

ABSTAIN_ANSWER = "The knowledge base does not contain the answer to this question."
# What the user sees when a model asked without retrieval gives no answer at all.
CLOSED_BOOK_ABSTAIN_ANSWER = "I don't know."

SYSTEM_PROMPT = (
    "Answer the question using only the numbered context passages. Reply with a short answer taken "
    f"from the context. If the context does not contain the answer, reply: {ABSTAIN_ANSWER}"
)
CLOSED_BOOK_SYSTEM_PROMPT = "Answer the question with a short, factual answer."

# What a reader (a model trained to read one passage at a time, see reader_messages) replies when
# the passage does not answer the question: nothing. An empty answer is the end-of-turn token
# straight away, so its probability is one number read off the first decoding step, and no real
# answer's first token can be mistaken for it (the abstention sentence starts with "The").
NO_ANSWER = ""


@dataclass(frozen=True)
class Passage:
    """A context passage as the prompt shows it: numbered, titled text."""

    title: str
    text: str


def titled_text(title: str, text: str) -> str:
    """A chunk as the rankers read it (embedder, BM25, cross-encoder): its title on the line before its
    text. An article or section name often holds the words a question asks about ("What is rustdoc?"
    matches the section so titled, not its first sentence)."""
    return f"{title}\n{text}" if title else text


def format_context(passages: Sequence[Passage]) -> str:
    """Number passages [1], [2], ... so answers can cite them."""
    return "\n\n".join(f"[{i}] {p.title}\n{p.text}" for i, p in enumerate(passages, start=1))


def qa_prompt(question: str, passages: Sequence[Passage] | None) -> str:
    """The user turn: ``Context: ... Question: ... Answer:``; closed-book when ``passages`` is None."""
    question = question.strip()
    if passages is None:
        return f"Question: {question}\nAnswer:"
    return f"Context:\n{format_context(passages)}\n\nQuestion: {question}\nAnswer:"


def qa_messages(
    question: str,
    passages: Sequence[Passage] | None,
    history: Sequence[tuple[str, str]] = (),
) -> list[dict[str, str]]:
    """Chat messages for one question, after earlier ``(question, answer)`` turns of ``history``.

    Earlier turns carry only question and answer, not their context, which keeps the prompt (the
    main CPU cost) short while still resolving follow-ups such as "and when was it built?".
    """
    system = SYSTEM_PROMPT if passages is not None else CLOSED_BOOK_SYSTEM_PROMPT
    messages = [{"role": "system", "content": system}]
    for past_question, past_answer in history:
        messages.append({"role": "user", "content": f"Question: {past_question.strip()}\nAnswer:"})
        messages.append({"role": "assistant", "content": past_answer})
    messages.append({"role": "user", "content": qa_prompt(question, passages)})
    return messages


def reader_messages(question: str, passage: Passage) -> list[dict[str, str]]:
    """The prompt of a reader: one passage and the question, no instruction.

    A reader is fine-tuned on exactly this layout (the span that answers, or :data:`NO_ANSWER`), so
    an instruction would only cost prompt tokens; each retrieved passage is read on its own and the
    answers compete by confidence (slmkit.rag.reading).
    """
    return [{"role": "user", "content": qa_prompt(question, [passage])}]


def plain_prompt(messages: Sequence[dict[str, str]]) -> str:
    """Render messages for a base model without a chat template: turns separated by blank lines.

    Assistant turns follow their user turn on the same line, so the text reads
    ``... Answer: <answer>`` exactly as a base model continues it.
    """
    parts: list[str] = []
    for message in messages:
        if message["role"] == "assistant" and parts:
            parts[-1] = f"{parts[-1]} {message['content'].strip()}"
        else:
            parts.append(message["content"].strip())
    return "\n\n".join(parts)
