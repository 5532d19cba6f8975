"""Read knowledge-base sources (files, folders, Hugging Face datasets) into :class:`Document` records.

Supported: ``.txt`` (and reStructuredText, AsciiDoc, Org, and files named as text: README, LICENSE),
``.md``/``.markdown`` (and MDX, Quarto, R Markdown), ``.html``/``.htm``/``.xhtml``, ``.docx`` and
``.epub`` (one document per section), ``.pptx`` (one per slide), ``.json`` (SQuAD, or a list of
records), ``.jsonl`` (one record per line), ``.csv``/``.tsv`` (one record per row), ``.pdf`` (one
document per page, or per outline section on it) and
``hf://NAME?config=C&split=S&text_field=F&title_field=T`` addresses. Folders are read recursively in
sorted order. Every problem with the input is an :class:`InputError` naming the file and the line,
record or field at fault; empty pieces are skipped with a warning.
"""

from __future__ import annotations

import codecs
import csv
import io
import logging
import os
import re
from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import yaml

from slmkit.config import IngestConfig
from slmkit.data.jsonfile import parse_json
from slmkit.data.squad import SquadArticle, is_squad, parse_squad
from slmkit.errors import InputError
from slmkit.rag import pdf_text
from slmkit.rag.archive import DAMAGED_ZIP, unreadable_office_file
from slmkit.rag.documents import Document
from slmkit.rag.epub_text import read_book
from slmkit.rag.html_text import html_main_text
from slmkit.rag.line_wrap import unwrap_lines
from slmkit.rag.markdown_text import markdown_sections
from slmkit.rag.slides_text import read_deck

logger = logging.getLogger(__name__)

# Plain text, and markup that reads well as plain text (reStructuredText, AsciiDoc, Org).
_TEXT_SUFFIXES = (".txt", ".text", ".rst", ".adoc", ".asciidoc", ".org")
# Markdown and its dialects: MDX (Docusaurus, Next.js docs), Quarto and R Markdown.
_MARKDOWN_SUFFIXES = (".md", ".markdown", ".mdown", ".mkd", ".mdx", ".qmd", ".rmd")
SUPPORTED_SUFFIXES = (
    *_TEXT_SUFFIXES,
    *_MARKDOWN_SUFFIXES,
    ".html",
    ".htm",
    ".xhtml",
    ".docx",
    ".pptx",
    ".epub",
    ".json",
    ".jsonl",
    ".csv",
    ".tsv",
    ".pdf",
)
HF_PREFIX = "hf://"

# Byte-order marks, UTF-32's first: its little-endian mark starts with UTF-16's.
_BOMS = (
    (codecs.BOM_UTF32_LE, "utf-32-le"),
    (codecs.BOM_UTF32_BE, "utf-32-be"),
    (codecs.BOM_UTF8, "utf-8"),
    (codecs.BOM_UTF16_LE, "utf-16-le"),
    (codecs.BOM_UTF16_BE, "utf-16-be"),
)
_SNIFF_BYTES = 8192  # where a NUL byte marks a file as binary (as git and grep look)

# Characters that look like text but break words for the embedder's tokenizer, BM25 and the
# reader's support check: the ligatures of typeset PDFs ("deﬁnition": LaTeX papers, most reports),
# and the invisible soft hyphens, zero-width spaces and word joiners of web pages. No-break spaces
# become spaces.
_CHARACTERS = str.maketrans(
    {
        "\ufb00": "ff",
        "\ufb01": "fi",
        "\ufb02": "fl",
        "\ufb03": "ffi",
        "\ufb04": "ffl",
        "\ufb05": "st",
        "\ufb06": "st",
        "\u00ad": None,
        "\u200b": None,
        "\u2060": None,
        "\ufeff": None,
        "\u00a0": " ",
        "\u202f": " ",
    }
)

_HF_QUERY_KEYS = ("config", "split", "text_field", "title_field")
_TRUTHY = {"1", "true", "yes", "on"}
# YAML front matter (Jekyll, Hugo, Docusaurus, Obsidian): "---" lines around it, the last may be "...".
_FRONT_MATTER = re.compile(r"\A---[ \t]*\n(.*?\n)?(?:---|\.\.\.)[ \t]*(?:\n|\Z)", re.DOTALL)
# Word's built-in styles that start a section, the counterparts of Markdown's # and ##.
_DOCX_SECTION_STYLES = {"Title", "Heading 1", "Heading 2"}


def read_sources(sources: Sequence[str | Path], config: IngestConfig | None = None) -> Iterator[Document]:
    """Yield the documents of every source, in the order given.

    Args:
        sources: File paths, folder paths (read recursively, supported files only, sorted) or
            ``hf://`` dataset addresses. Each document's ``source`` is the path as given (for files
            found in a folder: the folder as given joined with the file's relative path).
        config: Field names for JSON/JSONL/HF records; defaults to :class:`IngestConfig`.

    Typeset ligatures ("ﬁ") are spelled out, invisible soft hyphens and zero-width spaces dropped and
    no-break spaces made spaces, in every document's text and title.

    Raises:
        InputError: a path is missing, a file is unsupported or malformed (see the reader functions),
            or all sources together hold no text. Raised while iterating, since documents are streamed.
    """
    config = config or IngestConfig()
    for source in sources:
        _check_exists(source)
    found = False
    for source in sources:
        for document in read_source(source, config):
            text = document.text.translate(_CHARACTERS)
            if text.strip():
                found = True
                yield replace(document, text=text, title=document.title.translate(_CHARACTERS))
    if not found:
        names = ", ".join(str(s) for s in sources) or "(no sources given)"
        raise InputError(f"no text found in: {names}. Every file was empty or whitespace only.")


def read_source(source: str | Path, config: IngestConfig | None = None) -> Iterator[Document]:
    """Documents of one source: a file, a folder or an ``hf://`` address (see :func:`read_sources`)."""
    config = config or IngestConfig()
    if isinstance(source, str) and source.startswith(HF_PREFIX):
        yield from read_hf_dataset(source, config)
        return
    _check_exists(source)
    if Path(source).is_dir():
        for path in _folder_files(Path(source)):
            yield from read_file(path, config)
    else:
        yield from read_file(source, config)


def read_file(path: str | Path, config: IngestConfig | None = None) -> Iterator[Document]:
    """Documents of one file, chosen by its extension. A file named as text has none (README,
    LICENSE, Apache-2.0) or a capitalised name's (README.Debian): it is read as plain text; so is a
    file of another type that holds text (notes.log, with a warning).

    Raises:
        InputError: the file is binary and of a type not supported (the message lists those that are).
    """
    config = config or IngestConfig()
    suffix = Path(path).suffix.lower()
    if suffix in _TEXT_SUFFIXES or _named_as_text(path):
        return read_txt(path)
    if suffix in _MARKDOWN_SUFFIXES:
        return read_markdown(path)
    if suffix in (".html", ".htm", ".xhtml"):
        return read_html(path)
    if suffix == ".epub":
        return read_epub(path)
    if suffix == ".docx":
        return read_docx(path)
    if suffix == ".pptx":
        return read_pptx(path)
    if suffix == ".json":
        return read_json(path, config)
    if suffix == ".jsonl":
        return read_jsonl(path, config)
    if suffix in (".csv", ".tsv"):
        return read_csv(path, config)
    if suffix == ".pdf":
        return read_pdf(path)
    if _looks_like_text(Path(path)):
        # Named on its own (in a folder only supported files are read): the user wants it read.
        logger.warning("%s: file type '%s' read as plain text", path, suffix)
        return read_txt(path)
    raise InputError(
        f"{path}: unsupported file type '{suffix or '(no extension)'}' (binary data). Supported: "
        f"{', '.join(SUPPORTED_SUFFIXES)}, plain text of any name (README, LICENSE, notes.log), or "
        f"{HF_PREFIX}NAME for a Hugging Face dataset. "
        "Convert the file to one of these (e.g. plain text) and pass it again."
    )


def read_txt(path: str | Path) -> Iterator[Document]:
    """The whole file as one document titled by the file stem, or by the whole name if it has no
    extension ("Apache-2.0", not "Apache-2"); skipped with a warning if empty."""
    title = Path(path).name if _named_as_text(path) else Path(path).stem
    document = _document(unwrap_lines(_read_text(path)), str(path), title, 0, {}, str(path))
    if document:
        yield document


def read_markdown(path: str | Path) -> Iterator[Document]:
    """One document per level-1/level-2 section, titled ``"<title> › <heading>"``.

    Headings are CommonMark's (markdown-it-py): ``#``/``##`` lines and underlined (setext) ones;
    a ``#`` line inside a code block (fenced or indented) or an HTML block is not a heading. Text
    before the first heading is section 0, titled by the title alone; headings are numbered from 1
    in order, and that number is the document's ``position``. The heading line itself is not part
    of the text (it is the title). The title is the YAML front matter's ``title`` (the front matter
    itself is not text), else the file stem. The text is the rendered one, without markup: link
    text without its address, no images, HTML tags or emphasis marks (:mod:`slmkit.rag.markdown_text`).
    """
    title, text = _front_matter(_read_text(path), path)
    if Path(path).suffix.lower() == ".mdx":
        text = _without_mdx_modules(text)
    yield from _section_documents(path, title or Path(path).stem, markdown_sections(text))


def _without_mdx_modules(text: str) -> str:
    """MDX without its ``import``/``export`` statements (outside code blocks), which are code, not
    text; its JSX components read as the HTML blocks they look like (their text, not their tags)."""
    kept, fence = [], ""
    for line in text.split("\n"):
        stripped = line.lstrip()
        if fence:
            fence = "" if stripped.startswith(fence) else fence
        elif stripped.startswith(("```", "~~~")):
            fence = stripped[:3]
        elif line.startswith(("import ", "export ")):
            continue
        kept.append(line)
    return "\n".join(kept)


def read_html(path: str | Path) -> Iterator[Document]:
    """The page's main text, one document per ``<h1>``/``<h2>`` section, titled ``"<title> › <heading>"``.

    Navigation, site headers and footers, sidebars, forms and scripts are left out (see
    :mod:`slmkit.rag.html_text`). Sections are numbered as in :func:`read_markdown`; the page's
    ``<title>`` (else the file stem) stands where Markdown has the stem.

    Raises:
        InputError: the file holds binary data (NUL bytes) or no HTML at all.
    """
    # The bytes go to the HTML parser, which honours the page's own <meta charset>; only UTF-16 (as
    # some Windows tools save pages) is decoded here, since the parser's sniffing does not look for it.
    data = _read_bytes(path)
    if data.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        data = data.decode("utf-16", errors="replace").encode("utf-8")
    _reject_binary(path, data, "an HTML page")
    if not data.strip():
        logger.warning("%s: empty, skipped", path)
        return
    try:
        title, blocks = html_main_text(data)
    except ValueError as err:
        raise InputError(f"{path}: not a readable HTML page ({err})") from None
    sections = _block_sections([(block.heading, block.text) for block in blocks])
    yield from _section_documents(path, title or Path(path).stem, sections)


def read_epub(path: str | Path) -> Iterator[Document]:
    """An EPUB e-book: its chapters in reading order, each read as an HTML page (see
    :func:`read_html`), one document per ``<h1>``/``<h2>`` section, titled ``"<book title> › <heading>"``
    (a chapter's text before its first heading by the chapter page's own title); sections are
    numbered through the book.

    Raises:
        InputError: not an EPUB, a damaged one, or one whose pages are DRM-encrypted (see
            :mod:`slmkit.rag.epub_text`).
    """
    book = read_book(path)
    title = book.title or Path(path).stem
    sections: list[tuple[str, str]] = []
    for member, data in book.pages:
        try:
            page_title, blocks = html_main_text(data)
        except ValueError as err:
            logger.warning("%s: %s: not a readable page (%s), skipped", path, member, err)
            continue
        page_sections = _block_sections([(block.heading, block.text) for block in blocks])
        heading, body = page_sections[0]
        if not heading and page_title.casefold() not in ("", title.casefold()):
            page_sections[0] = (page_title, body)
        sections += page_sections
    yield from _section_documents(path, title, sections)


def read_docx(path: str | Path) -> Iterator[Document]:
    """A Word document, one document per ``Title``/``Heading 1``/``Heading 2`` section, as in Markdown.

    Body paragraphs and tables are read in order (a table row is one line, cells joined by
    ``" | "``); page headers, footers and comments are left out. Sections are titled
    ``"<title> › <heading>"``, where the title is the document's core-properties title or the file stem.

    Raises:
        InputError: the file is not a readable ``.docx`` (e.g. a legacy ``.doc`` renamed, or truncated).
    """
    document = _open_docx(path)
    title = (document.core_properties.title or "").strip() or Path(path).stem
    yield from _section_documents(path, title, _block_sections(_docx_blocks(document)))


def read_pptx(path: str | Path) -> Iterator[Document]:
    """A PowerPoint deck, one document per slide with text, titled ``"<title> › <slide title>"``
    (the deck's core-properties title or the file stem), ``position`` its slide number; the slide's
    shapes in reading order, tables a row per line, speaker notes last (see
    :mod:`slmkit.rag.slides_text`). A slide with no text beside its title (a section divider) is
    skipped.

    Raises:
        InputError: the file is not a readable ``.pptx`` (e.g. a legacy ``.ppt`` renamed, or truncated).
    """
    deck = read_deck(path)
    title = deck.title or Path(path).stem
    found = False
    for slide in deck.slides:
        if slide.text.strip():
            found = True
            name = f"{title} › {slide.title}" if slide.title else title
            yield Document(text=slide.text, source=str(path), title=name, position=slide.number, metadata={})
    if not found:
        logger.warning("%s: no text on any of its %d slide(s), skipped", path, len(deck.slides))


def read_csv(path: str | Path, config: IngestConfig | None = None) -> Iterator[Document]:
    """One document per row of a ``.csv`` (comma) or ``.tsv`` (tab) file with a header row.

    The text is the ``config.text_field`` column (default ``text``) and the title the
    ``config.title_field`` column when present (else the file stem); the other columns are kept as
    metadata. A table without a ``text`` column, when no text field was named, is read row by row
    whole: ``column: value`` lines, one per non-empty cell. ``position`` is the 1-based line the row
    starts on (a quoted field may span lines).

    Raises:
        InputError: no header row, no column of the text field named, a row with a different
            number of fields than the header, or broken quoting (each naming the file and line).
    """
    config = config or IngestConfig()
    text = _read_text(path)
    delimiter = _csv_delimiter(path, text)
    # Long texts in one cell are the point of a text column; csv's default cap is 131,072 characters.
    csv.field_size_limit(max(csv.field_size_limit(), 2**31 - 1))
    # strict: an unclosed quote is an error naming its line, not the rest of the file in one field.
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=delimiter, strict=True)
    header = _csv_header(reader, path, config)
    stem = Path(path).stem
    whole_rows = config.text_key not in header  # a table, not a text column: see _csv_header
    line = reader.line_num
    for row in _csv_rows(reader, path):
        start, line = line + 1, reader.line_num
        if not row:
            continue  # a blank line
        if len(row) != len(header):
            separator = _DELIMITER_NAMES[delimiter]
            raise InputError(
                f"{path}:{start}: row has {len(row)} field(s) but the header has {len(header)}. "
                f"Quote fields that contain a {separator} or a line break."
            )
        record = dict(zip(header, row, strict=True))
        if whole_rows:
            record[config.text_key] = _row_text(record, config.title_field)
        document = _record_document(record, str(path), stem, start, f"{path}:{start}", config)
        if document:
            yield document


_DELIMITER_NAMES = {",": "comma", ";": "semicolon", "\t": "tab", "|": "vertical bar"}


def _csv_delimiter(path: str | Path, text: str) -> str:
    """Tab for ``.tsv``; for ``.csv`` a comma, unless the header row holds none and is split by
    semicolons, tabs or vertical bars instead: spreadsheets in locales whose decimal mark is a comma
    export "CSV" with semicolons, and read with commas each row would be one field or a count error."""
    if Path(path).suffix.lower() == ".tsv":
        return "\t"
    header = text.split("\n", 1)[0]
    if "," in header:
        return ","
    others = {d: header.count(d) for d in (";", "\t", "|")}
    best = max(others, key=others.__getitem__)
    if others[best]:
        logger.info("%s: the header row is split by %ss, not commas", path, _DELIMITER_NAMES[best])
        return best
    return ","


def read_json(path: str | Path, config: IngestConfig | None = None) -> Iterator[Document]:
    """Documents of a JSON file: SQuAD format (one per paragraph) or a list of records.

    SQuAD paragraphs are titled by their article (underscores become spaces), with ``position`` the
    paragraph index and metadata ``{"article", "paragraph", "squad_ids"}``. Records must hold
    ``config.text_field`` (a string) and may hold ``config.title_field``; ``position`` is the record's
    0-based index.

    Raises:
        InputError: invalid JSON (line and column named), a malformed SQuAD element, a record without
            a string text field, or any other shape.
    """
    config = config or IngestConfig()
    text = _read_text(path)
    data = parse_json(text, path)
    if is_squad(data):
        yield from _squad_documents(parse_squad(data, str(path)), str(path))
    elif isinstance(data, list):
        stem = Path(path).stem
        for index, record in enumerate(data):
            document = _record_document(record, str(path), stem, index, f"{path}: [{index}]", config)
            if document:
                yield document
    else:
        raise InputError(
            f'{path}: expected SQuAD format {{"data": [{{"title": ..., "paragraphs": [...]}}]}} or a '
            f'list of records like [{{"{config.text_key}": "..."}}], got {type(data).__name__}'
        )


def read_jsonl(path: str | Path, config: IngestConfig | None = None) -> Iterator[Document]:
    """One document per line of a JSON Lines file; blank lines are skipped.

    Each line is a record as in :func:`read_json`; ``position`` is the 1-based line number.

    Raises:
        InputError: ``file.jsonl:LINE: not valid JSON: ...`` or a record without a string text field.
    """
    config = config or IngestConfig()
    stem = Path(path).stem
    for number, line in enumerate(_text_lines(path), start=1):
        if not line.strip():
            continue
        record = parse_json(line, path, number)
        document = _record_document(record, str(path), stem, number, f"{path}:{number}", config)
        if document:
            yield document


def read_pdf(path: str | Path) -> Iterator[Document]:
    """One document per page that has a text layer, or per section on it: ``position`` is the 1-based
    page number.

    Pages are titled by the PDF's metadata title if it has one, else the file stem; where the PDF has
    an outline (bookmarks), each section it names is a document of its own, titled
    ``"<title> › <chapter> › <section>"`` (see :mod:`slmkit.rag.pdf_text`). Running headers and
    footers (lines repeated at the top or bottom of most pages, page numbers included) and the dot
    leader lines of contents pages and indexes are left out, and words hyphenated across lines are
    joined.

    Raises:
        InputError: the PDF is corrupt, encrypted with a password, or has no extractable text at all
            (likely a scanned image: run OCR first).
    """
    reader = pdf_text.open_pdf(path)
    title = pdf_text.pdf_title(reader) or Path(path).stem
    texts = pdf_text.page_texts(reader, path)
    if not any(text.strip() for text in texts):
        raise InputError(
            f"{path}: no extractable text in {len(texts)} page(s). It may be a scanned image; run OCR "
            "(e.g. `ocrmypdf in.pdf out.pdf`) and pass the result."
        )
    for number, text in enumerate(texts, start=1):
        if not text.strip():
            logger.warning("%s: page %d: empty, skipped", path, number)
    for piece in pdf_text.sections(texts, pdf_text.outline(reader), title):
        name = f"{title} › {piece.heading}" if piece.heading else title
        yield Document(
            text=unwrap_lines(piece.text), source=str(path), title=name, position=piece.page, metadata={}
        )


def read_hf_dataset(address: str, config: IngestConfig | None = None) -> Iterator[Document]:
    """Rows of a Hugging Face dataset ``hf://NAME?config=C&split=S&text_field=F&title_field=T``.

    ``split`` defaults to ``train``; the field names default to ``config``'s. ``position`` is the
    0-based row index and each document's ``source`` is the address.

    Raises:
        InputError: offline mode is set (``HF_HUB_OFFLINE``/``HF_DATASETS_OFFLINE``; fails before any
            network access), ``datasets`` is not installed, the address or dataset cannot be loaded,
            or a row has no string text field.
    """
    config = config or IngestConfig()
    name, options = _parse_hf_address(address)
    _refuse_offline(address, name)
    rows = _load_hf_rows(address, name, options)
    record_config = IngestConfig(
        text_field=options.get("text_field", config.text_field),
        title_field=options.get("title_field", config.title_field),
    )
    for index, row in enumerate(rows):
        document = _record_document(row, address, name, index, f"{address}: row {index}", record_config)
        if document:
            yield document


# ---- files and text ---------------------------------------------------------------------------


def _check_exists(source: str | Path) -> None:
    if isinstance(source, str) and source.startswith(HF_PREFIX):
        return
    if not Path(source).exists():
        raise InputError(
            f"{source}: no such file or folder. Check the path (relative paths start at {Path.cwd()})"
        )


def _folder_files(folder: Path) -> list[Path]:
    """Supported files under ``folder``, sorted; hidden files and folders (``.git``, editor swap files)
    and Office's ``~$name.docx`` lock files are left out."""
    visible = [
        path
        for path in sorted(folder.rglob("*"))
        if path.is_file()
        and not path.name.startswith("~$")
        and not any(part.startswith(".") for part in path.relative_to(folder).parts)
    ]
    # Extension-less files are read where they hold text (README, LICENSE, NEWS); a program or an
    # image without an extension is skipped like any other unsupported file, not an error.
    files = [
        path
        for path in visible
        if path.suffix.lower() in SUPPORTED_SUFFIXES or (_named_as_text(path) and _looks_like_text(path))
    ]
    taken = set(files)
    others = [path.suffix.lower() or "(no extension)" for path in visible if path not in taken]
    if not files:
        logger.warning("%s: no supported files (%s) in this folder", folder, ", ".join(SUPPORTED_SUFFIXES))
    elif skipped := Counter(others):
        # Say what was left out: a folder of .docx and .doc reads only the .docx, and the user
        # should learn that from the build, not from an answer that is missing.
        kinds = ", ".join(f"{suffix} ({count})" for suffix, count in skipped.most_common())
        logger.warning("%s: %d file(s) of unsupported types skipped: %s", folder, skipped.total(), kinds)
    return files


def _named_as_text(path: str | Path) -> bool:
    """A name without an extension, or with only a version number's last part (``LICENSE``,
    ``GPL-3``, ``Apache-2.0``; ``ls.1``, a manual page in roff, has one), or a capitalised name's
    variant of an unsupported type (``README.Debian``, ``INSTALL.unix``)."""
    path = Path(path)
    suffix = path.suffix
    return (
        not suffix
        or (suffix[1:].isdigit() and path.stem[-1:].isdigit())
        or (suffix.lower() not in SUPPORTED_SUFFIXES and path.stem.isalpha() and path.stem.isupper())
    )


def _looks_like_text(path: Path) -> bool:
    """What :func:`_read_text` reads rather than rejects: a UTF-16/32 (or UTF-8) byte-order mark,
    or no NUL byte near the start."""
    try:
        with path.open("rb") as f:
            head = f.read(_SNIFF_BYTES)
    except OSError:
        return True  # read_txt says what is wrong with it
    return any(head.startswith(bom) for bom, _ in _BOMS) or _nul_offset(head) < 0


def _read_bytes(path: str | Path) -> bytes:
    try:
        return Path(path).read_bytes()
    except OSError as err:
        raise InputError(f"{path}: cannot read file: {err.strerror or err}") from None


def _read_text(path: str | Path) -> str:
    """A text file's contents: UTF-8 (a byte-order mark dropped), UTF-16/32 with a byte-order mark
    (as Windows tools save "Unicode" text), else Windows-1252 with a warning.

    Raises:
        InputError: the file holds NUL bytes without a UTF-16/32 byte-order mark: binary data (an
            image or archive renamed, or a stray file in a folder), which would index as gibberish.
    """
    data = _read_bytes(path)
    for bom, encoding in _BOMS:
        if data.startswith(bom):
            return data[len(bom) :].decode(encoding, errors="replace")
    _reject_binary(path, data, "a text file")
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as err:
        _warn_not_utf8(path, err.start)
        return data.decode("cp1252", errors="replace")


def _reject_binary(path: str | Path, data: bytes, expected: str) -> None:
    """Raise if ``data`` holds a NUL byte near its start: binary data (an image or archive renamed, or
    a stray file in a folder), which would index as gibberish. Text in UTF-16/32 is decoded before."""
    if (nul := _nul_offset(data)) >= 0:
        raise InputError(
            f"{path}: binary data (a NUL byte at offset {nul}), not {expected}. Remove it from the "
            "sources, or re-save it as UTF-8 text if it is text in another encoding."
        )


def _nul_offset(data: bytes) -> int:
    """Where a NUL byte marks ``data`` as binary (within its first bytes, as git and grep look), or -1."""
    return data.find(b"\x00", 0, _SNIFF_BYTES)


def _warn_not_utf8(path: str | Path, offset: int) -> None:
    # Not UTF-8: most such text is Western European from Windows (Windows-1252, a superset of
    # Latin-1's printable characters). Encoding detectors guess wrong on short texts (a Latin-1
    # "café" read as Baltic cp775), so say what was assumed instead of guessing in silence.
    logger.warning(
        "%s: not valid UTF-8 (first bad byte at offset %d); read as Windows-1252 (Western "
        "European). If the text looks wrong, re-save the file as UTF-8.",
        path,
        offset,
    )


def _text_lines(path: str | Path) -> Iterator[str]:
    """The lines of a text file, read one at a time (a corpus file may not fit in memory), decoded
    as :func:`_read_text` decodes a whole file."""
    try:
        with Path(path).open("rb") as f:
            offset, warned = 0, False
            # Split on "\n" only: str.splitlines() would also split on U+2028 and friends, which JSON
            # allows unescaped inside strings.
            for raw in f:
                line = raw[3:] if offset == 0 and raw.startswith(b"\xef\xbb\xbf") else raw
                try:
                    text = line.decode("utf-8")
                except UnicodeDecodeError as err:  # JSON must be UTF-8, yet exported files bend it
                    if not warned:
                        _warn_not_utf8(path, offset + (len(raw) - len(line)) + err.start)
                        warned = True
                    text = line.decode("cp1252", errors="replace")
                offset += len(raw)
                yield text[:-1] if text.endswith("\n") else text
    except OSError as err:
        raise InputError(f"{path}: cannot read file: {err.strerror or err}") from None


def _document(
    text: str, source: str, title: str, position: int, metadata: dict[str, Any], where: str
) -> Document | None:
    """A Document, or None (with a warning) when ``text`` is empty or whitespace only."""
    if not text.strip():
        logger.warning("%s: empty, skipped", where)
        return None
    return Document(text=text, source=source, title=title, position=position, metadata=metadata)


# ---- sections (Markdown, HTML, Word) -----------------------------------------------------------


def _section_documents(path: str | Path, title: str, sections: list[tuple[str, str]]) -> Iterator[Document]:
    """One document per ``(heading, body)`` section, titled ``"<title> › <heading>"`` (section 0, the
    text before the first heading, by ``title`` alone); ``position`` is the section number.

    An empty section is skipped, said at debug level only: a heading with nothing under it before
    the next one ("# Security" then "## Reporting a bug") is how most READMEs are laid out, and it
    loses no text. A file with no text in any section is warned of.
    """
    found = False
    for number, (heading, body) in enumerate(sections):
        if not body.strip():
            logger.debug("%s: section %d (%s): empty, skipped", path, number, heading or "before any heading")
            continue
        # A page whose one heading is its title (a web page's <h1>) is not "Title › Title".
        section_title = f"{title} › {heading}" if heading and heading != title else title
        found = True
        yield Document(text=body, source=str(path), title=section_title, position=number, metadata={})
    if not found:
        logger.warning("%s: no text, skipped", path)


def _block_sections(blocks: list[tuple[bool, str]]) -> list[tuple[str, str]]:
    """Group ``(is_heading, text)`` blocks into ``(heading, body)`` sections, blocks separated by a
    blank line (a paragraph break for the sentence splitter)."""
    sections: list[tuple[str, list[str]]] = [("", [])]
    for is_heading, text in blocks:
        if not text.strip():
            continue
        if is_heading:
            sections.append((" ".join(text.split()), []))
        else:
            sections[-1][1].append(text)
    return [(heading, "\n\n".join(texts)) for heading, texts in sections]


# ---- markdown ---------------------------------------------------------------------------------


def _front_matter(text: str, path: str | Path) -> tuple[str | None, str]:
    """``(title, text)``: the text without its YAML front matter, and the front matter's ``title``.

    A leading ``---`` block holding plain text rather than ``key: value`` lines is left in place: it
    was a thematic break. Front matter that is broken YAML is left out with a warning.
    """
    text = text.replace("\r\n", "\n").replace("\r", "\n")
    match = _FRONT_MATTER.match(text)
    if not match:
        return None, text
    try:
        meta = yaml.safe_load(match.group(1) or "") or {}
    except yaml.YAMLError as err:
        problem = getattr(err, "problem", None) or str(err).splitlines()[0]
        logger.warning("%s: the front matter is not valid YAML (%s); left out", path, problem)
        return None, text[match.end() :]
    if not isinstance(meta, dict):
        return None, text
    title = meta.get("title")
    return (" ".join(str(title).split()) or None) if title is not None else None, text[match.end() :]


# ---- JSON records and SQuAD -------------------------------------------------------------------


def _squad_documents(articles: list[SquadArticle], source: str) -> Iterator[Document]:
    for article in articles:
        for paragraph in article.paragraphs:
            metadata = {
                "article": article.title,
                "paragraph": paragraph.index,
                "squad_ids": [qa.id for qa in paragraph.qas],
            }
            where = f"{source}: data[{article.index}].paragraphs[{paragraph.index}]"
            document = _document(
                paragraph.context, source, article.display_title, paragraph.index, metadata, where
            )
            if document:
                yield document


def _record_document(
    record: object, source: str, default_title: str, position: int, where: str, config: IngestConfig
) -> Document | None:
    """A Document from one JSON/JSONL/HF record; other scalar fields are kept as metadata."""
    if not isinstance(record, dict):
        raise InputError(
            f"{where}: expected an object with a '{config.text_key}' field, got {type(record).__name__}"
        )
    text = _record_text(record, where, config.text_key)
    title = record.get(config.title_field)
    metadata = {
        key: value
        for key, value in record.items()
        if key not in (config.text_key, config.title_field) and _is_scalar(value)
    }
    title_text = str(title).strip() if _is_scalar(title) and title is not None else ""
    return _document(text, source, title_text or default_title, position, metadata, where)


def _record_text(record: dict[str, Any], where: str, field: str) -> str:
    fields = ", ".join(f"'{key}'" for key in record) or "none"
    if field not in record:
        raise InputError(
            f"{where}: missing text field '{field}'; this record has fields: {fields}. "
            "Name the field holding the text: --text-field FIELD (ingest.text_field in a recipe, "
            "text_field= in an hf:// address)."
        )
    text = record[field]
    if not isinstance(text, str):
        raise InputError(
            f"{where}: text field '{field}' should be a string, got {type(text).__name__}; "
            f"this record has fields: {fields}"
        )
    return text


def _is_scalar(value: object) -> bool:
    return value is None or isinstance(value, (str, int, float, bool))


# ---- CSV / TSV --------------------------------------------------------------------------------


def _csv_rows(reader: Any, path: str | Path) -> Iterator[list[str]]:
    """The reader's rows, with its errors (a NUL byte, broken quoting) as InputErrors naming the line."""
    try:
        yield from reader
    except csv.Error as err:
        raise InputError(
            f"{path}:{reader.line_num}: not valid CSV: {err}. A field holding quotes must be quoted "
            'whole, with each inner quote doubled ("say ""hi""").'
        ) from None


def _csv_header(reader: Any, path: str | Path, config: IngestConfig) -> list[str]:
    header = next(_csv_rows(reader, path), None)
    if not header:
        raise InputError(
            f"{path}: no header row. The first line must name the columns, e.g. '{config.text_key}' "
            "for the text and 'title'."
        )
    header = [name.strip() for name in header]
    if config.text_key not in header:
        columns = ", ".join(f"'{name}'" for name in header)
        if config.text_field:  # the user named a column that is not there
            raise InputError(
                f"{path}:{reader.line_num}: no text column '{config.text_key}'; the header has {columns}. "
                "Pass --text-field NAME (ingest.text_field) to read another column."
            )
        # Most tables have no column of prose: a row's meaning is in its columns together ("What year
        # is Widget B?" needs the name and the year), so each row is read whole, a line per column.
        logger.info(
            "%s: no '%s' column, so each row is read whole as 'column: value' lines (columns %s); "
            "pass --text-field NAME to index one column instead",
            path,
            config.text_key,
            columns,
        )
    return header


def _row_text(record: dict[str, str], title_field: str) -> str:
    """A table row as text: one ``column: value`` line per non-empty cell (the title column apart)."""
    return "\n".join(
        f"{column}: {value.strip()}"
        for column, value in record.items()
        if value.strip() and column != title_field
    )


# ---- Word -------------------------------------------------------------------------------------


def _open_docx(path: str | Path) -> Any:
    import docx
    from docx.opc.exceptions import OpcError
    from lxml import etree

    try:
        return docx.Document(str(path))
    except OSError as err:
        raise InputError(f"{path}: cannot read file: {err.strerror or err}") from None
    # A .doc renamed .docx, a truncated download or a damaged package fails in the zip reader, the
    # OPC layer, the XML parser or python-docx's part lookup; to the user they all mean the same thing.
    except (*DAMAGED_ZIP, OpcError, etree.XMLSyntaxError, KeyError, ValueError) as err:
        raise unreadable_office_file(path, err, "Word", ".docx") from None


def _docx_blocks(document: Any) -> list[tuple[bool, str]]:
    """``(is_heading, text)`` for each body paragraph and table row, in order."""
    from docx.table import Table

    blocks: list[tuple[bool, str]] = []
    for item in document.iter_inner_content():
        if isinstance(item, Table):
            blocks.extend((False, row) for row in _docx_table_rows(item))
        else:
            style = item.style.name if item.style is not None else ""
            blocks.append((style in _DOCX_SECTION_STYLES, item.text))
    return blocks


def _docx_table_rows(table: Any) -> list[str]:
    rows = []
    for row in table.rows:
        cells: list[str] = []
        for cell in row.cells:
            text = " ".join(cell.text.split())
            # python-docx repeats a merged cell once per grid column it spans.
            if text and (not cells or cells[-1] != text):
                cells.append(text)
        if cells:
            rows.append(" | ".join(cells))
    return rows


# ---- Hugging Face datasets --------------------------------------------------------------------


def _parse_hf_address(address: str) -> tuple[str, dict[str, str]]:
    parts = urlsplit(address)
    name = (parts.netloc + parts.path).strip("/")
    if not name:
        raise InputError(f"{address}: missing dataset name; write {HF_PREFIX}NAME?split=train")
    query = parse_qs(parts.query, keep_blank_values=True)
    unknown = sorted(set(query) - set(_HF_QUERY_KEYS))
    if unknown:
        raise InputError(
            f"{address}: unknown option(s) {', '.join(unknown)}; valid options: {', '.join(_HF_QUERY_KEYS)}"
        )
    return name, {key: values[-1] for key, values in query.items()}


def _refuse_offline(address: str, name: str) -> None:
    for variable in ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE"):
        if os.environ.get(variable, "").strip().lower() in _TRUTHY:
            raise InputError(
                f"{address}: cannot load Hugging Face dataset '{name}' because {variable} is set (offline "
                f"mode). Download it where there is network access, e.g. `datasets.load_dataset('{name}')"
                ".to_json(...)`, and pass the local .json/.jsonl files instead."
            )


def _load_hf_rows(address: str, name: str, options: dict[str, str]) -> Any:
    try:
        import datasets
    except ImportError:
        raise InputError(
            f"{address}: reading Hugging Face datasets needs the 'datasets' package: pip install 'slmkit[hf]'"
        ) from None
    split = options.get("split") or "train"
    try:
        return datasets.load_dataset(name, options.get("config") or None, split=split)
    # datasets raises many types (missing dataset, bad config, network); all mean "cannot load this".
    except Exception as err:
        raise InputError(
            f"{address}: cannot load Hugging Face dataset '{name}' (split '{split}'): {err}"
        ) from None
