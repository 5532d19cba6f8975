"""EPUB e-books: chapters in reading order through the HTML reader, and a clear error for each way a
book can be unreadable."""

from __future__ import annotations

import logging

import pytest

from fakes import epub_package, make_epub, set_zip_header_field
from slmkit.errors import InputError
from slmkit.rag.epub_text import read_book
from slmkit.rag.ingest import read_epub, read_sources


def test_an_epub_reads_its_chapters_in_spine_order_one_document_per_section(tmp_path):
    path = make_epub(tmp_path / "guide.epub")
    documents = [(d.title, d.position, d.text) for d in read_epub(path)]
    assert documents == [
        # Text before any heading is titled by its page's own title, when that is not the book's.
        ("Field Guide › Chapter 2: Sponges", 0, "Sponges have no nerves."),
        ("Field Guide › Comb jellies", 2, "Ctenophores swim with combs of cilia."),  # the nav is left out
        ("Field Guide › Light", 3, "Many of them glow."),
    ]
    assert [d.title for d in read_sources([tmp_path])] == [d[0] for d in documents]  # found in a folder


def test_a_book_without_a_title_is_titled_by_its_file_name(tmp_path):
    path = make_epub(
        tmp_path / "untitled.epub", {"OEBPS/content.opf": epub_package().replace("Field Guide", "")}
    )
    assert {d.title.split(" › ")[0] for d in read_epub(path)} == {"untitled"}


def test_fonts_obfuscated_in_a_drm_free_book_cost_nothing_but_encrypted_pages_are_refused(tmp_path):
    def encryption(uri: str) -> str:
        return (
            '<encryption xmlns="urn:oasis:names:tc:opendocument:xmlns:container" '
            'xmlns:enc="http://www.w3.org/2001/04/xmlenc#"><enc:EncryptedData>'
            f'<enc:CipherData><enc:CipherReference URI="{uri}"/></enc:CipherData>'
            "</enc:EncryptedData></encryption>"
        )

    fonts = make_epub(
        tmp_path / "fonts.epub", {"META-INF/encryption.xml": encryption("OEBPS/fonts/serif.otf")}
    )
    assert len(read_book(fonts).pages) == 2
    locked = make_epub(
        tmp_path / "locked.epub", {"META-INF/encryption.xml": encryption("OEBPS/text/two.xhtml")}
    )
    with pytest.raises(InputError, match=r"locked\.epub: OEBPS/text/two\.xhtml is encrypted .*DRM"):
        read_book(locked)


@pytest.mark.parametrize(
    ("replace", "message"),
    [
        ({"META-INF/container.xml": None}, r"META-INF/container\.xml is missing"),
        ({"META-INF/container.xml": "<container>"}, r"META-INF/container\.xml: not well-formed XML"),
        ({"META-INF/container.xml": "<container/>"}, r"container\.xml: names no package document"),
        ({"OEBPS/content.opf": None}, r"OEBPS/content\.opf is missing"),
        (
            {"OEBPS/content.opf": epub_package('<itemref idref="c9"/>')},
            r"spine item 1 names 'c9', not in the manifest",
        ),
        ({"OEBPS/text/two.xhtml": None}, r"spine item 1 \(OEBPS/text/two\.xhtml\) is not in the archive"),
        ({"OEBPS/content.opf": epub_package('<itemref idref="cover"/>')}, r"the spine names no XHTML page"),
    ],
)
def test_a_broken_book_is_an_error_naming_the_file_and_the_part(tmp_path, replace, message):
    path = make_epub(tmp_path / "broken.epub", replace)
    with pytest.raises(InputError, match=rf"broken\.epub: .*{message}"):
        list(read_epub(path))


def test_a_file_that_is_no_zip_archive_is_not_an_epub(tmp_path):
    path = tmp_path / "book.epub"
    path.write_text("Chapter one. It was a dark night.", encoding="utf-8")
    with pytest.raises(InputError, match=r"book\.epub: not a readable EPUB \(an EPUB is a zip archive"):
        list(read_epub(path))


def test_a_page_damaged_in_the_archive_is_a_clear_error(tmp_path):
    path = make_epub(tmp_path / "cut.epub")
    data = bytearray(path.read_bytes())
    at = data.index(b"Sponges have no nerves")  # stored uncompressed: its bytes are in the file
    data[at : at + 7] = b"XXXXXXX"  # the CRC no longer matches
    path.write_bytes(bytes(data))
    with pytest.raises(InputError, match=r"cut\.epub: a damaged EPUB .*download it again"):
        list(read_epub(path))


def test_an_unreadable_page_is_skipped_with_a_warning(tmp_path, caplog):
    path = make_epub(tmp_path / "guide.epub", {"OEBPS/text/two.xhtml": ""})
    with caplog.at_level(logging.WARNING):
        titles = [d.title for d in read_epub(path)]
    assert titles == ["Field Guide › Comb jellies", "Field Guide › Light"]
    assert "OEBPS/text/two.xhtml: not a readable page" in caplog.text


def test_a_member_zipfile_cannot_extract_is_a_clear_error(tmp_path):
    # Found by fuzzing: an unknown compression method (here AES's 99, in the central directory) made
    # zipfile raise NotImplementedError, and a zip password RuntimeError, instead of an InputError.
    path = make_epub(tmp_path / "aes.epub")
    path.write_bytes(set_zip_header_field(path.read_bytes(), "META-INF/container.xml", 10, 99))
    with pytest.raises(InputError, match=r"aes\.epub: a damaged EPUB .*compression"):
        read_book(path)


def test_an_archive_asking_for_a_zip_version_zipfile_lacks_is_not_a_readable_epub(tmp_path):
    # Found by fuzzing in CI: a damaged central directory asking for zip version 6.4 made opening the
    # archive raise NotImplementedError.
    path = make_epub(tmp_path / "new.epub")
    path.write_bytes(set_zip_header_field(path.read_bytes(), "OEBPS/content.opf", 6, 64))
    with pytest.raises(InputError, match=r"new\.epub: not a readable EPUB .*zip file version 6\.4"):
        read_book(path)
