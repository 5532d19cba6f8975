"""Abuse tests for the HTTP API: every endpoint fuzzed from its own OpenAPI schema.

Schemathesis (on Hypothesis) generates requests that fit the schema and requests that do not, for
every operation, and sends them to a real uvicorn server on the loopback interface, answering from
a real knowledge base with a scripted generator (so the test checks the server, not a model). No
request may get a 5xx or take longer than the timeout, and afterwards the server must still answer.
A second Hypothesis test sends bodies no schema describes: random bytes, broken and deeply nested
JSON, wrong content types. Counts are bounded (about 1,300 requests, a minute or two).
"""

from __future__ import annotations

import json
from collections import Counter

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from schemathesis.checks import not_a_server_error

from fakes import ScriptedGenerator, loopback_server
from slmkit.config import AskConfig
from slmkit.rag.answer import Answerer
from slmkit.rag.knowledge_base import KnowledgeBase
from slmkit.rag.retrieval import Retriever
from slmkit.serve.api import ServerLimits, create_app

LIMITS = ServerLimits(max_body_bytes=64 << 10, max_tokens=16, max_queue=4)
TIMEOUT = 15  # seconds; a request that takes longer counts as a hang
# The schema of the app as served (the knowledge base behind it does not change its routes).
SCHEMA = schemathesis.openapi.from_dict(create_app(Answerer(ScriptedGenerator()), "tiny", LIMITS).openapi())
TRIED: Counter[str] = Counter()


@pytest.fixture(scope="module")
def server(tmp_path_factory, embedder):
    """A real server on 127.0.0.1 answering from a two-document knowledge base."""
    folder = tmp_path_factory.mktemp("fuzz")
    (folder / "lighthouse.txt").write_text(
        "The Kestrel Point Lighthouse was designed by Mara Vellin and first lit in 1874.\n", encoding="utf-8"
    )
    (folder / "notes.md").write_text("# Bakery\nThe Pell Street Bakery opens at six.\n", encoding="utf-8")
    kb, _ = KnowledgeBase.build(folder / "kb", [folder], embedder=embedder, progress=False)
    generator = ScriptedGenerator("The lighthouse was designed by Mara Vellin.")
    app = create_app(Answerer(generator, Retriever(kb), AskConfig()), "tiny", LIMITS)
    with loopback_server(app) as url:
        yield url


@SCHEMA.parametrize()
@settings(max_examples=150, deadline=None, suppress_health_check=list(HealthCheck))
def test_no_generated_request_gets_a_server_error_or_hangs(case, server):
    response = case.call(base_url=server, timeout=TIMEOUT)  # a hang raises a timeout error
    TRIED[case.operation.label] += 1
    case.validate_response(response, checks=[not_a_server_error])


PATHS = ["/v1/chat/completions", "/v1/completions", "/ask"]
JSON_TEXT = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=40),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=12), inner, max_size=4),
    max_leaves=20,
).map(json.dumps)
BODIES = st.one_of(
    st.binary(max_size=2000),  # anything at all, not even UTF-8
    JSON_TEXT.map(str.encode),  # valid JSON of any shape
    JSON_TEXT.map(lambda text: text[: len(text) // 2].encode()),  # JSON cut off
    st.integers(1, 200_000).map(lambda depth: b"[" * depth + b"]" * depth),  # nested to any depth
    st.integers(1, 100_000).map(lambda depth: b'{"messages": ' + b"[" * depth),  # ... and unclosed
)
CONTENT_TYPES = st.sampled_from(["application/json", "text/plain", "application/x-www-form-urlencoded", ""])


@given(path=st.sampled_from(PATHS), body=BODIES, content_type=CONTENT_TYPES)
@settings(max_examples=300, deadline=None, suppress_health_check=list(HealthCheck))
def test_no_malformed_body_gets_a_server_error_or_hangs(server, path, body, content_type):
    headers = {"content-type": content_type} if content_type else {}
    response = httpx.post(f"{server}{path}", content=body, headers=headers, timeout=TIMEOUT)
    TRIED["POST (malformed body)"] += 1
    assert response.status_code < 500, response.text
    assert "error" in response.json() or response.status_code == 200


def test_the_server_still_answers_afterwards(server):
    assert httpx.get(f"{server}/health", timeout=TIMEOUT).json()["status"] == "ok"
    chat = {"messages": [{"role": "user", "content": "Who designed the Kestrel Point Lighthouse?"}]}
    reply = httpx.post(f"{server}/v1/chat/completions", json=chat, timeout=TIMEOUT).json()
    assert reply["choices"][0]["message"]["content"].startswith("The lighthouse was designed by Mara Vellin.")
    # The number of requests tried, for the record (pytest -s shows it).
    counts = ", ".join(f"{name}: {n}" for name, n in sorted(TRIED.items()))
    print(f"\nfuzzed requests: {sum(TRIED.values())} ({counts})")
