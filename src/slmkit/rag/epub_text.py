"""The chapters of an EPUB e-book, in reading order, as the XHTML pages they are.

An EPUB (2 or 3) is a zip archive: ``META-INF/container.xml`` names the package document (the
``.opf``), whose ``<metadata>`` holds the book's title, ``<manifest>`` every file, and ``<spine>``
the reading order of the content documents, XHTML pages that :mod:`slmkit.rag.html_text` reads like
any web page. Read with the standard library's zipfile and lxml, which slmkit already uses for HTML:
no e-book library needed for this much. Books sold with DRM have their pages encrypted
(``META-INF/encryption.xml``); they cannot be read and say so.
"""

from __future__ import annotations

import posixpath
import zipfile
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import unquote

from lxml import etree

from slmkit.errors import InputError
from slmkit.rag.archive import DAMAGED_ZIP

_CONTAINER = "META-INF/container.xml"
_ENCRYPTION = "META-INF/encryption.xml"
_PAGE_TYPES = {"application/xhtml+xml", "text/html"}
_NS = {
    "c": "urn:oasis:names:tc:opendocument:xmlns:container",
    "opf": "http://www.idpf.org/2007/opf",
    "dc": "http://purl.org/dc/elements/1.1/",
}


@dataclass(frozen=True)
class EpubBook:
    """A book's title ("" if its metadata has none) and its content pages in reading order, each as
    ``(path in the archive, bytes)``."""

    title: str
    pages: list[tuple[str, bytes]]


def read_book(path: str | Path) -> EpubBook:
    """The title and the spine's XHTML pages of the EPUB at ``path``.

    Raises:
        InputError: not a zip archive, no or a broken ``container.xml`` or package document, a page
            the spine names missing from the archive, or pages encrypted (DRM); each names the file
            and the part at fault.
    """
    try:
        archive = zipfile.ZipFile(path)
    except FileNotFoundError:
        raise InputError(f"{path}: no such file") from None
    # NotImplementedError: a central directory asking for a zip version zipfile does not read (a
    # damaged header says "6.4"); to the user that is the same unreadable archive.
    except (*DAMAGED_ZIP, OSError) as err:
        raise InputError(f"{path}: not a readable EPUB (an EPUB is a zip archive: {err})") from None
    with archive:
        try:
            return _read(archive, path)
        # A member that fails its CRC or is cut short (a damaged download), or that zipfile cannot
        # extract: an unknown compression method or flag (NotImplementedError), a zip password
        # (RuntimeError).
        except DAMAGED_ZIP as err:
            raise InputError(f"{path}: a damaged EPUB ({err}); download it again") from None


def _read(archive: zipfile.ZipFile, path: str | Path) -> EpubBook:
    names = set(archive.namelist())
    package = _package_path(archive, names, path)
    opf = _xml(archive, package, names, path)
    encrypted = _encrypted(archive, names, path)
    title = " ".join(" ".join(opf.xpath("//opf:metadata/dc:title[1]//text()", namespaces=_NS)).split())
    folder = posixpath.dirname(package)
    items = {
        item.get("id"): (item.get("href") or "", item.get("media-type") or "")
        for item in opf.xpath("//opf:manifest/opf:item", namespaces=_NS)
    }
    pages = []
    for number, ref in enumerate(opf.xpath("//opf:spine/opf:itemref", namespaces=_NS), start=1):
        idref = ref.get("idref")
        if idref not in items:
            raise InputError(f"{path}: {package}: spine item {number} names '{idref}', not in the manifest")
        href, media_type = items[idref]
        if media_type not in _PAGE_TYPES:
            continue  # an image or SVG page in the reading order: nothing to read
        member = posixpath.normpath(posixpath.join(folder, unquote(href.split("#")[0])))
        if member not in names:
            raise InputError(f"{path}: {package}: spine item {number} ({member}) is not in the archive")
        if member in encrypted:
            raise InputError(
                f"{path}: {member} is encrypted ({_ENCRYPTION}: DRM); export a DRM-free copy of the book"
            )
        pages.append((member, archive.read(member)))
    if not pages:
        raise InputError(f"{path}: {package}: the spine names no XHTML page")
    return EpubBook(title, pages)


def _encrypted(archive: zipfile.ZipFile, names: set[str], path: str | Path) -> set[str]:
    """The archive members ``encryption.xml`` lists. DRM-free books list only their fonts there
    (obfuscated, as publishers' font licences ask), which costs no text."""
    if _ENCRYPTION not in names:
        return set()
    listed = _xml(archive, _ENCRYPTION, names, path).xpath("//*[local-name()='CipherReference']/@URI")
    return {posixpath.normpath(unquote(str(uri))) for uri in listed}


def _package_path(archive: zipfile.ZipFile, names: set[str], path: str | Path) -> str:
    container = _xml(archive, _CONTAINER, names, path)
    found = container.xpath("//c:rootfile/@full-path", namespaces=_NS)
    if not found:
        raise InputError(f"{path}: {_CONTAINER}: names no package document (rootfile full-path)")
    return str(found[0])


def _xml(archive: zipfile.ZipFile, member: str, names: set[str], path: str | Path) -> etree._Element:
    if member not in names:
        raise InputError(f"{path}: {member} is missing: not an EPUB, or a damaged one")
    # No entity expansion and no network: a book is untrusted input.
    parser = etree.XMLParser(resolve_entities=False, no_network=True, recover=False)
    try:
        return etree.fromstring(archive.read(member), parser)
    except etree.XMLSyntaxError as err:
        raise InputError(f"{path}: {member}: not well-formed XML ({err})") from None
