"""Ledger files: sorted by (key, epoch), first row of a repeated pair kept, only known columns."""

from __future__ import annotations

from pathlib import Path

import pytest

from augledger import LedgerError
from augledger.ledger import COLUMNS, read_ledger, write_ledger

HEADER = {"kind": "offline", "fingerprint": "sha256:ab", "seed": 1}


def test_rows_are_sorted_and_first_duplicate_kept(tmp_path: Path) -> None:
    rows = [
        {"key": "ü/b.png", "epoch": 0, "status": "ok", "seed": "first"},
        {"key": "a.png", "epoch": 1, "status": "ok", "ops": '[{"op":"x"}]'},
        {"key": "a.png", "epoch": -1, "status": "quarantined", "error": "truncated: half a file"},
        {"key": "ü/b.png", "epoch": 0, "status": "ok", "seed": "re-run"},
        {"key": "Z.png", "epoch": 0, "status": "ok"},
    ]
    ledger = read_ledger(write_ledger(rows, tmp_path / "l.parquet", HEADER))
    got = ledger.rows()
    # Code-point order: upper case before lower case before non-ASCII.
    assert [(r["key"], r["epoch"]) for r in got] == [("Z.png", 0), ("a.png", -1), ("a.png", 1), ("ü/b.png", 0)]
    assert got[3]["seed"] == "first"
    assert got[1]["error"] == "truncated: half a file" and got[2]["ops"] == '[{"op":"x"}]'
    assert list(ledger.table.column_names) == list(COLUMNS)
    assert ledger.header["fingerprint"] == "sha256:ab"


def test_unknown_columns_are_refused(tmp_path: Path) -> None:
    with pytest.raises(LedgerError, match=r"unknown column\(s\) \['seconds'\]"):
        write_ledger([{"key": "a", "epoch": 0, "status": "ok", "seconds": 0.1}], tmp_path / "l.parquet", HEADER)
    assert not (tmp_path / "l.parquet").exists()


def test_rows_without_a_status_are_refused(tmp_path: Path) -> None:
    with pytest.raises(LedgerError, match="status are required"):
        write_ledger([{"key": "a.png", "epoch": 0}], tmp_path / "l.parquet", HEADER)


def test_writing_a_ledger_imports_neither_pandas_nor_arrow_compute(tmp_path: Path) -> None:
    """Each would add 0.1-0.4 s at the end of every run."""
    import subprocess
    import sys

    code = (
        "import sys; from augledger.ledger import write_ledger; "
        f"write_ledger([{{'key': 'a', 'epoch': 0, 'status': 'ok'}}], {str(tmp_path / 'l.parquet')!r}, {{}}); "
        "print(sorted(m for m in ('pandas', 'pyarrow.compute') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"
