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


def _squad_with(paragraph: object) -> dict[str, object]:
    good = {"context": "ok", "qas": []}
    return {"data": [{"title": "A", "paragraphs": [good]}, {"title": "B", "paragraphs": [good, paragraph]}]}


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
