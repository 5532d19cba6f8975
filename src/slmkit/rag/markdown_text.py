"""The text a Markdown file says, without its markup, in sections.

A README is read by people as rendered text; the knowledge base should hold the same. Kept raw, the
markup reaches the reader's passages and its answers ("[fcntl](https://man7.org/...)" for "fcntl"),
and link targets, badge images and HTML wrappers fill BM25's vocabulary with URLs. So the file is
parsed with markdown-it-py (CommonMark plus GFM tables, as GitHub renders them) and rendered back as
plain text:

- links keep their text, autolinks their address; images (badges, mostly) are left out;
- emphasis, code-span backticks and inline HTML tags go; code blocks stay verbatim;
- HTML blocks keep their text content (``<h1>BM25S</h1>`` reads "BM25S");
- list items keep a ``-`` or ``1.`` marker, one per line; table rows are cells joined by ``" | "``;
- headings below level 2 stay in their section as a line of their own;
- blocks are separated by a blank line (a paragraph break for the sentence splitter).

Level-1 and level-2 headings (``#``/``##`` lines and underlined setext ones, at the top level: not
in a blockquote or a list) start a new section. The whole file is parsed at once, so reference-style
links resolve wherever their definitions are.
"""

from __future__ import annotations

import html
import re
from typing import Any

__all__ = ["markdown_sections"]

_TAG = re.compile(r"<[^>]*>")
_SPACES = re.compile(r"[ \t]+")


def markdown_sections(text: str) -> list[tuple[str, str]]:
    """``(heading, body)`` pairs of plain text; the first has heading ``""`` and holds the text before
    any heading."""
    from markdown_it import MarkdownIt

    tokens = MarkdownIt("commonmark").enable("table").enable("strikethrough").parse(text)
    sections: list[tuple[str, list[str]]] = [("", [])]
    lists: list[list[Any]] = []  # open lists, innermost last: [ordered, next number]
    marker = ""  # the list-item marker that the item's first block still has to carry
    last_list: list[Any] | None = None  # the top-level list the last text block was in
    i = 0
    while i < len(tokens):
        token = tokens[i]
        kind = token.type
        blocks = sections[-1][1]
        if kind == "heading_open":
            heading = _inline(tokens[i + 1])
            if token.tag in ("h1", "h2") and token.level == 0:
                sections.append((" ".join(heading.split()), []))
            else:
                _add(blocks, heading, tight=False)
            i += 3  # heading_open, inline, heading_close
            continue
        if kind in ("bullet_list_open", "ordered_list_open"):
            start = token.attrGet("start")
            lists.append([kind == "ordered_list_open", int(start) if start is not None else 1])
        elif kind in ("bullet_list_close", "ordered_list_close"):
            lists.pop()
        elif kind == "list_item_open" and lists:
            ordered, number = lists[-1]
            marker = f"{number}. " if ordered else "- "
            lists[-1][1] = number + 1
        elif kind == "inline":
            # A tight list's items (hidden paragraphs) go one per line, under the same top-level list.
            tight = tokens[i - 1].hidden and bool(lists) and lists[0] is last_list
            _add(blocks, marker + _inline(token), tight=tight)
            last_list = lists[0] if lists else None
            marker = ""
        elif kind in ("fence", "code_block"):
            _add(blocks, marker + token.content.rstrip("\n"), tight=False)
            marker = ""
        elif kind == "html_block":
            _add(blocks, marker + _html_text(token.content), tight=False)
            marker = ""
        elif kind == "table_open":
            i, table = _table(tokens, i)
            _add(blocks, table, tight=False)
            continue
        i += 1
    return [(heading, "\n\n".join(blocks).strip("\n")) for heading, blocks in sections]


def _add(blocks: list[str], text: str, tight: bool) -> None:
    """Append a block; with ``tight`` (an item of a tight list) on the previous block's next line."""
    if not text.strip():
        return
    if tight and blocks:
        blocks[-1] += "\n" + text
    else:
        blocks.append(text)


def _inline(token: Any) -> str:
    """An inline token's text: link text kept, images, emphasis marks and HTML tags dropped."""
    out: list[str] = []
    for child in token.children or ():
        if child.type in ("text", "code_inline"):
            out.append(child.content)
        # A soft break is a wrapped line inside a paragraph: rendered, a space (a reader that sees
        # a line break mid-sentence stops its answer there); a hard break (two trailing spaces or
        # a backslash) is the author's own line end.
        elif child.type == "softbreak":
            out.append(" ")
        elif child.type == "hardbreak":
            out.append("\n")
    return "".join(out).strip()


def _html_text(markup: str) -> str:
    """The text content of an HTML block: tags out, entities decoded, one line per non-blank line."""
    lines = (_SPACES.sub(" ", html.unescape(_TAG.sub(" ", line))).strip() for line in markup.split("\n"))
    return "\n".join(line for line in lines if line)


def _table(tokens: list[Any], i: int) -> tuple[int, str]:
    """The table starting at ``tokens[i]`` as rows of cells joined by ``" | "``, and the index after it."""
    rows: list[str] = []
    cells: list[str] = []
    while tokens[i].type != "table_close":
        kind = tokens[i].type
        if kind == "tr_open":
            cells = []
        elif kind == "inline":
            cells.append(" ".join(_inline(tokens[i]).split()))
        elif kind == "tr_close" and any(cells):
            rows.append(" | ".join(cells))
        i += 1
    return i + 1, "\n".join(rows)
