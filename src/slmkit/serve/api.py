"""``slmkit serve``: the grounded answerer behind an OpenAI-compatible HTTP API.

Endpoints: ``POST /v1/chat/completions`` and ``POST /v1/completions`` (OpenAI wire format, with
SSE streaming, so OpenAI clients, LangChain and LlamaIndex connect unchanged), ``GET /v1/models``,
``POST /ask`` and ``GET /ask`` (a JSON body ``{"question": ...}``, as in the seeds' API),
``GET /health``; OpenAPI docs at ``/docs``. With ``ui=True`` the web UI (:mod:`slmkit.serve.webui`)
is mounted at ``/ui``.

When a knowledge base is loaded every answer goes through retrieval, the abstention gates and
citations, exactly as ``slmkit ask``; OpenAI responses carry them in an extra ``slmkit`` field
(``citations``, ``abstained``, ``reason``, ``retrieved``) that OpenAI clients ignore.

The model runs one request at a time on a worker thread (a CPU generates no faster in parallel),
shared with the web UI (:mod:`slmkit.serve.worker`); up to ``max_queue`` requests wait for it, and
one more is answered ``503`` at once rather than left to hang. A streaming client that disconnects
stops its generation at the next token.
"""

from __future__ import annotations

import asyncio
import json
import logging
import secrets
import threading
import time
import uuid
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Any, Literal

from fastapi import Depends, FastAPI, HTTPException, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, RedirectResponse, StreamingResponse
from pydantic import BaseModel, Field
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.middleware.base import BaseHTTPMiddleware

from slmkit.config import GenerationConfig
from slmkit.errors import SlmkitError
from slmkit.rag.answer import Answer, Answerer
from slmkit.serve.worker import ModelWorker, WorkerBusy

UI_PATH = "/ui"  # where the web UI is mounted (slmkit.serve.webui)

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class ServerLimits:
    """What a client may ask of the server.

    Attributes:
        max_body_bytes: Larger request bodies get 413.
        max_tokens: Largest ``max_tokens`` a request may ask for (larger gets 422).
        max_queue: Requests that may wait for the model; one more gets 503.
        api_key: When set, every ``/v1`` and ``/ask`` request needs ``Authorization: Bearer <key>``,
            and the web UI asks for the key at its login page.
        max_upload_bytes: Largest file the web UI accepts for upload (its routes are exempt from
            ``max_body_bytes``).
    """

    max_body_bytes: int = 1 << 20
    max_tokens: int = 512
    max_queue: int = 8
    api_key: str | None = None
    max_upload_bytes: int = 50 << 20


# -- request bodies (OpenAI's field names) ------------------------------------------------------
class ChatMessage(BaseModel):
    role: Literal["system", "user", "assistant"]
    content: str


class ChatRequest(BaseModel):
    model: str | None = None
    messages: list[ChatMessage] = Field(min_length=1)
    max_tokens: int | None = Field(None, ge=1)
    temperature: float | None = Field(None, ge=0.0, le=2.0)
    stream: bool = False


class CompletionRequest(BaseModel):
    model: str | None = None
    prompt: str = Field(min_length=1)
    max_tokens: int | None = Field(None, ge=1)
    temperature: float | None = Field(None, ge=0.0, le=2.0)
    stream: bool = False


class AskRequest(BaseModel):
    question: str = Field(min_length=1)
    max_tokens: int | None = Field(None, ge=1)


class _Cancelled(Exception):
    """Raised from the token callback when the streaming client has gone."""


def create_app(
    answerer: Answerer, model_name: str, limits: ServerLimits | None = None, ui: bool = False
) -> FastAPI:
    """The FastAPI app serving ``answerer`` (with or without a knowledge base) as ``model_name``.

    With ``ui``, the web UI (:mod:`slmkit.serve.webui`, needs ``slmkit[ui]``) is mounted at ``/ui``
    and ``/`` redirects to it; both share one model worker.
    """
    limits = limits or ServerLimits()
    worker = ModelWorker(limits.max_queue)
    app = FastAPI(
        title="slmkit",
        description="Grounded answers with citations from a small language model.",
        version="0.1.0",
    )
    # The UI's routes (file uploads) have their own limit, max_upload_bytes, enforced by Gradio.
    app.state.worker = worker  # the one the web UI shares
    app.add_middleware(_BodyLimit, max_bytes=limits.max_body_bytes, exempt=UI_PATH if ui else None)
    auth = _bearer_check(limits.api_key)

    @app.exception_handler(SlmkitError)
    async def _user_error(_request: Request, err: SlmkitError) -> JSONResponse:
        return _error(400, str(err), "invalid_request_error")

    # OpenAI clients read errors from {"error": {"message": ...}}; FastAPI's own shape is {"detail"}.
    @app.exception_handler(StarletteHTTPException)
    async def _http_error(_request: Request, err: StarletteHTTPException) -> JSONResponse:
        return _error(err.status_code, str(err.detail), _ERROR_TYPES.get(err.status_code, "error"))

    @app.exception_handler(RequestValidationError)
    async def _invalid(_request: Request, err: RequestValidationError) -> JSONResponse:
        problems = "; ".join(f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in err.errors())
        return _error(422, f"invalid request: {problems}", "invalid_request_error")

    @app.get("/health")
    async def health() -> dict[str, Any]:
        kb = answerer.retriever.kb if answerer.retriever else None
        return {"status": "ok", "model": model_name, "knowledge_base_chunks": len(kb.chunks) if kb else None}

    @app.get("/v1/models", dependencies=[Depends(auth)])
    async def models() -> dict[str, Any]:
        return {"object": "list", "data": [{"id": model_name, "object": "model", "owned_by": "slmkit"}]}

    @app.post("/v1/chat/completions", dependencies=[Depends(auth)])
    async def chat_completions(body: ChatRequest, request: Request) -> Any:
        _check_model(body.model, model_name)
        question, history = _split_conversation(body.messages)
        config = _generation(answerer, body.max_tokens, body.temperature, limits)
        if body.stream:
            return _stream(answerer, worker, request, question, history, config, model_name, chat=True)
        answer = await _answer(answerer, worker, question, history, config)
        return _response(answer, model_name, chat=True)

    @app.post("/v1/completions", dependencies=[Depends(auth)])
    async def completions(body: CompletionRequest, request: Request) -> Any:
        _check_model(body.model, model_name)
        config = _generation(answerer, body.max_tokens, body.temperature, limits)
        if body.stream:
            return _stream(answerer, worker, request, body.prompt, [], config, model_name, chat=False)
        answer = await _answer(answerer, worker, body.prompt, [], config)
        return _response(answer, model_name, chat=False)

    async def ask(body: AskRequest) -> dict[str, Any]:
        config = _generation(answerer, body.max_tokens, None, limits)
        return (await _answer(answerer, worker, body.question, [], config)).to_dict()

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


# -- helpers --------------------------------------------------------------------------------------
_ERROR_TYPES = {
    401: "authentication_error",
    404: "not_found_error",
    413: "too_large",
    422: "invalid_request_error",
    503: "overloaded",
}


def _error(status: int, message: str, kind: str) -> JSONResponse:
    return JSONResponse({"error": {"message": message, "type": kind}}, status_code=status)


class _BodyLimit(BaseHTTPMiddleware):
    """413 for bodies over the limit, judged by Content-Length before anything is read.

    Paths under ``exempt`` (the web UI, whose uploads Gradio limits) pass through unread.
    """

    def __init__(self, app: Any, max_bytes: int, exempt: str | None = None) -> None:
        super().__init__(app)
        self.max_bytes, self.exempt = max_bytes, exempt

    async def dispatch(self, request: Request, call_next: Any) -> Any:
        path = request.url.path
        if self.exempt and (path == self.exempt or path.startswith(self.exempt + "/")):
            return await call_next(request)
        length = request.headers.get("content-length")
        if length and length.isdigit() and int(length) > self.max_bytes:
            return _error(413, f"request body is {length} bytes; the limit is {self.max_bytes}", "too_large")
        body = await request.body()
        if len(body) > self.max_bytes:  # chunked uploads send no Content-Length
            return _error(413, f"request body exceeds the {self.max_bytes}-byte limit", "too_large")
        return await call_next(request)


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


def _split_conversation(messages: list[ChatMessage]) -> tuple[str, list[tuple[str, str]]]:
    """The last user message is the question; earlier user/assistant pairs are the history."""
    if messages[-1].role != "user" or not messages[-1].content.strip():
        raise HTTPException(422, "the last message must be a non-empty 'user' message (the question)")
    history, pending = [], None
    for message in messages[:-1]:
        if message.role == "user":
            pending = message.content
        elif message.role == "assistant" and pending is not None:
            history.append((pending, message.content))
            pending = None
    return messages[-1].content, history


def _generation(
    answerer: Answerer, max_tokens: int | None, temperature: float | None, limits: ServerLimits
) -> GenerationConfig:
    if max_tokens is not None and max_tokens > limits.max_tokens:
        raise HTTPException(
            422, f"max_tokens is {max_tokens}; this server allows at most {limits.max_tokens}"
        )
    update: dict[str, Any] = {}
    if max_tokens is not None:
        update["max_new_tokens"] = max_tokens
    if temperature is not None:
        update["temperature"] = temperature
    return answerer.config.generation.model_copy(update=update)


def _with_generation(answerer: Answerer, config: GenerationConfig) -> Answerer:
    return Answerer(
        answerer.generator, answerer.retriever, answerer.config.model_copy(update={"generation": config})
    )


async def _answer(
    answerer: Answerer,
    worker: ModelWorker,
    question: str,
    history: list[tuple[str, str]],
    config: GenerationConfig,
) -> Answer:
    per_request = _with_generation(answerer, config)
    try:
        return await asyncio.to_thread(worker.run, lambda: per_request.ask(question, history))
    except WorkerBusy:
        raise HTTPException(503, "the model is busy and the queue is full; retry shortly") from None


def _extras(answer: Answer) -> dict[str, Any]:
    data = answer.to_dict()
    return {k: data[k] for k in ("abstained", "reason", "citations", "retrieved", "timings")}


def _usage(answer: Answer) -> dict[str, int]:
    return {
        "prompt_tokens": answer.prompt_tokens,
        "completion_tokens": answer.completion_tokens,
        "total_tokens": answer.prompt_tokens + answer.completion_tokens,
    }


def _response(answer: Answer, model: str, chat: bool) -> dict[str, Any]:
    """A non-streamed OpenAI response: a chat completion, or a text completion for ``/v1/completions``."""
    if chat:
        kind, choice = "chat.completion", {"message": {"role": "assistant", "content": answer.text}}
    else:
        kind, choice = "text_completion", {"text": answer.text}
    return {
        "id": f"{'chatcmpl' if chat else 'cmpl'}-{uuid.uuid4().hex}",
        "object": kind,
        "created": int(time.time()),
        "model": model,
        "choices": [{"index": 0, **choice, "finish_reason": "stop"}],
        "usage": _usage(answer),
        "slmkit": _extras(answer),
    }


def _stream(
    answerer: Answerer,
    worker: ModelWorker,
    request: Request,
    question: str,
    history: list[tuple[str, str]],
    config: GenerationConfig,
    model: str,
    chat: bool,
) -> StreamingResponse:
    """Server-sent events in OpenAI's chunk format; the last chunk carries the ``slmkit`` extras.

    The model's text streams as it is generated. If the support gate then rejects it, the final
    chunk says so (``slmkit.abstained`` true, ``slmkit.answer`` the abstention sentence): a
    client that shows streamed text should replace it with that answer.
    """
    loop = asyncio.get_running_loop()
    pieces: asyncio.Queue[tuple[str, Any]] = asyncio.Queue()
    gone = threading.Event()
    ident, created = f"{'chatcmpl' if chat else 'cmpl'}-{uuid.uuid4().hex}", int(time.time())

    def on_text(text: str) -> None:
        if gone.is_set():
            raise _Cancelled
        loop.call_soon_threadsafe(pieces.put_nowait, ("text", text))

    def job() -> None:
        per_request = _with_generation(answerer, config)
        try:
            answer = worker.run(lambda: per_request.ask(question, history, on_text=on_text))
            loop.call_soon_threadsafe(pieces.put_nowait, ("done", answer))
        except WorkerBusy:
            loop.call_soon_threadsafe(pieces.put_nowait, ("busy", None))
        except _Cancelled:
            logger.info("client disconnected; generation stopped")
        except Exception as err:  # reported to the client as an SSE error event
            loop.call_soon_threadsafe(pieces.put_nowait, ("error", str(err)))

    def chunk(delta: str | None, finish: str | None, extra: dict[str, Any] | None = None) -> str:
        if chat:
            choice = {"index": 0, "delta": {"content": delta} if delta else {}, "finish_reason": finish}
            body = {"id": ident, "object": "chat.completion.chunk", "created": created, "model": model}
        else:
            choice = {"index": 0, "text": delta or "", "finish_reason": finish}
            body = {"id": ident, "object": "text_completion", "created": created, "model": model}
        body["choices"] = [choice]
        if extra:
            body.update(extra)
        return f"data: {json.dumps(body)}\n\n"

    async def events() -> AsyncIterator[str]:
        thread = threading.Thread(target=job, daemon=True)
        thread.start()
        streamed = False
        try:
            while True:
                kind, value = await pieces.get()
                if kind == "text":
                    streamed = True
                    yield chunk(value, None)
                elif kind == "done":
                    if value.abstained and not streamed:
                        yield chunk(value.text, None)
                    extras = {**_extras(value), "answer": value.text}
                    yield chunk(None, "stop", {"slmkit": extras, "usage": _usage(value)})
                    yield "data: [DONE]\n\n"
                    return
                else:
                    message = "the model is busy and the queue is full" if kind == "busy" else value
                    yield f"data: {json.dumps({'error': {'message': message}})}\n\n"
                    return
        finally:
            gone.set()  # a disconnected client stops the generation at its next token

    return StreamingResponse(events(), media_type="text/event-stream")
