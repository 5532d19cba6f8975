"""Answerer logic (gates, citations, context trimming) with a scripted generator.

The real model is exercised end to end in test_end_to_end.py; here a scripted generator makes each
branch deterministic: what the model says is fixed, so what slmkit does with it can be checked.
"""

from __future__ import annotations

import pytest

from fakes import FixedRetriever, make_hit
from slmkit.config import AskConfig, GenerationConfig
from slmkit.data.prompts import ABSTAIN_ANSWER
from slmkit.errors import InputError
from slmkit.models.generation import Generation
from slmkit.rag.answer import Answerer, ContextTrimmedWarning, cite


class ScriptedGenerator:
    """Says ``reply``; counts one token per whitespace-separated word."""

    name = "scripted"
    has_chat_template = True

    def __init__(self, reply: str, context_window: int = 4096) -> None:
        self.reply, self.context_window = reply, context_window
        self.prompts: list[list[dict[str, str]]] = []

    def count_tokens(self, messages):
        return sum(len(m["content"].split()) for m in messages)

    def generate(self, messages, config, on_text=None):
        self.prompts.append(list(messages))
        if on_text:
            on_text(self.reply)
        return Generation(self.reply, self.count_tokens(messages), len(self.reply.split()), 0.5, 0.1)


BRONCOS = "The Denver Broncos defeated the Carolina Panthers 24-10 in Super Bowl 50."
WARSAW = "Warsaw is the capital and largest city of Poland."


def test_supported_answer_is_cited():
    hits = [make_hit(0, WARSAW, 0.5), make_hit(1, BRONCOS, 0.7)]
    answerer = Answerer(ScriptedGenerator("Denver Broncos"), FixedRetriever(hits))
    answer = answerer.ask("Who won Super Bowl 50?")
    assert not answer.abstained
    assert answer.text == "Denver Broncos [2]"
    assert [c.chunk_id for c in answer.citations] == [1]
    assert answer.citations[0].source == "src1.txt" and answer.citations[0].support == 1.0


def test_irrelevant_knowledge_base_abstains_without_generating():
    generator = ScriptedGenerator("anything")
    answer = Answerer(generator, FixedRetriever([make_hit(0, WARSAW, 0.05)])).ask(
        "What is the boiling point of nitrogen?"
    )
    assert answer.abstained and answer.text == ABSTAIN_ANSWER
    assert "relevant" in answer.reason
    assert generator.prompts == []  # the model was never asked


def test_unsupported_answer_abstains():
    answer = Answerer(
        ScriptedGenerator("The New England Patriots"), FixedRetriever([make_hit(0, BRONCOS, 0.8)])
    ).ask("Who won?")
    assert answer.abstained and "not supported" in answer.reason
    assert answer.raw_text == "The New England Patriots"


def test_model_refusal_abstains():
    answer = Answerer(ScriptedGenerator(ABSTAIN_ANSWER), FixedRetriever([make_hit(0, BRONCOS, 0.8)])).ask(
        "Who sang?"
    )
    assert answer.abstained and "no answer" in answer.reason


def test_closed_book_skips_retrieval_and_gates():
    generator = ScriptedGenerator("Paris")
    answer = Answerer(generator, FixedRetriever([make_hit(0, BRONCOS, 0.9)])).ask(
        "Capital of France?", use_retrieval=False
    )
    assert not answer.abstained and answer.text == "Paris" and answer.citations == []
    assert "Context" not in generator.prompts[0][-1]["content"]


def test_empty_question_is_an_input_error():
    with pytest.raises(InputError, match="empty"):
        Answerer(ScriptedGenerator("x")).ask("   ")
    # Punctuation alone would retrieve passages at random and answer from one of them.
    with pytest.raises(InputError, match=r"no word to answer: '\?\?\? !'"):
        Answerer(ScriptedGenerator("x")).ask(" ??? ! ")
    assert not Answerer(ScriptedGenerator("Paris")).ask("¿Qué?", use_retrieval=False).abstained


def test_long_context_is_trimmed_with_a_warning():
    long_text = " ".join(["Broncos"] * 300)
    hits = [make_hit(0, BRONCOS, 0.8), make_hit(1, long_text, 0.7), make_hit(2, long_text, 0.6)]
    config = AskConfig(generation=GenerationConfig(max_prompt_tokens=200, max_new_tokens=20))
    generator = ScriptedGenerator("Denver Broncos")
    with pytest.warns(ContextTrimmedWarning, match="dropped 2 passage"):
        answer = Answerer(generator, FixedRetriever(hits), config).ask("Who won?")
    assert generator.count_tokens(generator.prompts[0]) <= 180
    assert [h.chunk.id for h in answer.hits] == [0]


def test_single_oversized_passage_is_cut_to_fit():
    long_text = "Denver Broncos won. " + " ".join(["filler"] * 500)
    config = AskConfig(generation=GenerationConfig(max_prompt_tokens=150, max_new_tokens=10))
    generator = ScriptedGenerator("Denver Broncos", context_window=8192)
    with pytest.warns(ContextTrimmedWarning, match="cut"):
        Answerer(generator, FixedRetriever([make_hit(0, long_text, 0.9)]), config).ask("Who won?")
    assert generator.count_tokens(generator.prompts[0]) <= 140


def test_question_longer_than_window_is_an_input_error():
    config = AskConfig(generation=GenerationConfig(max_prompt_tokens=100, max_new_tokens=10))
    answerer = Answerer(ScriptedGenerator("x"), FixedRetriever([make_hit(0, BRONCOS, 0.9)]), config)
    with pytest.raises(InputError, match="prompt budget"):
        answerer.ask("why " * 200)


def test_model_window_caps_the_prompt_budget():
    config = AskConfig(generation=GenerationConfig(max_prompt_tokens=4096, max_new_tokens=64))
    assert Answerer(ScriptedGenerator("x", context_window=1024), None, config).prompt_budget() == 960


def test_cite_always_names_the_best_supporting_passage():
    hits = [make_hit(0, WARSAW, 0.9), make_hit(1, BRONCOS, 0.8)]
    citations = cite("Broncos in Miami with Elway", hits, min_support=0.9)
    assert [c.index for c in citations] == [2]


def test_json_form_has_the_documented_fields():
    answer = Answerer(ScriptedGenerator("Denver Broncos"), FixedRetriever([make_hit(0, BRONCOS, 0.8)])).ask(
        "Who won?"
    )
    data = answer.to_dict()
    assert {"answer", "citations", "abstained", "timings"} <= set(data)
    assert set(data["citations"][0]) >= {"title", "source", "chunk_id", "score"}
    assert set(data["timings"]) == {"retrieval", "generation", "first_token", "total"}
