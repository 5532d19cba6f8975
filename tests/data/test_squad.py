"""SQuAD reader: the agreed article split on the real dev file, and error messages on broken files."""

from __future__ import annotations

import json
from importlib.resources import as_file, files
from pathlib import Path

import pytest

from slmkit.data.squad import SquadArticle, is_squad, load_squad, parse_squad, split_articles
from slmkit.errors import ConfigError, InputError

ASSETS = Path(__file__).parent.parent / "assets"


def _counts(articles: list[SquadArticle]) -> tuple[int, int, int]:
    paragraphs = [p for a in articles for p in a.paragraphs]
    return len(articles), len(paragraphs), sum(len(p.qas) for p in paragraphs)


@pytest.fixture(scope="module")
def dev_articles() -> list[SquadArticle]:
    with as_file(files("slmkit") / "assets" / "squad-v1.1-dev.json") as path:
        return load_squad(path)


def test_split_counts_on_real_dev_file(dev_articles: list[SquadArticle]) -> None:
    train = split_articles(dev_articles, "train")
    evaluation = split_articles(dev_articles, "eval")
    assert _counts(train) == (38, 1647, 8046)
    assert _counts(evaluation) == (10, 420, 2524)
    assert evaluation[0].title == "Super_Bowl_50"


def test_split_uses_article_index_not_list_position(dev_articles: list[SquadArticle]) -> None:
    filtered = dev_articles[3:]
    assert split_articles(filtered, "eval") == [
        a for a in split_articles(dev_articles, "eval") if a.index >= 3
    ]


def test_split_rejects_unknown_name(dev_articles: list[SquadArticle]) -> None:
    with pytest.raises(ConfigError, match="'test'"):
        split_articles(dev_articles, "test")  # type: ignore[arg-type]


def test_load_tiny_file_keeps_structure() -> None:
    articles = load_squad(ASSETS / "squad_tiny.json")
    assert [a.title for a in articles] == ["Super_Bowl_50", "Warsaw"]
    assert [a.index for a in articles] == [0, 1]
    paragraph = articles[0].paragraphs[1]
    assert paragraph.index == 1
    question = paragraph.qas[0]
    assert question.id == "q3"
    assert question.answers == ["Levi's Stadium", "Santa Clara, California"]
    assert question.answer_starts == [23, 41]


def test_is_squad_detects_shape() -> None:
    assert is_squad(json.loads((ASSETS / "squad_tiny.json").read_text(encoding="utf-8")))
    assert not is_squad([{"text": "a record"}])
    assert not is_squad({"data": []})
    assert not is_squad({"data": [{"text": "no paragraphs"}]})
    assert is_squad({"data": [{"paragraphs": []}]})  # a title is optional


def test_titles_fall_back_to_document_id_then_file_and_position() -> None:
    articles = load_squad(ASSETS / "squad_v2_tiny.json")
    assert [a.title for a in articles] == ["amazon-1", "squad_v2_tiny, article 2"]
    assert parse_squad({"data": [{"id": 7, "title": " ", "paragraphs": []}]}, "x.json")[0].title == "7"


def test_int_ids_and_squad_v2_fields() -> None:
    questions = [q for a in load_squad(ASSETS / "squad_v2_tiny.json") for p in a.paragraphs for q in p.qas]
    assert [(q.id, q.is_impossible, q.answers) for q in questions] == [
        ("101", False, ["about 390 billion"]),
        ("102", True, []),
        ("201", False, ["1,642 metres"]),
        ("202", True, []),
    ]
    assert questions[1].plausible_answers == ["A 2013 study"]
    # SQuAD v1.1 questions carry neither field: answerable, no distractors.
    tiny = load_squad(ASSETS / "squad_tiny.json")[0].paragraphs[0].qas[0]
    assert (tiny.is_impossible, tiny.plausible_answers) == (False, [])


def _squad_with(paragraph: object) -> dict[str, object]:
    good = {"context": "ok", "qas": []}
    return {"data": [{"title": "A", "paragraphs": [good]}, {"title": "B", "paragraphs": [good, paragraph]}]}


QA = "dev.json: data[1].paragraphs[1].qas[0]"


def _question(**fields: object) -> dict[str, object]:
    """A paragraph whose one question has ``fields`` over a valid unanswered question."""
    return {"context": "c", "qas": [{"id": 1, "question": "q?", "answers": [], **fields}]}


@pytest.mark.parametrize(
    ("paragraph", "expected"),
    [
        ({"qas": []}, "dev.json: data[1].paragraphs[1]: missing field 'context'"),
        (
            {"context": 3, "qas": []},
            "dev.json: data[1].paragraphs[1]: field 'context' should be a string, got a number",
        ),
        ("text", "dev.json: data[1].paragraphs[1]: expected an object, got a string"),
        (
            {"context": "c", "qas": [{"id": "x", "question": "q?", "answers": [{"text": "c"}]}]},
            "dev.json: data[1].paragraphs[1].qas[0].answers[0]: missing field 'answer_start'",
        ),
        (_question(id=1.5), f"{QA}: field 'id' should be a string or an integer, got a number"),
        (_question(id=True), f"{QA}: field 'id' should be a string or an integer, got a boolean"),
        (_question(is_impossible="yes"), f"{QA}: field 'is_impossible' should be a boolean, got a string"),
        (
            _question(is_impossible=True, answers=[{"text": "c", "answer_start": 0}]),
            f"{QA}: 'is_impossible' is true but 'answers' is not empty; an unanswerable question has "
            "\"answers\": [] (put distractors in 'plausible_answers')",
        ),
        (
            _question(is_impossible=True, plausible_answers=[{}]),
            f"{QA}.plausible_answers[0]: missing field 'text'",
        ),
    ],
)
def test_malformed_element_names_file_and_json_path(tmp_path: Path, paragraph: object, expected: str) -> None:
    path = tmp_path / "dev.json"
    path.write_text(json.dumps(_squad_with(paragraph)), encoding="utf-8")
    with pytest.raises(InputError) as err:
        load_squad(path)
    assert str(err.value) == str(path).replace("dev.json", "") + expected


def test_invalid_json_names_line_and_column(tmp_path: Path) -> None:
    path = tmp_path / "dev.json"
    path.write_text('{"data": [\n  {"title": "A",,}\n]}', encoding="utf-8")
    with pytest.raises(InputError, match=r"dev\.json:2:17: not valid JSON"):
        load_squad(path)


def test_missing_file_is_named(tmp_path: Path) -> None:
    with pytest.raises(InputError, match=r"nope\.json: SQuAD file not found"):
        load_squad(tmp_path / "nope.json")


def test_top_level_without_data_field(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="missing field 'data'"):
        parse_squad({"version": "1.1"}, "x.json")
