"""The HTTP API: OpenAI wire format, streaming, limits, auth, overload and disconnects.

Most tests drive the app with a scripted generator (a test double that streams a fixed reply word
by word, optionally slowly) so they check the server, not the model; the last ones run the real
default model behind a real uvicorn server and talk to it with the official OpenAI client.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest
from fastapi.testclient import TestClient

from fakes import ScriptedGenerator, loopback_server
from slmkit.config import AskConfig
from slmkit.errors import InputError
from slmkit.rag.answer import Answerer
from slmkit.serve.api import ServerLimits, create_app


def _client(generator=None, **limits) -> TestClient:
    answerer = Answerer(generator or ScriptedGenerator(), None, AskConfig())
    return TestClient(create_app(answerer, "tiny", ServerLimits(**limits)))


CHAT = {"model": "tiny", "messages": [{"role": "user", "content": "Who won Super Bowl 50?"}]}


def test_health_models_and_docs():
    client = _client()
    assert client.get("/health").json()["status"] == "ok"
    assert client.get("/v1/models").json()["data"][0]["id"] == "tiny"
    assert (
        client.get("/docs").status_code == 200 and "/v1/chat/completions" in client.get("/openapi.json").text
    )


def test_chat_completion_in_openai_format_with_slmkit_extras():
    body = _client().post("/v1/chat/completions", json=CHAT).json()
    assert body["object"] == "chat.completion"
    assert body["choices"][0]["message"] == {"role": "assistant", "content": "Denver Broncos won the game."}
    assert body["usage"]["completion_tokens"] == 5
    assert body["slmkit"]["abstained"] is False and body["slmkit"]["citations"] == []


def test_completions_and_ask_get_and_post():
    client = _client()
    assert (
        client.post("/v1/completions", json={"prompt": "Who won?"})
        .json()["choices"][0]["text"]
        .startswith("Denver")
    )
    posted = client.post("/ask", json={"question": "Who won?"}).json()
    fetched = client.request("GET", "/ask", json={"question": "Who won?"}).json()  # the seeds' GET-with-body
    assert posted["answer"] == fetched["answer"] == "Denver Broncos won the game."
    assert {"abstained", "citations", "timings"} <= set(posted)


def test_streaming_sends_openai_chunks_then_the_extras_and_done():
    with _client().stream("POST", "/v1/chat/completions", json={**CHAT, "stream": True}) as response:
        lines = [line for line in response.iter_lines() if line.startswith("data: ")]
    assert lines[-1] == "data: [DONE]"
    chunks = [json.loads(line[6:]) for line in lines[:-1]]
    text = "".join(c["choices"][0]["delta"].get("content", "") for c in chunks)
    assert text == "Denver Broncos won the game."
    assert chunks[-1]["choices"][0]["finish_reason"] == "stop" and "citations" in chunks[-1]["slmkit"]


@pytest.mark.parametrize(
    ("body", "status", "fragment"),
    [
        ({**CHAT, "model": "gpt-9"}, 404, "model 'gpt-9' is not served here; available: tiny"),
        ({"model": "tiny", "messages": []}, 422, "body.messages"),
        ({"model": "tiny"}, 422, "body.messages: Field required"),
        ({**CHAT, "max_tokens": 100000}, 422, "at most 512"),
        (
            {"model": "tiny", "messages": [{"role": "assistant", "content": "hi"}]},
            422,
            "last message must be",
        ),
    ],
)
def test_bad_requests_get_clear_errors(body, status, fragment):
    response = _client().post("/v1/chat/completions", json=body)
    assert response.status_code == status
    assert fragment in response.json()["error"]["message"]


def test_malformed_json_and_missing_fields_name_the_problem():
    client = _client()
    broken = client.post(
        "/v1/chat/completions", content=b'{"messages": [', headers={"content-type": "application/json"}
    )
    assert broken.status_code == 422 and "JSON decode error" in broken.json()["error"]["message"]
    missing = client.post("/v1/chat/completions", json={"messages": [{"role": "user"}]})
    assert missing.status_code == 422
    assert "body.messages.0.content: Field required" in missing.json()["error"]["message"]


def test_oversize_body_is_413():
    client = _client(max_body_bytes=1000)
    big = {"model": "tiny", "messages": [{"role": "user", "content": "x" * 5000}]}
    response = client.post("/v1/chat/completions", json=big)
    assert response.status_code == 413 and "limit is 1000" in response.json()["error"]["message"]


def test_api_key_is_required_when_set():
    client = _client(api_key="s3cret")
    assert client.post("/v1/chat/completions", json=CHAT).status_code == 401
    wrong = client.post("/v1/chat/completions", json=CHAT, headers={"Authorization": "Bearer nope"})
    assert wrong.status_code == 401 and "API key" in wrong.json()["error"]["message"]
    right = client.post("/v1/chat/completions", json=CHAT, headers={"Authorization": "Bearer s3cret"})
    assert right.status_code == 200
    assert client.get("/health").status_code == 200  # health stays open for load balancers


def test_overload_is_503_never_a_hang():
    generator = ScriptedGenerator(delay=0.05)  # 5 words: ~0.25 s per answer
    app = create_app(Answerer(generator, None, AskConfig()), "tiny", ServerLimits(max_queue=1))
    with loopback_server(app) as url, ThreadPoolExecutor(8) as pool:
        statuses = list(
            pool.map(
                lambda _: httpx.post(f"{url}/ask", json={"question": "q"}, timeout=30).status_code, range(8)
            )
        )
    assert set(statuses) <= {200, 503} and statuses.count(200) >= 2 and 503 in statuses
    assert generator.calls == statuses.count(200)


def test_a_client_leaving_mid_stream_stops_its_generation_and_others_are_served():
    generator = ScriptedGenerator(reply=" ".join(["word"] * 60), delay=0.05)
    app = create_app(Answerer(generator, None, AskConfig()), "tiny", ServerLimits())
    with loopback_server(app) as url:
        with httpx.stream(
            "POST", f"{url}/v1/chat/completions", json={**CHAT, "stream": True}, timeout=30
        ) as r:
            for line in r.iter_lines():
                if line.startswith("data: "):
                    break  # read one chunk, then hang up
        time.sleep(0.5)
        stopped_at = generator.words_out
        assert stopped_at < 60  # the generation did not run to the end
        after = httpx.post(f"{url}/ask", json={"question": "q", "max_tokens": 3}, timeout=30)
        assert after.status_code == 200 and after.json()["answer"] == "word word word"


@pytest.mark.slow
def test_openai_client_against_the_real_default_model_with_citations(squad_answerer):
    from openai import OpenAI

    app = create_app(squad_answerer, "smollm2-135m-instruct", ServerLimits(api_key="k"))
    with loopback_server(app) as url:
        client = OpenAI(base_url=f"{url}/v1", api_key="k")
        reply = client.chat.completions.create(
            model="smollm2-135m-instruct",
            messages=[{"role": "user", "content": "Which NFL team represented the AFC at Super Bowl 50?"}],
            max_tokens=32,
        )
        extras = reply.model_extra["slmkit"]
        assert reply.choices[0].message.content and extras["citations"] and not extras["abstained"]
        assert extras["citations"][0]["title"] == "Super Bowl 50"
        stream = client.chat.completions.create(
            model="smollm2-135m-instruct",
            messages=[
                {"role": "user", "content": "What is the recommended tire pressure for a Toyota Corolla?"}
            ],
            stream=True,
        )
        chunks = list(stream)
        final = chunks[-1].model_extra["slmkit"]
        assert final["abstained"] and "does not contain" in final["answer"]


# -- OpenAI request shapes, finish_reason, one streaming path --------------------------------------
def _sse(client: TestClient, path: str, body: dict) -> list[dict]:
    """The JSON events of a streamed response, without the final [DONE]."""
    with client.stream("POST", path, json={**body, "stream": True}) as response:
        assert response.status_code == 200
        data = [line[6:] for line in response.iter_lines() if line.startswith("data: ")]
    return [json.loads(item) for item in data if item != "[DONE]"]


@pytest.mark.parametrize(("max_tokens", "reason"), [(3, "length"), (50, "stop")])
def test_finish_reason_is_length_when_max_tokens_cut_the_answer(max_tokens, reason):
    client = _client()  # the scripted reply has 5 words
    chat = client.post("/v1/chat/completions", json={**CHAT, "max_tokens": max_tokens}).json()
    text = client.post("/v1/completions", json={"prompt": "Who won?", "max_tokens": max_tokens}).json()
    ask = client.post("/ask", json={"question": "Who won?", "max_tokens": max_tokens}).json()
    streamed = _sse(client, "/v1/chat/completions", {**CHAT, "max_tokens": max_tokens})
    assert chat["choices"][0]["finish_reason"] == text["choices"][0]["finish_reason"] == reason
    assert ask["finish_reason"] == streamed[-1]["choices"][0]["finish_reason"] == reason


def test_system_and_developer_messages_are_honoured_after_slmkits_own_rules():
    from slmkit.data.prompts import CLOSED_BOOK_SYSTEM_PROMPT

    generator = ScriptedGenerator()
    messages = [
        {"role": "system", "content": "Answer in French."},
        {"role": "developer", "content": "Be brief."},
        {"role": "user", "content": "Who won Super Bowl 50?"},
    ]
    assert _client(generator).post("/v1/chat/completions", json={"messages": messages}).status_code == 200
    system = generator.prompts[0][0]
    assert system["role"] == "system" and system["content"].startswith(CLOSED_BOOK_SYSTEM_PROMPT)
    assert system["content"].endswith("\n\nAnswer in French.\nBe brief.")
    assert [m["role"] for m in generator.prompts[0]] == ["system", "user"]


def test_a_passage_reader_refuses_instructions_with_422_and_answers_without_them():
    from fakes import ScriptedReader
    from slmkit.rag.answer import passage_hit

    reader = ScriptedReader({"The": 0.1}, {"The": "Denver Broncos"})
    passage = passage_hit("Super Bowl 50", "The Denver Broncos won Super Bowl 50.")

    class OnePassage:
        config = None

        def search(self, question, top_k=None, mode=None):
            return [passage]

    config = AskConfig(reading="per-passage", abstention={"min_relevance": 0})
    answerer = Answerer(reader, OnePassage(), config)
    client = TestClient(create_app(answerer, "reader"))
    question = {"role": "user", "content": "Who won Super Bowl 50?"}
    refused = client.post("/v1/chat/completions", json={"messages": [SYSTEM_FRENCH, question]})
    assert refused.status_code == 422 and "passage reader" in refused.json()["error"]["message"]
    answered = client.post("/v1/chat/completions", json={"messages": [question]})
    assert answered.json()["choices"][0]["message"]["content"] == "Denver Broncos [1]"
    # Grounded decoding: the answer stays inside the passage (or its title, which the prompt shows).
    assert reader.generated[-1][1] == ["Super Bowl 50", "The Denver Broncos won Super Bowl 50."]


SYSTEM_FRENCH = {"role": "system", "content": "Answer in French."}


def test_content_as_text_parts_is_read_and_other_part_types_are_a_clear_422():
    generator = ScriptedGenerator()
    client = _client(generator)
    parts = [{"type": "text", "text": "Who won"}, {"type": "text", "text": "Super Bowl 50?"}]
    ok = client.post("/v1/chat/completions", json={"messages": [{"role": "user", "content": parts}]})
    assert ok.status_code == 200 and "Who won\nSuper Bowl 50?" in generator.prompts[0][-1]["content"]
    image = [{"type": "image_url", "image_url": {"url": "http://example.com/a.png"}}]
    bad = client.post("/v1/chat/completions", json={"messages": [{"role": "user", "content": image}]})
    assert bad.status_code == 422
    assert "content parts of type 'image_url' are not supported" in bad.json()["error"]["message"]


def test_a_list_of_prompts_gets_one_choice_each_streamed_or_not():
    client = _client()
    body = client.post("/v1/completions", json={"prompt": ["Who won?", "Who lost?"], "max_tokens": 2}).json()
    assert [(c["index"], c["text"], c["finish_reason"]) for c in body["choices"]] == [
        (0, "Denver Broncos", "length"),
        (1, "Denver Broncos", "length"),
    ]
    assert body["usage"]["completion_tokens"] == 4 and len(body["slmkit"]) == 2
    one = client.post("/v1/completions", json={"prompt": ["Who won?"]}).json()
    assert len(one["choices"]) == 1 and isinstance(one["slmkit"], list)
    chunks = _sse(client, "/v1/completions", {"prompt": ["Who won?", "Who lost?"], "max_tokens": 2})
    texts = {
        i: "".join(c["choices"][0]["text"] for c in chunks if c["choices"][0]["index"] == i) for i in (0, 1)
    }
    assert texts == {0: "Denver Broncos", 1: "Denver Broncos"}
    assert [c["choices"][0]["finish_reason"] for c in chunks if c["choices"][0]["finish_reason"]] == [
        "length"
    ] * 2


@pytest.mark.parametrize(
    ("prompt", "fragment"),
    [
        ([101, 2040, 2180], "prompts as token ids are not supported"),
        ([[101, 2040]], "prompts as token ids are not supported"),
        ([], "the prompt is empty"),
        (["q"] * 17, "17 prompts in one request; this server takes at most 16"),
    ],
)
def test_prompts_it_cannot_read_are_a_clear_422(prompt, fragment):
    response = _client().post("/v1/completions", json={"prompt": prompt})
    assert response.status_code == 422 and fragment in response.json()["error"]["message"]


def test_history_is_cut_to_the_same_window_as_the_web_ui_and_the_terminal_chat():
    from slmkit.serve.chat import HISTORY_TURNS

    generator = ScriptedGenerator()
    messages = []
    for turn in range(6):
        messages += [{"role": "user", "content": f"q{turn}"}, {"role": "assistant", "content": f"a{turn}"}]
    messages.append({"role": "user", "content": "last"})
    assert _client(generator).post("/v1/chat/completions", json={"messages": messages}).status_code == 200
    answers = [m["content"] for m in generator.prompts[0] if m["role"] == "assistant"]
    assert answers == [f"a{turn}" for turn in range(6 - HISTORY_TURNS, 6)]


def test_a_busy_model_is_503_whether_the_request_streams_or_not():
    app = create_app(Answerer(ScriptedGenerator(), None, AskConfig()), "tiny", ServerLimits(max_queue=0))
    gate = threading.Event()
    holder = threading.Thread(target=app.state.worker.run, args=(gate.wait,))
    holder.start()
    try:
        time.sleep(0.1)
        client = TestClient(app)
        for stream in (False, True):
            response = client.post("/v1/chat/completions", json={**CHAT, "stream": stream})
            assert response.status_code == 503
            assert (
                response.json()["error"]["message"]
                == "the model is busy and the queue is full; retry shortly"
            )
    finally:
        gate.set()
        holder.join()


class _Failing(ScriptedGenerator):
    def __init__(self, error: Exception) -> None:
        super().__init__()
        self.error = error

    def generate(self, messages, config, on_text=None):
        on_text("Denver")
        raise self.error


@pytest.mark.parametrize(
    ("error", "status", "message"),
    [
        (InputError("the question is too long"), 400, "the question is too long"),
        (RuntimeError("boom"), 500, "internal error: boom"),
    ],
)
def test_errors_are_the_same_for_the_api_streamed_or_not_and_the_web_ui(caplog, error, status, message):
    from slmkit.serve.webui import WebUI
    from slmkit.serve.worker import ModelWorker

    caplog.set_level(logging.INFO, logger="slmkit.serve.worker")
    answerer = Answerer(_Failing(error), None, AskConfig())
    client = TestClient(create_app(answerer, "tiny"))
    plain = client.post("/v1/chat/completions", json=CHAT)
    assert plain.status_code == status and plain.json()["error"]["message"] == message
    streamed = _sse(client, "/v1/chat/completions", CHAT)
    assert streamed[0]["choices"][0]["delta"]["content"] == "Denver"
    assert streamed[-1]["error"] == {
        "message": message,
        "type": plain.json()["error"]["type"],
        "code": status,
    }
    *_, (chat, _, _) = WebUI(answerer, ModelWorker(1), "tiny").ask("Who won?", [])
    assert chat[-1]["content"] == f"⚠️ {message}"
    logged = [r for r in caplog.records if r.name == "slmkit.serve.worker"]
    assert len(logged) == 3  # the same line for each of the three requests
    assert all(bool(r.exc_info) == (status == 500) for r in logged)  # a bug's traceback goes to the log


def test_a_chunked_body_over_the_limit_is_413_before_the_rest_arrives():
    import socket

    app = create_app(
        Answerer(ScriptedGenerator(), None, AskConfig()), "tiny", ServerLimits(max_body_bytes=1000)
    )
    with loopback_server(app) as url:
        host, port = url.removeprefix("http://").split(":")
        with socket.create_connection((host, int(port)), timeout=10) as raw:
            head = "POST /ask HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            head += "Transfer-Encoding: chunked\r\n\r\n"
            chunk = b'{"question": "' + b"x" * 2000
            raw.sendall(head.encode() + f"{len(chunk):x}\r\n".encode() + chunk + b"\r\n")  # and no end
            reply = b""
            while not reply.endswith(b"}"):  # the JSON error body; the request body never ended
                reply += raw.recv(65536)
            reply = reply.decode()
        assert reply.startswith("HTTP/1.1 413") and "exceeds the 1000-byte limit" in reply
        chunked = iter([b'{"question": ', b'"Who won?"}'])  # an iterator: httpx sends it chunked
        small = httpx.post(
            f"{url}/ask", content=chunked, headers={"content-type": "application/json"}, timeout=10
        )
        assert small.status_code == 200 and small.json()["answer"] == "Denver Broncos won the game."


def test_shutting_down_stops_a_running_stream_and_refuses_what_waits():
    generator = ScriptedGenerator(reply=" ".join(["word"] * 60), delay=0.05)
    app = create_app(Answerer(generator, None, AskConfig()), "tiny")
    with loopback_server(app) as url:
        with httpx.stream(
            "POST", f"{url}/v1/chat/completions", json={**CHAT, "stream": True}, timeout=30
        ) as response:
            lines = response.iter_lines()
            assert next(line for line in lines if line.startswith("data: "))
            app.state.worker.close()  # what serve_forever does on SIGTERM
            last = [line for line in lines if line.startswith("data: ")][-1]
        assert json.loads(last[6:])["error"]["message"] == "the server is shutting down; retry shortly"
        assert generator.words_out < 60
        after = httpx.post(f"{url}/ask", json={"question": "q"}, timeout=10)
        assert after.status_code == 503 and "shutting down" in after.json()["error"]["message"]
