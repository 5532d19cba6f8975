"""Prompt layout shared by answering and training."""

from __future__ import annotations

from slmkit.data.prompts import ABSTAIN_ANSWER, Passage, plain_prompt, qa_messages, qa_prompt


def test_rag_prompt_numbers_passages_and_ends_with_answer_cue():
    prompt = qa_prompt("Who won?", [Passage("Super Bowl 50", "Denver won."), Passage("Other", "Text.")])
    assert prompt == (
        "Context:\n[1] Super Bowl 50\nDenver won.\n\n[2] Other\nText.\n\nQuestion: Who won?\nAnswer:"
    )


def test_closed_book_prompt_has_no_context():
    assert qa_prompt("  Who won? ", None) == "Question: Who won?\nAnswer:"


def test_messages_carry_system_history_and_question():
    messages = qa_messages("And the score?", [Passage("T", "24-10")], history=[("Who won?", "Denver [1]")])
    assert [m["role"] for m in messages] == ["system", "user", "assistant", "user"]
    assert ABSTAIN_ANSWER in messages[0]["content"]
    assert messages[1]["content"] == "Question: Who won?\nAnswer:"
    assert messages[2]["content"] == "Denver [1]"
    assert messages[3]["content"].startswith("Context:\n[1] T\n24-10")


def test_closed_book_system_prompt_does_not_mention_context():
    assert "context" not in qa_messages("Q?", None)[0]["content"].lower()


def test_plain_prompt_for_base_models_continues_answer_lines():
    messages = qa_messages("Q2?", None, history=[("Q1?", "A1")])
    text = plain_prompt(messages)
    assert text.endswith("Question: Q1?\nAnswer: A1\n\nQuestion: Q2?\nAnswer:")
