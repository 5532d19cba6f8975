"""When to say "the knowledge base does not contain the answer" instead of guessing.

Three gates, all cheap and deterministic (see docs/abstention.md for the thresholds' calibration):

1. **Relevance** (before generating): if no retrieved chunk is similar enough to the question
   (best cosine similarity below ``min_relevance``), the knowledge base has nothing on the topic,
   so the model is not asked at all.
2. **Coverage** (before generating): the names the question asks about (capitalised words and
   numbers, e.g. "Moby-Dick", "Jupiter", "1226") must occur in the retrieved passages. Dense
   similarity alone lets "Who wrote Moby-Dick?" through to a passage about another book; if less
   than ``min_coverage`` of the names are there, the passages are about something else.
3. **Support** (after generating): the answer's *new* content words (those not already in the
   question) must occur in the retrieved text. If less than ``min_support`` of them do, the model
   produced something the context does not say, and the reply abstains. Words the answer merely
   repeats from the question prove nothing, so they are left out: for "Which team represented
   the AFC?", in "The Panthers represented the AFC" only "panthers" is the claim to check. An
   answer in which the model itself declines also counts as an abstention.

A reader (a model trained to read one passage at a time, slmkit.rag.reading) adds a fourth, its own
confidence: **reader confidence** (before generating) abstains when the reader puts at least
``max_no_answer`` probability on "no answer here" for every passage it read.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

from slmkit.config import AbstentionConfig
from slmkit.data.prompts import ABSTAIN_ANSWER

# Function words carry no claim; requiring them to occur in the context would only add noise.
_STOPWORDS = frozenset(
    (
        "a an the and or but of in on at to for from by with as is are was were be been being it its "
        "this that these those there their they he she his her him them we you your i me my our which "
        "who whom whose what when where why how not no do does did has have had can could would should "
        "will shall may might must than then so such also into over under about after before during between"
    ).split()
)
# How small models frame an answer ("The answer is: ...", "According to the context, ..."):
# framing, not a claim, so it needs no support.
_FRAMING = frozenset(
    "answer answers question questions context contexts passage passages provided given according "
    "mentioned text based following states stated knowledge base".split()
)
_CITATION = re.compile(r"\[\d+\]")
# Any punctuation, not only ASCII: documents write "13–0", "Levi’s" and “quotes” where questions
# type "13-0", "Levi's" and "quotes".
_PUNCT = re.compile(r"[^\w\s]|_")

_REFUSALS = (
    ABSTAIN_ANSWER.lower().rstrip("."),
    "does not contain the answer",
    "doesn't contain the answer",
    "not contain the answer",
    "i don't know",
    "i do not know",
    "no information",
    "not mentioned in the context",
    "not provided in the context",
    "not available in the context",
    "not in the context",
    "context does not mention",
    "context does not say",
    "cannot answer",
    "can't answer",
    "unable to answer",
)


def content_words(text: str) -> list[str]:
    """Lower-cased words without punctuation, citation markers or function words."""
    text = _PUNCT.sub(" ", _CITATION.sub(" ", text).lower())
    return [w for w in text.split() if w not in _STOPWORDS]


def claim_words(answer: str, question: str = "") -> list[str]:
    """The answer's content words that are not in the question: what the answer claims.

    When the answer only restates the question, all its content words are the claim.
    """
    words = [w for w in content_words(answer) if w not in _FRAMING]
    asked = set(content_words(question))
    novel = [w for w in words if w not in asked]
    return novel or words


def support_score(answer: str, contexts: Sequence[str], question: str = "") -> float:
    """Share of the answer's claim words (see :func:`claim_words`) found in ``contexts`` (0.0-1.0).

    An answer with no content words (empty, or only function words) has nothing to support it
    and scores 0.0.
    """
    words = claim_words(answer, question)
    if not words:
        return 0.0
    vocabulary = {w for context in contexts for w in content_words(context)}
    return sum(w in vocabulary for w in words) / len(words)


def question_names(question: str) -> list[str]:
    """Capitalised words and numbers in the question, lower-cased, excluding its first word
    (capitalised only because it starts the sentence) and function words.

    A question typed in capitals ("HOW MUCH IS A CENTAVO IN MEXICO", as search-box queries often
    are) says nothing by its case: only its numbers count as names there.
    """
    if not any(character.islower() for character in question):
        question = question.lower()
    names = []
    for i, raw in enumerate(question.split()):
        for word in _PUNCT.sub(" ", raw).split():
            if (
                i > 0
                and (word[0].isupper() or any(ch.isdigit() for ch in word))
                and word.lower() not in _STOPWORDS
            ):
                names.append(word.lower())
    return names


def missing_names(question: str, contexts: Sequence[str]) -> tuple[list[str], list[str]]:
    """``(names, missing)``: the question's names, and those absent from ``contexts``.

    An acronym the question writes in capitals ("GPL", "UMC") is not missing when the passages spell
    it out instead ("General Public License", "United Methodist Church"): documents name a thing in
    full, their readers abbreviate it.
    """
    names = question_names(question)
    vocabulary = {w for context in contexts for w in content_words(context)}
    stems = {w for w in vocabulary if len(w) >= _MIN_STEM and w.isalpha()}
    missing = [n for n in names if n not in vocabulary and not _extends(n, stems)]
    acronyms = {w.lower() for w in _ACRONYM.findall(question)} & set(missing)
    if acronyms:
        spelled = {a for a in acronyms if any(_spells_out(a, context) for context in contexts)}
        missing = [n for n in missing if n not in spelled]
    return names, missing


_MIN_STEM = 4
_MAX_SUFFIX = 4


def _extends(name: str, stems: set[str]) -> bool:
    """Whether ``name`` is a passage word plus a short suffix: "nepalese" for "Nepal", "australian"
    for "Australia", "germany" for "German", "euros" for "euro". Only this way round: a passage word
    that merely starts with the name ("dickens" for "Dick") is another name."""
    if not name.isalpha():
        return False
    return any(name[:cut] in stems for cut in range(max(_MIN_STEM, len(name) - _MAX_SUFFIX), len(name)))


_ACRONYM = re.compile(r"\b[A-Z]{2,6}\b")
# Words an expansion may hold without giving a letter: "Court of Justice of the European Union".
_LINK_WORDS = frozenset("of the and for on in de du la von van".split())


def _spells_out(acronym: str, context: str) -> bool:
    """Whether ``context`` holds capitalised words whose initials spell ``acronym`` (lower-cased),
    link words between them allowed. Capitals only: lower-case runs match by chance too often."""
    words = _PUNCT.sub(" ", context).split()
    for start, first in enumerate(words):
        if first[0] != acronym[0].upper():
            continue
        letter, i = 0, start
        while letter < len(acronym) and i < len(words):
            word = words[i]
            if word[0] == acronym[letter].upper():
                letter += 1
            elif not (letter and word.lower() in _LINK_WORDS):
                break
            i += 1
        if letter == len(acronym):
            return True
    return False


def coverage_score(question: str, contexts: Sequence[str]) -> float:
    """Share of :func:`question_names` found in ``contexts``; 1.0 when the question names nothing."""
    return _coverage(*missing_names(question, contexts))


def _coverage(names: Sequence[str], missing: Sequence[str]) -> float:
    return 1.0 - len(missing) / len(names) if names else 1.0


def is_refusal(answer: str) -> bool:
    """True when the model itself says it cannot answer."""
    lowered = answer.lower()
    return any(phrase in lowered for phrase in _REFUSALS)


@dataclass(frozen=True)
class Decision:
    """Whether to abstain, and why (shown to the user and in ``--json``)."""

    abstain: bool
    reason: str | None = None


def check_relevance(best_similarity: float | None, config: AbstentionConfig) -> Decision:
    """Gate 1: abstain when the best retrieved chunk is not similar enough to the question."""
    if best_similarity is None:
        return Decision(True, "the knowledge base returned no passages")
    if best_similarity < config.min_relevance:
        return Decision(
            True,
            f"no passage is relevant enough (best similarity {best_similarity:.2f} < "
            f"min_relevance {config.min_relevance:.2f})",
        )
    return Decision(False)


def check_coverage(question: str, contexts: Sequence[str], config: AbstentionConfig) -> Decision:
    """Gate 2: abstain when the passages do not mention what the question names."""
    names, missing = missing_names(question, contexts)
    coverage = _coverage(names, missing)
    if coverage < config.min_coverage:
        return Decision(
            True,
            f"the passages do not mention {', '.join(missing)} (coverage {coverage:.2f} < "
            f"min_coverage {config.min_coverage:.2f})",
        )
    return Decision(False)


def check_support(
    answer: str, contexts: Sequence[str], config: AbstentionConfig, question: str = ""
) -> Decision:
    """Gate 3: abstain when the model declined, or its answer is not supported by ``contexts``."""
    if not answer.strip() or is_refusal(answer):
        return Decision(True, "the model found no answer in the retrieved passages")
    support = support_score(answer, contexts, question)
    if support < config.min_support:
        return Decision(
            True,
            f"the answer is not supported by the retrieved passages (support {support:.2f} < "
            f"min_support {config.min_support:.2f})",
        )
    return Decision(False)


def check_reader_confidence(no_answer: float, passages: int, config: AbstentionConfig) -> Decision:
    """Per-passage reading: abstain when even the passage the reader is surest about is, by the
    reader's own estimate, likely to hold no answer (``no_answer`` is that passage's probability)."""
    if no_answer >= config.max_no_answer:
        return Decision(
            True,
            f"the reader found no answer in the {passages} passage(s) read (lowest no-answer "
            f"probability {no_answer:.2f} >= max_no_answer {config.max_no_answer:.2f})",
        )
    return Decision(False)
