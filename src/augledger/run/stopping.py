"""Stopping a run cleanly on SIGINT (Ctrl-C) or SIGTERM.

While a run works, :class:`StopSignals` replaces the two handlers with one that only records the
signal; the engines check it between samples, stop starting new work, let the samples in hand
finish (so every complete output reaches the journal), and raise
:class:`~augledger.errors.Interrupted`. A second signal while stopping goes to the handler that
was there before (for SIGINT Python's ``KeyboardInterrupt``, for SIGTERM the default: the process
ends with 143), for a user who does not want to wait. Worker processes ignore SIGINT (a terminal's
Ctrl-C reaches the whole process group): the main process decides.
"""

from __future__ import annotations

import logging
import os
import signal
import threading
from types import FrameType, TracebackType
from typing import Any

from augledger.errors import Interrupted

__all__ = ["StopSignals", "ignore_stop_signals"]

log = logging.getLogger(__name__)

_SIGNALS = (signal.SIGINT, signal.SIGTERM)


class StopSignals:
    """Record SIGINT/SIGTERM instead of dying at once (main thread only; elsewhere a no-op).

    Use as a context manager around a run; :meth:`check` raises :class:`Interrupted` once a signal
    came, and :attr:`signum` tells which.
    """

    def __init__(self) -> None:
        self.signum: int | None = None
        self._previous: dict[int, Any] = {}
        self._event = threading.Event()

    @property
    def stopped(self) -> bool:
        return self._event.is_set()

    def wait(self, timeout: float) -> bool:
        """Sleep up to ``timeout`` seconds, waking early when a signal comes; return :attr:`stopped`."""
        return self._event.wait(timeout)

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        if self.signum is not None:  # the second signal: stop waiting for the samples in hand
            self._restore()
            os.kill(os.getpid(), signum)  # now to the previous handler (or the default action)
            return
        self.signum = signum
        self._event.set()
        log.warning("%s received: finishing the samples in hand, then stopping", signal.Signals(signum).name)

    def check(self, done: str = "") -> None:
        """Raise :class:`Interrupted` if a signal came."""
        if self.signum is not None:
            name = signal.Signals(self.signum).name
            raise Interrupted(
                self.signum,
                f"interrupted by {name}{f'; {done}' if done else ''}; run the same command again to resume",
            )

    def __enter__(self) -> StopSignals:
        if threading.current_thread() is threading.main_thread():
            for sig in _SIGNALS:
                self._previous[sig] = signal.signal(sig, self._handle)
        return self

    def _restore(self) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)
        self._previous = {}

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        self._restore()


def ignore_stop_signals() -> None:
    """In a worker process: leave SIGINT (a terminal's Ctrl-C reaches the whole process group) to the
    main process, which stops the workers after the samples in hand.

    SIGTERM keeps its default action: ``concurrent.futures`` ends the workers of a broken pool with
    it, and a worker that ignored it would hang the run. SIGTERM sent to the main process alone (as
    service managers do) stops cleanly; sent to the whole group, it ends the workers at once, the
    main process reports it as the same interruption, and the outputs they had not handed back are
    redone by the next run. Both are set explicitly: a forked worker inherits the main process's
    handlers, and with :class:`StopSignals`' handler for SIGTERM it would only log and live on.
    """
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
