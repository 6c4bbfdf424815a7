"""The ledger: one row per augmented output, in Parquet, readable without augledger.

Rows are written to part files (one per writer: a run's main process, or each DataLoader worker)
and merged at the end, sorted by ``(key, epoch)`` with duplicates dropped, so the ledger's content
does not depend on how the work was spread. The header (fingerprint, resolved spec, seed,
environment stamp) is stored in the Parquet file's key-value metadata under ``augledger``, so the
file describes itself::

    import pyarrow.parquet as pq, json
    table = pq.read_table("out/ledger.parquet")                     # or pandas / DuckDB
    header = json.loads(table.schema.metadata[b"augledger"])

Columns (:data:`COLUMNS`): ``key``, ``epoch`` (the copy index offline), ``seed`` (32 hex digits),
``status`` (``ok`` or ``quarantined``), ``error`` (why it was quarantined), ``note`` (e.g. an
input conversion such as ``CMYK->RGB``), ``ops`` (JSON list of applied ops and params),
``targets`` (JSON of the transformed bboxes/keypoints/labels, or null), ``source_digest``,
``output_path`` (relative to the output folder, or null online), ``output_digest``.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from augledger.errors import LedgerError

__all__ = ["COLUMNS", "LEDGER_FORMAT", "Ledger", "LedgerWriter", "in_ledger_sample", "merge_parts", "read_ledger"]

#: Version of the ledger layout, stored in every header.
LEDGER_FORMAT = 1
_META_KEY = b"augledger"
_LEDGER_SAMPLE_DOMAIN = b"augledger/ledger-sample/v1\0"


def in_ledger_sample(seed_hex: str, rate: float) -> bool:
    """Whether a sample with this derived seed (hex) is kept by a ledger sampling ``rate`` in [0, 1].

    A pure function of the seed, hashed again under its own domain so the kept subset is unrelated
    to the draws the seed feeds: every worker layout, rank count and rerun keeps the same subset.
    """
    if rate >= 1.0:
        return True
    if rate <= 0.0:
        return False
    digest = hashlib.blake2b(_LEDGER_SAMPLE_DOMAIN + seed_hex.encode("ascii"), digest_size=8).digest()
    return int.from_bytes(digest, "little") < rate * 2.0**64


#: Column name -> Arrow type name. Timing never goes here: it would make ledgers differ run to run.
COLUMNS: dict[str, str] = {
    "key": "string",
    "epoch": "int64",
    "seed": "string",
    "status": "string",
    "error": "string",
    "note": "string",
    "ops": "string",
    "targets": "string",
    "source_digest": "string",
    "output_path": "string",
    "output_digest": "string",
}


def _pa() -> Any:
    import pyarrow

    return pyarrow


def _schema(header: Mapping[str, Any] | None) -> Any:
    pa = _pa()
    required = ("key", "epoch", "status")
    fields = [pa.field(name, getattr(pa, kind)(), nullable=name not in required) for name, kind in COLUMNS.items()]
    meta = {_META_KEY: json.dumps(dict(header), sort_keys=True).encode()} if header is not None else None
    return pa.schema(fields, metadata=meta)


def _table(rows: Sequence[Mapping[str, Any]], header: Mapping[str, Any] | None) -> Any:
    """Build the Arrow table of ``rows`` by parsing them as JSON lines against the ledger schema.

    Arrow's JSON reader is used instead of ``Table.from_pydict`` because every Python-to-Arrow
    conversion imports pandas when it is installed (about 0.4 s, at the end of every run); the
    reader converts in C++ and checks each value against the schema.
    """
    import pyarrow.json as pj

    schema = _schema(header)
    if not rows:
        return schema.empty_table()
    lines = [json.dumps({name: row.get(name) for name in COLUMNS}, ensure_ascii=False) for row in rows]
    data = ("\n".join(lines) + "\n").encode("utf-8")
    table = pj.read_json(
        io.BytesIO(data),
        # One block holds the longest row: a row may not straddle two blocks.
        read_options=pj.ReadOptions(use_threads=False, block_size=max(1 << 20, 2 * max(map(len, lines)))),
        parse_options=pj.ParseOptions(explicit_schema=schema, unexpected_field_behavior="error"),
    )
    return table.cast(schema)


class LedgerWriter:
    """Append rows to one Parquet part file, in batches (row groups).

    Rows are buffered and flushed every ``batch_size`` rows and on :meth:`close`. A part file that
    was never closed (the process was killed) is unreadable, by design: the rows it held were not
    confirmed, and the work they describe is redone.
    """

    def __init__(self, path: str | Path, *, batch_size: int = 1024) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._batch_size = batch_size
        self._rows: list[Mapping[str, Any]] = []
        self._writer: Any = None
        self.rows_written = 0

    def write(self, row: Mapping[str, Any]) -> None:
        unknown = set(row) - set(COLUMNS)
        if unknown:
            raise LedgerError(f"ledger row has unknown column(s) {sorted(unknown)}; columns are {list(COLUMNS)}")
        self._rows.append(row)
        if len(self._rows) >= self._batch_size:
            self.flush()

    def write_many(self, rows: Iterable[Mapping[str, Any]]) -> None:
        for row in rows:
            self.write(row)

    def flush(self) -> None:
        if not self._rows:
            return
        import pyarrow.parquet as pq

        if self._writer is None:
            self._writer = pq.ParquetWriter(self.path, _schema(None))
        self._writer.write_table(_table(self._rows, None))
        self.rows_written += len(self._rows)
        self._rows = []

    def close(self) -> None:
        self.flush()
        if self._writer is not None:
            self._writer.close()
            self._writer = None

    def __enter__(self) -> LedgerWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _sorted_unique(table: Any) -> Any:
    """Sort by (key, epoch) and keep the first row of each pair (later duplicates are re-runs)."""
    pa = _pa()
    table = table.sort_by([("key", "ascending"), ("epoch", "ascending")])
    if table.num_rows < 2:
        return table
    keys = table.column("key").to_pylist()
    epochs = table.column("epoch").to_pylist()
    keep = [i == 0 or (keys[i], epochs[i]) != (keys[i - 1], epochs[i - 1]) for i in range(len(keys))]
    return table.filter(pa.array(keep))


def write_ledger(rows: Sequence[Mapping[str, Any]] | Any, path: str | Path, header: Mapping[str, Any]) -> Path:
    """Write a complete ledger atomically (temp file + rename), sorted by (key, epoch)."""
    import pyarrow.parquet as pq

    if hasattr(rows, "schema"):  # an Arrow table (merged parts)
        table = _sorted_unique(rows)
    else:
        # Sorted and de-duplicated in Python: Arrow's compute functions would add ~0.3 s of imports.
        # The sort is stable, so the first of duplicate (key, epoch) rows is kept, as for tables.
        unique: dict[tuple[str, int], Mapping[str, Any]] = {}
        for row in rows:
            unique.setdefault((row["key"], row["epoch"]), row)
        table = _table([unique[pair] for pair in sorted(unique)], None)
    table = table.replace_schema_metadata(
        {_META_KEY: json.dumps({"format": LEDGER_FORMAT, **dict(header)}, sort_keys=True).encode()}
    )
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp")
    pq.write_table(table, tmp)
    os.replace(tmp, path)
    return path


def merge_parts(parts: Sequence[str | Path], path: str | Path, header: Mapping[str, Any]) -> Path:
    """Merge closed part files into one ledger at ``path``; unreadable parts are skipped with a log line."""
    import logging

    import pyarrow.parquet as pq

    pa = _pa()
    tables = []
    for part in sorted(str(p) for p in parts):
        try:
            tables.append(pq.read_table(part).cast(_schema(None)))
        except (OSError, pa.ArrowInvalid) as exc:
            logging.getLogger(__name__).warning("skipping unreadable ledger part %s: %s", part, exc)
    table = pa.concat_tables(tables) if tables else _table([], None)
    return write_ledger(table, path, header)


@dataclass(frozen=True)
class Ledger:
    """A read ledger: its header and rows (as a pyarrow Table)."""

    header: dict[str, Any]
    table: Any

    @property
    def fingerprint(self) -> str:
        return str(self.header.get("fingerprint", ""))

    def rows(self) -> list[dict[str, Any]]:
        return list(self.table.to_pylist())

    def find(self, key: str, epoch: int | None = None) -> list[dict[str, Any]]:
        """Rows for ``key`` (and ``epoch`` if given), in epoch order."""
        import pyarrow.compute as pc

        mask = pc.equal(self.table.column("key"), key)
        if epoch is not None:
            mask = pc.and_(mask, pc.equal(self.table.column("epoch"), epoch))
        return list(self.table.filter(mask).to_pylist())

    def __len__(self) -> int:
        return int(self.table.num_rows)


def read_ledger(path: str | Path) -> Ledger:
    """Read a ledger file, or the ``ledger.parquet`` inside an output folder.

    Raises:
        LedgerError: the file is missing or is not an augledger ledger.
    """
    import pyarrow.parquet as pq

    path = Path(path)
    if path.is_dir():
        path = path / "ledger.parquet"
    if not path.is_file():
        raise LedgerError(f"no ledger at {str(path)!r}; pass an output folder of `augledger run` or a ledger file")
    try:
        table = pq.read_table(path)
    except Exception as exc:
        raise LedgerError(f"{str(path)!r} is not a readable Parquet ledger: {exc}") from exc
    meta = table.schema.metadata or {}
    if _META_KEY not in meta:
        raise LedgerError(f"{str(path)!r} has no augledger header; it was not written by augledger")
    return Ledger(json.loads(meta[_META_KEY]), table.replace_schema_metadata(None))
