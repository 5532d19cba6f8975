"""``slmkit serve``: the grounded answerer behind an OpenAI-compatible HTTP API.

Endpoints: ``POST /v1/chat/completions`` and ``POST /v1/completions`` (OpenAI wire format, with
SSE streaming, so OpenAI clients, LangChain and LlamaIndex connect unchanged), ``GET /v1/models``,
``POST /ask`` and ``GET /ask`` (a JSON body ``{"question": ...}``, as in the seeds' API),
``GET /health``; OpenAPI docs at ``/docs``. With ``ui=True`` the web UI (:mod:`slmkit.serve.webui`)
is mounted at ``/ui``.

When a knowledge base is loaded every answer goes through retrieval, the abstention gates and
citations, exactly as ``slmkit ask``; OpenAI responses carry them in an extra ``slmkit`` field
(``citations``, ``abstained``, ``reason``, ``retrieved``) that OpenAI clients ignore.

The OpenAI request shapes clients send are read as OpenAI defines them: a message's ``content`` may
be a string or a list of text parts (other part types get 422: this server reads text), ``prompt``
may be a string or a list of strings (one choice per prompt; token ids get 422), and ``system`` (or
``developer``) messages are honoured (a passage reader, which only extracts spans, answers them with
422 instead): their text is added to slmkit's own system prompt, after its
rules on grounding, citing and abstaining. ``finish_reason`` is ``length`` when ``max_tokens`` cut the
answer, ``stop`` otherwise.

The model runs one request at a time (a CPU generates no faster in parallel), shared with the web UI
through :class:`~slmkit.serve.worker.AnswerStream`, the one path every answer takes: up to
``max_queue`` requests wait for it, and one more is answered ``503`` at once, streamed or not (no
stream is opened, so OpenAI clients retry it like any 503). An error during a stream is a final
``data: {"error": ...}`` event. A streaming client that disconnects stops its generation at the next
token; so does SIGTERM or Ctrl-C (:func:`serve_forever`), which answers the waiting requests 503.
"""

from __future__ import annotations

import asyncio
import json
import logging
import secrets
import time
import uuid
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from fastapi import Depends, FastAPI, HTTPException, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, RedirectResponse, StreamingResponse
from pydantic import BaseModel, Field, field_validator
from starlette.exceptions import HTTPException as StarletteHTTPException

from slmkit.config import GenerationConfig
from slmkit.errors import SlmkitError
from slmkit.models.generation import Generation, Generator, Messages
from slmkit.rag.answer import Answer, Answerer
from slmkit.serve.worker import AnswerStream, ModelWorker, StreamFailed, WorkerBusy

UI_PATH = "/ui"  # where the web UI is mounted (slmkit.serve.webui)

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class ServerLimits:
    """What a client may ask of the server.

    Attributes:
        max_body_bytes: Larger request bodies get 413 (counted as they arrive, chunked or not).
        max_tokens: Largest ``max_tokens`` a request may ask for (larger gets 422).
        max_queue: Requests that may wait for the model; one more gets 503.
        api_key: When set, every ``/v1`` and ``/ask`` request needs ``Authorization: Bearer <key>``,
            and the web UI asks for the key at its login page.
        max_upload_bytes: Largest file the web UI accepts for upload (its routes are exempt from
            ``max_body_bytes``).
        max_prompts: Most prompts one ``/v1/completions`` request may list (they share one turn).
    """

    max_body_bytes: int = 1 << 20
    max_tokens: int = 512
    max_queue: int = 8
    api_key: str | None = None
    max_upload_bytes: int = 50 << 20
    max_prompts: int = 16


# -- request bodies (OpenAI's field names and shapes) -------------------------------------------
class ContentPart(BaseModel):
    """One part of a message's content; only ``{"type": "text", "text": ...}`` is read."""

    type: str
    text: str | None = None


class ChatMessage(BaseModel):
    role: Literal["system", "developer", "user", "assistant"]
    content: str | list[ContentPart] | None  # null: an assistant turn that only called tools

    @field_validator("content")
    @classmethod
    def _parts_are_text(cls, content: Any) -> Any:
        # A part without "text" never reaches ContentPart's validator (defaults are not validated).
        for part in content if isinstance(content, list) else ():
            if part.type != "text" or part.text is None:
                raise ValueError(
                    f"content parts of type '{part.type}' are not supported; this server reads text parts"
                )
        return content

    @property
    def text(self) -> str:
        """The content as one string: text parts joined by newlines."""
        if isinstance(self.content, list):
            return "\n".join(part.text or "" for part in self.content)
        return self.content or ""


class ChatRequest(BaseModel):
    model: str | None = None
    messages: list[ChatMessage] = Field(min_length=1)
    max_tokens: int | None = Field(None, ge=1)
    temperature: float | None = Field(None, ge=0.0, le=2.0)
    stream: bool = False


class CompletionRequest(BaseModel):
    model: str | None = None
    prompt: str | list[str] = Field(description="A prompt, or a list of prompts (one choice each).")
    max_tokens: int | None = Field(None, ge=1)
    temperature: float | None = Field(None, ge=0.0, le=2.0)
    stream: bool = False

    @field_validator("prompt", mode="before")
    @classmethod
    def _text_prompts(cls, prompt: Any) -> Any:
        if isinstance(prompt, list) and prompt and all(_token_ids(p) for p in prompt):
            raise ValueError("prompts as token ids are not supported; send the prompt text")
        if prompt == "" or prompt == []:
            raise ValueError("the prompt is empty")
        return prompt

    @property
    def prompts(self) -> list[str]:
        return [self.prompt] if isinstance(self.prompt, str) else list(self.prompt)


def _token_ids(item: Any) -> bool:
    """An item of OpenAI's ``prompt`` list that is a token id, or a list of them (not text)."""
    return isinstance(item, int) or (isinstance(item, list) and all(isinstance(t, int) for t in item))


class AskRequest(BaseModel):
    question: str = Field(min_length=1)
    max_tokens: int | None = Field(None, ge=1)


def create_app(
    answerer: Answerer, model_name: str, limits: ServerLimits | None = None, ui: bool = False
) -> FastAPI:
    """The FastAPI app serving ``answerer`` (with or without a knowledge base) as ``model_name``.

    With ``ui``, the web UI (:mod:`slmkit.serve.webui`, needs ``slmkit[ui]``) is mounted at ``/ui``
    and ``/`` redirects to it; both share one model worker (``app.state.worker``).
    """
    limits = limits or ServerLimits()
    worker = ModelWorker(limits.max_queue)
    app = FastAPI(
        title="slmkit",
        description="Grounded answers with citations from a small language model.",
        version="0.1.0",
    )
    app.state.worker = worker  # the one the web UI shares, and serve_forever closes on SIGTERM
    # The UI's routes (file uploads) have their own limit, max_upload_bytes, enforced by Gradio.
    app.add_middleware(_BodyLimit, max_bytes=limits.max_body_bytes, exempt=UI_PATH if ui else None)
    auth = _bearer_check(limits.api_key)

    @app.exception_handler(SlmkitError)
    async def _user_error(_request: Request, err: SlmkitError) -> JSONResponse:
        return _error(400, str(err))

    # OpenAI clients read errors from {"error": {"message": ...}}; FastAPI's own shape is {"detail"}.
    @app.exception_handler(StarletteHTTPException)
    async def _http_error(_request: Request, err: StarletteHTTPException) -> JSONResponse:
        return _error(err.status_code, str(err.detail))

    @app.exception_handler(RequestValidationError)
    async def _invalid(_request: Request, err: RequestValidationError) -> JSONResponse:
        problems = "; ".join(f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in err.errors())
        return _error(422, f"invalid request: {problems}")

    @app.get("/health")
    async def health() -> dict[str, Any]:
        kb = answerer.retriever.kb if answerer.retriever else None
        return {"status": "ok", "model": model_name, "knowledge_base_chunks": len(kb.chunks) if kb else None}

    @app.get("/v1/models", dependencies=[Depends(auth)])
    async def models() -> dict[str, Any]:
        return {"object": "list", "data": [{"id": model_name, "object": "model", "owned_by": "slmkit"}]}

    @app.post("/v1/chat/completions", dependencies=[Depends(auth)])
    async def chat_completions(body: ChatRequest) -> Any:
        _check_model(body.model, model_name)
        question, history, instructions = split_conversation(body.messages)
        per_request = _per_request(answerer, body.max_tokens, body.temperature, instructions, limits)
        reply = _Reply(model_name, chat=True)
        if body.stream:
            return reply.stream(await _open(worker, per_request, [question], history))
        return reply.response(await _answers(worker, per_request, [question], history))

    @app.post("/v1/completions", dependencies=[Depends(auth)])
    async def completions(body: CompletionRequest) -> Any:
        _check_model(body.model, model_name)
        prompts = body.prompts
        if len(prompts) > limits.max_prompts:
            raise HTTPException(
                422, f"{len(prompts)} prompts in one request; this server takes at most {limits.max_prompts}"
            )
        per_request = _per_request(answerer, body.max_tokens, body.temperature, "", limits)
        reply = _Reply(model_name, chat=False, listed=not isinstance(body.prompt, str))
        if body.stream:
            return reply.stream(await _open(worker, per_request, prompts, []))
        return reply.response(await _answers(worker, per_request, prompts, []))

    async def ask(body: AskRequest) -> dict[str, Any]:
        per_request = _per_request(answerer, body.max_tokens, None, "", limits)
        return (await _answers(worker, per_request, [body.question], []))[0].to_dict()

    # GET with a JSON body is what the seeds' API does; FastAPI reads the body either way.
    app.add_api_route("/ask", ask, methods=["POST"], dependencies=[Depends(auth)], summary="Ask (POST)")
    app.add_api_route(
        "/ask", ask, methods=["GET"], dependencies=[Depends(auth)], summary="Ask (GET, JSON body)"
    )
    if ui:
        from slmkit.serve.webui import mount_ui

        @app.get("/", include_in_schema=False)
        async def home() -> RedirectResponse:
            return RedirectResponse(f"{UI_PATH}/")

        mount_ui(app, answerer, worker, model_name, UI_PATH, limits.api_key, limits.max_upload_bytes)
    return app


def serve_forever(app: FastAPI, host: str, port: int) -> None:
    """Run ``app`` under uvicorn until SIGTERM or Ctrl-C.

    On the signal the model worker closes first: a running generation stops at its next token (a
    streaming client gets a final error event), waiting requests are answered 503, and uvicorn then
    shuts down at once instead of waiting for answers nobody will read. After the shutdown uvicorn
    re-raises the signal, so the process ends as that signal says (the CLI exits 143 or 130).
    """
    import uvicorn

    worker: ModelWorker = app.state.worker

    class Server(uvicorn.Server):
        def handle_exit(self, sig: int, frame: Any) -> None:
            logger.warning("signal %d: stopping the server", sig)
            worker.close()
            super().handle_exit(sig, frame)

    # The backstop for connections that do not close on their own (an idle stream, a slow client).
    config = uvicorn.Config(app, host=host, port=port, log_level="info", timeout_graceful_shutdown=5)
    Server(config).run()


# -- errors, limits, auth ------------------------------------------------------------------------
_ERROR_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    404: "not_found_error",
    413: "too_large",
    422: "invalid_request_error",
    500: "server_error",
    503: "overloaded",
}


def _error(status: int, message: str) -> JSONResponse:
    return JSONResponse(_error_body(status, message), status_code=status)


def _error_body(status: int, message: str) -> dict[str, Any]:
    return {"error": {"message": message, "type": _ERROR_TYPES.get(status, "error"), "code": status}}


class _BodyLimit:
    """413 for request bodies over ``max_bytes``: by Content-Length before anything is read, else
    (chunked uploads send none) by counting the bytes as they arrive, without reading past the limit.

    Paths under ``exempt`` (the web UI, whose uploads Gradio limits) pass through unread. A plain
    ASGI middleware: the body it has read is handed on to the app as it came.
    """

    def __init__(self, app: Any, max_bytes: int, exempt: str | None = None) -> None:
        self.app, self.max_bytes, self.exempt = app, max_bytes, exempt

    async def __call__(self, scope: dict[str, Any], receive: Callable, send: Callable) -> None:
        path = scope.get("path", "")
        exempt = self.exempt and (path == self.exempt or path.startswith(self.exempt + "/"))
        if scope["type"] != "http" or exempt:
            await self.app(scope, receive, send)
            return
        length = dict(scope["headers"]).get(b"content-length", b"").decode("latin-1")
        if length.isdigit() and int(length) > self.max_bytes:
            message = f"request body is {length} bytes; the limit is {self.max_bytes}"
            await _error(413, message)(scope, receive, send)
            return
        chunks, size = [], 0
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                return
            chunks.append(message.get("body", b""))
            size += len(chunks[-1])
            if size > self.max_bytes:
                too_large = _error(413, f"request body exceeds the {self.max_bytes}-byte limit")
                await too_large(scope, receive, send)
                return
            if not message.get("more_body", False):
                break
        body, replayed = b"".join(chunks), False

        async def replay() -> dict[str, Any]:
            nonlocal replayed
            if replayed:
                return await receive()  # what comes after the body: a disconnect
            replayed = True
            return {"type": "http.request", "body": body, "more_body": False}

        await self.app(scope, replay, send)


def _bearer_check(api_key: str | None) -> Callable[[Request], None]:
    def check(request: Request) -> None:
        if api_key is None:
            return
        header = request.headers.get("authorization", "")
        scheme, _, token = header.partition(" ")
        if scheme.lower() != "bearer" or not secrets.compare_digest(token.encode(), api_key.encode()):
            raise HTTPException(401, "missing or wrong API key: send 'Authorization: Bearer <key>'")

    return check


def _check_model(requested: str | None, served: str) -> None:
    if requested and requested != served:
        raise HTTPException(404, f"model '{requested}' is not served here; available: {served}")


# -- from a request to an answer -------------------------------------------------------------------
def split_conversation(messages: Sequence[ChatMessage]) -> tuple[str, list[tuple[str, str]], str]:
    """``(question, history, instructions)`` of an OpenAI conversation.

    The last message (a user message) is the question; earlier user/assistant pairs are the history
    (consecutive messages of one role read as one; an assistant message before any user message, a
    greeting, has no question to pair with and is left out); the text of every ``system`` and
    ``developer`` message, in order, is the instructions.

    Raises:
        HTTPException: 422 when the last message is not a non-empty user message.
    """
    instructions = "\n".join(m.text.strip() for m in messages if m.role in ("system", "developer"))
    turns: list[tuple[str, str]] = []  # (role, text), one per run of messages of the same role
    for message in messages:
        if message.role in ("user", "assistant"):
            if turns and turns[-1][0] == message.role:
                turns[-1] = (message.role, f"{turns[-1][1]}\n{message.text}")
            else:
                turns.append((message.role, message.text))
    if messages[-1].role != "user" or not turns[-1][1].strip():
        raise HTTPException(422, "the last message must be a non-empty 'user' message (the question)")
    history, pending = [], None
    for role, text in turns[:-1]:  # roles alternate here: user, assistant, user, ...
        if role == "user":
            pending = text
        elif pending is not None:
            history.append((pending, text))
    return turns[-1][1], history, instructions.strip()


class _Instructed:
    """A generator whose system prompt ends with a client's own instructions (its system messages).

    slmkit's rules (answer from the passages, cite, abstain) come first and the support gate still
    judges the answer; the client's text follows them, and is counted in the prompt budget.
    """

    def __init__(self, generator: Generator, instructions: str) -> None:
        self.generator, self.instructions = generator, instructions
        self.name, self.context_window = generator.name, generator.context_window
        self.has_chat_template = generator.has_chat_template

    def _with_instructions(self, messages: Messages) -> list[dict[str, str]]:
        rendered = [dict(m) for m in messages]
        if rendered and rendered[0]["role"] == "system":
            rendered[0]["content"] = f"{rendered[0]['content']}\n\n{self.instructions}"
        else:
            rendered.insert(0, {"role": "system", "content": self.instructions})
        return rendered

    def count_tokens(self, messages: Messages) -> int:
        return self.generator.count_tokens(self._with_instructions(messages))

    def generate(
        self,
        messages: Messages,
        config: GenerationConfig,
        on_text: Callable[[str], None] | None = None,
        spans: Sequence[str] | None = None,
    ) -> Generation:
        extra = {"spans": spans} if spans is not None else {}
        return self.generator.generate(self._with_instructions(messages), config, on_text, **extra)


def _per_request(
    answerer: Answerer,
    max_tokens: int | None,
    temperature: float | None,
    instructions: str,
    limits: ServerLimits,
) -> Answerer:
    """The server's answerer with this request's generation settings and instructions."""
    if max_tokens is not None and max_tokens > limits.max_tokens:
        raise HTTPException(
            422, f"max_tokens is {max_tokens}; this server allows at most {limits.max_tokens}"
        )
    update: dict[str, Any] = {}
    if max_tokens is not None:
        update["max_new_tokens"] = max_tokens
    if temperature is not None:
        update["temperature"] = temperature
    if instructions and answerer.per_passage:
        raise HTTPException(
            422,
            "this server's model is a passage reader: it answers with a span of a passage or abstains, "
            "and system/developer instructions cannot change that; send the question without them, or "
            "serve an instruction-following model with reading: joint",
        )
    reading = "per-passage" if answerer.per_passage else "joint"  # decided once, when the server started
    config = answerer.config.model_copy(
        update={"generation": answerer.config.generation.model_copy(update=update), "reading": reading}
    )
    generator = _Instructed(answerer.generator, instructions) if instructions else answerer.generator
    return Answerer(generator, answerer.retriever, config)


async def _open(
    worker: ModelWorker, answerer: Answerer, questions: list[str], history: list[tuple[str, str]]
) -> AnswerStream:
    try:
        return AnswerStream(worker, answerer, questions, history, loop=asyncio.get_running_loop())
    except WorkerBusy as err:
        raise HTTPException(503, str(err)) from None


async def _answers(
    worker: ModelWorker, answerer: Answerer, questions: list[str], history: list[tuple[str, str]]
) -> list[Answer]:
    stream = await _open(worker, answerer, questions, history)
    try:
        return await stream.answers_async()
    except StreamFailed as err:
        raise HTTPException(err.status, str(err)) from None


# -- OpenAI responses ------------------------------------------------------------------------------
def _extras(answer: Answer) -> dict[str, Any]:
    data = answer.to_dict()
    return {k: data[k] for k in ("abstained", "reason", "citations", "retrieved", "timings")}


def _usage(answers: Sequence[Answer]) -> dict[str, int]:
    prompt = sum(a.prompt_tokens for a in answers)
    completion = sum(a.completion_tokens for a in answers)
    return {"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt + completion}


class _Reply:
    """Answers in OpenAI's response shapes: a chat completion, or a text completion for
    ``/v1/completions`` (``listed``: the request gave a list of prompts, so ``slmkit`` is a list too)."""

    def __init__(self, model: str, chat: bool, listed: bool = False) -> None:
        self.model, self.chat, self.listed = model, chat, listed
        self.id, self.created = f"{'chatcmpl' if chat else 'cmpl'}-{uuid.uuid4().hex}", int(time.time())
        self.object = "chat.completion" if chat else "text_completion"

    def response(self, answers: list[Answer]) -> dict[str, Any]:
        """A non-streamed response, one choice per answer."""
        choices = []
        for index, answer in enumerate(answers):
            content = (
                {"message": {"role": "assistant", "content": answer.text}}
                if self.chat
                else {"text": answer.text}
            )
            choices.append({"index": index, **content, "finish_reason": answer.finish_reason})
        extras: Any = [_extras(a) for a in answers] if self.listed else _extras(answers[0])
        return {
            "id": self.id,
            "object": self.object,
            "created": self.created,
            "model": self.model,
            "choices": choices,
            "usage": _usage(answers),
            "slmkit": extras,
        }

    def _chunk(self, index: int, delta: str | None, finish: str | None, **extra: Any) -> str:
        if self.chat:
            choice = {"index": index, "delta": {"content": delta} if delta else {}, "finish_reason": finish}
        else:
            choice = {"index": index, "text": delta or "", "finish_reason": finish}
        body = {
            "id": self.id,
            "object": f"{self.object}.chunk" if self.chat else self.object,
            "created": self.created,
            "model": self.model,
            "choices": [choice],
            **extra,
        }
        return f"data: {json.dumps(body)}\n\n"

    def stream(self, answers: AnswerStream) -> StreamingResponse:
        """Server-sent events in OpenAI's chunk format; each choice's last chunk carries its
        ``finish_reason``, ``usage`` and the ``slmkit`` extras.

        The model's text streams as it is generated. If the support gate then rejects it, the last
        chunk says so (``slmkit.abstained`` true, ``slmkit.answer`` the abstention sentence): a
        client that shows streamed text should replace it with that answer.
        """

        async def events() -> AsyncIterator[str]:
            streamed: set[int] = set()
            try:
                async for event in answers:
                    if event.kind == "text":
                        streamed.add(event.index)
                        yield self._chunk(event.index, event.text, None)
                    elif event.kind == "answer":
                        answer = event.answer
                        assert answer is not None
                        if answer.abstained and event.index not in streamed:
                            yield self._chunk(event.index, answer.text, None)
                        extras = {**_extras(answer), "answer": answer.text}
                        yield self._chunk(
                            event.index, None, answer.finish_reason, slmkit=extras, usage=_usage([answer])
                        )
                    else:
                        yield f"data: {json.dumps(_error_body(event.status, event.text))}\n\n"
                        return
                yield "data: [DONE]\n\n"
            finally:
                answers.cancel()  # a disconnected client stops the generation at its next token

        return StreamingResponse(events(), media_type="text/event-stream")
