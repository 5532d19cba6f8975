"""Retrieved-context (RAFT-style) SQuAD examples, on a real MiniLM knowledge base."""

from __future__ import annotations

from pathlib import Path

import pytest

from slmkit.data.prompts import ABSTAIN_ANSWER
from slmkit.data.squad import load_squad
from slmkit.data.squad_metrics import normalize_answer
from slmkit.rag.knowledge_base import KnowledgeBase
from slmkit.train.rag_examples import retrieved_context_examples

SQUAD_TINY = Path(__file__).resolve().parent.parent / "assets" / "squad_tiny.json"


@pytest.fixture(scope="module")
def tiny(tmp_path_factory, embedder):
    kb, _ = KnowledgeBase.build(
        tmp_path_factory.mktemp("raft") / "kb", [SQUAD_TINY], embedder=embedder, progress=False
    )
    return load_squad(SQUAD_TINY), kb


def _context(example) -> str:
    return normalize_answer(example.messages[-2]["content"].split("\n\nQuestion:")[0])


def test_every_question_gets_an_example_with_the_right_target(tiny):
    articles, kb = tiny
    examples = retrieved_context_examples(articles, kb, top_k=2, abstain_share=0.5, seed=0)
    targets = [e.messages[-1]["content"] for e in examples]
    assert ABSTAIN_ANSWER in targets and any(t != ABSTAIN_ANSWER for t in targets)
    questions = {qa.id: qa for a in articles for p in a.paragraphs for qa in p.qas}
    assert sorted(e.id for e in examples) == sorted(questions)
    for example in examples:
        target = example.messages[-1]["content"]
        golds = questions[example.id].answers
        if target == ABSTAIN_ANSWER:
            # An abstention example never shows a passage that holds the answer.
            assert not any(normalize_answer(g) in _context(example) for g in golds)
        else:
            assert target == golds[0]
            assert normalize_answer(target) in _context(example)  # the answer is in the context
        assert example.messages[-2]["content"].count("\n\n[") + 1 <= 2  # at most top_k passages


def test_abstain_share_zero_never_abstains_and_seed_is_deterministic(tiny):
    articles, kb = tiny
    none = retrieved_context_examples(articles, kb, top_k=2, abstain_share=0.0, seed=0)
    assert all(e.messages[-1]["content"] != ABSTAIN_ANSWER for e in none)
    first = retrieved_context_examples(articles, kb, top_k=2, abstain_share=0.5, seed=7)
    again = retrieved_context_examples(articles, kb, top_k=2, abstain_share=0.5, seed=7)
    assert [e.messages for e in first] == [e.messages for e in again]


def test_the_training_kb_is_built_as_the_recipe_pins_it(tmp_path):
    # The training KB's ranking decides the hard negatives and so the validation split: a recipe that
    # pins how it was first built (data.index) must get that build on a fresh machine, and the
    # folder once built is reopened as it is.
    from slmkit.config import IndexConfig
    from slmkit.train.rag_examples import paragraphs_kb

    articles = load_squad(SQUAD_TINY)
    kb = paragraphs_kb(articles, tmp_path / "kb", IndexConfig(chunk_titles=False))
    assert kb.config.chunk_titles is False
    assert {c.metadata["article"] for c in kb.chunks} == {a.title for a in articles}
    assert paragraphs_kb(articles, tmp_path / "kb").config.chunk_titles is False
