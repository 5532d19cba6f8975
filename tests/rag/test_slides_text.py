"""PowerPoint decks: a document per slide, its shapes in reading order, its notes last."""

from __future__ import annotations

import logging

import pytest

from fakes import make_pptx, set_zip_header_field
from slmkit.errors import InputError
from slmkit.rag.ingest import read_pptx, read_sources


def test_a_deck_is_a_document_per_slide_in_reading_order_with_its_notes(tmp_path):
    documents = list(read_sources([make_pptx(tmp_path / "reef.pptx")]))
    assert [(d.title, d.position, d.text) for d in documents] == [
        ("Reef survey 2026 › Reef survey", 1, "Findings of the spring dive"),
        (
            "Reef survey 2026 › Coral cover",
            2,
            "Cover fell to 12 %\nBleaching in shallow water\nThe drop follows the 2025 heat wave.",
        ),
        (
            "Reef survey 2026 › Sites",
            3,
            "Above the table\nSite | Depth\nNorth | 8 m\nBelow the table\nGrouped left\nGrouped right",
        ),
    ]  # slide 4 has a title and nothing else: a section divider, skipped


def test_a_deck_without_a_title_is_titled_by_its_file(tmp_path):
    documents = list(read_pptx(make_pptx(tmp_path / "dive-notes.pptx", title=None)))
    assert documents[0].title == "dive-notes › Reef survey"


def test_a_deck_with_no_text_is_skipped_with_a_warning(tmp_path, caplog):
    from pptx import Presentation

    deck = Presentation()
    deck.slides.add_slide(deck.slide_layouts[6])  # blank
    deck.save(str(tmp_path / "blank.pptx"))
    with caplog.at_level(logging.WARNING):
        assert list(read_pptx(tmp_path / "blank.pptx")) == []
    assert "blank.pptx: no text on any of its 1 slide(s), skipped" in caplog.text


@pytest.mark.parametrize(
    "damage",
    [
        lambda data: b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1" + data[:64],  # a legacy .ppt renamed
        lambda data: data[: len(data) // 2],  # a download cut short
        lambda data: set_zip_header_field(data, "ppt/presentation.xml", 10, 99),  # AES compression
    ],
    ids=["legacy-ppt", "truncated", "compression-method"],
)
def test_an_unreadable_deck_is_an_error_naming_the_file(tmp_path, damage):
    path = tmp_path / "talk.pptx"
    path.write_bytes(damage(make_pptx(tmp_path / "good.pptx").read_bytes()))
    with pytest.raises(InputError, match=r"talk\.pptx: not a readable PowerPoint \.pptx file .*as \.pptx"):
        list(read_pptx(path))
