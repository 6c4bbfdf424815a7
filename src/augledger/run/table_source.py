"""A tabular source (CSV or Parquet) read into rows sorted by key, with the column roles settled.

Column roles: the key field (a string identity), the label field (optional; SMOTE and mixup need
it), ``numeric`` columns (values become ``float`` or ``None``), ``categorical`` columns (``str`` or
``None``) and any other column, carried through unchanged. Roles the spec's ``targets`` does not
declare are inferred from the file's types: number columns are numeric, the rest categorical. A
text column whose values are mostly numbers is refused, naming the row, rather than silently
treated as categorical. Every problem is a :class:`SourceError` naming the column and the row
(``line N`` of a CSV file, counting the header as line 1; ``row N`` of a Parquet file, from 1).
"""

from __future__ import annotations

import io
import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from augledger._canonical import sha256_hex
from augledger.errors import SourceError

__all__ = ["RESERVED", "SourceTable", "class_of", "load_table"]

#: Provenance columns of ``augmented.parquet``; a source column (other than the key field) may not use these names.
RESERVED = ("key", "copy", "origin", "parents", "weight", "ops", "seed", "fingerprint")


@dataclass
class SourceTable:
    """The rows of a source file, sorted by key, and what each column is."""

    path: Path
    digest: str
    format: str
    columns: list[str]
    key_field: str
    label_field: str | None
    numeric: list[str]
    categorical: list[str]
    types: dict[str, Any]  # column -> pyarrow type of the passed-through columns (label and others)
    rows: list[dict[str, Any]]

    def where(self, index: int) -> str:
        """How an error names the row at ``index`` of the file."""
        return f"line {index + 2}" if self.format == "csv" else f"row {index + 1}"


def _read(path: Path, data: bytes, key_field: str) -> tuple[Any, str]:
    import pyarrow as pa

    suffix = path.suffix.lower()
    try:
        if suffix == ".csv":
            import pyarrow.csv as pcsv

            table = pcsv.read_csv(io.BytesIO(data), convert_options=pcsv.ConvertOptions(column_types={key_field: pa.string()}))
            return table, "csv"
        if suffix in (".parquet", ".pq"):
            import pyarrow.parquet as pq

            return pq.read_table(io.BytesIO(data)), "parquet"
    except (pa.ArrowInvalid, OSError, UnicodeDecodeError) as exc:
        raise SourceError(f"{str(path)!r} cannot be read as {suffix[1:].upper()}: {exc}") from None
    raise SourceError(f"{str(path)!r}: a tabular source is a .csv or .parquet file; got {suffix or 'no suffix'!r}")


def _is_number_type(pa: Any, t: Any) -> bool:
    return bool(pa.types.is_integer(t) or pa.types.is_floating(t) or pa.types.is_decimal(t))


def _as_float(value: Any) -> float | None:
    """A numeric cell as a float (``None`` when missing); ``ValueError`` when it is not a finite number."""
    if value is None or (isinstance(value, str) and not value.strip()):
        return None
    if isinstance(value, bool):
        raise ValueError
    number = float(value)
    if math.isnan(number):
        return None
    if math.isinf(number):
        raise ValueError
    return number


def load_table(path: str | Path, *, key_field: str, label_field: str | None = None,
               numeric: Sequence[str] | None = None, categorical: Sequence[str] | None = None) -> SourceTable:
    """Read ``path`` (``.csv`` or ``.parquet``), check it, and return its rows sorted by key.

    Raises:
        SourceError: the file cannot be read; the key or label field, or a declared column, is
            missing; a key is missing or repeated; a numeric column holds a value that is not a
            finite number (naming the column and the row).
    """
    import pyarrow as pa

    path = Path(path)
    if not path.is_file():
        raise SourceError(f"tabular source {str(path)!r} is not a file")
    if key_field in RESERVED and key_field != "key":
        raise SourceError(f"--key-field {key_field!r} is the name of a provenance column of the output; rename the column")
    data = path.read_bytes()
    table, fmt = _read(path, data, key_field)
    columns = list(table.column_names)
    for role, name in (("--key-field", key_field), ("--label-field", label_field)):
        if name is not None and name not in columns:
            raise SourceError(f"{str(path)!r} has no column {name!r} ({role}); its columns: {', '.join(columns)}")
    if len(set(columns)) != len(columns):
        raise SourceError(f"{str(path)!r} repeats a column name: {columns}")
    clash = [c for c in columns if c in RESERVED and c != key_field]
    if clash:
        raise SourceError(f"{str(path)!r}: column(s) {clash} clash with the provenance columns of the output "
                          f"({', '.join(RESERVED)}); rename them")
    special = {key_field, label_field}
    for role, declared in (("numeric", numeric), ("categorical", categorical)):
        for name in declared or ():
            if name not in columns or name in special:
                what = "is the key or label field" if name in special else "is not a column of the source"
                raise SourceError(f"targets.{role} names {name!r}, which {what} (columns: {', '.join(columns)})")
    features = [c for c in columns if c not in special]
    types = {c: table.schema.field(c).type for c in columns}
    inferred_numeric = [c for c in features if _is_number_type(pa, types[c]) and c not in (categorical or ())]
    num = list(numeric) if numeric is not None else inferred_numeric
    cat = list(categorical) if categorical is not None else [c for c in features if c not in num]
    if numeric is not None and categorical is None:
        cat = [c for c in features if c not in num]
    rows: list[dict[str, Any]] = table.to_pylist()
    source = SourceTable(path, sha256_hex(data), fmt, columns, key_field, label_field, num, cat,
                         {c: types[c] for c in columns if c not in num and c not in cat and c != key_field}, [])
    if categorical is None:
        _refuse_mostly_numeric(source, rows, [c for c in cat if pa.types.is_string(types[c]) or pa.types.is_large_string(types[c])])
    seen: dict[str, int] = {}
    for i, row in enumerate(rows):
        key = row.get(key_field)
        if key is None or (isinstance(key, str) and not key.strip()):
            raise SourceError(f"{str(path)!r} {source.where(i)}: the key field {key_field!r} is empty; every row needs a key")
        key = row[key_field] = str(key)
        if key in seen:
            raise SourceError(f"{str(path)!r}: key {key!r} appears twice in column {key_field!r} "
                              f"({source.where(seen[key])} and {source.where(i)}); keys must be unique")
        seen[key] = i
        for name in num:
            try:
                row[name] = _as_float(row[name])
            except (TypeError, ValueError):
                raise SourceError(f"{str(path)!r} {source.where(i)} (key {key!r}): column {name!r} is numeric but holds "
                                  f"{row[name]!r}; fix the value, or declare the column under targets.categorical") from None
        for name in cat:
            if row[name] is not None:
                row[name] = str(row[name])
    source.rows = sorted(rows, key=lambda r: str(r[key_field]))
    return source


def _refuse_mostly_numeric(source: SourceTable, rows: list[dict[str, Any]], names: Sequence[str]) -> None:
    """Text columns whose values are mostly numbers hold a typo, not categories: name the first bad row."""
    for name in names:
        good, bad = 0, None
        for i, row in enumerate(rows):
            try:
                if _as_float(row[name]) is not None:
                    good += 1
            except (TypeError, ValueError):
                bad = i if bad is None else bad
        present = sum(1 for r in rows if r[name] not in (None, ""))
        if bad is not None and good * 2 > present:
            raise SourceError(
                f"{str(source.path)!r} {source.where(bad)} (key {rows[bad].get(source.key_field)!r}): column {name!r} "
                f"holds numbers in {good} of {present} rows but {rows[bad][name]!r} here; fix the value, or declare the "
                "column under targets.categorical (or targets.numeric) in the spec")


def class_of(value: Any) -> str:
    """A label value as the class name that keys, counts and ``sampling_strategy`` use."""
    return str(value)
