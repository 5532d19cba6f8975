"""Test doubles and harnesses shared by several test modules (importable: tests/ is on sys.path)."""

from __future__ import annotations

import io
import socket
import threading
import time
import zipfile
from contextlib import contextmanager
from pathlib import Path

from slmkit.models.generation import Generation
from slmkit.rag.documents import Chunk
from slmkit.rag.retrieval import Hit


def make_hit(i: int, text: str, similarity: float = 0.6, title: str = "Doc") -> Hit:
    """Retrieved chunk ``i`` (source ``src{i}.txt``, title ``"{title} {i}"``) at rank ``i + 1``."""
    chunk = Chunk(i, text, f"src{i}.txt", f"{title} {i}", 0, 0, 0, len(text), f"h{i}")
    return Hit(chunk, similarity, similarity, None, i + 1)


class FixedRetriever:
    """Returns the same hits (the first ``top_k``) for any question."""

    def __init__(self, hits) -> None:
        self.hits, self.config = hits, None

    def search(self, question, top_k=None, mode=None):
        return list(self.hits)[:top_k]


class ScriptedGenerator:
    """Streams ``reply`` one word at a time, ``delay`` seconds per word; counts words produced and
    keeps the messages of every call in ``prompts``."""

    name = "scripted"
    has_chat_template = True
    context_window = 2048

    def __init__(self, reply: str = "Denver Broncos won the game.", delay: float = 0.0) -> None:
        self.reply, self.delay, self.words_out, self.calls = reply, delay, 0, 0
        self.prompts: list[list[dict[str, str]]] = []

    def count_tokens(self, messages) -> int:
        return sum(len(m["content"].split()) for m in messages)

    def generate(self, messages, config, on_text=None) -> Generation:
        self.calls += 1
        self.prompts.append([dict(m) for m in messages])
        start = time.perf_counter()
        words = self.reply.split()[: config.max_new_tokens]
        for i, word in enumerate(words):
            time.sleep(self.delay)
            self.words_out += 1
            if on_text:
                on_text(word if i == 0 else " " + word)
        return Generation(
            " ".join(words), self.count_tokens(messages), len(words), time.perf_counter() - start, 0.0
        )


class ScriptedTeacher:
    """Replies to a chunk with the reply scripted for the first key found in its text.

    A key mapped to an exception instance raises it instead. Chunks without a key get ``default``.
    """

    name = "scripted-teacher"
    has_chat_template = True
    context_window = 4096

    def __init__(self, script: dict[str, str | Exception], default: str = "no idea") -> None:
        self.script, self.default = script, default
        self.seen: list[str] = []

    def count_tokens(self, messages):
        return sum(len(m["content"].split()) for m in messages)

    def generate(self, messages, config, on_text=None):
        prompt = messages[-1]["content"]
        self.seen.append(prompt)
        reply = next((r for key, r in self.script.items() if key in prompt), self.default)
        if isinstance(reply, Exception):
            raise reply
        return Generation(reply, self.count_tokens(messages), len(reply.split()), 0.01, 0.0)


class ScriptedReader:
    """A passage reader: scores each passage by ``no_answer[first word of the passage]`` and answers
    ``answers[first word]``; records what it scored and generated (with the grounding spans)."""

    name = "scripted-reader"
    has_chat_template = False
    context_window = 4096

    def __init__(self, no_answer: dict[str, float], answers: dict[str, str]) -> None:
        self.no_answer, self.answers = no_answer, answers
        self.scored: list[str] = []
        self.generated: list[tuple[str, list[str] | None]] = []

    @staticmethod
    def _passage(messages) -> str:
        text = messages[-1]["content"].split("\n")
        return text[2]  # "Context:", "[1] title", passage text, ...

    def count_tokens(self, messages):
        return sum(len(m["content"].split()) for m in messages)

    def no_answer_probabilities(self, prompts):
        self.scored += [self._passage(p) for p in prompts]
        return [self.no_answer[self._passage(p).split()[0]] for p in prompts]

    def generate(self, messages, config, on_text=None, spans=None):
        passage = self._passage(messages)
        self.generated.append((passage, spans))
        reply = self.answers[passage.split()[0]]
        if on_text:
            on_text(reply)
        return Generation(reply, self.count_tokens(messages), len(reply.split()), 0.2, 0.1)


@contextmanager
def loopback_server(app):
    """A real uvicorn server on a free loopback port, in a thread."""
    import uvicorn

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    while not server.started:
        if not thread.is_alive():
            raise RuntimeError(f"uvicorn did not start on port {port}")
        time.sleep(0.02)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=10)


class HashEmbedder:
    """A stand-in for the sentence embedder, instant and offline: each word of a text adds ±1 to one
    of ``dim`` coordinates chosen by its hash, and the sum is L2-normalised, so texts that share words
    are similar. Chunks are counted in ``tokenizer``'s tokens (pass the MiniLM tokenizer)."""

    def __init__(self, tokenizer, dim: int = 64) -> None:
        self.tokenizer, self.dim = tokenizer, dim

    def get_embedding_dimension(self) -> int:
        return self.dim

    def encode(self, texts, normalize_embeddings=True, **kwargs):
        import re
        import zlib

        import numpy as np

        vectors = np.zeros((len(texts), self.dim), dtype=np.float32)
        for row, text in enumerate(texts):
            for word in re.findall(r"\w+", text.lower()):
                code = zlib.crc32(word.encode())
                vectors[row, code % self.dim] += 1.0 if code & 1 << 20 else -1.0
        vectors[:, 0] += 1e-3  # no all-zero vector
        return vectors / np.linalg.norm(vectors, axis=1, keepdims=True)


def make_pdf(pages: list[str], title: str | None = None) -> bytes:
    """A minimal valid PDF: Helvetica text lines ("\\n" between them) per page ("" gives a page with no
    text layer)."""
    kids = " ".join(f"{4 + 2 * i} 0 R" for i in range(len(pages)))
    objects = [
        "<< /Type /Catalog /Pages 2 0 R >>",
        f"<< /Type /Pages /Kids [{kids}] /Count {len(pages)} >>",
        "<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>",
    ]
    for i, text in enumerate(pages):
        escaped = text.replace("\\", "\\\\").replace("(", "\\(").replace(")", "\\)")
        shown = " T* ".join(f"({line}) Tj" for line in escaped.split("\n"))
        stream = f"BT /F1 12 Tf 14 TL 72 720 Td {shown} ET" if text else ""
        objects.append(
            "<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] "
            f"/Resources << /Font << /F1 3 0 R >> >> /Contents {5 + 2 * i} 0 R >>"
        )
        objects.append(f"<< /Length {len(stream)} >>\nstream\n{stream}\nendstream")
    if title:
        objects.append(f"<< /Title ({title}) >>")
    out = io.BytesIO()
    out.write(b"%PDF-1.4\n")
    offsets = []
    for number, body in enumerate(objects, start=1):
        offsets.append(out.tell())
        out.write(f"{number} 0 obj\n{body}\nendobj\n".encode("latin-1"))
    xref = out.tell()
    out.write(f"xref\n0 {len(objects) + 1}\n0000000000 65535 f \n".encode())
    out.write("".join(f"{offset:010d} 00000 n \n" for offset in offsets).encode())
    info = f" /Info {len(objects)} 0 R" if title else ""
    out.write(f"trailer\n<< /Size {len(objects) + 1} /Root 1 0 R{info} >>\n".encode())
    out.write(f"startxref\n{xref}\n%%EOF\n".encode())
    return out.getvalue()


EPUB_CONTAINER = (
    '<?xml version="1.0"?><container version="1.0" xmlns="urn:oasis:names:tc:opendocument:xmlns:container">'
    '<rootfiles><rootfile full-path="OEBPS/content.opf" media-type="application/oebps-package+xml"/>'
    "</rootfiles></container>"
)
EPUB_CHAPTER_ONE = (
    '<?xml version="1.0" encoding="utf-8"?><html xmlns="http://www.w3.org/1999/xhtml"><head>'
    "<title>Field Guide</title></head><body><nav><a href='#'>Contents</a></nav>"
    "<h1>Comb jellies</h1><p>Ctenophores swim with combs of cilia.</p>"
    "<h2>Light</h2><p>Many of them glow.</p></body></html>"
)
EPUB_CHAPTER_TWO = (
    '<html xmlns="http://www.w3.org/1999/xhtml"><head><title>Chapter 2: Sponges</title></head>'
    "<body><p>Sponges have no nerves.</p></body></html>"
)


def epub_package(spine: str = '<itemref idref="c2"/><itemref idref="cover"/><itemref idref="c1"/>') -> str:
    """The package document (.opf) of :func:`make_epub`'s book, with ``spine`` as its reading order."""
    return (
        '<?xml version="1.0"?><package xmlns="http://www.idpf.org/2007/opf" version="3.0">'
        '<metadata xmlns:dc="http://purl.org/dc/elements/1.1/"><dc:title>Field Guide</dc:title></metadata>'
        '<manifest><item id="c1" href="text/one%20two.xhtml" media-type="application/xhtml+xml"/>'
        '<item id="c2" href="text/two.xhtml#start" media-type="application/xhtml+xml"/>'
        '<item id="cover" href="cover.jpg" media-type="image/jpeg"/>'
        '<item id="css" href="style.css" media-type="text/css"/></manifest>'
        f"<spine>{spine}</spine></package>"
    )


def make_epub(path: Path, replace: dict[str, str | None] | None = None) -> Path:
    """A small EPUB 3 (its spine puts chapter two first), with members replaced (None: left out)."""
    files: dict[str, str | None] = {
        "mimetype": "application/epub+zip",
        "META-INF/container.xml": EPUB_CONTAINER,
        "OEBPS/content.opf": epub_package(),
        "OEBPS/text/one two.xhtml": EPUB_CHAPTER_ONE,
        "OEBPS/text/two.xhtml": EPUB_CHAPTER_TWO,
        "OEBPS/cover.jpg": "\xff\xd8",
        "OEBPS/style.css": "p { margin: 0 }",
    }
    files.update(replace or {})
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for name, text in files.items():
            if text is not None:
                archive.writestr(name, text)
    path.write_bytes(buffer.getvalue())
    return path


def set_zip_header_field(data: bytes, member: str, offset: int, value: int) -> bytes:
    """``data`` (a zip archive) with the 2-byte field at ``offset`` of ``member``'s central-directory
    header set to ``value``: 6 is the zip version needed to extract, 10 the compression method."""
    name = member.encode()
    out = bytearray(data)
    at = next(
        i
        for i in range(len(out))
        if out[i : i + 4] == b"PK\x01\x02" and out[i + 46 : i + 46 + len(name)] == name
    )
    out[at + offset : at + offset + 2] = value.to_bytes(2, "little")
    return bytes(out)


def make_pptx(path: Path, title: str | None = "Reef survey 2026") -> Path:
    """A four-slide deck: a title slide, bullets with a line break and speaker notes, a table between
    two text boxes drawn out of reading order and a group of two boxes, and a title-only slide."""
    from pptx import Presentation
    from pptx.util import Inches

    deck = Presentation()
    if title is not None:
        deck.core_properties.title = title
    slide = deck.slides.add_slide(deck.slide_layouts[0])
    slide.shapes.title.text = "Reef survey"
    slide.placeholders[1].text = "Findings of the spring dive"
    slide = deck.slides.add_slide(deck.slide_layouts[1])
    slide.shapes.title.text = "Coral cover"
    body = slide.placeholders[1].text_frame
    body.text = "Cover fell to 12 %"
    body.add_paragraph().text = "Bleaching in\vshallow water"
    slide.notes_slide.notes_text_frame.text = "The drop follows the 2025 heat wave."
    slide = deck.slides.add_slide(deck.slide_layouts[5])
    slide.shapes.title.text = "Sites"
    table = slide.shapes.add_table(2, 2, Inches(1), Inches(2), Inches(4), Inches(1)).table
    for (row, column), text in {(0, 0): "Site", (0, 1): "Depth", (1, 0): "North", (1, 1): "8 m"}.items():
        table.cell(row, column).text = text
    size = (Inches(3), Inches(0.4))
    slide.shapes.add_textbox(Inches(1), Inches(5), *size).text_frame.text = "Below the table"
    slide.shapes.add_textbox(Inches(1), Inches(1.5), *size).text_frame.text = "Above the table"
    group = slide.shapes.add_group_shape()
    group.shapes.add_textbox(Inches(5), Inches(6.5), *size).text_frame.text = "Grouped right"
    group.shapes.add_textbox(Inches(1), Inches(6.5), *size).text_frame.text = "Grouped left"
    slide = deck.slides.add_slide(deck.slide_layouts[5])
    slide.shapes.title.text = "Questions?"
    deck.save(str(path))
    return path
