"""Per-passage reading (slmkit.rag.reading through Answerer) with a scripted reader.

The scripted reader knows, for each passage, its probability of "no answer here" and what it would
answer; so which passage wins, when slmkit abstains and what is cited can be checked exactly.
"""

from __future__ import annotations

import pytest

from fakes import FixedRetriever, ScriptedReader, make_hit
from slmkit.config import AbstentionConfig, AskConfig
from slmkit.data.prompts import ABSTAIN_ANSWER
from slmkit.errors import ConfigError
from slmkit.models.generation import PassageScorer
from slmkit.rag.answer import Answerer, passage_hit
from slmkit.rag.reading import most_confident, read_passages

BRONCOS = "The Denver Broncos defeated the Carolina Panthers 24-10 in Super Bowl 50."
PANTHERS = "The Carolina Panthers were the NFC champions of the 2015 season."
WARSAW = "Warsaw is the capital and largest city of Poland."


def _answerer(reader, hits, **abstention) -> Answerer:
    # Every passage read (sure_below 0): stopping early has its own test below.
    config = AskConfig(
        reading="per-passage", sure_below=0.0, abstention=AbstentionConfig(min_coverage=0.0, **abstention)
    )
    return Answerer(reader, FixedRetriever(hits), config)


def test_the_scripted_reader_is_a_passage_scorer():
    assert isinstance(ScriptedReader({}, {}), PassageScorer)


def test_answer_comes_from_the_passage_the_reader_is_surest_about_and_cites_it():
    reader = ScriptedReader({"Warsaw": 0.9, "The": 0.05}, {"The": "Denver Broncos"})
    answer = _answerer(reader, [make_hit(0, WARSAW), make_hit(1, BRONCOS)]).ask("Who won Super Bowl 50?")
    assert not answer.abstained
    assert answer.text == "Denver Broncos [2]"
    assert [c.chunk_id for c in answer.citations] == [1]
    assert answer.no_answer == [0.9, 0.05]
    retrieved = answer.to_dict()["retrieved"][1]
    assert retrieved["no_answer"] == 0.05
    # The JSON form carries each passage's text, so a client can show what [2] points at.
    assert retrieved["text"] == BRONCOS and retrieved["chunk_id"] == 1
    # Grounded decoding is on by default for per-passage reading: the span is kept to that passage
    # (or its title, which the prompt shows too).
    assert reader.generated == [(BRONCOS, ["Doc 1", BRONCOS])]
    assert "reading" in answer.timings


def test_an_answer_read_from_the_title_is_supported_and_cited():
    # Documents split by headings carry the section's name in the chunk title, and the name is often
    # the answer: "Which lint ...?" over a section "Lints › bare_urls" that says "This lint detects".
    hit = make_hit(
        0, "This lint warns by default. It detects URLs which are not links.", title="Lints › bare_urls"
    )
    reader = ScriptedReader({"This": 0.05}, {"This": "bare_urls"})
    answer = _answerer(reader, [hit]).ask("Which lint detects URLs which are not links?")
    assert not answer.abstained
    assert answer.text == "bare_urls [1]"
    assert reader.generated[0][1] == ["Lints › bare_urls 0", hit.chunk.text]
    assert answer.citations[0].support == 1.0


def test_every_passage_holding_the_answer_is_cited():
    panthers = "The Panthers lost to the Denver Broncos in Super Bowl 50."
    reader = ScriptedReader({"The": 0.1, "Warsaw": 0.99}, {"The": "Denver Broncos"})
    hits = [make_hit(0, BRONCOS), make_hit(1, WARSAW, 0.5), make_hit(2, panthers)]
    answer = _answerer(reader, hits).ask("Who won Super Bowl 50?")
    assert [c.index for c in answer.citations] == [1, 3]


def test_reader_that_finds_no_answer_anywhere_abstains_without_generating():
    reader = ScriptedReader({"Warsaw": 0.97, "The": 0.8}, {})
    answer = _answerer(reader, [make_hit(0, WARSAW), make_hit(1, PANTHERS)], max_no_answer=0.5).ask(
        "Who won Super Bowl 50?"
    )
    assert answer.abstained and answer.text == ABSTAIN_ANSWER
    assert "lowest no-answer probability 0.80 >= max_no_answer 0.50" in answer.reason
    assert reader.generated == []


def test_max_no_answer_is_the_threshold():
    reader = ScriptedReader({"The": 0.45}, {"The": "Denver Broncos"})
    hits = [make_hit(0, BRONCOS)]
    assert not _answerer(reader, hits, max_no_answer=0.5).ask("Who won?").abstained
    assert _answerer(reader, hits, max_no_answer=0.4).ask("Who won?").abstained


def test_gold_passage_goes_through_the_same_path():
    reader = ScriptedReader({"The": 0.1}, {"The": "Denver Broncos"})
    answerer = Answerer(reader, None, AskConfig(reading="per-passage"))
    answer = answerer.answer_from("Who won Super Bowl 50?", [passage_hit("Super Bowl 50", BRONCOS)])
    assert answer.text == "Denver Broncos [1]" and answer.citations[0].chunk_id == -1


def test_grounding_can_be_switched_off():
    reader = ScriptedReader({"The": 0.1}, {"The": "Denver Broncos"})
    config = AskConfig(reading="per-passage", generation={"grounded": False})
    Answerer(reader, None, config).answer_from("Who won?", [passage_hit("t", BRONCOS)])
    assert reader.generated == [(BRONCOS, None)]


def test_an_ungrounded_answer_missing_from_the_passage_is_still_refused():
    reader = ScriptedReader({"The": 0.1}, {"The": "Seattle Seahawks"})
    config = AskConfig(reading="per-passage", generation={"grounded": False})
    answer = Answerer(reader, None, config).answer_from("Who won?", [passage_hit("t", BRONCOS)])
    assert answer.abstained and "not supported" in answer.reason


def test_an_oversized_passage_is_cut_to_the_prompt_budget():
    reader = ScriptedReader({"The": 0.1}, {"The": "The word"})
    config = AskConfig(reading="per-passage", generation={"max_prompt_tokens": 64, "max_new_tokens": 8})
    long_text = "The " + " ".join(["word"] * 200)
    answer = Answerer(reader, None, config).answer_from("Who won?", [passage_hit("t", long_text)])
    assert len(reader.scored[0].split()) < 64 and answer.text == "The word [1]"


def test_per_passage_reading_needs_a_scoring_backend():
    class Remote:
        name, has_chat_template, context_window = "remote", True, 4096

    with pytest.raises(ConfigError, match="per-passage needs a backend that scores passages"):
        Answerer(Remote(), None, AskConfig(reading="per-passage"))


def test_auto_reads_jointly_with_a_model_that_is_no_reader():
    reader = ScriptedReader({}, {})
    assert not Answerer(reader, None, AskConfig()).per_passage
    assert Answerer(reader, None, AskConfig(reading="per-passage")).per_passage


def test_read_passages_keeps_hit_order_and_most_confident_breaks_ties_by_rank():
    reader = ScriptedReader({"The": 0.2, "Warsaw": 0.2}, {})
    readings = read_passages(reader, "q", [make_hit(0, WARSAW), make_hit(1, BRONCOS)])
    assert [r.hit.chunk.id for r in readings] == [0, 1]
    assert most_confident(readings).hit.chunk.id == 0


def test_reading_stops_at_a_passage_the_reader_is_sure_of():
    reader = ScriptedReader({"The": 0.02, "Warsaw": 0.9}, {"The": "Denver Broncos"})
    hits = [make_hit(0, BRONCOS), make_hit(1, WARSAW), make_hit(2, PANTHERS)]
    config = AskConfig(reading="per-passage", sure_below=0.05, abstention=AbstentionConfig(min_coverage=0.0))
    answer = Answerer(reader, FixedRetriever(hits), config).ask("Who won Super Bowl 50?")
    assert reader.scored == [BRONCOS] and answer.no_answer == [0.02]
    assert answer.text == "Denver Broncos [1]" and len(answer.hits) == 1
    # Not sure enough of the first passage: the others are read too.
    reader = ScriptedReader({"The": 0.2, "Warsaw": 0.9}, {"The": "Denver Broncos"})
    Answerer(reader, FixedRetriever(hits), config).ask("Who won Super Bowl 50?")
    assert reader.scored == [BRONCOS, WARSAW, PANTHERS]


DAEMON = "Daemon users. LSB 1.3 lists daemon as legacy, and says so in its text. Root is the superuser."


def test_a_yes_no_question_the_passage_does_not_answer_in_a_span_gets_the_sentence_that_bears_on_it():
    # The reader said "No", which no passage holds: the sentence sharing the question's words answers.
    reader = ScriptedReader({"Daemon": 0.1}, {"Daemon": "No"})
    streamed: list[str] = []
    answer = _answerer(reader, [make_hit(0, DAEMON)]).ask(
        "Does LSB 1.3 list daemon as legacy?", on_text=streamed.append
    )
    assert not answer.abstained and answer.raw_text == "No"
    assert answer.text == "LSB 1.3 lists daemon as legacy, and says so in its text. [1]"
    assert [c.chunk_id for c in answer.citations] == [0]
    assert streamed == ["LSB 1.3 lists daemon as legacy, and says so in its text."]  # not the "No"


def test_a_yes_no_question_keeps_a_supported_span_and_abstains_when_no_sentence_bears_on_it():
    reader = ScriptedReader({"Daemon": 0.1}, {"Daemon": "lists daemon as legacy"})
    answer = _answerer(reader, [make_hit(0, DAEMON)]).ask("Does LSB 1.3 list daemon as legacy?")
    assert answer.text == "lists daemon as legacy [1]"
    reader = ScriptedReader({"Daemon": 0.1}, {"Daemon": "No"})
    answer = _answerer(reader, [make_hit(0, DAEMON)]).ask("Does libffi support Windows on ARM?")
    assert answer.abstained and answer.text == ABSTAIN_ANSWER
    assert "a yes/no question, and no sentence of the passage read bears on it" in answer.reason
    # A choice ("... or ...?") is answered by its span, and an unsupported one is refused as ever.
    answer = _answerer(reader, [make_hit(0, DAEMON)]).ask("Is daemon legacy or current?")
    assert answer.abstained and "yes/no" not in answer.reason


TRIGGERS = "Old dpkg to new dpkg. The first time a trigger-supporting dpkg is run, it activates triggers."
DEFINED = "Introduction. A dpkg trigger is a facility that lets one package record events for another."


def test_a_definition_question_reads_the_passage_that_defines_the_term_first():
    # Ranked second among the hits, the defining passage is read first; top_k 1 keeps only it.
    reader = ScriptedReader({"Introduction.": 0.1, "Old": 0.1}, {"Introduction.": "a facility"})
    config = AskConfig(reading="per-passage", sure_below=0.0, abstention=AbstentionConfig(min_coverage=0.0))
    config.retrieval.top_k = 1
    hits = [make_hit(0, TRIGGERS), make_hit(1, DEFINED)]
    answer = Answerer(reader, FixedRetriever(hits), config).ask("What is a dpkg trigger?")
    assert reader.scored == [DEFINED] and answer.text == "a facility [1]"
    # A top_k above the pool of 10 still gets top_k passages.
    config.retrieval.top_k = 12
    many = [make_hit(i, f"Old dpkg {i}. Nothing defined here.") for i in range(2, 12)] + hits  # 12
    answer = Answerer(reader, FixedRetriever(many), config).ask("What is a dpkg trigger?")
    assert len(answer.hits) == 12 and answer.hits[0].chunk.text == DEFINED


def test_a_definition_question_the_reader_finds_no_span_for_gets_the_defining_sentence():
    reader = ScriptedReader({"Old": 0.9, "Introduction.": 0.95}, {})
    streamed: list[str] = []
    hits = [make_hit(0, TRIGGERS), make_hit(1, DEFINED)]
    answer = _answerer(reader, hits).ask("what's a dpkg trigger", on_text=streamed.append)
    sentence = "A dpkg trigger is a facility that lets one package record events for another."
    assert not answer.abstained and answer.text == f"{sentence} [1]"
    assert [c.chunk_id for c in answer.citations] == [1] and streamed == [sentence]
    assert reader.generated == []  # nothing was generated: the reader had no span to give
    # A knowledge base that does not define the term still gets "I don't know", saying why.
    answer = _answerer(reader, [make_hit(0, TRIGGERS)]).ask("What is a dpkg trigger?")
    assert answer.abstained and answer.reason.endswith("and no sentence of them defines 'dpkg trigger'")
