"""Hard-wrapped paragraphs joined, everything else left as written."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from slmkit.rag.line_wrap import unwrap_lines

LICENCE = """\
                      Example Public License
                       Version 3, 29 June 2007

  This License refers to version 3 of the Example Public License, which the
Foundation publishes. "Copyright" also means copyright-like laws that apply
to other kinds of works, such as semiconductor masks.

1.5. "Incompatible With Secondary Licenses"
    means

    (a) that the initial Contributor has attached the notice described
        in Exhibit B to the Covered Software; or

    (b) that the Covered Software was made available under the terms of
        version 1.1 or earlier of the License."""


def test_wrapped_paragraphs_become_lines_and_titles_and_items_stay():
    assert (
        unwrap_lines(LICENCE)
        == """\
                      Example Public License
                       Version 3, 29 June 2007

  This License refers to version 3 of the Example Public License, which the Foundation \
publishes. "Copyright" also means copyright-like laws that apply to other kinds of works, such \
as semiconductor masks.

1.5. "Incompatible With Secondary Licenses"
    means

    (a) that the initial Contributor has attached the notice described in Exhibit B to the \
Covered Software; or

    (b) that the Covered Software was made available under the terms of version 1.1 or \
earlier of the License."""
    )


def test_lists_headings_code_and_tables_keep_their_lines():
    text = """\
Installing the tool takes a few steps, which the sections below explain in turn
and in order:
- download the archive from the project's release page and check its checksum
- unpack it into a folder of your choice and add that folder to your PATH
2.5 Future developments of the parser and of its command-line tools are listed
Section title
=============
The configuration is read from the file named below, which must be valid YAML
    server: {host: localhost, port: 8080, workers: 4, timeout_seconds: 30}
    client: {retries: 3, backoff_seconds: 2, verify_tls: true, proxy: none}
| option | meaning of the option and its default value in this release      |
$ slmkit index build --kb kb docs/ --chunk-tokens 200 --overlap-tokens 40
  unpacked    never      maybe    No    postinst configure and then the triggers
  c.-failed   never      maybe    No    postinst configure (when requested)
Author: Philip A. Nelson of the computer science department, Western Washington
Copying: GNU GPL version 2 or any later version, as the file COPYING says"""
    assert unwrap_lines(text) == text.replace("turn\nand", "turn and")


def test_text_that_is_not_hard_wrapped_is_returned_as_it_is():
    one_per_line = "A paragraph that runs on and on. " * 6 + "\n" + "Another one, as long. " * 8
    short_lines = "Debian\nUbuntu\nFedora\nArch Linux"
    assert unwrap_lines(one_per_line) == one_per_line
    assert unwrap_lines(short_lines) == short_lines
    assert unwrap_lines("") == "" and unwrap_lines("one line") == "one line"


def test_a_literal_block_after_a_colon_keeps_its_lines():
    text = """\
To build the index from the documentation folder of the project, run the following
command:

    slmkit index build --kb kb docs/ --chunk-tokens 200 --overlap-tokens 40 --embedder m
    slmkit ask --kb kb "Which embedder does the knowledge base use by default here?"

The first command takes about a minute on two cores for a thousand pages of text
and prints a progress bar while it embeds."""
    assert unwrap_lines(text) == text.replace("following\ncommand", "following command").replace(
        "text\nand", "text and"
    )


@settings(max_examples=300, deadline=None)
@given(
    st.lists(
        st.one_of(
            st.text(st.characters(codec="utf-8", exclude_categories=["Cs"]), max_size=90),
            st.sampled_from(["", "   ", "- item", "1. First", "=====", "  code:", "a | b | c", "\t\tx"]),
        ),
        max_size=30,
    ).map("\n".join)
)
def test_joining_lines_never_changes_the_words(text):
    joined = unwrap_lines(text)
    assert joined.split() == text.split()  # only line breaks (and the spaces around them) change
    assert joined.count("\n") <= text.count("\n")
