"""Yes/no questions answered by a span reader: the sentence of the passage that bears on them.

A reader trained on SQuAD answers with a span of its passage. "Is the parser case sensitive?" has no
such span: asked it anyway, the packaged reader replies "not" or "No", which its passage does not
support (so slmkit used to abstain, saying the knowledge base lacks what it holds) or, worse,
which is a guess. SQuAD's own annotators, given such questions, mostly marked the clause or
sentence that settles them ("It was never affiliated with any particular denomination"); this does
the same: of the passage the reader is surest holds the answer, the sentence that shares the most
of the question's words, shown whole and cited, for the user to read the yes or the no in it.

A question asking to choose ("Is it high or low?") is not yes/no: the reader answers it with the
span that names the choice.
"""

from __future__ import annotations

import re

from slmkit.rag.abstention import content_words
from slmkit.rag.chunking import sentence_spans

# Auxiliaries that open a yes/no question in English.
_POLAR = re.compile(
    r"(is|are|was|were|am|do|does|did|has|have|had|can|could|will|would|shall|should|may|might|must)"
    r"(n't)?\b",
    re.IGNORECASE,
)
_CHOICE = re.compile(r"\bor\b", re.IGNORECASE)
# Share of the question's content words a sentence (with its passage's title) must hold to be
# evidence: half, as the coverage gate asks of the passages for the names a question gives.
MIN_EVIDENCE = 0.5
_STEM = 5  # words compared by their first letters: "lists" is "list", "sensitivity" "sensitive"
_MAX_WORDS = 80  # a sentence longer than this (a table or a list without stops) is cut


def is_polar(question: str) -> bool:
    """Whether ``question`` asks for a yes or a no: it opens with an auxiliary verb ("Does LSB list
    daemon as legacy?") and offers no alternatives joined by "or"."""
    question = question.strip()
    return bool(_POLAR.match(question)) and not _CHOICE.search(question)


def evidence(question: str, text: str, title: str = "") -> str | None:
    """The sentence of ``text`` that shares the most of the question's content words (the earlier one
    on a tie), if with ``title`` it holds :data:`MIN_EVIDENCE` of them; else None."""
    asked = {_stem(word) for word in content_words(question)}
    if not asked:
        return None
    titled = {_stem(word) for word in content_words(title)}
    best, best_shared = None, 0
    # A line break ends a sentence too: wrapped paragraphs are joined at ingest, so one left is a
    # heading's or a list item's end ("2.1 ASN.1 syntax" above "The parser is case sensitive.").
    lines = (line for start, end in sentence_spans(text) for line in text[start:end].split("\n"))
    for line in lines:
        sentence = " ".join(line.split())
        if not sentence:
            continue
        shared = len(asked & {_stem(word) for word in content_words(sentence)})
        if shared > best_shared:
            best, best_shared = sentence, shared
    if best is None:
        return None
    held = asked & ({_stem(word) for word in content_words(best)} | titled)
    if len(held) / len(asked) < MIN_EVIDENCE:
        return None
    words = best.split()
    return best if len(words) <= _MAX_WORDS else " ".join(words[:_MAX_WORDS]) + " …"


def _stem(word: str) -> str:
    return word[:_STEM]
