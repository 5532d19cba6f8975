"""Test doubles and harnesses shared by several test modules (importable: tests/ is on sys.path)."""

from __future__ import annotations

import socket
import threading
import time
from contextlib import contextmanager

from slmkit.models.generation import Generation


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
