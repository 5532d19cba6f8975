"""Abuse tests for the readers of knowledge-base sources and SQuAD files.

Hypothesis writes malformed JSON, JSONL, SQuAD and Markdown files (and bytes that are not text at
all); every reader must either read documents or raise an :class:`InputError` that names the file,
never another exception, and adding such a file to a knowledge base must leave it as it was.
Bounded: a few hundred files per test, seconds each.
"""

from __future__ import annotations

import functools
import json
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from slmkit.data.squad import load_squad
from slmkit.errors import InputError
from slmkit.rag.ingest import read_sources
from slmkit.rag.knowledge_base import KnowledgeBase

FUZZ = settings(max_examples=200, deadline=None, suppress_health_check=list(HealthCheck))

SCALARS = st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=30)
ANY_JSON = st.recursive(
    SCALARS,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=10), inner, max_size=4),
    max_leaves=15,
)


def _maybe(value: st.SearchStrategy) -> st.SearchStrategy:
    """Mostly the right shape, sometimes any JSON value instead."""
    return st.one_of(value, value, value, ANY_JSON)


def _record(fields: dict[str, st.SearchStrategy]) -> st.SearchStrategy:
    """A JSON object with each field right, wrong, or missing."""
    return st.fixed_dictionaries({}, optional={name: _maybe(value) for name, value in fields.items()})


ANSWER = _record({"text": st.text(max_size=20), "answer_start": st.integers(-5, 500)})
QUESTION = _record(
    {"id": st.text(max_size=8), "question": st.text(max_size=30), "answers": st.lists(ANSWER, max_size=3)}
)
PARAGRAPH = _record({"context": st.text(max_size=80), "qas": st.lists(QUESTION, max_size=3)})
ARTICLE = _record({"title": st.text(max_size=20), "paragraphs": st.lists(PARAGRAPH, max_size=3)})
SQUAD = _maybe(_record({"version": st.just("1.1"), "data": st.lists(ARTICLE, max_size=3)}))
RECORDS = _maybe(st.lists(_maybe(_record({"text": st.text(max_size=40), "title": SCALARS})), max_size=5))


def _damaged(text: str) -> st.SearchStrategy[bytes]:
    """``text`` as UTF-8, or cut short, or with bytes that are not UTF-8, or nested too deeply."""
    data = text.encode()
    return st.one_of(
        st.just(data),
        st.integers(0, len(data)).map(lambda n: data[:n]),
        st.binary(min_size=1, max_size=8).map(lambda junk: data[: len(data) // 2] + b"\xff" + junk),
        st.integers(1, 50_000).map(lambda depth: b"[" * depth + b"]" * depth),
    )


SQUAD_FILES = SQUAD.map(json.dumps).flatmap(_damaged)
JSON_FILES = RECORDS.map(json.dumps).flatmap(_damaged)
JSONL_FILES = (
    st.lists(
        st.one_of(
            ANY_JSON.map(json.dumps), _record({"text": st.text(max_size=40)}).map(json.dumps), st.text()
        ),
        max_size=6,
    )
    .map("\n".join)
    .flatmap(_damaged)
)
MARKDOWN_FILES = st.lists(
    st.one_of(
        st.text(max_size=60),
        st.text(max_size=20).map(lambda t: f"# {t}"),
        st.text(max_size=20).map(lambda t: f"## {t} ##"),
        st.sampled_from(["```", "~~~", "", "#", "##", "   ", "\r", "\u2028"]),
    ),
    max_size=12,
).map("\n".join).flatmap(_damaged) | st.binary(max_size=300)


@pytest.fixture(scope="module")
def folder(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("fuzz-sources")


@pytest.fixture(scope="module")
def kb(folder, embedder) -> KnowledgeBase:
    source = folder / "seed.txt"
    source.write_text("The Kestrel Point Lighthouse was first lit in 1874.\n", encoding="utf-8")
    built, _ = KnowledgeBase.build(folder / "kb", [source], embedder=embedder, progress=False)
    return built


def _read(path: Path) -> None:
    """Read ``path`` as a knowledge-base source; anything but documents must be a clear InputError."""
    try:
        documents = list(read_sources([path]))
    except InputError as err:
        assert path.name in str(err), str(err)  # names the file at fault
        raise
    assert documents and all(d.text.strip() and d.source == str(path) for d in documents)


def _check_reader(folder: Path, kb: KnowledgeBase, name: str, data: bytes) -> None:
    path = folder / name
    path.write_bytes(data)
    try:
        _read(path)
    except InputError:
        version = (kb.path / "CURRENT").read_text()
        with pytest.raises(InputError):
            kb.add([path], progress=False)
        assert (kb.path / "CURRENT").read_text() == version  # the knowledge base is as it was
        assert not [p for p in kb.path.iterdir() if p.name.startswith(".staging")]


@given(data=SQUAD_FILES)
@FUZZ
def test_malformed_squad_files_are_an_input_error_naming_the_file(folder, kb, data):
    _check_reader(folder, kb, "squad.json", data)
    path = folder / "squad.json"
    try:
        articles = load_squad(path)  # the QA reader (training, evaluation) of the same file
    except InputError as err:
        assert path.name in str(err), str(err)
    else:
        assert all(isinstance(q.id, str) for a in articles for p in a.paragraphs for q in p.qas)


@given(data=JSON_FILES)
@FUZZ
def test_malformed_json_records_are_an_input_error_naming_the_file(folder, kb, data):
    _check_reader(folder, kb, "records.json", data)


@given(data=JSONL_FILES)
@FUZZ
def test_malformed_jsonl_is_an_input_error_naming_the_file(folder, kb, data):
    _check_reader(folder, kb, "records.jsonl", data)


@given(data=MARKDOWN_FILES)
@FUZZ
def test_any_markdown_is_read_or_an_input_error_naming_the_file(folder, kb, data):
    _check_reader(folder, kb, "notes.md", data)


@pytest.mark.parametrize("name", ["deep.json", "deep.jsonl", "squad.json"])
def test_json_nested_deeper_than_the_reader_can_follow_is_an_input_error(tmp_path, name):
    # Found by the tests above: json.loads raised RecursionError, a traceback instead of a message.
    path = tmp_path / name
    path.write_text("[" * 100_000 + "]" * 100_000, encoding="utf-8")
    read = load_squad if name == "squad.json" else lambda p: list(read_sources([p]))
    with pytest.raises(InputError, match=f"{name}.*nested too deeply"):
        read(path)


def _mutated(data: bytes) -> st.SearchStrategy[bytes]:
    """``data`` cut short, or with a few bytes overwritten anywhere (a zip's headers and compressed
    streams, a PDF's cross-reference table), or as it is."""
    overwrite = st.lists(
        st.tuples(st.integers(0, len(data) - 1), st.integers(0, 255)), min_size=1, max_size=6
    )

    def apply(changes: list[tuple[int, int]]) -> bytes:
        out = bytearray(data)
        for at, value in changes:
            out[at] = value
        return bytes(out)

    return st.one_of(st.just(data), st.integers(0, len(data)).map(lambda n: data[:n]), overwrite.map(apply))


def _valid_epub() -> bytes:
    import tempfile

    from fakes import make_epub

    with tempfile.TemporaryDirectory() as tmp:
        return make_epub(Path(tmp) / "book.epub").read_bytes()


def _valid_docx() -> bytes:
    import io

    import docx

    word = docx.Document()
    word.core_properties.title = "Field guide"
    word.add_heading("Ctenophores", level=1)
    word.add_paragraph("Comb jellies swim with combs of cilia. " * 6)
    table = word.add_table(rows=1, cols=2)
    table.rows[0].cells[0].text, table.rows[0].cells[1].text = "Beroe", "30 cm"
    buffer = io.BytesIO()
    word.save(buffer)
    return buffer.getvalue()


def _valid_pptx() -> bytes:
    import tempfile

    from fakes import make_pptx

    with tempfile.TemporaryDirectory() as tmp:
        return make_pptx(Path(tmp) / "deck.pptx").read_bytes()


def _valid_pdf() -> bytes:
    import io

    from pypdf import PdfReader, PdfWriter

    from fakes import make_pdf

    writer = PdfWriter(
        clone_from=PdfReader(io.BytesIO(make_pdf(["Contents . . . . 2", "1 Parsing\nA lexer."])))
    )
    writer.add_outline_item("1 Parsing", 1)
    buffer = io.BytesIO()
    writer.write(buffer)
    return buffer.getvalue()


# Files that are archives or have a cross-reference table, each as a valid one to damage.
DAMAGEABLE = {
    "book.epub": _valid_epub,
    "manual.pdf": _valid_pdf,
    "guide.docx": _valid_docx,
    "deck.pptx": _valid_pptx,
}


@pytest.mark.parametrize("name", list(DAMAGEABLE))
@given(data=st.data())
@FUZZ
def test_a_damaged_file_is_read_or_an_input_error_naming_the_file(folder, kb, name, data):
    _check_reader(folder, kb, name, data.draw(_mutated(_valid(name)), label="file"))


@functools.cache
def _valid(name: str) -> bytes:
    return DAMAGEABLE[name]()
