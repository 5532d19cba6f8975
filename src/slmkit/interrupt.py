"""Stopping long commands cleanly on SIGTERM and Ctrl-C.

SIGTERM is what a scheduler or a container runtime sends before it preempts a job; Ctrl-C sends
SIGINT. Inside :func:`stop_on_signals` (the CLI wraps its long commands in it) either signal raises
:class:`Interrupted` where the program is, so ``finally`` blocks and ``except BaseException``
clean-ups run (a knowledge-base build removes its half-written version, for example), except inside
:func:`deferred_stop`: there the signal is only recorded, and the code polls :func:`stop_requested`
at a safe point (a training run, after its current optimizer step, writes its checkpoint and
returns). A second signal while one is pending raises at once, for a user who cannot wait.

Outside :func:`stop_on_signals` (the Python API, tests) nothing changes: Ctrl-C raises
KeyboardInterrupt as usual, and :func:`stop_requested` is always None.
"""

from __future__ import annotations

import contextlib
import logging
import signal
import threading
from collections.abc import Iterator
from types import FrameType

logger = logging.getLogger(__name__)

SIGNALS = (signal.SIGTERM, signal.SIGINT)


class Interrupted(BaseException):
    """A stop signal arrived. A BaseException, like KeyboardInterrupt, so ``except Exception``
    handlers do not swallow it.

    Attributes:
        signum: The signal, e.g. ``signal.SIGTERM``.
        exit_code: The conventional exit status for it, 128 + its number (143 SIGTERM, 130 SIGINT).
    """

    def __init__(self, signum: int) -> None:
        self.signum = signal.Signals(signum)
        super().__init__(f"stopped by {self.signum.name}")

    @property
    def exit_code(self) -> int:
        return 128 + int(self.signum)


class _State:
    installed = False
    deferring = 0
    requested: signal.Signals | None = None


_state = _State()


def _handle(signum: int, _frame: FrameType | None) -> None:
    if _state.deferring and _state.requested is None:
        _state.requested = signal.Signals(signum)
        logger.warning(
            "%s received: stopping at the next safe point (send it again to stop at once)",
            _state.requested.name,
        )
        return
    raise Interrupted(signum)


@contextlib.contextmanager
def stop_on_signals() -> Iterator[None]:
    """Within the block, SIGTERM and SIGINT raise :class:`Interrupted` (or, inside
    :func:`deferred_stop`, ask for a stop at the next safe point). Previous handlers come back after.

    Only the main thread can install signal handlers; elsewhere this does nothing.
    """
    if threading.current_thread() is not threading.main_thread() or _state.installed:
        yield
        return
    previous = {sig: signal.signal(sig, _handle) for sig in SIGNALS}
    _state.installed, _state.requested = True, None
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        _state.installed, _state.requested = False, None


@contextlib.contextmanager
def deferred_stop() -> Iterator[None]:
    """Within the block a first signal is only recorded; poll :func:`stop_requested` to act on it."""
    _state.deferring += 1
    try:
        yield
    finally:
        _state.deferring -= 1


def stop_requested() -> signal.Signals | None:
    """The signal that asked for a stop inside :func:`deferred_stop`, or None."""
    return _state.requested
