"""The text of a PDF, page by page, cut into the sections its outline (bookmarks) names.

A PDF has no headings in its text layer, only lines in bigger type; but most long PDFs (manuals,
reports, theses, specifications: anything typeset by LaTeX, Word, Texinfo or DocBook) carry an
outline, the table of contents a viewer shows in its sidebar, whose entries point at pages. The
sections it names title the passages, as headings do for Markdown, HTML and Word files, so a
citation says "libtasn1 › 3 Utilities › Invoking asn1Decoding, page 10" rather than "libtasn1,
page 10", and a question that names a section finds it.

Each entry points at a page, not a line, so a section's first line is found in that page's text:
the line (or two, for a wrapped heading) that reads as the entry's title, a section number such as
"3.3" or "Chapter 2" aside. An entry whose title is not found starts its section at the top of its
page, or after the last heading found there.
"""

from __future__ import annotations

import logging
import re
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from slmkit.errors import InputError

logger = logging.getLogger(__name__)

# A word broken across lines by justified typesetting: "mod-\nels". Only between lowercase letters,
# where it is almost always hyphenation; a compound broken at its hyphen ("well-\nknown") loses it.
_HYPHENATED = re.compile(r"(?<=[a-z])-\n(?=[a-z])")
_DIGITS = re.compile(r"\d+")
_RUNNING_LINES = 2  # lines at each end of a page where running headers, footers and page numbers sit
# A table-of-contents or index line: words, a leader of dots (or ellipses, middle dots, rules), a
# page number: "2.3 The glob files . . . . . . 7", "asn1_array2tree........ 9", "Preface ..... xi".
# It points elsewhere and answers nothing; left in, a contents page matches every question that
# names a section, ahead of the section itself.
_LEADER_LINE = re.compile(r"^.*?\S\s*(?:[.·…_]\s*){4,}(?:\d+|[ivxlcdm]+)\s*$", re.IGNORECASE)
_NOT_WORD = re.compile(r"[\W_]+")
# What may stand before a heading's title on its line, once folded: "3.3", "A", "IV", "Chapter 2",
# "Appendix B", "Part II".
_NUMBERING = re.compile(r"(?:chapter|appendix|section|part)?(?:\d+|[a-z]|[ivxlc]+)?\d*")
# A line with a page number at one end: "Chapter 2: Parsing 14", "15 Chapter 2: Parsing".
_PAGE_NUMBERED = re.compile(r"(?P<before>\d+\s+)?(?P<text>.*?\S)(?P<after>\s+\d+)?")
_TITLE_DEPTH = 2  # outline levels kept in a title: "3 Utilities › Invoking asn1Decoding"


@dataclass(frozen=True)
class PdfSection:
    """A piece of one page: the text of the section ``heading`` (outline titles joined by " › ";
    "" before the outline's first entry) that lies on page ``page`` (1-based)."""

    page: int
    heading: str
    text: str


def open_pdf(path: str | Path) -> Any:
    """A ``pypdf.PdfReader``, decrypted when it opens with the empty password.

    Raises:
        InputError: the file cannot be read, is not a readable PDF, or needs a password.
    """
    from pypdf import PdfReader
    from pypdf.errors import PyPdfError

    # pypdf reports damaged files with its own errors but also with plain ValueError/KeyError/...
    # from deep inside its parser; to the user they all mean the same thing. It reads lazily, so the
    # page tree (where a damaged file often fails: "Cannot find Root object") is counted here too.
    damaged = (PyPdfError, ValueError, KeyError, TypeError, AttributeError, IndexError, RecursionError)
    try:
        reader = PdfReader(path)
        encrypted = reader.is_encrypted
    except OSError as err:
        raise InputError(f"{path}: cannot read file: {err.strerror or err}") from None
    except damaged as err:
        raise InputError(f"{path}: not a readable PDF ({err}). Check that the file is complete.") from None
    if encrypted and not _decrypt_without_password(reader):
        raise InputError(
            f"{path}: PDF is encrypted with a password. Save an unencrypted copy "
            "(e.g. `qpdf --decrypt --password=... in.pdf out.pdf`) and pass that instead."
        )
    try:
        len(reader.pages)
    except damaged as err:
        raise InputError(f"{path}: not a readable PDF ({err}). Check that the file is complete.") from None
    return reader


def pdf_title(reader: Any) -> str:
    """The title in the PDF's metadata, or ""."""
    try:
        title = reader.metadata.title if reader.metadata else None
    except Exception:  # a broken Info dictionary should cost the title, not the document
        return ""
    return str(title).strip() if title else ""


def page_texts(reader: Any, path: str | Path) -> list[str]:
    """Every page's text ("" where there is none), cleaned by :func:`clean_pages`."""
    return clean_pages([_page_text(reader, number, path) for number in range(1, len(reader.pages) + 1)])


def clean_pages(pages: list[str]) -> list[str]:
    """PDF page texts without running headers and footers or contents lines, hyphenated words joined.

    A line among the first or last two of a page that recurs, digits aside, on at least 3 pages and
    15 % of them is a running header or footer ("Chapter 2: Parsing 14", "Page 3 of 20", a journal's
    name; a book's header changes with the chapter, a paper's alternates between two): on every page
    it would be a passage's first words, for retrieval to match and the reader to quote. Page
    numbers alone are such lines too; a line without a letter or digit ("}") is never one. Lines of
    a table of contents or an index (a dot leader, then a page number) go wherever they are.
    """
    split = [page.split("\n") for page in pages]
    ends = [
        {_running_key(line) for line in lines[:_RUNNING_LINES] + lines[-_RUNNING_LINES:]} for lines in split
    ]
    counts = Counter(key for keys in ends for key in keys if key)
    running = {
        key
        for key, n in counts.items()
        if n >= max(3, 0.15 * len(pages)) and any(c.isalnum() or c == "#" for c in key)
    }
    cleaned = []
    for lines in split:
        # Only a run from the page's edge: a recurring line below real text is text.
        start, end = 0, len(lines)
        while start < min(_RUNNING_LINES, end) and _running_key(lines[start]) in running:
            start += 1
        while end > max(start, len(lines) - _RUNNING_LINES) and _running_key(lines[end - 1]) in running:
            end -= 1
        kept = [line for line in lines[start:end] if not _LEADER_LINE.match(line)]
        cleaned.append(_HYPHENATED.sub("", "\n".join(kept)))
    return cleaned


def outline(reader: Any) -> list[tuple[int, list[str]]]:
    """The outline's entries in reading order, as ``(page index, titles from the top level down)``.

    Entries that point at no page of this file (a link to another file, a broken destination) are
    left out; so is the whole outline, with a warning, when pypdf cannot read it.
    """
    entries: list[tuple[int, list[str]]] = []

    def walk(items: list[Any], parents: list[str]) -> None:
        last = parents
        for item in items:
            if isinstance(item, list):  # the children of the entry before it
                walk(item, last)
                continue
            title = " ".join(str(item.title or "").split())
            last = [*parents, title]
            page = reader.get_destination_page_number(item)
            if title and page is not None and 0 <= page < len(reader.pages):
                entries.append((page, last))

    try:
        walk(reader.outline, [])
    except Exception as err:  # a damaged outline costs the section titles, never the text
        logger.warning("outline unreadable (%s): pages are titled by the document alone", err)
        return []
    # Stable: entries on one page keep the outline's order, the order their headings are read in.
    return sorted(entries, key=lambda entry: entry[0])


def sections(texts: list[str], entries: list[tuple[int, list[str]]], title: str = "") -> list[PdfSection]:
    """Cut cleaned page texts at the headings of outline ``entries`` (see :func:`outline`).

    Headings are titled by their last :data:`_TITLE_DEPTH` outline levels, without a level that
    repeats the document's ``title`` (many PDFs wrap their whole outline in one entry named so).
    A heading with no text under it before the next one ("2 Parsing" then "2.1 Lexers") gives no
    piece, nor does a page-edge line that is a section's title beside a page number: the running
    header of books that name the chapter at the top of each page ("Chapter 2: Parsing 14"), too
    rare per chapter for :func:`clean_pages` to see it recur.
    """
    by_page: dict[int, list[list[str]]] = {}
    for page, titles in entries:
        by_page.setdefault(page, []).append(titles)
    known = {_fold(titles[-1]) for _, titles in entries} - {""}
    heading = ""
    pieces = []
    for index, text in enumerate(texts):
        lines = _without_running_titles(text.split("\n"), known)
        cuts = [(0, 0, heading)]  # (first line, heading lines, heading)
        cursor = 0
        for titles in by_page.get(index, []):
            found = _heading_line(lines, cursor, titles[-1])
            start, height = (cursor, 0) if found is None else found
            heading = _heading(titles, title)
            if cuts[-1][0] == start and cuts[-1][1] == 0:
                cuts[-1] = (start, height, heading)  # nothing of the earlier section on this page
            else:
                cuts.append((start, height, heading))
            cursor = start + height
        bounds = [start for start, _, _ in cuts[1:]] + [len(lines)]
        for (start, height, name), end in zip(cuts, bounds, strict=True):
            if "\n".join(lines[start + height : end]).strip():
                pieces.append(
                    PdfSection(page=index + 1, heading=name, text="\n".join(lines[start:end]).strip())
                )
    return pieces


def _heading(titles: list[str], document_title: str) -> str:
    kept = [name for name in titles if name.casefold() != document_title.casefold()]
    return " › ".join(kept[-_TITLE_DEPTH:])


def _heading_line(lines: list[str], start: int, title: str) -> tuple[int, int] | None:
    """``(index, 1 or 2)``: the first line from ``start`` that reads as ``title``, maybe after a
    section number, alone or wrapped onto the next line; None if there is none."""
    wanted = _fold(title)
    if not wanted:
        return None
    for index in range(start, len(lines)):
        for height in (1, 2):
            if index + height <= len(lines) and _reads_as(
                _fold(" ".join(lines[index : index + height])), wanted
            ):
                return index, height
    return None


def _reads_as(folded: str, title: str) -> bool:
    """Whether a folded line is a folded ``title``, maybe after a section number."""
    return folded.endswith(title) and _NUMBERING.fullmatch(folded[: len(folded) - len(title)]) is not None


def _without_running_titles(lines: list[str], titles: set[str]) -> list[str]:
    """``lines`` without the page-edge lines that are an outline title beside a page number."""
    edges = set(range(min(_RUNNING_LINES, len(lines)))) | set(
        range(max(0, len(lines) - _RUNNING_LINES), len(lines))
    )

    def running(line: str) -> bool:
        numbered = _PAGE_NUMBERED.fullmatch(line.strip())
        if not numbered or bool(numbered["before"]) == bool(numbered["after"]):
            return False
        # "2 Trees" is section 2's heading, not page 2's header: a line that reads as a title
        # whole is a heading.
        folded, whole = _fold(numbered["text"]), _fold(line)
        return any(_reads_as(folded, title) and not _reads_as(whole, title) for title in titles)

    return [line for number, line in enumerate(lines) if number not in edges or not running(line)]


def _fold(text: str) -> str:
    """Letters and digits only, case folded: how a title and the line it heads are compared (an
    extracted line may differ from its bookmark in spacing, punctuation or case)."""
    return _NOT_WORD.sub("", text.casefold())


def _running_key(line: str) -> str:
    """A page-edge line as running headers repeat it: digits (page numbers) aside."""
    return _DIGITS.sub("#", line.strip())


def _page_text(reader: Any, number: int, path: str | Path) -> str:
    try:
        return reader.pages[number - 1].extract_text() or ""
    except Exception as err:  # pypdf raises many types on a damaged page; keep the readable pages
        logger.warning("%s: page %d: text could not be extracted (%s), skipped", path, number, err)
        return ""


def _decrypt_without_password(reader: Any) -> bool:
    """Many 'encrypted' PDFs only restrict printing and open with the empty password."""
    from pypdf.errors import PyPdfError

    try:
        return bool(reader.decrypt(""))
    except (PyPdfError, NotImplementedError, ValueError):
        return False
