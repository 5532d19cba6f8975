"""PDF text: page cleaning, and pages cut into the sections the PDF's outline (bookmarks) names."""

from __future__ import annotations

import io
import logging
from pathlib import Path
from typing import Any

import pytest

from fakes import make_pdf
from slmkit.errors import InputError
from slmkit.rag import pdf_text
from slmkit.rag.ingest import read_pdf


def test_pages_lose_running_headers_and_footers_and_join_hyphenated_words() -> None:
    # A book's header changes with the chapter and carries the page number; a paper's alternates.
    topics = ["lexers", "tokens", "grammars", "trees", "errors", "tables", "states", "actions"]
    pages = [
        f"Chapter {1 + i // 4}: Parsing {i + 1}\nOn {topic}, the mod-\nels differ in {topic}.\n{i + 1}"
        for i, topic in enumerate(topics)
    ] + ["Chapter 3: Parsing 9\nThe closing page.\n}\n9"]
    cleaned = pdf_text.clean_pages(pages)
    assert cleaned[0] == "On lexers, the models differ in lexers."
    assert cleaned[8] == "The closing page.\n}"  # a line without a letter or digit is never a footer
    # A line that recurs below real text is content, and so is one on too few pages ("Intro": 2 of 3).
    middle = ["Intro\nSame sentence.\nOne", "Intro\nSame sentence.\nTwo", "Other\nSame sentence.\nThree"]
    assert pdf_text.clean_pages(middle) == middle


def test_contents_and_index_lines_go_wherever_they_are() -> None:
    page = "\n".join(
        [
            "Contents",
            "1 Parsing . . . . . . . . 2",
            "2.3 The glob files..........7",
            "Preface … … … … xi",
            "asn1_array2tree. . . . . . 9",
            "Version 1.2 of 3 July.",  # a dot or two is not a leader
            "See page 4.",
        ]
    )
    assert pdf_text.clean_pages([page]) == ["Contents\nVersion 1.2 of 3 July.\nSee page 4."]


HANDBOOK = [
    "Contents\n1 Parsing . . . . . 2\n1.1 Lexers . . . . 2\n2 Trees . . . . . 3",
    "1 Parsing\n1.1 Lexers\nA lexer cuts text into tokens.\n1.2 Tokens\nTokens carry a kind.",
    "Chapter 1: Parsing 3\nMore on tokens here.\n2 Trees\nA parser builds trees.",
    "Appendix A\nLicence\nUse it freely.",
]


def _with_outline(pages: list[str], title: str, items: list[tuple[str, int, int | None]]) -> bytes:
    """``make_pdf(pages)`` with metadata ``title`` and outline ``items``: (title, page index, index of
    the parent item or None)."""
    from pypdf import PdfReader, PdfWriter

    writer = PdfWriter(clone_from=PdfReader(io.BytesIO(make_pdf(pages))))
    writer.add_metadata({"/Title": title})
    added: list[Any] = []
    for name, page, parent in items:
        added.append(writer.add_outline_item(name, page, parent=None if parent is None else added[parent]))
    buffer = io.BytesIO()
    writer.write(buffer)
    return buffer.getvalue()


def test_a_pdf_with_an_outline_gives_one_document_per_section_titled_by_its_bookmarks(tmp_path: Path) -> None:
    outline = [
        ("Handbook", 0, None),  # a root entry repeating the document's title adds nothing to a title
        ("1 Parsing", 1, 0),
        ("Lexers", 1, 1),
        ("Tokens", 1, 1),
        ("Trees", 2, 0),  # found after its section number: "2 Trees"
        ("Licence", 3, 0),  # found wrapped after "Appendix A" on the line before
    ]
    path = tmp_path / "handbook.pdf"
    path.write_bytes(_with_outline(HANDBOOK, "Handbook", outline))
    documents = [(d.title, d.position, d.text) for d in read_pdf(path)]
    assert documents == [
        ("Handbook", 1, "Contents"),  # the contents lines go; "1 Parsing" heads no text of its own
        ("Handbook › 1 Parsing › Lexers", 2, "1.1 Lexers\nA lexer cuts text into tokens."),
        ("Handbook › 1 Parsing › Tokens", 2, "1.2 Tokens\nTokens carry a kind."),
        # The running header naming the chapter beside the page number goes; the section goes on.
        ("Handbook › 1 Parsing › Tokens", 3, "More on tokens here."),
        ("Handbook › Trees", 3, "2 Trees\nA parser builds trees."),
        ("Handbook › Licence", 4, "Appendix A\nLicence\nUse it freely."),
    ]


def test_a_section_whose_heading_is_not_in_the_text_starts_at_the_top_of_its_page() -> None:
    texts = ["Intro text.", "Text of a page\nwhose heading is drawn as an image.", "Closing words."]
    pieces = pdf_text.sections(texts, [(1, ["Figures"]), (2, ["Figures", "Last words"])], "Book")
    assert [(p.page, p.heading, p.text) for p in pieces] == [
        (1, "", "Intro text."),
        (2, "Figures", "Text of a page\nwhose heading is drawn as an image."),
        (3, "Figures › Last words", "Closing words."),
    ]


def test_a_heading_is_found_only_as_a_line_of_its_own() -> None:
    # "Tokens" inside a sentence, or after words that are not a section number, heads nothing.
    texts = ["All about Tokens\nTokens are short.\n3.2 Tokens\nA token has a kind."]
    pieces = pdf_text.sections(texts, [(0, ["Tokens"])])
    assert [(p.heading, p.text) for p in pieces] == [
        ("", "All about Tokens\nTokens are short."),
        ("Tokens", "3.2 Tokens\nA token has a kind."),
    ]


class _Entry:
    def __init__(self, title: str, page: int | None) -> None:
        self.title, self.page = title, page


class _Reader:
    """What :func:`pdf_text.outline` reads of a ``PdfReader``."""

    def __init__(self, items: list[Any], pages: int = 3) -> None:
        self.items, self.pages = items, [None] * pages

    @property
    def outline(self) -> list[Any]:
        if isinstance(self.items, Exception):
            raise self.items
        return self.items

    def get_destination_page_number(self, entry: _Entry) -> int | None:
        return entry.page


def test_outline_keeps_reading_order_and_leaves_out_entries_that_point_at_no_page() -> None:
    reader = _Reader(
        [
            _Entry("One", 0),
            [_Entry("One.A", 2), _Entry("Elsewhere", None), _Entry("Far", 7)],
            _Entry("Two", 1),
        ]
    )
    assert pdf_text.outline(reader) == [(0, ["One"]), (1, ["Two"]), (2, ["One", "One.A"])]


def test_an_unreadable_outline_costs_the_titles_not_the_text(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING):
        assert pdf_text.outline(_Reader(KeyError("/Dests"))) == []  # type: ignore[arg-type]
    assert "outline unreadable" in caplog.text


def test_a_pdf_whose_page_tree_cannot_be_found_is_an_input_error(tmp_path: Path) -> None:
    # Found by fuzzing: pypdf reads lazily, and a PDF without its catalog failed only when its pages
    # were counted, with pypdf's own PdfReadError (a traceback) instead of an InputError.
    data = make_pdf(["Hello there."]).replace(b"/Root 1 0 R", b"/Rooo 1 0 R").replace(b"/Catalog", b"/Catalo")
    path = tmp_path / "rootless.pdf"
    path.write_bytes(data)
    with pytest.raises(InputError, match=r"rootless\.pdf: not a readable PDF \(Cannot find Root object"):
        list(read_pdf(path))
