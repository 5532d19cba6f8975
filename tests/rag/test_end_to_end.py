"""End to end on the real packaged models: SQuAD paragraphs → knowledge base → SmolLM2 answers.

Decoding is greedy, so answers are reproducible on a given platform. The answerable questions are
real SQuAD questions about paragraphs in the knowledge base; the unanswerable ones are about
topics no paragraph covers, so the right reply is to abstain.
"""

from __future__ import annotations

import pytest

from slmkit.data.prompts import ABSTAIN_ANSWER
from slmkit.eval.squad_metrics import normalize_answer

pytestmark = pytest.mark.slow

ANSWERABLE = [
    # (question, gold answers) — from the SQuAD v1.1 dev paragraphs in the test knowledge base.
    ("Which NFL team represented the AFC at Super Bowl 50?", ["Denver Broncos"]),
    ("Where did Super Bowl 50 take place?", ["Santa Clara, California", "Levi's Stadium"]),
]

ABSENT = [
    "What is the recommended tire pressure for a Toyota Corolla?",
    "Who wrote the novel Moby-Dick?",
    "How many moons does Jupiter have?",
]


@pytest.mark.parametrize(("question", "golds"), ANSWERABLE)
def test_answerable_question_gets_the_gold_answer_with_a_citation(squad_answerer, question, golds):
    answer = squad_answerer.ask(question)
    assert not answer.abstained, answer.reason
    assert any(normalize_answer(g) in normalize_answer(answer.text) for g in golds), answer.text
    assert answer.citations, "a grounded answer must cite its passage"
    cited_titles = {c.title for c in answer.citations}
    assert any("Super Bowl" in t for t in cited_titles)


@pytest.mark.parametrize("question", ABSENT)
def test_question_outside_the_knowledge_base_abstains(squad_answerer, question):
    answer = squad_answerer.ask(question)
    assert answer.abstained
    assert answer.text == ABSTAIN_ANSWER
    assert answer.citations == []


def test_streamed_text_equals_the_raw_answer(squad_answerer):
    pieces: list[str] = []
    answer = squad_answerer.ask(ANSWERABLE[0][0], on_text=pieces.append)
    assert "".join(pieces).strip() == answer.raw_text
    assert answer.completion_tokens > 0 and answer.tokens_per_second > 0
