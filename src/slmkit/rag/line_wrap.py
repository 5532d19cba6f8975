"""Paragraphs of hard-wrapped text joined back into lines.

Plain-text files (licences, RFCs, READMEs, e-mail, Project Gutenberg books) and the text layer of a
PDF break every paragraph into lines of about 70-100 characters. Left so, the reader sees a line
break in the middle of a sentence: trained on paragraphs without any, it stops its answer at the
break ("either the unmodified Program or a work based" for "... a work based on the Program") and
is less sure a wrapped passage answers at all (no-answer probability 0.78 wrapped, 0.71 joined, on
the Mozilla licence's "Mozilla Foundation is the license steward"). The sentence splitter that cuts
chunks and picks evidence sentences sees the same broken sentences.

A line is joined to the next when it reached the text's wrapping width (a line that ends early
ended on purpose: a heading, the last line of a paragraph, an address) and the next line continues
it: not a list item, a section number, an underline, a table row, code or a quotation, and not
indented deeper. Text that is not hard-wrapped (a paragraph per line, or lines too short to have
been wrapped) is returned as it is.
"""

from __future__ import annotations

import re

# The wrapping width is the 90th percentile of line lengths; text wrapped at 40-110 characters is
# joined (below 40 the lines are a list or verse; above 110 they are paragraphs already).
_MIN_WIDTH, _MAX_WIDTH = 40, 110
_FULL = 0.6  # a line this share of the width long was broken by the wrap, not by its author
# What starts a line of its own: a bullet, or "1." / "2.5" / "(a)" / "a)" / "iv." numbering (an
# item, whose wrapped lines may hang under its text) ...
_ITEM = re.compile(
    r"""(?:[-*+•◦▪‣∙·–—]|\d+(?:\.\d+)*[.)]?|\(?[a-zA-Z]{1,2}\)|\(?[ivxlcdm]{1,5}[.)]|[a-zA-Z]\.)\s+""",
)
# ... or an underline or rule, a table row, or a first character prose does not start with (code, a
# shell prompt, e-mail's quotation mark). Both are matched against a line without its indentation.
# Three spaces or a tab inside a line line up columns (prose has at most two, after a full stop).
_ALIGNED = re.compile(r"\S(?: {3,}|\t)\S")
# A header field: "Author: Philip A. Nelson", "Copying: GNU GPL version 2".
_FIELD = re.compile(r"[A-Z][\w-]*(?: [\w-]+){0,2}: \S")
_RULE = re.compile(r"(?P<c>[-=~*_#+.^])(?P=c){2,}$")
_NOT_PROSE = re.compile(rf"""{_RULE.pattern}|.*\s\|\s|[^\w"'“‘(\[]""")


def unwrap_lines(text: str) -> str:
    """``text`` with each hard-wrapped paragraph on one line (see the module's docstring)."""
    lines = text.split("\n")
    # Widths without indentation, so that a centred title does not count as a full line.
    lengths = sorted(len(line.strip()) for line in lines if line.strip())
    if len(lengths) < 2:
        return text
    width = lengths[min(len(lengths) - 1, int(0.9 * len(lengths)))]
    if not _MIN_WIDTH <= width <= _MAX_WIDTH:
        return text
    out = [lines[0]]
    literal = _literal_lines(lines)
    for at in range(1, len(lines)):
        previous, line, following = lines[at - 1], lines[at], lines[at + 1] if at + 1 < len(lines) else ""
        if (
            _continues(previous, line, width)
            and not literal[at]
            # A line with an underline below it is a heading (reStructuredText, Markdown's setext).
            and not _RULE.match(following.strip())
        ):
            out[-1] = f"{out[-1].rstrip()} {line.strip()}"
        else:
            out.append(line)
    return "\n".join(out)


def _literal_lines(lines: list[str]) -> list[bool]:
    """Which lines belong to a literal block: indented deeper than a line ending in ":" before it
    (reStructuredText's "::", a README's "Run:" then a command), until the indentation comes back.
    A list indented under "these conditions:" is not one: its first line is an item."""
    literal = [False] * len(lines)
    opener: int | None = None  # the indentation of the line that ended in ":"
    block: int | None = None  # the literal block's indentation
    for at, line in enumerate(lines):
        if not line.strip():
            continue
        indent = _indent(line)
        if block is not None and indent >= block:
            literal[at] = True
            continue
        block = None
        if opener is not None and indent > opener and not _ITEM.match(line.lstrip()):
            block, literal[at] = indent, True
            opener = None
            continue
        opener = indent if line.rstrip().endswith(":") else None
    return literal


def _continues(previous: str, line: str, width: int) -> bool:
    """Whether ``line`` continues the paragraph whose last line so far is ``previous``."""
    last, next_ = previous.strip(), line.strip()
    if not last or not next_:
        return False  # a blank line ends a paragraph
    # A line ending in ":" introduces what follows; one ending in a brace or ";" is code.
    if len(last) < _FULL * width or last.endswith((":", "{", "}", ";", "[")):
        return False
    if _ALIGNED.search(last) or _ALIGNED.search(next_):
        return False  # columns lined up with spaces: a table, or a command and its description
    # A wrapped line is not indented deeper than the line before, except under an item's text:
    # "    (a) that the initial Contributor ..." / "        in Exhibit B to ...".
    item = _ITEM.match(last)
    hang = _indent(previous) + (item.end() if item else 0)
    if _indent(line) > hang + 1:
        return False  # deeper: code, a quotation, a nested item
    return not (_ITEM.match(next_) or _NOT_PROSE.match(next_) or _FIELD.match(next_))


def _indent(line: str) -> int:
    return len(line) - len(line.lstrip())


__all__ = ["unwrap_lines"]
