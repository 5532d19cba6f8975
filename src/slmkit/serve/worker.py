"""The single model worker that the HTTP API and the web UI share, and the one way both stream answers.

A CPU generates no faster in parallel, and a model's tokenizer is not safe to drive from two threads
at once, so every job that runs the model (an answer, or embedding uploaded documents) goes through
one :class:`ModelWorker`: one job runs, up to ``max_queue`` wait, and one more is refused at once
with :class:`WorkerBusy` rather than left to hang.

:class:`AnswerStream` is how the API (streamed or not) and the web UI answer: it takes a place in
the queue when it is opened, so a busy model is refused before any output (the API answers 503, the
UI says so at once), then answers on a thread of its own and hands the text over piece by piece,
followed by the finished :class:`~slmkit.rag.answer.Answer` or an error. Whoever consumes it gets
the same history window, the same error messages and the same logging, and a consumer that leaves
(a closed browser tab, a disconnected client) stops its generation at the next token.
"""

from __future__ import annotations

import asyncio
import logging
import queue
import threading
from collections.abc import AsyncIterator, Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any, Literal, TypeVar

from slmkit.errors import SlmkitError
from slmkit.rag.answer import Answer, Answerer
from slmkit.serve.chat import HISTORY_TURNS

T = TypeVar("T")

logger = logging.getLogger(__name__)

BUSY = "the model is busy and the queue is full; retry shortly"
SHUTTING_DOWN = "the server is shutting down; retry shortly"


class WorkerBusy(Exception):
    """The model is running a job and the queue is full (or the server is stopping); retry shortly."""

    def __init__(self, message: str = BUSY) -> None:
        super().__init__(message)


class ModelWorker:
    """Runs jobs one at a time, with at most ``max_queue`` callers waiting for their turn.

    Args:
        max_queue: Jobs that may wait while one runs; one more raises :class:`WorkerBusy`.
    """

    def __init__(self, max_queue: int) -> None:
        self._lock = threading.Lock()
        self._slots = threading.BoundedSemaphore(max_queue + 1)  # the running job + the queue
        self._closed = threading.Event()

    @property
    def closed(self) -> bool:
        """True once :meth:`close` was called: the server is stopping."""
        return self._closed.is_set()

    def close(self) -> None:
        """Refuse new and queued jobs; running answers stop at their next token (see AnswerStream)."""
        self._closed.set()

    def reserve(self) -> Reservation:
        """Take a place in the queue now, to run a job later with :meth:`Reservation.run`.

        Raises:
            WorkerBusy: ``max_queue`` jobs are already waiting, or the worker is closed.
        """
        if self.closed:
            raise WorkerBusy(SHUTTING_DOWN)
        if not self._slots.acquire(blocking=False):
            raise WorkerBusy
        return Reservation(self)

    def run(self, job: Callable[[], T]) -> T:
        """Run ``job`` when the model is free and return its result.

        Raises:
            WorkerBusy: ``max_queue`` jobs are already waiting, or the worker is closed.
        """
        return self.reserve().run(job)


class Reservation:
    """A place in a :class:`ModelWorker`'s queue; use it once with :meth:`run` (or :meth:`release` it)."""

    def __init__(self, worker: ModelWorker) -> None:
        self._worker, self._held = worker, True

    def run(self, job: Callable[[], T]) -> T:
        """Wait for the model, run ``job`` and give the place back.

        Raises:
            WorkerBusy: the worker was closed while this job waited.
        """
        try:
            with self._worker._lock:
                if self._worker.closed:
                    raise WorkerBusy(SHUTTING_DOWN)
                return job()
        finally:
            self.release()

    def release(self) -> None:
        if self._held:
            self._held = False
            self._worker._slots.release()


@dataclass(frozen=True)
class StreamEvent:
    """What an :class:`AnswerStream` hands over.

    Attributes:
        kind: ``text`` (a piece of the answer as it is generated), ``answer`` (the finished answer)
            or ``error`` (nothing more comes).
        index: Which question of the stream the event belongs to (0 for a single question).
        text: The piece of text, or the error message.
        answer: The finished answer (``answer`` events).
        status: The HTTP status an error stands for: 400 (bad input), 503 (busy or shutting down),
            500 (a bug; the traceback is in the log).
    """

    kind: Literal["text", "answer", "error"]
    index: int = 0
    text: str = ""
    answer: Answer | None = None
    status: int = 200


class _Cancelled(Exception):
    """Raised from the token callback when the consumer has gone."""


class AnswerStream:
    """Answers ``questions`` in turn on the worker, streaming; iterate it (sync or async) for the events.

    Opening it reserves a place in the worker's queue, so a busy model raises :class:`WorkerBusy`
    at once. History is cut to the last ``HISTORY_TURNS`` turns (as in the terminal chat). Leaving
    the iteration early (``break``, ``close()``, a cancelled task) stops the generation at its next
    token; closing the worker (server shutdown) stops it too, with a 503 error event.

    Args:
        worker: The model worker.
        answerer: Answers each question (with its generation settings).
        questions: One question, or several (an OpenAI completions request with a list of prompts),
            answered one after the other in the same turn on the worker.
        history: Earlier ``(question, answer)`` turns.
        loop: The event loop of an async consumer (``async for``); None for a sync one (``for``).

    Raises:
        WorkerBusy: the queue is full, or the server is shutting down.
    """

    def __init__(
        self,
        worker: ModelWorker,
        answerer: Answerer,
        questions: Sequence[str],
        history: Sequence[tuple[str, str]] = (),
        loop: asyncio.AbstractEventLoop | None = None,
    ) -> None:
        self.worker, self.answerer = worker, answerer
        self.questions, self.history = list(questions), list(history)[-HISTORY_TURNS:]
        self._gone = threading.Event()
        self._queue: Any
        if loop is None:
            self._queue = queue.SimpleQueue()
            self._put: Callable[[StreamEvent], None] = self._queue.put
        else:
            self._queue = asyncio.Queue()

            def put(event: StreamEvent) -> None:
                try:
                    loop.call_soon_threadsafe(self._queue.put_nowait, event)
                except RuntimeError:  # the loop has closed (the server stopped): nobody listens now
                    self.cancel()

            self._put = put
        try:
            reservation = worker.reserve()
        except WorkerBusy as err:
            logger.warning("request refused: %s", err)
            raise
        threading.Thread(target=self._job, args=(reservation,), daemon=True, name="slmkit-answer").start()

    # -- the producing thread ----------------------------------------------------------------------
    def _job(self, reservation: Reservation) -> None:
        try:
            reservation.run(self._answer_all)
        except _Cancelled:
            logger.info("client left; generation stopped")
        except WorkerBusy as err:
            logger.warning("request refused: %s", err)
            self._put(StreamEvent("error", text=str(err), status=503))
        except SlmkitError as err:  # bad input, e.g. a question too long for the model's window
            logger.info("request refused: %s", err)
            self._put(StreamEvent("error", text=str(err), status=400))
        except Exception as err:  # shown to the client in one line; the traceback goes to the log
            logger.exception("answering %r failed", self.questions[0] if self.questions else "")
            self._put(StreamEvent("error", text=f"internal error: {err}", status=500))

    def _answer_all(self) -> None:
        for index, question in enumerate(self.questions):

            def on_text(text: str, index: int = index) -> None:
                if self._gone.is_set():
                    raise _Cancelled
                if self.worker.closed:
                    raise WorkerBusy(SHUTTING_DOWN)
                self._put(StreamEvent("text", index, text))

            answer = self.answerer.ask(question, self.history, on_text=on_text)
            self._put(StreamEvent("answer", index, answer=answer))

    # -- the consumer ------------------------------------------------------------------------------
    def cancel(self) -> None:
        """The consumer has gone: stop the generation at its next token."""
        self._gone.set()

    def _last(self, event: StreamEvent) -> bool:
        return event.kind == "error" or (event.kind == "answer" and event.index == len(self.questions) - 1)

    def __iter__(self) -> Iterator[StreamEvent]:
        try:
            while True:
                event = self._queue.get()
                yield event
                if self._last(event):
                    return
        finally:
            self.cancel()

    async def __aiter__(self) -> AsyncIterator[StreamEvent]:
        try:
            while True:
                event = await self._queue.get()
                yield event
                if self._last(event):
                    return
        finally:
            self.cancel()

    def answers(self) -> list[Answer]:
        """Wait for every answer (sync consumers that do not stream).

        Raises:
            StreamFailed: the stream ended with an error event.
        """
        return [event.answer for event in self if _answer_or_raise(event)]  # type: ignore[misc]

    async def answers_async(self) -> list[Answer]:
        """:meth:`answers` for async consumers."""
        return [event.answer async for event in self if _answer_or_raise(event)]  # type: ignore[misc]


class StreamFailed(Exception):
    """An :class:`AnswerStream` ended with an error event; ``status`` is its HTTP status."""

    def __init__(self, event: StreamEvent) -> None:
        super().__init__(event.text)
        self.status = event.status


def _answer_or_raise(event: StreamEvent) -> bool:
    if event.kind == "error":
        raise StreamFailed(event)
    return event.kind == "answer"
