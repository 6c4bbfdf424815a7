"""The logging observer, and what every observer is promised."""

from __future__ import annotations

import logging

import pytest

from augledger.ledger import LedgerRow
from augledger.observe import LoggingObserver, RunStart


def test_logging_observer_logs_start_quarantines_progress_and_end(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="augledger.observe.base")
    observer = LoggingObserver(every=0.0)
    observer.on_start(RunStart("offline", "sha256:" + "ab" * 32, "photos", 7, total=4, reused=1, out="/o"))
    observer.on_rows([LedgerRow("a.png", 0, "s"), LedgerRow.quarantined("b.png", 0, "s", "corrupt", "damaged JPEG data")])
    observer.on_finish({"counts": {"ok": 3, "quarantined": 1}})
    text = caplog.text
    assert "offline run of photos (sha256:abababababab) started: 4 outputs, 1 reused" in text
    assert "quarantined b.png copy 0: corrupt: damaged JPEG data" in text
    assert "3/4 outputs done" in text
    assert "run finished: {'ok': 3, 'quarantined': 1}" in text
