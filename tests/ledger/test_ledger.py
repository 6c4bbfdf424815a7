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


def test_streamed_batches_equal_one_write(tmp_path: Path) -> None:
    from augledger.ledger import LedgerWriter

    rows = [{"key": f"k{i:03d}", "epoch": e, "status": "ok", "ops": f'["{i}"]'} for i in range(25) for e in (0, 1)]
    write_ledger(reversed(rows), tmp_path / "one.parquet", HEADER)
    with LedgerWriter(tmp_path / "batched.parquet", HEADER, batch_rows=7) as writer:
        for row in rows:
            writer.write(row)
    import pyarrow.parquet as pq

    assert pq.ParquetFile(tmp_path / "batched.parquet").num_row_groups == 8
    one, batched = read_ledger(tmp_path / "one.parquet"), read_ledger(tmp_path / "batched.parquet")
    assert batched.rows() == one.rows() and batched.header == one.header


def test_streamed_rows_out_of_order_are_refused_and_leave_no_file(tmp_path: Path) -> None:
    from augledger.ledger import LedgerWriter

    with pytest.raises(LedgerError, match=r"\(key, epoch\) order"), LedgerWriter(tmp_path / "l.parquet", HEADER) as writer:
        writer.write({"key": "b", "epoch": 0, "status": "ok"})
        writer.write({"key": "a", "epoch": 0, "status": "ok"})
    assert list(tmp_path.iterdir()) == []


def digest_of_sources(pairs: list[tuple[str, str]]) -> str:
    """The documented definition: SHA-256 of the canonical JSON of the sorted pair list."""
    from augledger._canonical import canonical_json, sha256_hex

    return sha256_hex(canonical_json(sorted(pairs)))


def test_sources_digest_streamed_equals_the_list_digest() -> None:
    from augledger.run.sources import SourcesDigest

    pairs: list[tuple[str, str]] = [("b/ü.png", "sha256:2"), ("a.png", "sha256:1"), ("a.png", "sha256:0"), ("c\"q.png", "sha256:3")]
    streamed = SourcesDigest()
    for key, digest in sorted(pairs):
        streamed.add(key, digest)
    assert streamed.hexdigest() == digest_of_sources(pairs)
    assert SourcesDigest().hexdigest() == digest_of_sources([])
    with pytest.raises(ValueError, match="sorted"):
        streamed.add("a.png", "sha256:9")


def test_the_row_type_defines_the_columns() -> None:
    import dataclasses

    from augledger.ledger import LedgerRow

    assert list(COLUMNS) == [f.name for f in dataclasses.fields(LedgerRow)]
    assert COLUMNS["epoch"] == "int64" and {COLUMNS[c] for c in COLUMNS if c != "epoch"} == {"string"}
    row = LedgerRow.quarantined("a.png", 2, "ab" * 16, "corrupt", "damaged JPEG data", source_digest="sha256:x")
    assert row.reason == "corrupt" and not row.ok and row.error == "corrupt: damaged JPEG data"
    assert LedgerRow.from_dict(row.to_dict()) == row
    with pytest.raises(LedgerError, match=r"lacks \['status'\]"):
        LedgerRow.from_dict({"key": "a", "epoch": 0})


def test_duckdb_reads_a_ledger_without_augledger(tmp_path: Path) -> None:
    import duckdb

    rows = [{"key": f"k{i}.png", "epoch": e, "status": "ok" if i % 3 else "quarantined", "ops": "[]"}
            for i in range(6) for e in range(2)]
    path = write_ledger(rows, tmp_path / "l.parquet", HEADER)
    con = duckdb.connect()
    got = con.execute(
        f"SELECT status, count(*) FROM read_parquet('{path}') GROUP BY status ORDER BY status"
    ).fetchall()
    assert got == [("ok", 8), ("quarantined", 4)]
    assert con.execute(f"SELECT key FROM read_parquet('{path}') WHERE epoch = 1 ORDER BY key LIMIT 1").fetchone() == ("k0.png",)


def test_part_files_from_several_processes_merge_sorted(tmp_path: Path) -> None:
    import os

    from augledger.ledger import LedgerRow
    from augledger.ledger.parts import PartFiles

    parts = PartFiles(tmp_path)
    parts.append([LedgerRow("b.png", 0, "s"), LedgerRow("a.png", 1, "s")])
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child: its own part file, never the parent's handle
        try:
            parts.append([LedgerRow("a.png", 0, "s"), LedgerRow("b.png", 0, "child")])
        finally:
            os._exit(0)
    os.waitpid(pid, 0)
    (tmp_path / "part-killed-9.jsonl").write_text('{"key": "c.png", "epo')  # a process killed mid-line
    assert len(parts.parts()) == 3
    merged = read_ledger(parts.merge(tmp_path / "ledger.parquet", HEADER)).rows()
    assert [(r["key"], r["epoch"]) for r in merged] == [("a.png", 0), ("a.png", 1), ("b.png", 0)]


def test_a_part_reused_by_a_later_process_with_the_same_pid_still_merges(tmp_path: Path) -> None:
    import os

    from augledger.ledger import LedgerRow
    from augledger.ledger.parts import PartFiles, host_name

    (tmp_path / f"part-{host_name()}-{os.getpid()}.jsonl").write_text('{"key": "a.png", "epoch": 0, "seed": "s", "sta')
    parts = PartFiles(tmp_path)
    parts.append([LedgerRow("b.png", 0, "s")])
    assert [r["key"] for r in read_ledger(parts.merge(tmp_path / "l.parquet", HEADER)).rows()] == ["b.png"]
