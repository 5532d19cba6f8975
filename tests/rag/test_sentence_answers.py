"""Yes/no questions: which questions are, and the sentence that bears on one."""

from __future__ import annotations

import pytest

from fakes import make_hit
from slmkit.rag.sentence_answers import defined_term, defining_first, definition, evidence, is_polar

DAEMON = (
    "Root is (typically) the superuser. Some unprivileged daemons run as daemon. "
    "LSB 1.3 lists daemon as legacy, and says the UID was used for daemons. Nobody owns no files."
)


@pytest.mark.parametrize(
    ("question", "polar"),
    [
        ("Does LSB 1.3 list daemon as legacy?", True),
        ("Is the parser case sensitive?", True),
        ("isn't the parser case sensitive", True),
        ("Can the President vote?", True),
        ("Is corporal punishment increasing or declining?", False),  # a choice: the span names it
        ("Which user is the superuser?", False),
        ("Island nations of the Pacific?", False),  # "Is" only as the start of a word
        ("Does", True),
    ],
)
def test_polar_questions_open_with_an_auxiliary_and_offer_no_choice(question, polar):
    assert is_polar(question) is polar


def test_the_sentence_sharing_most_of_the_question_is_the_evidence():
    # "lists" is "list" (words compared by their first letters); the earlier sentence wins a tie.
    found = evidence("Does LSB 1.3 list daemon as legacy?", DAEMON)
    assert found == "LSB 1.3 lists daemon as legacy, and says the UID was used for daemons."
    assert evidence("Is root the superuser?", DAEMON) == "Root is (typically) the superuser."


def test_no_sentence_bears_on_a_question_about_something_else():
    assert evidence("Does libffi support Windows on ARM?", DAEMON) is None
    assert evidence("Is it?", DAEMON) is None  # nothing asked but function words


def test_the_title_counts_towards_what_a_sentence_holds():
    text = "The parser is case sensitive. Comments begin with two dashes."
    question = "Is the ASN.1 schema file parser case sensitive?"
    assert evidence(question, text) is None  # parser, case, sensitive: 3 of 7 (asn, 1, schema, file, ...)
    assert evidence(question, text, "libtasn1 › ASN.1 schema files") == "The parser is case sensitive."


def test_a_run_on_sentence_is_cut():
    words = " ".join(f"word{i}" for i in range(200))
    found = evidence("Is daemon legacy?", f"The daemon user is legacy {words}")
    assert found is not None and found.endswith(" …") and len(found.split()) == 81


def test_a_heading_on_the_line_above_is_not_part_of_the_evidence():
    text = "2.1 ASN.1 syntax\nThe parser is case sensitive. Comments begin with two dashes."
    assert evidence("Is the ASN.1 parser case sensitive?", text) == "The parser is case sensitive."


@pytest.mark.parametrize(
    ("question", "term"),
    [
        ("What is a dpkg trigger?", "dpkg trigger"),
        ("who were the Huguenots", "Huguenots"),
        ("What's GNU bc?", "GNU bc"),
        ("What is it?", None),  # no content word
        ("What was the cost of a thirty second advertisement in 2015?", None),  # a question, not a term
        ("Where is libffi?", None),
    ],
)
def test_the_term_a_definition_question_asks_for(question, term):
    assert defined_term(question) == term


def test_a_defining_sentence_opens_with_the_term_and_a_defining_verb():
    text = (
        "The first time a trigger-supporting dpkg is run, it activates them. "  # words out of order
        "The C standard library is big. "  # a verb after the term, but not right after it
        "Pertussis (also known as whooping cough) is a contagious disease. C is a language."
    )
    assert (
        definition("whooping cough", text)
        == "Pertussis (also known as whooping cough) is a contagious disease."
    )
    assert definition("C", text) == "C is a language."
    assert definition("dpkg trigger", text) is None


def test_hits_defining_the_term_go_first_each_group_in_its_order():
    hits = [make_hit(0, "Triggers run late."), make_hit(1, "A trigger is a hook."), make_hit(2, "Hooks.")]
    assert [h.chunk.id for h in defining_first("trigger", hits)] == [1, 0, 2]
