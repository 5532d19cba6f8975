"""The two abstention gates and the support measure behind them."""

from __future__ import annotations

from slmkit.config import AbstentionConfig
from slmkit.data.prompts import ABSTAIN_ANSWER
from slmkit.rag.abstention import (
    check_coverage,
    check_relevance,
    check_support,
    claim_words,
    content_words,
    coverage_score,
    is_refusal,
    question_names,
    support_score,
)

CONTEXT = (
    "The American Football Conference (AFC) champion Denver Broncos defeated the National Football "
    "Conference (NFC) champion Carolina Panthers 24–10 to earn their third Super Bowl title."
)


def test_content_words_drop_function_words_punctuation_and_markers():
    assert content_words("The Denver Broncos, of course! [2]") == ["denver", "broncos", "course"]


def test_supported_answer_scores_one():
    assert support_score("Denver Broncos [1]", [CONTEXT]) == 1.0


def test_invented_answer_scores_low():
    assert support_score("The New England Patriots", [CONTEXT]) < 0.5


def test_partially_supported_answer_scores_its_share():
    assert support_score("Denver Broncos in Miami", [CONTEXT]) == 2 / 3


def test_empty_answer_is_unsupported():
    assert support_score("", [CONTEXT]) == 0.0
    assert support_score("the of and", [CONTEXT]) == 0.0


def test_relevance_gate_threshold_is_inclusive_above():
    config = AbstentionConfig(min_relevance=0.35)
    assert check_relevance(0.34, config).abstain
    assert not check_relevance(0.35, config).abstain
    assert AbstentionConfig().min_relevance == 0.10  # calibrated with the reader (docs/abstention.md)
    assert check_relevance(None, config).abstain
    assert "0.34" in check_relevance(0.34, config).reason


def test_support_gate():
    config = AbstentionConfig(min_support=0.5)
    assert not check_support("Denver Broncos", [CONTEXT], config).abstain
    decision = check_support("Paris is the capital of France", [CONTEXT], config)
    assert decision.abstain and "not supported" in decision.reason


def test_model_refusal_is_an_abstention():
    config = AbstentionConfig()
    assert is_refusal(ABSTAIN_ANSWER)
    assert is_refusal("I don't know.")
    assert not is_refusal("Denver Broncos")
    decision = check_support("Sorry, the context does not contain the answer.", [CONTEXT], config)
    assert decision.abstain and "no answer" in decision.reason


def test_words_repeated_from_the_question_do_not_count_as_support():
    question = "Which NFL team represented the AFC at Super Bowl 50?"
    # Every word of this wrong answer is in the context, but its claim ("Patriots") is not.
    assert support_score("The Patriots represented the AFC at Super Bowl 50", [CONTEXT], question) == 0.0
    assert support_score("The Broncos represented the AFC at Super Bowl 50", [CONTEXT], question) == 1.0


def test_claim_words_fall_back_to_all_words_when_the_answer_only_restates():
    assert claim_words("Super Bowl 50", "What was Super Bowl 50?") == ["super", "bowl", "50"]


def test_answer_framing_is_not_a_claim():
    assert claim_words("The answer is: Denver Broncos", "Who won?") == ["denver", "broncos"]
    assert support_score("According to the context, the answer is Denver Broncos", [CONTEXT]) == 1.0


def test_question_names_skip_the_first_word_and_function_words():
    assert question_names("Which NFL team represented the AFC at Super Bowl 50?") == [
        "nfl",
        "afc",
        "super",
        "bowl",
        "50",
    ]
    assert question_names("Who wrote the novel Moby-Dick?") == ["moby", "dick"]
    assert question_names("what is a curriculum?") == []
    # In capitals, case tells nothing: every word would be a name the passages must hold.
    assert question_names("HOW MUCH IS A CENTAVO IN MEXICO IN 2009") == ["2009"]
    assert question_names("WHO WON SUPER BOWL 50?") == ["50"]


def test_coverage_gate_blocks_questions_about_unmentioned_names():
    config = AbstentionConfig(min_coverage=0.5)
    assert not check_coverage(
        "Which NFL team represented the AFC at Super Bowl 50?", [CONTEXT], config
    ).abstain
    decision = check_coverage("Who wrote the novel Moby-Dick?", [CONTEXT], config)
    assert decision.abstain and "moby, dick" in decision.reason
    assert coverage_score("what is a curriculum?", [CONTEXT]) == 1.0  # names nothing: nothing to check
    assert not check_coverage("Who wrote Moby-Dick?", [CONTEXT], AbstentionConfig(min_coverage=0.0)).abstain


def test_an_acronym_is_covered_by_its_spelled_out_name():
    config = AbstentionConfig(min_coverage=0.5)
    licence = "This is the GNU General Public License, version 3, of 29 June 2007."
    assert not check_coverage("When was the GPL published?", [licence], config).abstain
    court = "The Court of Justice of the European Union interprets EU law."
    assert coverage_score("What does the CJEU do?", [court]) == 1.0
    # Initials must come from capitalised words in a row: chance lower-case runs do not count.
    assert check_coverage("What does the GPL say?", ["good people like pies"], config).abstain
    assert check_coverage("What did the NFL say?", ["The National Basketball Association"], config).abstain
    # A capitalised word that is not an acronym still has to occur as written.
    assert check_coverage("Where does Gpl live?", [licence], config).abstain


def test_names_match_across_unicode_punctuation_and_demonyms():
    config = AbstentionConfig(min_coverage=1.0)
    # Documents write en dashes and curly apostrophes where questions type ASCII.
    assert not check_coverage(
        "When did the Packers go 13-0?", ["The Packers went 13–0 in 2011."], config
    ).abstain
    assert not check_coverage(
        "Where is Levi's Stadium?", ["Levi’s Stadium is in Santa Clara."], config
    ).abstain
    # A name that is a passage word plus a short suffix: demonyms, plurals, country and people.
    assert not check_coverage(
        "What do Nepalese schools teach?", ["Schools in Nepal teach English."], config
    ).abstain
    assert not check_coverage("What is the pay in Euros?", ["The pay is 2,000 euro a month."], config).abstain
    # Not the other way round: a longer passage word is another name.
    assert check_coverage("Who wrote Moby-Dick?", ["Charles Dickens wrote novels."], config).abstain
    assert check_coverage("Who was Mars?", ["The Marshal spoke."], config).abstain
