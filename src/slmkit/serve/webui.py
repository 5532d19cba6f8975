"""The web UI (Gradio): chat with the knowledge base, see each answer's citations, upload documents.

``slmkit serve --kb DIR --ui`` mounts it at ``/ui`` on the HTTP API's server. It shares the API's
:class:`~slmkit.serve.worker.ModelWorker` and its one streaming path
(:class:`~slmkit.serve.worker.AnswerStream`), so the model never runs two jobs at once whichever side
asks, a full queue shows a "busy" message at once instead of hanging, and errors, history and logging
are handled as in the API.

Layout: the chat on the left (answers stream as they are generated); on the right, the sources of
the latest answer — each citation's number, title, source, position and passage text — or, when
slmkit abstains, the abstention and its reason. Below, an upload box adds files to the knowledge
base (every format ``slmkit index add`` reads). Uploaded files are kept in ``KB/uploads/`` so that
citations point at a file that exists; the knowledge base itself is written by its own atomic,
versioned :meth:`~slmkit.rag.knowledge_base.KnowledgeBase.add`, after which the answerer (the API's
too) retrieves from the new version. A server started without a knowledge base answers closed-book
and says so; its upload box is disabled.

When the server has an API key, the UI asks for it at a login page (any user name, the key as the
password), and Gradio's own routes under ``/ui`` refuse requests without that login.
"""

from __future__ import annotations

import contextlib
import hashlib
import html
import logging
import os
import secrets
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from slmkit.atomic import atomic_write_bytes
from slmkit.errors import InputError, SlmkitError
from slmkit.rag.answer import Answer, Answerer
from slmkit.rag.ingest import SUPPORTED_SUFFIXES
from slmkit.rag.knowledge_base import IngestReport, KnowledgeBase
from slmkit.rag.retrieval import Retriever
from slmkit.serve.worker import AnswerStream, ModelWorker, WorkerBusy

logger = logging.getLogger(__name__)

UPLOADS = "uploads"  # folder inside the knowledge base that keeps uploaded files
SOURCES_PLACEHOLDER = '<p class="slmkit-muted">The sources of each answer appear here.</p>'

# Fonts the browser already has: the default theme fetches Google Fonts, which an offline machine cannot.
_FONTS = ["ui-sans-serif", "system-ui", "sans-serif"]
_MONO_FONTS = ["ui-monospace", "monospace"]
_CSS = """
.slmkit-citation { border-left: 3px solid #3b82f6; padding: 0.3em 0.7em; margin-bottom: 0.8em; }
.slmkit-citation blockquote { margin: 0.3em 0 0 0; font-size: 0.9em; white-space: pre-wrap; }
.slmkit-abstained { border-left: 3px solid #f59e0b; padding: 0.3em 0.7em; margin-bottom: 0.8em; }
.slmkit-error { border-left: 3px solid #dc2626; padding: 0.3em 0.7em; }
.slmkit-muted { opacity: 0.7; font-size: 0.9em; }
"""


@dataclass
class Turn:
    """One exchange shown in the chat.

    Attributes:
        question: What the user typed.
        reply: The assistant's message as shown (answer, abstention, busy or error message).
        answer: The answer, when the model produced one; only answered turns go into the prompt history.
    """

    question: str
    reply: str
    answer: Answer | None = field(default=None, repr=False)


class WebUI:
    """The UI's callbacks, independent of Gradio so they can be tested directly.

    Args:
        answerer: The answerer the server uses. An upload replaces its ``retriever`` with one over the
            new knowledge-base version, so the HTTP API answers from it too.
        worker: The server's model worker; answers and uploads both run on it.
        model_name: The served model's name, shown in the header.
    """

    def __init__(self, answerer: Answerer, worker: ModelWorker, model_name: str) -> None:
        self.answerer, self.worker, self.model_name = answerer, worker, model_name

    @property
    def kb(self) -> KnowledgeBase | None:
        return self.answerer.retriever.kb if self.answerer.retriever else None

    # -- chat ----------------------------------------------------------------------------------
    def ask(self, question: str, turns: list[Turn]) -> Iterator[tuple[list[dict[str, str]], str, list[Turn]]]:
        """Answer ``question`` after the conversation ``turns``, streaming.

        Yields ``(chat messages, sources HTML, turns)``: first the question with the answer as it is
        generated, last the finished answer with its sources (or the abstention, busy or error message).
        Closing the iterator (the browser left) stops the generation at its next token.
        """
        question = (question or "").strip()
        if not question:
            yield chat_messages(turns), _notice("Type a question first."), turns
            return
        history = [(t.question, t.answer.text) for t in turns if t.answer is not None]
        pending = [*turns, Turn(question, "…")]
        try:
            stream = AnswerStream(self.worker, self.answerer, [question], history)
        except WorkerBusy as err:
            yield from self._failed(question, turns, str(err))
            return
        streamed = ""
        with contextlib.closing(iter(stream)) as events:  # closing it stops the generation
            yield chat_messages(pending), _notice("Retrieving and generating…"), turns
            for event in events:
                if event.kind == "text":
                    streamed += event.text
                    partial = [*turns, Turn(question, streamed + " …")]
                    yield chat_messages(partial), _notice("Generating…"), turns
                elif event.kind == "answer":
                    assert event.answer is not None
                    done = [*turns, Turn(question, format_reply(event.answer), event.answer)]
                    yield chat_messages(done), format_sources(event.answer), done
                else:
                    yield from self._failed(question, turns, event.text)

    def _failed(self, question: str, turns: list[Turn], message: str) -> Iterator[tuple[Any, ...]]:
        failed = [*turns, Turn(question, f"⚠️ {message}")]
        yield chat_messages(failed), f'<div class="slmkit-error">{html.escape(message)}</div>', failed

    # -- documents -----------------------------------------------------------------------------
    def add_documents(self, files: Sequence[str] | None) -> tuple[str, str]:
        """Add uploaded ``files`` (paths) to the knowledge base; returns ``(status, KB summary)`` Markdown.

        Errors (an unsupported or unreadable file, a busy model) are reported in the status, and
        nothing is added: the knowledge base and ``uploads/`` stay as they were.
        """
        if self.kb is None:
            return NO_KB_UPLOAD, self.kb_summary()
        if not files:
            return "Choose one or more files to add first.", self.kb_summary()
        names = ", ".join(f"`{Path(f).name}`" for f in files)
        try:
            report = self.worker.run(lambda: self._add(files))
        except (WorkerBusy, SlmkitError, OSError) as err:
            return f"❌ Nothing was added from {names}: {err}", self.kb_summary()
        except Exception as err:  # shown in one line; the traceback goes to the log
            logger.exception("adding %s failed", names)
            return f"❌ Nothing was added from {names}: internal error: {err}", self.kb_summary()
        if report.chunks_added == 0:
            status = (
                f"Nothing new in {names}: all {report.duplicates_skipped} chunk(s) are already in the "
                "knowledge base."
            )
        else:
            status = (
                f"✅ Added {names}: {report.documents} document(s), {report.chunks_added} chunk(s)"
                f"; {report.duplicates_skipped} duplicate chunk(s) skipped ({report.seconds:.1f} s)."
            )
        return status, self.kb_summary()

    def _add(self, files: Sequence[str]) -> IngestReport:
        """Keep the files in ``KB/uploads/``, add them to the live version, retrieve from the new one."""
        current = self.answerer.retriever
        assert current is not None
        for name in (Path(f).name for f in files):
            if Path(name).suffix.lower() not in SUPPORTED_SUFFIXES:
                raise InputError(
                    f"{name}: unsupported file type '{Path(name).suffix or '(no extension)'}'; "
                    f"upload {', '.join(SUPPORTED_SUFFIXES)} files"
                )
        kept: list[tuple[Path, bool]] = []
        try:
            for upload in files:
                kept.append(_keep_upload(Path(upload), current.kb.path / UPLOADS))
            # Open the live version from disk: another writer (`slmkit index add`) may have moved it on.
            live = KnowledgeBase.open(current.kb.path, embedder=current.kb.embedder)
            kb, report = live.add([path for path, _ in kept], progress=False)
        except BaseException:
            for path, created in kept:
                if created:
                    path.unlink(missing_ok=True)
            raise
        self.answerer.retriever = Retriever(kb, current.config)
        return report

    def kb_summary(self) -> str:
        """One line of Markdown: the knowledge base's path and size, or that there is none."""
        kb = self.kb
        if kb is None:
            return NO_KB
        return (
            f"Knowledge base `{kb.path}`: {kb.manifest['documents']} document(s), "
            f"{len(kb.chunks)} chunk(s). Model `{self.model_name}`."
        )


NO_KB = (
    "**No knowledge base**: answers come from the model alone (closed-book), without citations. "
    "Start the server with `slmkit serve --kb DIR --ui` to chat with your documents."
)
NO_KB_UPLOAD = (
    "Uploads need a knowledge base: this server answers closed-book. Build one with "
    "`slmkit index build FILES --kb DIR`, then start `slmkit serve --kb DIR --ui`."
)


def _keep_upload(upload: Path, folder: Path) -> tuple[Path, bool]:
    """Copy an uploaded file into ``folder`` under its own name (atomically); returns (path, created).

    Identical content already kept is reused; a different file of the same name is kept beside it
    with a content hash in its name, so nothing kept earlier (and cited) is overwritten.
    """
    data = upload.read_bytes()
    folder.mkdir(parents=True, exist_ok=True)
    target = folder / upload.name
    if target.exists() and target.read_bytes() != data:
        target = folder / f"{upload.stem}-{hashlib.sha256(data).hexdigest()[:8]}{upload.suffix}"
    if target.exists():  # same content: chunks will be skipped as duplicates
        return target, False
    atomic_write_bytes(target, data)
    return target, True


# -- rendering --------------------------------------------------------------------------------------
def chat_messages(turns: Sequence[Turn]) -> list[dict[str, str]]:
    """The Chatbot's value: alternating user and assistant messages."""
    messages = []
    for turn in turns:
        messages.append({"role": "user", "content": turn.question})
        messages.append({"role": "assistant", "content": turn.reply})
    return messages


def format_reply(answer: Answer) -> str:
    """The assistant's chat message: the answer with ``[n]`` markers and a line naming the sources."""
    if answer.abstained:
        return f"🤷 {answer.text}\n\n*Abstained: {answer.reason}*"
    if not answer.citations:
        return answer.text
    sources = "; ".join(f"[{c.index}] {c.title}" for c in answer.citations)
    return f"{answer.text}\n\n*Sources: {sources}*"


def format_sources(answer: Answer) -> str:
    """HTML for the sources panel: each citation's number, title, source, position and passage text.

    An abstention shows its reason instead, then the passages that were retrieved but not used.
    """
    parts: list[str] = []
    if answer.abstained:
        reason = html.escape(answer.reason or "")
        parts.append(f'<div class="slmkit-abstained"><b>🤷 Abstained — "I don\'t know"</b><br>{reason}</div>')
    hits = {hit.chunk.id: hit for hit in answer.hits}
    for c in answer.citations:
        hit = hits[c.chunk_id]
        parts.append(
            f'<div class="slmkit-citation"><b>[{c.index}] {html.escape(c.title)}</b><br>'
            f'<span class="slmkit-muted">{html.escape(c.source)} #{c.position} · '
            f"similarity {hit.dense_score:.2f} · support {c.support:.2f}</span>"
            f"<blockquote>{html.escape(hit.chunk.text)}</blockquote></div>"
        )
    if answer.abstained and answer.hits:
        titles = ", ".join(html.escape(h.chunk.title) for h in answer.hits)
        parts.append(f'<p class="slmkit-muted">Retrieved, not used: {titles}</p>')
    if not answer.abstained and not answer.citations:
        parts.append('<p class="slmkit-muted">No citations: answered without the knowledge base.</p>')
    t = answer.timings
    rate = f" at {answer.tokens_per_second:.1f} tok/s" if answer.tokens_per_second else ""
    parts.append(
        f'<p class="slmkit-muted">{t.get("total", 0.0):.2f} s (retrieval {t.get("retrieval", 0.0):.2f} s'
        f", {answer.completion_tokens} tokens{rate})</p>"
    )
    return "\n".join(parts)


def _notice(text: str) -> str:
    return f'<p class="slmkit-muted">{html.escape(text)}</p>'


# -- Gradio -----------------------------------------------------------------------------------------
def require_gradio() -> Any:
    """The ``gradio`` module.

    Raises:
        SlmkitError: Gradio is not installed (it comes with ``pip install 'slmkit[ui]'``).
    """
    os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")  # no calls home from an offline server
    try:
        import gradio as gr
    except ImportError:
        raise SlmkitError("the web UI needs Gradio: pip install 'slmkit[ui]'") from None
    return gr


def build_ui(ui: WebUI) -> Any:
    """The Gradio ``Blocks`` wiring ``ui``'s callbacks to a chat, a sources panel and an upload box."""
    gr = require_gradio()
    has_kb = ui.kb is not None
    with gr.Blocks(title="slmkit") as blocks:
        gr.Markdown(f"## slmkit — grounded answers from `{ui.model_name}`")
        kb_info = gr.Markdown(ui.kb_summary(), elem_id="slmkit-kb")
        turns = gr.State([])
        with gr.Row():
            with gr.Column(scale=3):
                chat = gr.Chatbot(label="Chat", elem_id="slmkit-chat", height=460, feedback_options=None)
                with gr.Row():
                    question = gr.Textbox(
                        placeholder="Ask a question about your documents",
                        show_label=False,
                        scale=5,
                        autofocus=True,
                        elem_id="slmkit-question",
                    )
                    ask = gr.Button("Ask", variant="primary", scale=1, elem_id="slmkit-ask")
                reset = gr.Button("New conversation", size="sm")
            with gr.Column(scale=2):
                gr.Markdown("### Sources")
                sources = gr.HTML(SOURCES_PLACEHOLDER, elem_id="slmkit-sources")
        with gr.Accordion("Add documents to the knowledge base", open=True):
            files = gr.File(
                file_count="multiple",
                file_types=list(SUPPORTED_SUFFIXES),
                label=f"Files ({', '.join(SUPPORTED_SUFFIXES)})",
                interactive=has_kb,
                elem_id="slmkit-files",
            )
            add = gr.Button("Add to knowledge base", interactive=has_kb, elem_id="slmkit-add")
            status = gr.Markdown("" if has_kb else NO_KB_UPLOAD, elem_id="slmkit-upload-status")

        # Answers may run concurrently as far as Gradio is concerned: the shared worker queues them and
        # refuses overload itself (a "busy" message), so Gradio's own queue never holds them unbounded.
        def answer(question: str, turns: list[Turn]) -> Iterator[tuple[Any, ...]]:
            with contextlib.closing(ui.ask(question, turns)) as updates:  # closing stops the generation
                for i, update in enumerate(updates):
                    yield ("" if i == 0 else gr.skip()), *update  # empty the box once, then let it be

        gr.on(
            [ask.click, question.submit],
            answer,
            [question, turns],
            [question, chat, sources, turns],
            concurrency_limit=None,
            api_name="ask",
        )
        reset.click(lambda: ([], SOURCES_PLACEHOLDER, []), None, [chat, sources, turns], queue=False)
        add.click(ui.add_documents, [files], [status, kb_info], concurrency_limit=1, api_name="add_documents")
    return blocks


def mount_ui(
    app: Any,
    answerer: Answerer,
    worker: ModelWorker,
    model_name: str,
    path: str = "/ui",
    api_key: str | None = None,
    max_upload_bytes: int = 50 << 20,
) -> None:
    """Mount the web UI at ``path`` on the FastAPI ``app``; with ``api_key``, behind a login asking for it."""
    gr = require_gradio()
    blocks = build_ui(WebUI(answerer, worker, model_name))
    auth: Callable[[str, str], bool] | None = None
    if api_key is not None:
        key = api_key.encode()

        def auth(_user: str, password: str) -> bool:
            return secrets.compare_digest(password.encode(), key)

    gr.mount_gradio_app(
        app,
        blocks,
        path,
        auth=auth,
        auth_message="Enter the server's API key as the password (any user name).",
        max_file_size=max_upload_bytes,
        footer_links=[],
        run_history=False,
        ssr_mode=False,
        mcp_server=False,
        pwa=False,
        theme=gr.themes.Default(font=_FONTS, font_mono=_MONO_FONTS),
        css=_CSS,
    )
