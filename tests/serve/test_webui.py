"""The web UI: its callbacks (chat, sources, abstention, uploads, busy and errors), its mounting on the
HTTP server (login with the API key, one model worker shared with the API), and, end to end, a real
browser (headless Chromium through Selenium) asking the real default model and uploading a document.

The callback tests drive :class:`WebUI` directly with a scripted generator and a real MiniLM
knowledge base of two small text files, so they check the UI, not the model.
"""

from __future__ import annotations

import os
import shutil
import sys
import threading
import time
from pathlib import Path

import httpx
import pytest
from fastapi.testclient import TestClient

from fakes import ScriptedGenerator, loopback_server
from slmkit.config import AskConfig
from slmkit.rag.answer import Answerer
from slmkit.rag.knowledge_base import KnowledgeBase
from slmkit.rag.retrieval import Retriever
from slmkit.serve.api import ServerLimits, create_app
from slmkit.serve.webui import NO_KB, UPLOADS, Turn, WebUI
from slmkit.serve.worker import ModelWorker

REPO = Path(__file__).resolve().parents[2]

LIGHTHOUSE = (
    "The Kestrel Point Lighthouse stands on the northern cape of Harrow Island. It was designed by the "
    "engineer Mara Vellin and first lit in 1874. Its lamp can be seen from 22 nautical miles away, and "
    "the keeper's cottage beside it is now a small museum about shipwrecks.\n"
)
BAKERY = (
    "The Pell Street Bakery in Norwick opens at six in the morning. It is famous for dark rye bread baked "
    "in a wood-fired oven, and on Saturdays it sells cinnamon buns until they run out.\n"
)
GLACIER = (
    "The Tannery Glacier lies in the Orrin Mountains. Between 1950 and 2020 it retreated by 3 kilometres, "
    "according to a survey by the Norwick Geological Society.\n"
)
LIGHTHOUSE_Q = "Who designed the Kestrel Point Lighthouse?"
GLACIER_Q = "How far did the Tannery Glacier retreat between 1950 and 2020?"


@pytest.fixture
def docs(tmp_path) -> Path:
    folder = tmp_path / "docs"
    folder.mkdir()
    (folder / "lighthouse.txt").write_text(LIGHTHOUSE, encoding="utf-8")
    (folder / "bakery.txt").write_text(BAKERY, encoding="utf-8")
    (tmp_path / "glacier.txt").write_text(GLACIER, encoding="utf-8")  # not in the KB: to upload
    return folder


@pytest.fixture
def kb(docs, embedder) -> KnowledgeBase:
    built, _ = KnowledgeBase.build(docs.parent / "kb", [docs], embedder=embedder, progress=False)
    return built


def _ui(kb: KnowledgeBase | None, generator: ScriptedGenerator, max_queue: int = 8) -> WebUI:
    answerer = Answerer(generator, Retriever(kb) if kb else None, AskConfig())
    return WebUI(answerer, ModelWorker(max_queue), "tiny")


def _last(updates):
    *_, last = updates
    return last


# -- chat, citations, abstention ------------------------------------------------------------------
def test_answer_streams_then_shows_its_citations_beside_it(kb):
    generator = ScriptedGenerator("The lighthouse was designed by the engineer Mara Vellin.")
    updates = list(_ui(kb, generator).ask(LIGHTHOUSE_Q, []))

    streaming = [chat[-1]["content"] for chat, _, _ in updates[1:-1]]
    assert streaming[0] == "The …" and streaming[-1].startswith("The lighthouse was designed by")
    assert len(streaming) == 9  # one update per generated word
    chat, sources, turns = updates[-1]
    assert chat[0] == {"role": "user", "content": LIGHTHOUSE_Q}
    reply = chat[1]["content"]
    assert reply.startswith("The lighthouse was designed by the engineer Mara Vellin. [1]")
    assert "*Sources: [1] lighthouse*" in reply
    assert "[1] lighthouse" in sources and "docs/lighthouse.txt #0" in sources
    assert "designed by the engineer Mara Vellin and first lit in 1874" in sources  # the passage text
    assert "Abstained" not in sources
    assert len(turns) == 1 and turns[0].answer.citations[0].title == "lighthouse"


def test_abstention_is_shown_with_its_reason_and_the_model_is_not_run(kb):
    generator = ScriptedGenerator("Thirty-two psi.")
    chat, sources, turns = _last(_ui(kb, generator).ask("What tyre pressure does a Toyota Corolla need?", []))
    assert chat[1]["content"].startswith("🤷 The knowledge base does not contain the answer")
    assert "Abstained" in sources and "no passage is relevant enough" in sources
    assert "slmkit-citation" not in sources  # nothing cited
    assert generator.calls == 0 and turns[0].answer.abstained


def test_passage_text_is_escaped_in_the_sources_panel(tmp_path, embedder):
    source = tmp_path / "tags.txt"
    source.write_text("The <b>Zorblat</b> festival is held every April in Quenton.\n", encoding="utf-8")
    kb, _ = KnowledgeBase.build(tmp_path / "kb", [source], embedder=embedder, progress=False)
    generator = ScriptedGenerator("The Zorblat festival is held every April in Quenton.")
    _, sources, _ = _last(_ui(kb, generator).ask("When is the Zorblat festival held?", []))
    assert "&lt;b&gt;Zorblat&lt;/b&gt;" in sources and "<b>Zorblat</b>" not in sources


def test_history_reaches_the_model_but_failed_turns_do_not(kb):
    generator = ScriptedGenerator("The lighthouse was designed by the engineer Mara Vellin.")
    ui = _ui(kb, generator)
    _, _, turns = _last(ui.ask(LIGHTHOUSE_Q, []))
    turns = [*turns, Turn("Where is the bakery?", "⚠️ the model is busy and the queue is full; retry shortly")]
    seen = []
    original = generator.generate
    generator.generate = lambda messages, config, on_text=None: (
        seen.append(messages) or original(messages, config, on_text)
    )
    chat, _, turns = _last(ui.ask("Who designed the Kestrel Point Lighthouse, again?", turns))
    history = [m["content"] for m in seen[0][1:-1]]
    assert history == [f"Question: {LIGHTHOUSE_Q}\nAnswer:", turns[0].answer.text]  # not the busy turn
    assert len(turns) == 3 and len(chat) == 6  # the chat still shows all three


def test_a_closed_iterator_stops_the_generation(kb):
    generator = ScriptedGenerator(" ".join(["Mara Vellin"] * 30), delay=0.02)
    updates = _ui(kb, generator).ask(LIGHTHOUSE_Q, [])
    next(updates), next(updates)  # the question, then the first word
    updates.close()  # what Gradio does when the browser leaves
    time.sleep(0.3)
    assert generator.words_out < 60


def test_a_busy_model_says_so_at_once(kb):
    ui = _ui(kb, ScriptedGenerator("The lighthouse was designed by the engineer Mara Vellin."), max_queue=0)
    gate = threading.Event()
    holder = threading.Thread(target=ui.worker.run, args=(gate.wait,))
    holder.start()
    try:
        time.sleep(0.1)
        start = time.perf_counter()
        chat, sources, turns = _last(ui.ask(LIGHTHOUSE_Q, []))
        assert time.perf_counter() - start < 2
    finally:
        gate.set()
        holder.join()
    assert chat[1]["content"] == "⚠️ the model is busy and the queue is full; retry shortly"
    assert "busy" in sources and turns[0].answer is None


def test_an_input_error_is_one_line_not_a_traceback(kb):
    generator = ScriptedGenerator()
    generator.context_window = 70  # the 64-token answer leaves 6 tokens for the prompt
    chat, sources, _ = _last(_ui(kb, generator).ask(LIGHTHOUSE_Q, []))
    assert chat[1]["content"].startswith("⚠️ the question (with chat history) takes")
    assert "Traceback" not in sources and "prompt budget" in sources


def test_an_empty_question_asks_for_one(kb):
    generator = ScriptedGenerator()
    chat, sources, _ = _last(_ui(kb, generator).ask("   ", []))
    assert chat == [] and "Type a question first" in sources and generator.calls == 0


# -- uploads ----------------------------------------------------------------------------------------
def test_upload_adds_the_document_and_the_next_answer_cites_it(kb, docs):
    generator = ScriptedGenerator("The Tannery Glacier retreated by 3 kilometres.")
    ui = _ui(kb, generator)
    _, before, _ = _last(ui.ask(GLACIER_Q, []))
    assert "Abstained" in before and generator.calls == 0  # not in the knowledge base yet

    status, summary = ui.add_documents([str(docs.parent / "glacier.txt")])
    assert status.startswith("✅ Added `glacier.txt`: 1 document(s), 1 chunk(s); 0 duplicate chunk(s)")
    assert "3 document(s), 3 chunk(s)" in summary

    chat, sources, _ = _last(ui.ask(GLACIER_Q, []))
    assert chat[1]["content"].startswith("The Tannery Glacier retreated by 3 kilometres. [1]")
    kept = kb.path / UPLOADS / "glacier.txt"
    assert "[1] glacier" in sources and f"{kept} #0" in sources
    assert kept.read_text(encoding="utf-8") == GLACIER  # cited sources point at a file that exists
    reopened = KnowledgeBase.open(kb.path)
    assert len(reopened.chunks) == 3 and reopened.chunks[-1].source == str(kept)  # written to disk
    assert ui.answerer.retriever.kb.chunks[-1].source == str(kept)  # the API's answerer sees it too


def test_uploading_the_same_file_again_adds_nothing(kb, docs):
    ui = _ui(kb, ScriptedGenerator())
    ui.add_documents([str(docs.parent / "glacier.txt")])
    status, summary = ui.add_documents([str(docs.parent / "glacier.txt")])
    assert status == "Nothing new in `glacier.txt`: all 1 chunk(s) are already in the knowledge base."
    assert "3 chunk(s)" in summary
    assert list((kb.path / UPLOADS).iterdir()) == [kb.path / UPLOADS / "glacier.txt"]


def test_a_different_file_with_a_kept_name_does_not_overwrite_it(kb, tmp_path):
    ui = _ui(kb, ScriptedGenerator())
    first, second = tmp_path / "a" / "notes.txt", tmp_path / "b" / "notes.txt"
    for path, text in ((first, GLACIER), (second, "The Orrin Mountains are 2,400 metres high at most.\n")):
        path.parent.mkdir()
        path.write_text(text, encoding="utf-8")
    ui.add_documents([str(first)])
    status, _ = ui.add_documents([str(second)])
    assert status.startswith("✅ Added `notes.txt`")
    kept = sorted(p.name for p in (kb.path / UPLOADS).iterdir())
    assert kept[0] == "notes-" + kept[0][6:14] + ".txt" and kept[1] == "notes.txt"
    assert (kb.path / UPLOADS / "notes.txt").read_text(encoding="utf-8") == GLACIER


@pytest.mark.parametrize(
    ("name", "content", "message"),
    [
        ("setup.exe", b"MZ\x90\x00", "setup.exe: unsupported file type '.exe'; upload .txt, .text"),
        ("empty.txt", b"   \n", "no text found in"),
        ("broken.jsonl", b'{"text": "fine"}\n{"text": \n', "broken.jsonl:2: not valid JSON"),
        ("broken.pdf", b"%PDF-1.4 not really", "not a readable PDF"),
    ],
)
def test_a_bad_upload_shows_the_error_and_changes_nothing(kb, tmp_path, name, content, message):
    upload = tmp_path / "upload" / name
    upload.parent.mkdir()
    upload.write_bytes(content)
    ui = _ui(kb, ScriptedGenerator())
    version = (kb.path / "CURRENT").read_text()
    status, summary = ui.add_documents([str(upload)])
    assert status.startswith(f"❌ Nothing was added from `{name}`: ") and message in status
    assert "Traceback" not in status and "2 chunk(s)" in summary
    assert (kb.path / "CURRENT").read_text() == version  # the live version is untouched
    assert not (kb.path / UPLOADS).exists() or not any((kb.path / UPLOADS).iterdir())
    assert ui.answerer.retriever.kb is kb


def test_a_failure_on_the_second_file_removes_the_first_ones_copy(kb, docs):
    ui = _ui(kb, ScriptedGenerator())
    status, _ = ui.add_documents([str(docs.parent / "glacier.txt"), str(docs.parent / "gone.txt")])
    assert status.startswith("❌ Nothing was added from `glacier.txt`, `gone.txt`: ")
    assert "No such file" in status and "gone.txt" in status
    assert not any((kb.path / UPLOADS).iterdir()) and len(KnowledgeBase.open(kb.path).chunks) == 2


def test_no_files_chosen_says_so(kb):
    status, _ = _ui(kb, ScriptedGenerator()).add_documents([])
    assert status == "Choose one or more files to add first."


def test_without_a_knowledge_base_the_ui_says_so_and_refuses_uploads(tmp_path):
    (tmp_path / "a.txt").write_text(GLACIER, encoding="utf-8")
    ui = _ui(None, ScriptedGenerator("Paris."))
    assert ui.kb_summary() == NO_KB and "closed-book" in NO_KB
    status, _ = ui.add_documents([str(tmp_path / "a.txt")])
    assert status.startswith("Uploads need a knowledge base")
    chat, sources, _ = _last(ui.ask("What is the capital of France?", []))
    assert chat[1]["content"] == "Paris." and "answered without the knowledge base" in sources


# -- mounted on the HTTP server -----------------------------------------------------------------------
def test_the_ui_is_mounted_at_ui_and_the_root_redirects_to_it(kb):
    pytest.importorskip("gradio")
    app = create_app(Answerer(ScriptedGenerator(), Retriever(kb), AskConfig()), "tiny", ui=True)
    with TestClient(app) as client:
        assert client.get("/", follow_redirects=False).headers["location"] == "/ui/"
        page = client.get("/ui/")
        assert page.status_code == 200 and "<!doctype html>" in page.text
        config = client.get("/ui/config").json()
        assert config["title"] == "slmkit"
        ids = {c["props"].get("elem_id") for c in config["components"]}
        assert {"slmkit-chat", "slmkit-sources", "slmkit-files", "slmkit-question"} <= ids
        assert client.get("/health").json()["knowledge_base_chunks"] == 2
    plain = TestClient(create_app(Answerer(ScriptedGenerator(), None, AskConfig()), "tiny"))
    assert plain.get("/ui/").status_code == 404  # the UI is opt-in


def test_with_an_api_key_the_ui_needs_it_as_its_login(kb):
    pytest.importorskip("gradio")
    answerer = Answerer(ScriptedGenerator(), Retriever(kb), AskConfig())
    app = create_app(answerer, "tiny", ServerLimits(api_key="s3cret"), ui=True)
    with TestClient(app) as client:
        for method, route in (("GET", "/ui/config"), ("POST", "/ui/gradio_api/upload")):
            assert client.request(method, route).status_code == 401
        call = client.post("/ui/gradio_api/call/ask", json={"data": [LIGHTHOUSE_Q, []]})
        assert call.status_code == 401  # the UI's own API is no way round the key
        assert client.post("/ui/login", data={"username": "me", "password": "wrong"}).status_code == 400
        assert client.post("/ui/login", data={"username": "me", "password": "s3cret"}).status_code == 200
        assert client.get("/ui/config").status_code == 200
        assert client.post("/ask", json={"question": "q"}).status_code == 401  # the login is not a bearer key


def test_ui_uploads_are_not_held_to_the_api_body_limit_but_the_api_is(kb):
    pytest.importorskip("gradio")
    answerer = Answerer(ScriptedGenerator(), Retriever(kb), AskConfig())
    app = create_app(answerer, "tiny", ServerLimits(max_body_bytes=1000, max_upload_bytes=1 << 20), ui=True)
    with TestClient(app) as client:
        big = b"The Orrin Mountains are high. " * 200  # 6 kB
        upload = client.post("/ui/gradio_api/upload", files={"files": ("big.txt", big)})
        assert upload.status_code == 200 and upload.json()[0].endswith("big.txt")
        too_big = client.post("/ui/gradio_api/upload", files={"files": ("huge.txt", big * 200)})
        assert too_big.status_code == 413
        assert client.post("/ask", json={"question": "x" * 2000}).status_code == 413


def test_the_ui_and_the_api_share_one_model_worker(kb):
    pytest.importorskip("gradio")
    answerer = Answerer(ScriptedGenerator(), Retriever(kb), AskConfig())
    app = create_app(answerer, "tiny", ServerLimits(max_queue=0), ui=True)
    gate = threading.Event()
    with TestClient(app) as client:
        holder = threading.Thread(target=app.state.worker.run, args=(gate.wait,))
        holder.start()  # the model is busy and nobody may wait
        try:
            time.sleep(0.1)
            assert client.post("/ask", json={"question": LIGHTHOUSE_Q}).status_code == 503
            event = client.post("/ui/gradio_api/call/ask", json={"data": [LIGHTHOUSE_Q, []]}).json()
            with client.stream("GET", f"/ui/gradio_api/call/ask/{event['event_id']}") as stream:
                body = "".join(stream.iter_lines())
        finally:
            gate.set()
            holder.join()
    assert "event: complete" in body and "the model is busy and the queue is full" in body


def test_serve_ui_flag_mounts_the_ui_and_prints_its_address(monkeypatch, kb):
    pytest.importorskip("gradio")
    from typer.testing import CliRunner

    from slmkit.cli import app as cli

    served = {}
    answerer = Answerer(ScriptedGenerator(), Retriever(kb), AskConfig())
    monkeypatch.setattr("slmkit.cli._load_answerer", lambda *args: answerer)
    monkeypatch.setattr(
        "slmkit.serve.api.serve_forever", lambda app, host, port: served.update(app=app, host=host, port=port)
    )
    result = CliRunner().invoke(
        cli, ["serve", "--kb", str(kb.path), "--ui", "--port", "8123", "--max-upload-mb", "2"]
    )
    assert result.exit_code == 0, result.output
    assert "web UI: http://127.0.0.1:8123/ui/" in result.output and served["port"] == 8123
    with TestClient(served["app"]) as client:
        assert client.get("/ui/config").json()["title"] == "slmkit"
        big = client.post("/ui/gradio_api/upload", files={"files": ("big.txt", b"x" * (3 << 20))})
        assert big.status_code == 413  # --max-upload-mb


def test_serve_ui_without_gradio_is_one_clear_line_before_any_model_loads(monkeypatch, capsys, kb):
    from slmkit.cli import main

    monkeypatch.setitem(sys.modules, "gradio", None)  # import gradio raises ImportError
    monkeypatch.setattr("slmkit.cli._load_answerer", lambda *args: pytest.fail("the model was loaded"))
    monkeypatch.setattr("sys.argv", ["slmkit", "serve", "--kb", str(kb.path), "--ui"])
    with pytest.raises(SystemExit) as exit_info:
        main()
    assert exit_info.value.code == 2
    assert "the web UI needs Gradio: pip install 'slmkit[ui]'" in capsys.readouterr().err


# -- end to end in a browser ----------------------------------------------------------------------------
def _artifacts() -> Path:
    folder = Path(os.environ.get("SLMKIT_ARTIFACTS", REPO / "test-artifacts"))
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def _chromium():
    """A headless Chromium driven through the system chromedriver; skipped (failed under CI) if absent."""
    browser = shutil.which("chromium") or shutil.which("chromium-browser")
    driver = shutil.which("chromedriver", path="/usr/bin") or shutil.which("chromedriver")
    missing = [name for name, path in (("chromium", browser), ("chromedriver", driver)) if not path]
    try:
        from selenium import webdriver
        from selenium.webdriver.chrome.service import Service
    except ImportError:
        missing.append("selenium (pip install 'slmkit[ui]')")
    if missing:
        reason = f"browser test needs {', '.join(missing)}: apt-get install chromium chromium-driver"
        if os.environ.get("CI") == "true":
            pytest.fail(f"{reason} (CI must run it; `make browser` installs them)")
        pytest.skip(reason)
    options = webdriver.ChromeOptions()
    options.binary_location = browser
    for flag in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--window-size=1400,1100"):
        options.add_argument(flag)
    # An explicit driver path: Selenium Manager would try to download one.
    return webdriver.Chrome(options=options, service=Service(executable_path=driver))


@pytest.mark.parametrize(("ci", "outcome"), [("true", pytest.fail.Exception), ("", pytest.skip.Exception)])
def test_a_missing_browser_skips_locally_but_fails_under_ci(monkeypatch, ci, outcome):
    monkeypatch.setattr(shutil, "which", lambda *args, **kwargs: None)
    monkeypatch.setenv("CI", ci)
    with pytest.raises(outcome, match="browser test needs chromium, chromedriver: apt-get install chromium"):
        _chromium()


@pytest.mark.slow
def test_browser_asks_sees_an_answer_with_a_citation_and_uploads_a_document(tmp_path, docs, embedder, smollm):
    pytest.importorskip("gradio")
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    from slmkit.models.generation import TransformersGenerator

    kb, _ = KnowledgeBase.build(tmp_path / "kb", [docs], embedder=embedder, progress=False)
    answerer = Answerer(TransformersGenerator(smollm), Retriever(kb), AskConfig())
    app = create_app(answerer, "smollm2-135m-instruct", ui=True)
    artifacts = _artifacts()
    (artifacts / "webui-failure.png").unlink(missing_ok=True)  # only this run's failure, if any
    browser = _chromium()
    wait = WebDriverWait(browser, 240)  # a shared CPU can take a while per answer

    def text(elem_id: str) -> str:  # the DOM's text: .text breaks lines between inline elements
        return " ".join(browser.find_element(By.ID, elem_id).get_attribute("textContent").split())

    def ask(question: str, title: str) -> None:
        box = browser.find_element(By.CSS_SELECTOR, "#slmkit-question textarea")
        box.send_keys(question)
        browser.find_element(By.ID, "slmkit-ask").click()
        wait.until(lambda _: f"] {title}" in text("slmkit-sources") or "Abstained" in text("slmkit-sources"))

    try:
        with loopback_server(app) as url:
            assert httpx.get(f"{url}/health").json()["knowledge_base_chunks"] == 2
            browser.get(f"{url}/")  # redirects to /ui/
            wait.until(lambda _: browser.find_elements(By.CSS_SELECTOR, "#slmkit-question textarea"))
            assert "2 document(s), 2 chunk(s)" in text("slmkit-kb")

            ask(LIGHTHOUSE_Q, "lighthouse")
            sources, chat = text("slmkit-sources"), text("slmkit-chat")
            print(f"\nanswer: {chat}\nsources: {sources}")
            shot = artifacts / "webui-answer.png"
            browser.save_screenshot(str(shot))
            print(f"screenshot: {shot}")
            assert "[1] lighthouse" in sources and "Mara Vellin" in sources  # citation with its passage
            assert "Abstained" not in sources
            assert LIGHTHOUSE_Q in chat and "Vellin" in chat.split(LIGHTHOUSE_Q, 1)[1]  # the answer

            files = browser.find_element(By.CSS_SELECTOR, "#slmkit-files input[type=file]")
            files.send_keys(str(docs.parent / "glacier.txt"))
            # Uploaded once the file's download link (to the server's copy) appears.
            wait.until(
                lambda _: browser.find_elements(By.CSS_SELECTOR, "#slmkit-files a[href$='/glacier.txt']")
            )
            browser.find_element(By.ID, "slmkit-add").click()
            wait.until(lambda _: "Added" in text("slmkit-upload-status"))
            assert "3 document(s), 3 chunk(s)" in text("slmkit-kb")

            ask(GLACIER_Q, "glacier")
            shot = artifacts / "webui-upload.png"
            browser.save_screenshot(str(shot))
            print(f"screenshot: {shot}")
            assert "glacier" in text("slmkit-sources") and "3 kilometres" in text("slmkit-sources")
            assert (kb.path / UPLOADS / "glacier.txt").read_text(encoding="utf-8") == GLACIER
    except BaseException:
        browser.save_screenshot(str(artifacts / "webui-failure.png"))
        raise
    finally:
        browser.quit()
