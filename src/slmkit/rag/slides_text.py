"""The text of a PowerPoint deck (``.pptx``), slide by slide, with python-pptx.

A slide's text is its shapes' in reading order (top to bottom, then left to right, as a reader's
eye goes; python-pptx gives them in z-order, which is the order they were drawn): text boxes and
placeholders a paragraph per line, tables a row per line with cells joined by ``" | "``, grouped
shapes opened up, and the speaker notes last, where presenters put what the bullets leave out.
The title placeholder's text is the slide's title, not part of its text. Pictures, charts and media
carry no text and are skipped.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from slmkit.errors import InputError
from slmkit.rag.archive import DAMAGED_ZIP, unreadable_office_file


@dataclass(frozen=True)
class Slide:
    """One slide: its 1-based ``number``, the title placeholder's text ("" if none) and the rest."""

    number: int
    title: str
    text: str


@dataclass(frozen=True)
class Deck:
    """A deck's core-properties title ("" if none) and its slides, in order."""

    title: str
    slides: list[Slide]


def read_deck(path: str | Path) -> Deck:
    """The title and slides of the ``.pptx`` file at ``path``.

    Raises:
        InputError: not a readable ``.pptx`` (a legacy ``.ppt`` renamed, truncated or damaged),
            naming the file.
    """
    from lxml import etree
    from pptx import Presentation
    from pptx.exc import PythonPptxError

    try:
        presentation = Presentation(str(path))
        return Deck(
            (presentation.core_properties.title or "").strip(),
            [_slide(number, slide) for number, slide in enumerate(presentation.slides, start=1)],
        )
    except OSError as err:
        raise InputError(f"{path}: cannot read file: {err.strerror or err}") from None
    # Parts are read lazily, so a damaged member can fail while the slides are walked, not only on
    # opening; to the user every such failure means the same thing.
    except (*DAMAGED_ZIP, PythonPptxError, etree.XMLSyntaxError, KeyError, ValueError) as err:
        raise unreadable_office_file(path, err, "PowerPoint", ".pptx") from None


def _slide(number: int, slide: Any) -> Slide:
    title_shape = slide.shapes.title
    title = _one_line(title_shape.text_frame.text) if title_shape is not None else ""
    lines = [
        line
        for shape in _reading_order(slide.shapes)
        if title_shape is None or shape.shape_id != title_shape.shape_id
        for line in _shape_lines(shape)
    ]
    if slide.has_notes_slide and (notes := slide.notes_slide.notes_text_frame) is not None:
        lines += _paragraphs(notes.text)
    return Slide(number, title, "\n".join(lines))


def _reading_order(shapes: Any) -> list[Any]:
    """Shapes top to bottom, then left to right; a shape without a position (an inherited
    placeholder) keeps its place among those that have none, at the top."""
    return sorted(shapes, key=lambda shape: (shape.top or 0, shape.left or 0))


def _shape_lines(shape: Any) -> Iterator[str]:
    if shape.shape_type is not None and shape.shape_type == _group_type():
        for inner in _reading_order(shape.shapes):
            yield from _shape_lines(inner)
    elif getattr(shape, "has_table", False) and shape.has_table:
        for row in shape.table.rows:
            cells = [_one_line(cell.text) for cell in row.cells]
            if any(cells):
                yield " | ".join(cells)
    elif getattr(shape, "has_text_frame", False) and shape.has_text_frame:
        yield from _paragraphs(shape.text_frame.text)


def _group_type() -> Any:
    from pptx.enum.shapes import MSO_SHAPE_TYPE

    return MSO_SHAPE_TYPE.GROUP


def _paragraphs(text: str) -> list[str]:
    # python-pptx joins a text frame's paragraphs with "\n" and a line break inside one with "\v".
    return [line for line in (_one_line(p) for p in text.split("\n")) if line]


def _one_line(text: str) -> str:
    return " ".join(text.replace("\v", " ").split())


__all__ = ["Deck", "Slide", "read_deck"]
