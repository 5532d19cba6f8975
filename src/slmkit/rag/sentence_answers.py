"""Questions a span reader cannot answer with a span, answered with a sentence of the passage.

**Yes/no questions.** A reader trained on SQuAD answers with a span of its passage. "Is the parser
case sensitive?" has no such span: asked it anyway, the packaged reader replies "not" or "No",
which its passage does not support (so slmkit used to abstain, saying the knowledge base lacks what
it holds) or, worse, which is a guess. SQuAD's own annotators, given such questions, mostly marked
the clause or sentence that settles them ("It was never affiliated with any particular
denomination"); this does the same: of the passage the reader is surest holds the answer, the
sentence that shares the most of the question's words, shown whole and cited, for the user to read
the yes or the no in it. A question asking to choose ("Is it high or low?") is not yes/no: the
reader answers it with the span that names the choice.

**Definitions.** "What is a dpkg trigger?" is what users ask first of a document, and its answer
is a whole sentence ("A dpkg trigger is a facility that allows events caused by one package ...
to be recorded"), which SQuAD rarely asks for: the reader often finds no span and would abstain.
When it does, the sentence of a passage read that opens with the term and goes on to define it
("is", "are", "refers to", "means", ...) is the answer, cited; a knowledge base without such a
sentence still gets "I don't know".
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Sequence

from slmkit.rag.abstention import content_words
from slmkit.rag.chunking import sentence_spans
from slmkit.rag.retrieval import Hit

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
# "What is a dpkg trigger?", "Who were the Huguenots?": the term follows the verb, its article apart.
_DEFINITION = re.compile(
    r"(?:what|who)\s*(?:'s|\s(?:is|are|was|were))\s+(?:(?:a|an|the)\s+)?(?P<term>[^?]+?)\s*\??$",
    re.IGNORECASE,
)
# Retrieved for a "What is X?" question, of which those defining X go first (defining_first).
DEFINITION_POOL = 10
_MAX_TERM_WORDS = 6  # longer, it is a question about something ("What was the cost of a 30-second ad?")
_DEFINITION_LEAD = 4  # words a defining sentence may have before the term: an article, an aside
_DEFINING = {"is", "are", "was", "were", "refers", "means", "denotes", "stands"}
_WORD = re.compile(r"[\w'+#.-]*\w")


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
    for sentence in _sentences(text):
        shared = len(asked & {_stem(word) for word in content_words(sentence)})
        if shared > best_shared:
            best, best_shared = sentence, shared
    if best is None:
        return None
    held = asked & ({_stem(word) for word in content_words(best)} | titled)
    if len(held) / len(asked) < MIN_EVIDENCE:
        return None
    return _capped(best)


def defined_term(question: str) -> str | None:
    """The term a "What is X?" / "Who were X?" question asks to define (X without its article), or
    None for any other question (or an X too long to be a term)."""
    match = _DEFINITION.match(question.strip())
    if not match:
        return None
    term = match.group("term").strip()
    if not content_words(term) or len(term.split()) > _MAX_TERM_WORDS:
        return None
    return term


def definition(term: str, text: str) -> str | None:
    """The first sentence of ``text`` that defines ``term``: a defining verb among its first words
    whose content words just before it are the term's, in order ("A dpkg trigger is ...",
    "Pertussis (also known as whooping cough) is ..."); None if no sentence does."""
    wanted = [_stem(word) for word in content_words(term)]
    opening = len(term.split()) + _DEFINITION_LEAD
    for sentence in _sentences(text):
        words = _WORD.findall(sentence.lower())
        for at, word in enumerate(words[: opening + 1]):
            if word in _DEFINING:
                before = [_stem(w) for w in words[:at] if content_words(w)]
                if before[-len(wanted) :] == wanted:
                    return _capped(sentence)
    return None


def defining_first(term: str, hits: Sequence[Hit]) -> list[Hit]:
    """``hits`` with those that define ``term`` (:func:`definition`) moved to the front, each group
    in its own order. "What is a dpkg trigger?" matches every chunk of the dpkg triggers spec about
    as well, and the one that says "A dpkg trigger is a facility ..." ranked sixth."""
    defining = [hit for hit in hits if definition(term, hit.chunk.text)]
    return defining + [hit for hit in hits if hit not in defining]


def _sentences(text: str) -> Iterator[str]:
    """The sentences of ``text``, whitespace collapsed. A line break ends a sentence too: wrapped
    paragraphs are joined at ingest, so one left is a heading's or a list item's end ("2.1 ASN.1
    syntax" above "The parser is case sensitive.")."""
    for start, end in sentence_spans(text):
        for line in text[start:end].split("\n"):
            if sentence := " ".join(line.split()):
                yield sentence


def _capped(sentence: str) -> str:
    words = sentence.split()
    return sentence if len(words) <= _MAX_WORDS else " ".join(words[:_MAX_WORDS]) + " …"


def _stem(word: str) -> str:
    return word[:_STEM]
