"""The HTTP API: OpenAI wire format, streaming, limits, auth, overload and disconnects.

Most tests drive the app with a scripted generator (a test double that streams a fixed reply word
by word, optionally slowly) so they check the server, not the model; the last ones run the real
default model behind a real uvicorn server and talk to it with the official OpenAI client.
"""

from __future__ import annotations

import json
import time
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest
from fastapi.testclient import TestClient
from serve_support import ScriptedGenerator
from serve_support import running_server as _server

from slmkit.config import AskConfig
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
    with _server(app) as url, ThreadPoolExecutor(8) as pool:
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
    with _server(app) as url:
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
    with _server(app) as url:
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
