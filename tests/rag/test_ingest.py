"""Ingest: each source format on tiny fixtures, and an actionable InputError for each kind of bad input."""

from __future__ import annotations

import codecs
import io
import json
import logging
import shutil
import sys
import zipfile
from pathlib import Path

import pytest

from fakes import make_pdf, set_zip_header_field
from slmkit.config import IngestConfig
from slmkit.errors import InputError
from slmkit.rag.ingest import (
    read_csv,
    read_docx,
    read_hf_dataset,
    read_html,
    read_json,
    read_jsonl,
    read_markdown,
    read_pdf,
    read_sources,
    read_txt,
)

ASSETS = Path(__file__).parent.parent / "assets"


def _zip_bytes(files: dict[str, str]) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for name, text in files.items():
            archive.writestr(name, text)
    return buffer.getvalue()


def _write(path: Path, content: str | bytes) -> Path:
    if isinstance(content, bytes):
        path.write_bytes(content)
    else:
        path.write_text(content, encoding="utf-8")
    return path


# ---- formats ----------------------------------------------------------------------------------


def test_txt_is_one_document_titled_by_stem() -> None:
    [document] = read_txt(ASSETS / "sample.txt")
    assert document.title == "sample"
    assert document.source == str(ASSETS / "sample.txt")
    assert document.text.startswith("Small language models")


def test_markdown_splits_at_h1_and_h2(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.DEBUG, logger="slmkit.rag.ingest"):
        documents = list(read_markdown(ASSETS / "sample.md"))
    assert [(d.position, d.title) for d in documents] == [
        (0, "sample"),
        (1, "sample › Installing"),
        (2, "sample › Building an index"),
        (4, "sample › Asking"),
    ]
    assert "# this comment is code" in documents[1].text
    assert "\nSupported formats\n" in documents[2].text and "###" not in documents[2].text
    # An empty section loses no text: said at debug level, not as a warning a user must read.
    assert [r.levelname for r in caplog.records if "section 3 (Empty section): empty" in r.getMessage()] == [
        "DEBUG"
    ]
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING]


def test_markdown_as_real_sites_write_it(tmp_path: Path) -> None:
    # Front matter (Jekyll, Hugo, Docusaurus) titles the page and is not text; underlined (setext)
    # headings start sections; "#" lines in an indented code block or a blockquote do not.
    text = (
        "---\r\ntitle: Install  Guide\r\ntags: [setup]\r\n---\r\nIntro text.\r\n\r\n"
        "Requirements\r\n============\r\n\r\nPython 3.10.\r\n\r\n    # indented code, not a heading\r\n\r\n"
        "> # quoted, not a heading\r\n\r\nSteps\r\n-----\r\n\r\nRun make.\r\n"
    )
    documents = list(read_markdown(_write(tmp_path / "install.md", text)))
    assert [(d.position, d.title) for d in documents] == [
        (0, "Install Guide"),
        (1, "Install Guide › Requirements"),
        (2, "Install Guide › Steps"),
    ]
    assert documents[0].text == "Intro text."
    assert "# indented code, not a heading" in documents[1].text
    assert "\nquoted, not a heading" in documents[1].text  # a heading line of its section
    assert documents[2].text == "Run make."


def test_markdown_wrapped_lines_are_one_paragraph_and_hard_breaks_stay(tmp_path: Path) -> None:
    path = _write(
        tmp_path / "README.md",
        "The parser reads a file in one pass and\nbuilds the tree as it goes.\n\n"
        "Maintainer: Ada  \nLicence: MIT\n\n- one item\n- another\n",
    )
    [document] = read_markdown(path)
    assert document.text == (
        "The parser reads a file in one pass and builds the tree as it goes.\n\n"
        "Maintainer: Ada\nLicence: MIT\n\n- one item\n- another"
    )


def test_mdx_is_markdown_without_its_import_and_export_statements(tmp_path: Path) -> None:
    path = _write(
        tmp_path / "install.mdx",
        "---\ntitle: Installing\n---\nimport Tabs from '@theme/Tabs';\nexport const version = '2.1';\n\n"
        '## With pip\n\n<Tabs>\n<TabItem value="linux">Run pip on Linux.</TabItem>\n</Tabs>\n\n'
        "```python\nimport slmkit\n```\n",
    )
    [document] = read_sources([path])
    assert (document.title, document.text) == ("Installing › With pip", "Run pip on Linux.\n\nimport slmkit")


def test_markdown_is_read_as_rendered_text_without_its_markup(tmp_path: Path) -> None:
    # As READMEs write it: badges, an HTML header, links (inline, reference-style with the definition
    # in another section, autolinks), emphasis, code spans, a tight list, a GFM table, a code block.
    text = (
        '<div align="center">\n<h1>BM25S &amp; more</h1>\n</div>\n\n'
        "[![PyPI](https://img.shields.io/pypi/v/x.svg)](https://pypi.org/project/x/)\n\n"
        "# Usage\n\nUses [fcntl](https://man7.org/fcntl.2.html) on **Unix** and `_locking` on "
        "[Windows][win]; see <https://example.org>.\n\nIt is:\n* *fast*\n* simple\n\n"
        "1. install\n2. run\n\n| lock | reentrant |\n|---|---|\n| fcntl | no |\n\n"
        "```python\nx = [1](2)  # code stays verbatim\n```\n\n## Links\n\n[win]: https://microsoft.com\nEnd.\n"
    )
    intro, usage, links = read_markdown(_write(tmp_path / "README.md", text))
    assert (intro.title, intro.text) == ("README", "BM25S & more")
    assert usage.title == "README › Usage"
    assert usage.text == (
        "Uses fcntl on Unix and _locking on Windows; see https://example.org.\n\n"
        "It is:\n\n- fast\n- simple\n\n1. install\n2. run\n\nlock | reentrant\nfcntl | no\n\n"
        "x = [1](2)  # code stays verbatim"
    )
    assert links.text == "End."


@pytest.mark.parametrize(
    ("text", "first_text"),
    [
        ("---\nJust a rule above.\n\nBody.\n", "Just a rule above.\n\nBody."),  # no YAML mapping: a rule
        ("---\n---\nBody.\n", "Body."),  # empty front matter
    ],
)
def test_a_leading_rule_is_front_matter_only_when_it_holds_a_mapping(
    tmp_path: Path, text: str, first_text: str
) -> None:
    [document] = read_markdown(_write(tmp_path / "page.md", text))
    assert (document.title, document.text) == ("page", first_text)


def test_front_matter_that_is_broken_yaml_is_left_out_with_a_warning(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.WARNING):
        [document] = read_markdown(_write(tmp_path / "odd.md", "---\ntitle: [unclosed\n---\nBody.\n"))
    assert (document.title, document.text) == ("odd", "Body.")
    assert "odd.md: the front matter is not valid YAML (expected ',' or ']'" in caplog.text


def test_squad_json_is_one_document_per_paragraph() -> None:
    documents = list(read_json(ASSETS / "squad_tiny.json"))
    assert [(d.title, d.position) for d in documents] == [
        ("Super Bowl 50", 0),
        ("Super Bowl 50", 1),
        ("Warsaw", 0),
    ]
    assert documents[1].metadata == {"article": "Super_Bowl_50", "paragraph": 1, "squad_ids": ["q3"]}
    assert documents[0].text.startswith("Super Bowl 50 was")


def test_squad_without_titles_with_int_ids_and_v2_fields() -> None:
    documents = list(read_json(ASSETS / "squad_v2_tiny.json"))
    # Titled by the article's doc_id, else by the file name and the article's 1-based position.
    assert [(d.title, d.position) for d in documents] == [("amazon-1", 0), ("squad v2 tiny, article 2", 0)]
    assert documents[0].metadata == {"article": "amazon-1", "paragraph": 0, "squad_ids": ["101", "102"]}


def test_json_records_use_text_and_title_fields(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING):
        documents = list(read_json(ASSETS / "records.json"))
    assert [(d.title, d.position) for d in documents] == [("Photosynthesis", 0), ("records", 1)]
    assert documents[0].metadata == {"id": "r1"}
    assert "records.json: [2]: empty" in caplog.text


def test_json_records_with_custom_fields(tmp_path: Path) -> None:
    path = _write(tmp_path / "notes.json", json.dumps([{"body": "Hello there.", "name": "Greeting"}]))
    [document] = read_json(path, IngestConfig(text_field="body", title_field="name"))
    assert (document.text, document.title) == ("Hello there.", "Greeting")


def test_jsonl_position_is_line_number() -> None:
    documents = list(read_jsonl(ASSETS / "records.jsonl"))
    assert [(d.title, d.position) for d in documents] == [("Oxygen", 1), ("Carbon", 3)]
    assert documents[1].metadata == {"source_url": "https://example.org/carbon"}


def test_pdf_fixture_has_text_layer() -> None:
    documents = list(read_pdf(ASSETS / "sample.pdf"))
    assert [(d.position, d.text) for d in documents] == [
        (1, "Retrieval finds the passages that answer a question."),
        (2, "The generator cites the passages it used."),
    ]
    assert documents[0].title == "Sample Handbook"


def test_pdf_without_title_uses_stem_and_skips_empty_page(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = _write(tmp_path / "manual.pdf", make_pdf(["First page.", "", "Third (last) page."]))
    with caplog.at_level(logging.WARNING):
        documents = list(read_pdf(path))
    assert [(d.title, d.position, d.text) for d in documents] == [
        ("manual", 1, "First page."),
        ("manual", 3, "Third (last) page."),
    ]
    assert "page 2: empty" in caplog.text


PAGE = """<!doctype html>
<html><head><link rel="icon" href="x.svg"><title>Comb jellies</title><style>p { color: red }</style></head>
<body>
  <header><svg><title>Logo</title></svg><a href="/">Home</a> <a href="/about">About us</a></header>
  <nav><ul><li><a href="/a">Sponges</a></li><li><a href="/b">Corals</a></li></ul></nav>
  <main>
    <article>
      <header><h1>Ctenophores</h1></header>
      <p>Comb jellies swim with <b>combs</b> of cilia.<br>They are not jellyfish.</p>
      <script>track("visit")</script>
      <h2>Feeding</h2>
      <ul><li>They eat plankton.</li><li>Some eat other comb jellies.</li></ul>
      <table><tr><th>Genus</th><th>Length</th></tr><tr><td>Beroe</td><td>30 cm</td></tr></table>
      <pre>size = 30  # cm
print(size)</pre>
    </article>
  </main>
  <aside>Related: <a href="/c">Sea anemones</a></aside>
  <footer>Copyright 2026 Ocean Site</footer>
</body></html>
"""


def test_html_reads_main_text_by_section_without_navigation(tmp_path: Path) -> None:
    documents = list(read_html(_write(tmp_path / "comb.html", PAGE)))
    assert [(d.title, d.position) for d in documents] == [
        ("Comb jellies › Ctenophores", 1),
        ("Comb jellies › Feeding", 2),
    ]
    assert documents[0].text == "Comb jellies swim with combs of cilia. They are not jellyfish."
    assert documents[1].text == (
        "They eat plankton.\n\nSome eat other comb jellies.\n\nGenus | Length\n\nBeroe | 30 cm"
        "\n\nsize = 30  # cm\nprint(size)"
    )
    text = " ".join(d.text for d in documents)
    for furniture in ("Home", "Sponges", "Sea anemones", "Copyright", "track", "color"):
        assert furniture not in text


def test_html_without_title_is_titled_by_stem_not_by_an_icon(tmp_path: Path) -> None:
    page = "<p><svg><title>Search icon</title></svg>Plain page.</p>"
    [document] = read_html(_write(tmp_path / "plain.html", page))
    assert (document.title, document.text) == ("plain", "Plain page.")


def test_html_in_utf16_with_byte_order_mark(tmp_path: Path) -> None:
    page = "<html><head><title>Notes</title></head><body><p>Ünïcode text.</p></body></html>"
    [document] = read_html(_write(tmp_path / "notes.html", page.encode("utf-16")))
    assert (document.title, document.text) == ("Notes", "Ünïcode text.")


def test_html_without_landmarks_keeps_body_and_reads_declared_charset(tmp_path: Path) -> None:
    page = (
        '<html><head><meta charset="iso-8859-1"><title>Caf\xe9s</title></head><body>'
        "<div class='menu'><a href='/'>Index</a></div>"
        "<div><p>Un caf\xe9 cr\xe8me co\xfbte 3,50 \x80.</p></div>"
        "<footer>Mentions l\xe9gales</footer></body></html>"
    ).encode("latin-1")
    [document] = read_html(_write(tmp_path / "cafe.htm", page))
    assert document.title == "Cafés" and document.position == 0
    assert document.text == "Index\n\nUn café crème coûte 3,50 \x80."


def test_texinfo_html_loses_its_next_and_up_links(tmp_path: Path) -> None:
    # A GNU manual page as Texinfo 6 (div.header) and 7 (div.nav-panel) write it: no landmarks.
    for panel in ("header", "nav-panel"):
        page = (
            "<html><head><title>The Basics (libffi)</title></head><body><div class='section'>"
            f"<div class='{panel}'><p>Next: <a href='b.html' rel='next'>Simple Example</a>, Up: "
            "<a href='u.html' rel='up'>Using libffi</a> [<a href='i.html'>Index</a>]</p></div><hr>"
            "<h3>2.1 The Basics</h3><p>The cif in ffi_cif stands for Call InterFace.</p></div>"
            f"<div class='{panel}'><p>Next: <a href='b.html'>Simple Example</a></p></div></body></html>"
        )
        [document] = read_html(_write(tmp_path / f"{panel}.html", page))
        assert document.text == "2.1 The Basics\n\nThe cif in ffi_cif stands for Call InterFace."


def test_a_wikipedia_page_loses_its_edit_links_reference_marks_and_boxes(tmp_path: Path) -> None:
    # MediaWiki's markup, old skin (span.mw-headline) and new (div.mw-heading) together.
    page = """<html><head><title>Kestrel Point Lighthouse - Wikipedia</title></head><body>
<main id="content"><h1 id="firstHeading">Kestrel Point Lighthouse</h1><div class="mw-parser-output">
<table class="metadata ambox"><tr><td>This article needs additional citations.</td></tr></table>
<p>The lighthouse was first lit in 1874.<sup id="cite_ref-1" class="reference"><a href="#cite_note-1">[1]</a>
</sup> Its keeper was Ann Hale.<sup class="noprint Inline-Template"><i>[citation needed]</i></sup></p>
<div id="toc" class="toc"><h2>Contents</h2><ul><li>1 History</li></ul></div>
<div class="mw-heading mw-heading2"><h2 id="History">History</h2><span class="mw-editsection">[<a
href="/w/index.php?action=edit&amp;section=1">edit</a>]</span></div><p>It was automated in 1962.</p>
<h2><span class="mw-headline" id="Notes">Notes</span><span class="mw-editsection">[<a href="e">edit</a>]
</span></h2>
<ol class="references"><li id="cite_note-1"><a href="#cite_ref-1">^</a> Smith, J. (2001).</li></ol>
<div class="navbox"><table><tr><th>Lighthouses</th><td>North Light · South Light</td></tr></table></div>
</div><div id="catlinks" class="catlinks">Categories: Lighthouses completed in 1874</div></main>
</body></html>"""
    documents = list(read_html(_write(tmp_path / "Kestrel_Point_Lighthouse.html", page)))
    assert [(d.title, d.text) for d in documents] == [
        ("Kestrel Point Lighthouse", "The lighthouse was first lit in 1874. Its keeper was Ann Hale."),
        ("Kestrel Point Lighthouse › History", "It was automated in 1962."),
        ("Kestrel Point Lighthouse › Notes", "Smith, J. (2001)."),
    ]


def test_html_headings_lose_their_permalink_marks(tmp_path: Path) -> None:
    # Sphinx (Python's and Debian's documentation) and MkDocs end each heading with a "¶" link,
    # rustdoc puts a "§" before it; a footnote mark has digits and stays.
    page = (
        "<html><head><title>Policy</title></head><body><div class='body'>"
        "<h1>Python Policy<a class='headerlink' href='#policy' title='Permalink'>¶</a></h1>"
        "<h2><a class='anchor' href='#packaging'>§</a>3. Python Packaging</h2>"
        "<p>Modules go to dist-packages.<a href='#fn1'>[1]</a></p></div></body></html>"
    )
    documents = list(read_html(_write(tmp_path / "policy.html", page)))
    assert [(d.title, d.text) for d in documents] == [
        ("Policy › 3. Python Packaging", "Modules go to dist-packages.[1]"),
    ]


def test_docx_is_one_document_per_heading_section(tmp_path: Path) -> None:
    import docx

    word = docx.Document()
    word.core_properties.title = "Field guide"
    word.add_paragraph("Read this first.")
    word.add_heading("Ctenophores", level=1)
    word.add_paragraph("Comb jellies swim with combs of cilia.")
    word.add_heading("Anatomy", level=3)  # deeper headings stay inside their section, as in Markdown
    word.add_paragraph("")
    word.add_paragraph("They have eight rows of combs.")
    word.add_heading("Sizes", level=2)
    table = word.add_table(rows=2, cols=2)
    for row, cells in zip(table.rows, [("Genus", "Length"), ("Beroe", "30 cm")], strict=True):
        for cell, text in zip(row.cells, cells, strict=True):
            cell.text = text
    word.save(tmp_path / "guide.docx")
    documents = list(read_docx(tmp_path / "guide.docx"))
    assert [(d.title, d.position, d.text) for d in documents] == [
        ("Field guide", 0, "Read this first."),
        (
            "Field guide › Ctenophores",
            1,
            "Comb jellies swim with combs of cilia.\n\nAnatomy\n\nThey have eight rows of combs.",
        ),
        ("Field guide › Sizes", 2, "Genus | Length\n\nBeroe | 30 cm"),
    ]


def test_docx_without_title_uses_stem(tmp_path: Path) -> None:
    import docx

    word = docx.Document()
    word.add_paragraph("Only a body.")
    word.save(tmp_path / "notes.docx")
    [document] = read_sources([tmp_path / "notes.docx"])
    assert (document.title, document.text) == ("notes", "Only a body.")


def test_csv_rows_use_text_and_title_columns(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    path = _write(
        tmp_path / "notes.csv",
        'title,text,lang\nOxygen,"Oxygen is element 8.\nIt is a gas.",en\n\n,,en\n,Carbon is element 6.,en\n',
    )
    with caplog.at_level(logging.WARNING):
        documents = list(read_csv(path))
    assert [(d.title, d.position, d.text, d.metadata) for d in documents] == [
        ("Oxygen", 2, "Oxygen is element 8.\nIt is a gas.", {"lang": "en"}),
        ("notes", 6, "Carbon is element 6.", {"lang": "en"}),
    ]
    assert "notes.csv:5: empty" in caplog.text


@pytest.mark.parametrize("delimiter", [";", "|"])
def test_csv_split_by_semicolons_or_bars_is_read_by_its_header(tmp_path: Path, delimiter: str) -> None:
    # Spreadsheets in comma-decimal locales export "CSV" with semicolons; the text keeps its commas.
    rows = [
        "title;text;price",
        'Oxygen;Oxygen, element 8, is a gas.;"3,5"',
        "Carbon;Carbon is element 6.;1,0",
    ]
    path = _write(tmp_path / "export.csv", "\n".join(r.replace(";", delimiter) for r in rows) + "\n")
    documents = list(read_csv(path))
    assert [(d.title, d.text, d.metadata) for d in documents] == [
        ("Oxygen", "Oxygen, element 8, is a gas.", {"price": "3,5"}),
        ("Carbon", "Carbon is element 6.", {"price": "1,0"}),
    ]


def test_a_one_column_csv_stays_comma_separated(tmp_path: Path) -> None:
    path = _write(tmp_path / "lines.csv", "text\nA line; with a semicolon.\n")
    [document] = read_csv(path)
    assert document.text == "A line; with a semicolon."


def test_tsv_with_a_chosen_text_column(tmp_path: Path) -> None:
    path = _write(tmp_path / "pairs.tsv", "id\tbody\tname\n7\tHello, there.\tGreeting\n")
    [document] = read_sources([path], IngestConfig(text_field="body", title_field="name"))
    assert (document.title, document.position, document.text) == ("Greeting", 2, "Hello, there.")
    assert document.metadata == {"id": "7"}


def test_folder_is_read_recursively_in_sorted_order(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    folder = tmp_path / "kb"
    (folder / "sub").mkdir(parents=True)
    (folder / ".git").mkdir()
    _write(folder / "b.txt", "Bee text.")
    _write(folder / "sub" / "a.md", "# Heading\nNested text.")
    _write(folder / "sub" / "guide.rst", "Guide\n=====\n\nRead as plain text.")
    _write(folder / "a.txt", "Ay text.")
    _write(folder / "ignored.xlsx", "not supported, skipped in folders")
    _write(folder / "sub" / "old.doc", "not supported either")
    _write(folder / "sub" / "other.doc", "not supported either")
    _write(folder / "~$a.docx", "Word's lock file, skipped in folders")
    _write(folder / ".git" / "notes.txt", "hidden")
    with caplog.at_level(logging.WARNING):
        documents = list(read_sources([str(folder)]))
    assert [d.source for d in documents] == [
        str(folder / "a.txt"),
        str(folder / "b.txt"),
        str(folder / "sub" / "a.md"),
        str(folder / "sub" / "guide.rst"),
    ]
    # What was left out is said, counted by type; hidden files and lock files are not news.
    assert "3 file(s) of unsupported types skipped: .doc (2), .xlsx (1)" in caplog.text


def test_files_named_as_text_are_read_and_programs_skipped(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    folder = tmp_path / "project"
    folder.mkdir()
    _write(folder / "LICENSE", "Permission is hereby granted, free of charge.")
    _write(folder / "README.Debian", "Debian adds a systemd unit.")  # a capitalised name's variant
    _write(folder / "notes.log", "in a folder, only files named as text or of a supported type")
    _write(folder / "Apache-2.0", "Apache License\nVersion 2.0, January 2004")  # a version, not a type
    _write(folder / "run", b"\x7fELF\x02\x01\x01\x00\x00")  # a program: binary, skipped
    _write(folder / "ls.1", ".TH LS 1\n.SH NAME\nls \\- list")  # a manual page in roff: a type
    with caplog.at_level(logging.WARNING):
        documents = list(read_sources([folder]))
    assert [(d.title, d.text) for d in documents] == [
        ("Apache-2.0", "Apache License\nVersion 2.0, January 2004"),
        ("LICENSE", "Permission is hereby granted, free of charge."),
        ("README.Debian", "Debian adds a systemd unit."),
    ]
    assert "3 file(s) of unsupported types skipped: .1 (1), .log (1), (no extension) (1)" in caplog.text
    # Named on its own, a binary file without an extension is an error saying so.
    with pytest.raises(InputError, match=r"run: binary data \(a NUL byte at offset 7\), not a text file"):
        list(read_sources([folder / "run"]))


def test_ligatures_and_invisible_characters_do_not_break_words(tmp_path: Path) -> None:
    # A typeset PDF's "ﬁ" and a web page's soft hyphens split words for the tokenizers and BM25.
    path = _write(tmp_path / "ﬂow.txt", "The deﬁnition of ﬂow\u00adcontrol\u200b\u00a0is on page 3.")
    [document] = read_sources([path])
    assert (document.title, document.text) == ("flow", "The definition of flowcontrol is on page 3.")


def test_source_is_path_as_given(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    shutil.copy(ASSETS / "sample.txt", tmp_path / "sample.txt")
    monkeypatch.chdir(tmp_path)
    [document] = read_sources(["sample.txt"])
    assert document.source == "sample.txt"


def test_read_sources_combines_formats() -> None:
    sources = [ASSETS / name for name in ("sample.txt", "sample.md", "records.jsonl", "squad_tiny.json")]
    documents = list(read_sources(sources))
    assert len(documents) == 1 + 4 + 2 + 3


def test_non_utf8_text_is_read_as_windows_1252_with_warning(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = _write(tmp_path / "latin1.txt", "café “au lait” 5 €".encode("cp1252"))
    with caplog.at_level(logging.WARNING):
        [document] = read_txt(path)
    assert document.text == "café “au lait” 5 €"
    assert "latin1.txt" in caplog.text and "not valid UTF-8" in caplog.text and "Windows-1252" in caplog.text


def test_non_utf8_jsonl_line_is_read_as_windows_1252_with_one_warning(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    lines = ['{"text": "plain ascii"}', '{"text": "café “au lait”"}', '{"text": "5 €"}']
    path = _write(tmp_path / "export.jsonl", "\n".join(lines).encode("cp1252"))
    with caplog.at_level(logging.WARNING):
        documents = list(read_jsonl(path))
    assert [d.text for d in documents] == ["plain ascii", "café “au lait”", "5 €"]
    # one warning per file, at the first bad byte: offset of line 2 plus len('{"text": "caf')
    assert caplog.text.count("not valid UTF-8") == 1
    assert f"offset {len(lines[0]) + 1 + 13}" in caplog.text and "Windows-1252" in caplog.text


@pytest.mark.parametrize("encoding", ["utf-16", "utf-16-be", "utf-32", "utf-8-sig"])
def test_text_with_a_byte_order_mark_is_decoded(tmp_path: Path, encoding: str) -> None:
    text = "Müller wrote “Ωmega” in 1921."
    data = text.encode(encoding)
    if encoding == "utf-16-be":
        data = codecs.BOM_UTF16_BE + data  # the explicit-endian codecs write no mark
    [document] = read_txt(_write(tmp_path / "windows.txt", data))
    assert document.text == text


@pytest.mark.parametrize("name", ["photo.txt", "photo.md", "photo.csv", "photo.json"])
def test_binary_data_in_a_text_format_is_an_input_error(tmp_path: Path, name: str) -> None:
    path = _write(tmp_path / name, b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR" + bytes(range(256)))
    with pytest.raises(
        InputError, match=rf"{name.replace('.', '[.]')}: binary data \(a NUL byte at offset 8\)"
    ):
        list(read_sources([path]))


def test_a_table_without_a_text_column_is_read_row_by_row_whole(tmp_path: Path) -> None:
    path = _write(
        tmp_path / "widgets.csv",
        'name,description,year,title\nWidget A,"Small, made of steel",1999,A\nWidget B,,2005,\n',
    )
    documents = list(read_csv(path))
    assert [(d.title, d.position, d.text) for d in documents] == [
        ("A", 2, "name: Widget A\ndescription: Small, made of steel\nyear: 1999"),
        ("widgets", 3, "name: Widget B\nyear: 2005"),
    ]
    assert documents[0].metadata == {
        "name": "Widget A",
        "description": "Small, made of steel",
        "year": "1999",
    }


# ---- bad input --------------------------------------------------------------------------------


def test_missing_path(tmp_path: Path) -> None:
    with pytest.raises(InputError, match=r"nowhere\.txt: no such file or folder"):
        list(read_sources([str(tmp_path / "nowhere.txt")]))


def test_unsupported_binary_type_lists_supported(tmp_path: Path) -> None:
    path = _write(tmp_path / "report.xlsx", _zip_bytes({"xl/workbook.xml": "<workbook/>"}))
    with pytest.raises(
        InputError, match=r"report\.xlsx: unsupported file type '\.xlsx' \(binary data\).*\.txt, .*\.pdf"
    ):
        list(read_sources([path]))


def test_a_text_file_of_another_type_named_on_its_own_is_read_as_text(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = _write(tmp_path / "build.log", "Compiling the parser took 12 seconds.")
    with caplog.at_level(logging.WARNING):
        [document] = read_sources([path])
    assert (document.title, document.text) == ("build", "Compiling the parser took 12 seconds.")
    assert "build.log: file type '.log' read as plain text" in caplog.text


def test_malformed_jsonl_line_names_line(tmp_path: Path) -> None:
    path = _write(tmp_path / "bad.jsonl", '{"text": "ok"}\n{"text": oops}\n')
    with pytest.raises(InputError, match=r"bad\.jsonl:2: not valid JSON"):
        list(read_jsonl(path))


def test_jsonl_record_missing_text_field_lists_fields(tmp_path: Path) -> None:
    path = _write(tmp_path / "bad.jsonl", '{"text": "ok"}\n\n{"body": "x", "title": "T"}\n')
    with pytest.raises(InputError) as err:
        list(read_jsonl(path))
    message = str(err.value)
    assert "bad.jsonl:3: missing text field 'text'" in message
    assert "'body', 'title'" in message and "text_field" in message


def test_json_record_with_non_string_text(tmp_path: Path) -> None:
    path = _write(tmp_path / "bad.json", json.dumps([{"text": "ok"}, {"text": 42, "id": 7}]))
    with pytest.raises(
        InputError, match=r"bad\.json: \[1\]: text field 'text' should be a string, got int.*'id'"
    ):
        list(read_json(path))


def test_json_record_missing_text_field(tmp_path: Path) -> None:
    path = _write(tmp_path / "bad.json", json.dumps([{"content": "x"}]))
    with pytest.raises(InputError, match=r"bad\.json: \[0\]: missing text field 'text'.*'content'"):
        list(read_json(path))


def test_invalid_json_names_line_and_column(tmp_path: Path) -> None:
    path = _write(tmp_path / "bad.json", '[\n  {"text": "x"}\n  {"text": "y"}\n]')
    with pytest.raises(InputError, match=r"bad\.json:3:3: not valid JSON"):
        list(read_json(path))


def test_json_of_unknown_shape(tmp_path: Path) -> None:
    path = _write(tmp_path / "odd.json", json.dumps({"items": ["a"]}))
    with pytest.raises(InputError, match=r"odd\.json: expected SQuAD format .* or a list of records"):
        list(read_json(path))


def test_broken_squad_names_json_path(tmp_path: Path) -> None:
    data = {"data": [{"title": "A", "paragraphs": [{"context": "ok", "qas": []}, {"qas": []}]}]}
    path = _write(tmp_path / "squad.json", json.dumps(data))
    with pytest.raises(InputError, match=r"squad\.json: data\[0\]\.paragraphs\[1\]: missing field 'context'"):
        list(read_json(path))


def test_squad_article_with_a_bad_title_names_json_path(tmp_path: Path) -> None:
    data = {"data": [{"title": ["A"], "paragraphs": [{"context": "ok", "qas": []}]}]}
    path = _write(tmp_path / "squad.json", json.dumps(data))
    with pytest.raises(InputError, match=r"squad\.json: data\[0\]: field 'title' should be a string, got a"):
        list(read_json(path))


def test_html_binary_or_empty(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    with pytest.raises(
        InputError, match=r"image\.html: binary data \(a NUL byte at offset 8\), not an HTML page"
    ):
        list(read_html(_write(tmp_path / "image.html", b"\x89PNG\r\n\x1a\n\x00\x00")))
    with caplog.at_level(logging.WARNING):
        assert list(read_html(_write(tmp_path / "blank.html", "  \n"))) == []
        assert list(read_html(_write(tmp_path / "chrome.html", "<nav>Home</nav><footer>(c)</footer>"))) == []
    assert "blank.html: empty" in caplog.text and "chrome.html: no text, skipped" in caplog.text


@pytest.mark.parametrize(
    "content", [b"plain text saved as .docx", b"PK\x03\x04truncated zip", _zip_bytes({"hello.txt": "hi"})]
)
def test_unreadable_docx(tmp_path: Path, content: bytes) -> None:
    path = _write(tmp_path / "report.docx", content)
    with pytest.raises(InputError, match=r"report\.docx: not a readable Word \.docx file .*as \.docx"):
        list(read_docx(path))


def _docx_bytes() -> bytes:
    import docx

    word = docx.Document()
    word.add_heading("Setup", level=1)
    word.add_paragraph("Install the package with pip, then run the setup command once. " * 8)
    buffer = io.BytesIO()
    word.save(buffer)
    return buffer.getvalue()


def _garble_member(data: bytes, member: str) -> bytes:
    """``data`` (a zip) with the middle of ``member``'s compressed bytes overwritten."""
    with zipfile.ZipFile(io.BytesIO(data)) as archive:
        info = archive.getinfo(member)
    start = info.header_offset + 30 + len(info.filename.encode()) + len(info.extra)
    at = start + info.compress_size // 2
    return data[:at] + b"\xff" * 8 + data[at + 8 :]


@pytest.mark.parametrize(
    "damage",
    [
        # Found by fuzzing: each escaped the reader as zipfile's or zlib's own exception.
        lambda data: set_zip_header_field(data, "word/document.xml", 6, 64),  # zip version 6.4
        lambda data: set_zip_header_field(data, "word/document.xml", 10, 99),  # AES compression
        lambda data: _garble_member(data, "word/document.xml"),  # a broken deflate stream
    ],
    ids=["zip-version", "compression-method", "deflate-stream"],
)
def test_a_damaged_docx_is_a_clear_error(tmp_path: Path, damage) -> None:
    path = _write(tmp_path / "manual.docx", damage(_docx_bytes()))
    with pytest.raises(InputError, match=r"manual\.docx: not a readable Word \.docx file"):
        list(read_docx(path))


@pytest.mark.parametrize(
    ("name", "content", "expected"),
    [
        ("empty.csv", "", r"empty\.csv: no header row"),
        ("short.csv", "text,title\nok,A\n\nonly\n", r"short\.csv:4: row has 1 field\(s\) but the header has"),
        ("quote.csv", 'text,n\nok,1\n"a"b,2\n', r"quote\.csv:3: not valid CSV: ',' expected after"),
        ("open.tsv", 'text\tn\n"never closed\t1\n', r"open\.tsv:2: not valid CSV: unexpected end of data"),
        ("semi.csv", "text;n\nok;1\na;b;2\n", r"semi\.csv:3: row has 3 field\(s\) .* contain a semicolon"),
    ],
)
def test_malformed_csv_names_line(tmp_path: Path, name: str, content: str, expected: str) -> None:
    with pytest.raises(InputError, match=expected):
        list(read_csv(_write(tmp_path / name, content)))


def test_a_named_text_column_that_is_missing_lists_the_columns(tmp_path: Path) -> None:
    path = _write(tmp_path / "cols.csv", "title,body\nA,b\n")
    with pytest.raises(InputError, match=r"cols\.csv:1: no text column 'text'; the header has 'title', 'bo"):
        list(read_csv(path, IngestConfig(text_field="text")))


def test_corrupt_pdf(tmp_path: Path) -> None:
    path = _write(tmp_path / "broken.pdf", b"%PDF-1.4\n1 0 obj\n<< /Type /Catalog")
    with pytest.raises(InputError, match=r"broken\.pdf: not a readable PDF"):
        list(read_pdf(path))


def test_encrypted_pdf(tmp_path: Path) -> None:
    from pypdf import PdfReader, PdfWriter

    writer = PdfWriter()
    writer.append(PdfReader(io.BytesIO(make_pdf(["Secret page."]))))
    writer.encrypt(user_password="secret", algorithm="RC4-128")
    buffer = io.BytesIO()
    writer.write(buffer)
    path = _write(tmp_path / "locked.pdf", buffer.getvalue())
    with pytest.raises(InputError, match=r"locked\.pdf: PDF is encrypted.*decrypt"):
        list(read_pdf(path))


def test_pdf_without_text_suggests_ocr(tmp_path: Path) -> None:
    path = _write(tmp_path / "scan.pdf", make_pdf(["", ""]))
    with pytest.raises(InputError, match=r"scan\.pdf: no extractable text.*scanned image.*OCR"):
        list(read_pdf(path))


def test_all_sources_empty(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    empty = _write(tmp_path / "empty.txt", "  \n\n")
    blank = _write(tmp_path / "blank.md", "# Title\n\n")
    with caplog.at_level(logging.WARNING), pytest.raises(InputError, match=r"no text found in: .*empty\.txt"):
        list(read_sources([empty, blank]))
    assert "empty.txt: empty, skipped" in caplog.text


@pytest.mark.parametrize("variable", ["HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE"])
def test_hf_offline_fails_fast(monkeypatch: pytest.MonkeyPatch, variable: str) -> None:
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.delenv("HF_DATASETS_OFFLINE", raising=False)
    monkeypatch.setenv(variable, "1")
    # If the offline check came after the import, a None module would raise ImportError instead.
    monkeypatch.setitem(sys.modules, "datasets", None)
    with pytest.raises(InputError) as err:
        list(read_sources(["hf://rajpurkar/squad?split=validation&text_field=context"]))
    message = str(err.value)
    assert "hf://rajpurkar/squad" in message and "'rajpurkar/squad'" in message
    assert variable in message and "local" in message


def test_hf_without_datasets_package(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.delenv("HF_DATASETS_OFFLINE", raising=False)
    monkeypatch.setitem(sys.modules, "datasets", None)
    with pytest.raises(InputError, match=r"pip install 'slmkit\[hf\]'"):
        list(read_hf_dataset("hf://squad"))


def test_hf_unknown_option() -> None:
    with pytest.raises(InputError, match=r"unknown option\(s\) splt; valid options: config, split"):
        list(read_hf_dataset("hf://squad?splt=train"))
