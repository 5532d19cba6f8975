"""The reader slmkit ships: it loads offline by name, reads, abstains, and its card tells the truth.

The end-to-end tests run it as users get it: the default model on the default engine (llama.cpp
where installed), merged and exported once into the cache.
"""

from __future__ import annotations

import json

import pytest

from slmkit.data.squad import bundled_squad, load_squad, split_articles
from slmkit.models.model_card import benchmark_record, render_reader_card
from slmkit.models.registry import DEFAULT_MODEL, PACKAGED_MODELS

READER = "slmkit-reader-270m"
# Eval-article questions (never trained on) with one-span answers.
QUESTIONS = {
    "Which NFL team represented the AFC at Super Bowl 50?": "Denver Broncos",
    "Who did Peyton Manning play for as a rookie?": "Indianapolis Colts",
    "What hotel did the Panthers stay in during Super Bowl 50?": "San Jose Marriott",
    "What is the Irish term for private schools?": "scoil phríobháideach",
    "What year did the Khwarezmian Empire fall to Genghis Khan?": "1220",
    # Numbers that start after a lone space token (grounded decoding once masked it: "following the").
    "When did the UK formally subscribe to the Agreement on Social Policy?": "1997",
    "When did the Methodist Protestant Church split from the Methodist Episcopal Church?": "1830",
    "What is the oldest Methodist church in continuous use in the United States?": (
        "St. George's United Methodist Church"
    ),
}


def _eval_items(questions):
    """(question, article title, paragraph) of each question, looked up in the bundled eval split."""
    found = {}
    for article in split_articles(load_squad(bundled_squad()), "eval"):
        for paragraph in article.paragraphs:
            for qa in paragraph.qas:
                if qa.question.strip() in questions:
                    found[qa.question.strip()] = (article.display_title, paragraph.context)
    return found


def test_the_reader_is_the_default_and_ships_in_the_package():
    assert DEFAULT_MODEL == READER
    folder = PACKAGED_MODELS[READER].locate(None)
    assert (folder / "adapter_config.json").is_file()
    assert (folder / "adapter_model.safetensors").stat().st_size < 25 * 2**20  # the repository budget


def test_the_model_card_is_rendered_from_the_files_beside_the_weights():
    folder = PACKAGED_MODELS[READER].locate(None)
    assert (folder / "README.md").read_text(encoding="utf-8") == render_reader_card(folder, READER)
    scores = json.loads((folder / "scores.json").read_text(encoding="utf-8"))
    card = render_reader_card(folder, READER)
    for model, result in scores.get("benchmark", {}).get("results", {}).items():
        assert f"| {model} | {result['gold']['em']:.1f} / {result['gold']['f1']:.1f}" in card


def test_a_benchmark_record_is_the_last_json_line_of_its_saved_output(tmp_path):
    saved = tmp_path / "bench.json"
    saved.write_text('{"step": 1}\n\n{"benchmark": "reader_squad", "ratio": 1.2}\n', encoding="utf-8")
    assert benchmark_record(saved) == {"benchmark": "reader_squad", "ratio": 1.2}
    (tmp_path / "empty.json").write_text("\n", encoding="utf-8")
    with pytest.raises(ValueError, match="no JSON line"):
        benchmark_record(tmp_path / "empty.json")


@pytest.mark.slow
def test_the_shipped_reader_answers_eval_questions_with_the_gold_span():
    from slmkit.rag.answer import Answerer, passage_hit, strip_markers

    answerer = Answerer.load()  # the default model on the default engine, offline
    assert answerer.per_passage and answerer.grounded
    items = _eval_items(QUESTIONS)
    assert len(items) == len(QUESTIONS)
    right = 0
    for question, (title, paragraph) in items.items():
        answer = answerer.answer_from(question, [passage_hit(title, paragraph)])
        right += not answer.abstained and strip_markers(answer.text) == QUESTIONS[question]
        if not answer.abstained:  # grounded decoding: always a verbatim span of the passage
            assert strip_markers(answer.text) in paragraph
    assert right >= len(QUESTIONS) - 1


@pytest.mark.slow
def test_the_shipped_reader_abstains_on_questions_about_an_article_the_kb_lacks(squad_kb):
    from slmkit.rag.answer import Answerer
    from slmkit.rag.retrieval import Retriever

    answerer = Answerer.load()
    answerer.retriever = Retriever(squad_kb, answerer.config.retrieval)  # 3 eval articles, not Prime number
    absent = [
        qa.question
        for article in split_articles(load_squad(bundled_squad()), "eval")
        if article.title == "Prime_number"
        for paragraph in article.paragraphs[:4]
        for qa in paragraph.qas[:1]
    ]
    refused = sum(answerer.ask(question).abstained for question in absent)
    assert refused >= len(absent) - 1
    answered = answerer.ask("Which NFL team represented the AFC at Super Bowl 50?")
    assert not answered.abstained and answered.text.startswith("Denver Broncos")


def test_the_card_says_when_calibration_kept_the_defaults():
    from slmkit.models.model_card import _calibration_outcome

    row = {"max_no_answer": 0.6, "min_relevance": -1.0, "min_coverage": 0.0, "answerable_f1": 64.0}
    defaults = {"max_no_answer": 0.7, "min_relevance": 0.3, "min_coverage": 0.5, "answerable_f1": 62.1}
    kept = _calibration_outcome(
        {
            "chosen": row,
            "current_defaults": defaults,
            "chosen_f1_gain_ci95": [0.0, 4.6],
            "recommended": "current defaults",
        }
    )
    assert kept.startswith("Kept: the defaults, max_no_answer 0.7") and "[0.0, 4.6]" in kept
    assert _calibration_outcome({"chosen": row, "recommended": "chosen"}).startswith(
        "Chosen: max_no_answer 0.6"
    )
    assert _calibration_outcome({"chosen": row}).startswith("Chosen:")  # written before the rule existed
