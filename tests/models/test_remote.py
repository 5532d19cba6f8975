"""The OpenAI-compatible remote backend, against a real HTTP server on loopback.

The fast tests point it at slmkit's own OpenAI-compatible server (with a scripted generator behind
it); the slow one at llama-cpp-python's server, the kind of engine users run at scale.
"""

from __future__ import annotations

import socket
import subprocess
import sys
import time

import httpx
import pytest

from fakes import ScriptedGenerator, loopback_server
from slmkit.config import AskConfig, BackendConfig, GenerationConfig
from slmkit.errors import BackendUnavailableError, ConfigError, ModelNotFoundError
from slmkit.models.backends import load_generator, resolve_backend
from slmkit.models.remote import OpenAIGenerator
from slmkit.rag.answer import Answerer
from slmkit.serve.api import ServerLimits, create_app

MESSAGES = [{"role": "user", "content": "Who won Super Bowl 50?"}]


def _app(generator=None, **limits):
    answerer = Answerer(generator or ScriptedGenerator(), None, AskConfig())
    return create_app(answerer, "tiny", ServerLimits(**limits))


def test_auto_backend_is_llama_cpp_where_it_can_run_the_model(tmp_path, monkeypatch):
    import slmkit.models.backends as backends

    monkeypatch.setattr(backends, "llama_cpp_available", lambda: True)
    assert resolve_backend(BackendConfig(), "slmkit-reader-270m") == "llama.cpp"
    assert resolve_backend(BackendConfig(), "smollm2-135m-instruct", device="cpu") == "llama.cpp"
    assert resolve_backend(BackendConfig(), "smollm2-135m-instruct", device="cuda") == "transformers"
    assert resolve_backend(BackendConfig(), "org/some-hub-model") == "transformers"
    seq2seq = tmp_path / "bart"
    seq2seq.mkdir()
    (seq2seq / "config.json").write_text('{"is_encoder_decoder": true}')
    assert resolve_backend(BackendConfig(), str(seq2seq)) == "transformers"
    assert resolve_backend(BackendConfig(base_url="http://h/v1"), "m") == "openai"
    assert resolve_backend(BackendConfig(type="transformers"), "slmkit-reader-270m") == "transformers"
    monkeypatch.setattr(backends, "llama_cpp_available", lambda: False)
    assert resolve_backend(BackendConfig(), "slmkit-reader-270m") == "transformers"
    assert resolve_backend(BackendConfig(type="llama.cpp")) == "llama.cpp"
    with pytest.raises(ConfigError, match="base_url"):
        load_generator("m", "openai")


def test_generates_and_streams_through_an_openai_compatible_server():
    with loopback_server(_app(api_key="secret")) as url:
        generator = load_generator("tiny", "openai", base_url=f"{url}/v1", api_key="secret")
        assert generator.name == "tiny" and generator.context_window == 4096
        whole = generator.generate(MESSAGES, GenerationConfig(max_new_tokens=16))
        assert whole.text == "Denver Broncos won the game."
        assert whole.completion_tokens > 0 and whole.seconds > 0
        pieces: list[str] = []
        streamed = generator.generate(MESSAGES, GenerationConfig(max_new_tokens=3), on_text=pieces.append)
        assert streamed.text == "Denver Broncos won" == "".join(pieces).strip()
        assert len(pieces) == 3 and streamed.first_token_seconds <= streamed.seconds


def test_answerer_on_a_remote_generator_keeps_its_gates_and_prompt_budget():
    with loopback_server(_app()) as url:
        generator = load_generator("tiny", BackendConfig(type="openai", base_url=f"{url}/v1"))
        answer = Answerer(generator, None, AskConfig()).ask("Who won Super Bowl 50?")
    assert answer.text == "Denver Broncos won the game." and not answer.abstained
    # Without a local tokenizer the count is a conservative estimate: never below the word count.
    assert generator.count_tokens(MESSAGES) >= len(MESSAGES[0]["content"].split())


def test_wrong_key_unknown_model_and_a_dead_server_are_clear_errors():
    with loopback_server(_app(api_key="secret")) as url:
        wrong_key = OpenAIGenerator(f"{url}/v1", "tiny", api_key="nope", max_retries=0)
        with pytest.raises(ConfigError, match="refused the API key"):
            wrong_key.generate(MESSAGES, GenerationConfig())
        unknown = OpenAIGenerator(f"{url}/v1", "other-model", api_key="secret", max_retries=0)
        with pytest.raises(ModelNotFoundError, match="other-model"):
            unknown.generate(MESSAGES, GenerationConfig())
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        dead = f"http://127.0.0.1:{s.getsockname()[1]}/v1"  # nothing listens once the socket closes
    start = time.perf_counter()
    with pytest.raises(BackendUnavailableError, match=r"did not answer after 2 tries"):
        OpenAIGenerator(dead, "tiny", max_retries=1, timeout_s=5).generate(MESSAGES, GenerationConfig())
    assert time.perf_counter() - start < 30


@pytest.mark.slow
def test_remote_backend_against_llama_cpp_pythons_own_server(tmp_path, model_cache):
    pytest.importorskip("llama_cpp.server", reason="needs llama-cpp-python[server] (the llama extra)")
    from slmkit.models.gguf_export import export_gguf

    gguf = export_gguf("smollm2-135m-instruct", quant="f16", cache=model_cache).path
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    command = [sys.executable, "-m", "llama_cpp.server", "--model", str(gguf), "--model_alias", "smollm2"]
    command += ["--host", "127.0.0.1", "--port", str(port), "--n_ctx", "2048"]
    log = tmp_path / "server.log"
    with log.open("wb") as stderr:  # a file, not a pipe: nobody has to drain it
        server = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=stderr)
    url = f"http://127.0.0.1:{port}/v1"
    try:
        deadline = time.monotonic() + 300  # loading is slow on a busy 2-core machine
        while True:
            try:
                if httpx.get(f"{url}/models", timeout=5).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if server.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"llama_cpp.server did not start: {log.read_text()[-2000:]}")
            time.sleep(0.5)
        # llama-cpp-python's /v1/models reports no window (vLLM's does), so the recipe states it.
        generator = load_generator("smollm2", BackendConfig(type="openai", base_url=url, context_window=2048))
        assert generator.context_window == 2048
        question = [{"role": "user", "content": "What is the capital of France? Answer in one word."}]
        pieces: list[str] = []
        reply = generator.generate(question, GenerationConfig(max_new_tokens=8), on_text=pieces.append)
        assert "Paris" in reply.text and "".join(pieces).strip() == reply.text
        assert reply.completion_tokens >= 1
    finally:
        server.terminate()
        server.wait(timeout=30)
