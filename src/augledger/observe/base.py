"""The observer interface: hooks a run calls at its start, after each batch of rows, and at its end.

Observers see what the run records (ledger rows and the manifest) and nothing else, so whatever
they do (draw a progress bar, count quarantines, log to a tracking server) cannot change an
output. An observer that raises stops the run like any other error; a slow one slows it, as it
runs in the thread that commits rows (offline: the main process; online: the process loading
the batch, i.e. each DataLoader worker, which holds its own copy of the observer).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from augledger.ledger.row import LedgerRow

__all__ = ["LoggingObserver", "RunObserver", "RunStart"]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class RunStart:
    """What a run is about to do.

    Attributes:
        kind: ``offline`` (``augledger run``) or ``online`` (a training data loader).
        fingerprint, name, seed: the pipeline's identity.
        total: outputs the run will have when done (offline), or ``None`` (online: open-ended).
        reused: outputs a previous run had already made and that still verify (offline resume).
        out: the output folder (offline), or ``None``.
    """

    kind: str
    fingerprint: str
    name: str
    seed: int
    total: int | None = None
    reused: int = 0
    out: str | None = None


class RunObserver(Protocol):
    """Hooks of a run. Implement the ones you need; every call gets plain data."""

    def on_start(self, start: RunStart) -> None: ...

    def on_rows(self, rows: Sequence[LedgerRow]) -> None:
        """Rows just committed (offline: journaled; online: one batch), in no particular order."""
        ...

    def on_finish(self, summary: Mapping[str, Any]) -> None:
        """The run ended; offline, ``summary`` is the manifest written to ``manifest.json``."""
        ...


class LoggingObserver:
    """Logs progress (``INFO``) every ``every`` seconds and each quarantined output (``WARNING``)."""

    def __init__(self, every: float = 10.0) -> None:
        self.every = every
        self._done = 0
        self._total: int | None = None
        self._last = 0.0

    def on_start(self, start: RunStart) -> None:
        self._done, self._total, self._last = start.reused, start.total, time.monotonic()
        log.info("%s run of %s (%s) started: %s outputs, %d reused", start.kind, start.name,
                 start.fingerprint[:19], start.total if start.total is not None else "open-ended", start.reused)

    def on_rows(self, rows: Sequence[LedgerRow]) -> None:
        self._done += len(rows)
        for row in rows:
            if not row.ok:
                log.warning("quarantined %s copy %d: %s", row.key, row.epoch, row.error)
        now = time.monotonic()
        if now - self._last >= self.every:
            self._last = now
            log.info("%d/%s outputs done", self._done, self._total if self._total is not None else "?")

    def on_finish(self, summary: Mapping[str, Any]) -> None:
        log.info("run finished: %s", dict(summary.get("counts", {})) or f"{self._done} outputs")
