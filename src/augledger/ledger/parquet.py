"""Parquet ledgers: one row per output, readable without augledger.

Rows are gathered as the work happens (a run's journal, or the online ledger's per-process part
files) and written once at the end, sorted by ``(key, epoch)`` with duplicates dropped, so the
ledger's content does not depend on how the work was spread: :func:`write_ledger` for rows in
memory, :class:`LedgerWriter` for rows streamed in order, a batch (Parquet row group) at a time.
The header (fingerprint, resolved spec, seed, environment stamp) is stored in the Parquet file's
key-value metadata under ``augledger``, so the file describes itself::

    import pyarrow.parquet as pq, json
    table = pq.read_table("out/ledger.parquet")                     # or pandas / DuckDB
    header = json.loads(table.schema.metadata[b"augledger"])

The columns are those of :class:`~augledger.ledger.row.LedgerRow` (:data:`~augledger.ledger.row.COLUMNS`).
"""

from __future__ import annotations

import io
import json
import os
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from augledger.errors import LedgerError
from augledger.ledger.row import COLUMNS, LedgerRow

__all__ = ["LEDGER_FORMAT", "Ledger", "LedgerWriter", "as_row", "read_ledger", "write_ledger"]

#: Version of the ledger layout, stored in every header. 2: ``input_digest`` column.
#: 3: rows carry their own fingerprint and variant. 4: each applied op names its node path in the
#: spec (``"path": "ops[2].ops[0]"``); replay compares older rows without it. 5: ``mix`` column
#: (online batch mixing); older ledgers are read with it missing.
LEDGER_FORMAT = 5
_META_KEY = b"augledger"


def as_row(row: LedgerRow | Mapping[str, Any]) -> LedgerRow:
    """``row`` as a :class:`LedgerRow` (a mapping is checked: unknown columns and missing keys are refused)."""
    return row if isinstance(row, LedgerRow) else LedgerRow.from_dict(row)


def _pa() -> Any:
    import pyarrow

    return pyarrow


def _schema() -> Any:
    pa = _pa()
    required = ("key", "epoch", "status")
    return pa.schema([pa.field(name, getattr(pa, kind)(), nullable=name not in required) for name, kind in COLUMNS.items()])


def _table(rows: Sequence[LedgerRow]) -> Any:
    """Build the Arrow table of ``rows`` by parsing them as JSON lines against the ledger schema.

    Arrow's JSON reader is used instead of ``Table.from_pydict`` because every Python-to-Arrow
    conversion imports pandas when it is installed (about 0.4 s, at the end of every run); the
    reader converts in C++ and checks each value against the schema.
    """
    import pyarrow as pa
    import pyarrow.json as pj

    schema = _schema()
    if not rows:
        return schema.empty_table()
    lines = [json.dumps(row.to_dict(), ensure_ascii=False) for row in rows]
    data = ("\n".join(lines) + "\n").encode("utf-8")
    try:
        table = pj.read_json(
            io.BytesIO(data),
            # One block holds the longest row: a row may not straddle two blocks.
            read_options=pj.ReadOptions(use_threads=False, block_size=max(1 << 20, 2 * max(map(len, lines)))),
            parse_options=pj.ParseOptions(explicit_schema=schema, unexpected_field_behavior="error"),
        )
    except pa.ArrowInvalid as exc:
        raise LedgerError(f"ledger rows do not fit the ledger schema ({exc}); key, epoch and status are required") from None
    # The reader keeps the schema's types and order (and has checked the required fields) but marks
    # every field nullable; re-labelling the columns avoids a cast, which imports pyarrow.compute (~0.12 s).
    return pa.Table.from_arrays(table.columns, schema=schema)


def write_ledger(rows: Iterable[LedgerRow | Mapping[str, Any]], path: str | Path, header: Mapping[str, Any]) -> Path:
    """Write a complete ledger atomically (temp file + rename), sorted by (key, epoch).

    Of rows repeating a (key, epoch) pair the first is kept (later ones are re-runs). Sorting and
    de-duplicating happen in Python: Arrow's compute functions would add ~0.3 s of imports. For
    more rows than fit in memory, stream them in order through :class:`LedgerWriter`.

    Raises:
        LedgerError: a row (given as a mapping) has a column that is not in ``COLUMNS`` or lacks
            key, epoch or status, or a value has the wrong type.
    """
    unique: dict[tuple[str, int], LedgerRow] = {}
    for given in rows:
        row = as_row(given)
        unique.setdefault((row.key, row.epoch), row)
    with LedgerWriter(path, header) as writer:
        for pair in sorted(unique):
            writer.write(unique[pair])
    return writer.path


class LedgerWriter:
    """Write a ledger from rows that arrive already sorted by (key, epoch), a batch at a time.

    Memory stays at one batch however many rows there are. The file appears only when the
    writer closes without error (temp file + rename)::

        with LedgerWriter(out / "ledger.parquet", header) as writer:
            for row in rows_in_key_epoch_order:
                writer.write(row)

    Raises (from ``write``):
        LedgerError: a row out of (key, epoch) order or repeating a pair (or, given as a mapping,
            with an unknown column).
    """

    def __init__(self, path: str | Path, header: Mapping[str, Any], *, batch_rows: int = 1024) -> None:
        self.path = Path(path)
        self._tmp = self.path.with_name(f".{self.path.name}.tmp")
        self._meta = {_META_KEY: json.dumps({"format": LEDGER_FORMAT, **dict(header)}, sort_keys=True).encode()}
        self._batch: list[LedgerRow] = []
        self._batch_rows = batch_rows
        self._last: tuple[str, int] | None = None
        self._writer: Any = None
        self.rows = 0

    def write(self, row: LedgerRow | Mapping[str, Any]) -> None:
        row = as_row(row)
        pair = (row.key, row.epoch)
        if self._last is not None and pair <= self._last:
            raise LedgerError(f"ledger rows must come in (key, epoch) order without repeats; {pair} came after {self._last}")
        self._last = pair
        self._batch.append(row)
        if len(self._batch) >= self._batch_rows:
            self._flush()

    def _flush(self) -> None:
        import pyarrow.parquet as pq

        table = _table(self._batch).replace_schema_metadata(self._meta)
        if self._writer is None:
            self._writer = pq.ParquetWriter(self._tmp, table.schema)
        self._writer.write_table(table)
        self.rows += len(self._batch)
        self._batch = []

    def close(self) -> None:
        if self._batch or self._writer is None:
            self._flush()
        self._writer.close()
        os.replace(self._tmp, self.path)

    def __enter__(self) -> LedgerWriter:
        return self

    def __exit__(self, exc_type: object, *_: object) -> None:
        if exc_type is None:
            self.close()
            return
        if self._writer is not None:
            self._writer.close()
        self._tmp.unlink(missing_ok=True)


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
