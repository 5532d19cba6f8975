"""The single model worker that the HTTP API and the web UI share.

A CPU generates no faster in parallel, and a model's tokenizer is not safe to drive from two threads
at once, so every job that runs the model (an answer, or embedding uploaded documents) goes through
one :class:`ModelWorker`: one job runs, up to ``max_queue`` wait, and one more is refused at once
with :class:`WorkerBusy` rather than left to hang.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")


class WorkerBusy(Exception):
    """The model is running a job and the queue is full; the caller should retry shortly."""

    def __init__(self) -> None:
        super().__init__("the model is busy and the queue is full; retry shortly")


class ModelWorker:
    """Runs jobs one at a time, with at most ``max_queue`` callers waiting for their turn.

    Args:
        max_queue: Jobs that may wait while one runs; one more raises :class:`WorkerBusy`.
    """

    def __init__(self, max_queue: int) -> None:
        self._lock = threading.Lock()
        self._slots = threading.BoundedSemaphore(max_queue + 1)  # the running job + the queue

    def run(self, job: Callable[[], T]) -> T:
        """Run ``job`` when the model is free and return its result.

        Raises:
            WorkerBusy: ``max_queue`` jobs are already waiting.
        """
        if not self._slots.acquire(blocking=False):
            raise WorkerBusy
        try:
            with self._lock:
                return job()
        finally:
            self._slots.release()
