"""Text sources that are tables: a JSON Lines or CSV file, one sample per row.

``augledger run TEXT_SPEC --source data.jsonl --text-field text --key-field id`` augments each row's
text and carries its other columns (labels, splits, ...) through unchanged. :class:`RowSource`
reads the file once, checks it as a whole (every problem is a :class:`~augledger.errors.SourceError`
naming the line) and presents each row as a *virtual file* so the folder machinery works unchanged:

* its key is the ``--key-field`` value: a non-empty string, unique, and a safe relative name, since
  output files are named after it (``augmented/<key>.c<copy>.txt``);
* its bytes are the row's canonical JSON (every column), read through a read-only
  :class:`~augledger.io.store.Store` (:attr:`RowSource.store`): ``source_digest`` is per row, so a
  resume redoes exactly the rows that were added or changed (a label too), and ``verify`` names them;
* the text codec decodes the text field alone (:meth:`RowSource.text_of`), so an output ``.txt`` keeps
  the text's own line breaks; the other columns are the row's
  :attr:`~augledger.io.codecs.Annotation.carry`, which lands in the ledger's ``targets``.

At the end of a run :meth:`RowSource.finish` writes ``augmented.jsonl`` (or ``augmented.csv``): per
ok output its key, ``copy``, the augmented text under the text field's name (the per-sample output
read back) and the carried columns, in ledger order. It is a pure function of the ledger and the
outputs, so ``verify`` re-makes it (:func:`export_problems`) and names the key of a line that differs.
The field names and the file's format are part of the folder's identity; the file's SHA-256 is in
the manifest (``rows``), not in the identity, so adding rows to the file and rerunning resumes.
"""

from __future__ import annotations

import builtins
import csv
import errno
import io
import json
import unicodedata
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from augledger._canonical import canonical_json, sha256_hex
from augledger.errors import LedgerError, SourceError, UnsafePath
from augledger.io.codecs import Annotation
from augledger.io.store import LocalStore, check_relative
from augledger.ledger.parquet import read_ledger
from augledger.run.options import RunOptions

__all__ = ["ROW_FORMATS", "RowSource", "RowStore", "export_problems", "row_source"]

#: Source file suffix -> format; the export is ``augmented.<format>``.
ROW_FORMATS = {".jsonl": "jsonl", ".ndjson": "jsonl", ".csv": "csv"}
#: A column the export writes itself.
_COPY = "copy"
#: Ledger ``targets`` names with a meaning of their own (a stored mask): a carried column may not use them.
_TARGET_NAMES = ("mask", "mask_digest", "mask_source_digest")


class RowStore:
    """A read-only :class:`~augledger.io.store.Store` over rows: ``read(key)`` is the row's canonical JSON."""

    def __init__(self, rows: Mapping[str, bytes]) -> None:
        self._rows = rows

    def read(self, path: str) -> bytes:
        try:
            return self._rows[path]
        except KeyError:
            raise FileNotFoundError(errno.ENOENT, "no row with this key in the source file") from None

    def write(self, path: str, data: bytes) -> None:
        raise PermissionError(errno.EACCES, "a row source is read-only")

    def list(self, prefix: str = "") -> builtins.list[str]:
        return sorted(k for k in self._rows if k.startswith(prefix))

    def exists(self, path: str) -> bool:
        return path in self._rows

    def remove(self, path: str) -> None:
        raise PermissionError(errno.EACCES, "a row source is read-only")


@dataclass(frozen=True)
class RowSource:
    """The rows of a JSON Lines or CSV file, checked, by key. Picklable (it travels to worker processes).

    Build it with :meth:`load`; pass it to :func:`~augledger.run.materialize.materialize` as ``source``.
    """

    path: Path
    format: str
    text_field: str
    key_field: str
    #: SHA-256 of the file's bytes.
    digest: str
    #: Every column, in the order first seen (a CSV file's header).
    columns: tuple[str, ...]
    #: key -> the row's canonical JSON, sorted by key.
    rows: dict[str, bytes]

    @classmethod
    def load(cls, path: str | Path, *, text_field: str, key_field: str) -> RowSource:
        """Read and check ``path`` (``.jsonl``/``.ndjson`` or ``.csv``, UTF-8).

        Raises:
            SourceError: the file cannot be read or parsed; a row lacks the key or the text field,
                its text is not a string, its key is empty, repeated or not a safe relative name;
                a column is named ``copy`` (the export's own column) or like a stored target.
        """
        path = Path(path).resolve()
        fmt = ROW_FORMATS.get(path.suffix.lower())
        if fmt is None:
            raise SourceError(f"a text source file is .jsonl, .ndjson or .csv; got {str(path)!r} (or pass a folder of .txt files)")
        if not text_field or not key_field or text_field == key_field:
            raise SourceError(f"--text-field and --key-field must name two different columns; got {text_field!r} and {key_field!r}")
        try:
            data = path.read_bytes()
            text = data.decode("utf-8-sig")
        except OSError as exc:
            raise SourceError(f"source file {str(path)!r} cannot be read: {exc.strerror or exc}") from None
        except UnicodeDecodeError as exc:
            raise SourceError(f"source file {str(path)!r} is not UTF-8 (byte {exc.start}); convert it to UTF-8") from None
        parsed = _jsonl_rows(path.name, text) if fmt == "jsonl" else _csv_rows(path.name, text)
        columns: dict[str, None] = {}
        rows: dict[str, bytes] = {}
        for where, row in parsed:
            columns.update(dict.fromkeys(row))
            key = _check_key(row.get(key_field), where, key_field)
            if key in rows:
                raise SourceError(f"{where}: key {key!r} appears twice in {key_field!r}; each row needs its own key")
            if text_field not in row:
                raise SourceError(f"{where}: no {text_field!r} field (the text to augment); the row has {sorted(row)}")
            if not isinstance(row[text_field], str):
                raise SourceError(f"{where}: {text_field!r} must be a string; got {row[text_field]!r} "
                                  f"({type(row[text_field]).__name__})")
            try:
                rows[key] = canonical_json(row)
            except UnicodeEncodeError as exc:
                raise SourceError(f"{where}: a value holds a lone surrogate ({exc.object[exc.start:exc.end]!a}), "
                                  "which UTF-8 cannot store") from None
        if not rows:
            raise SourceError(f"source file {str(path)!r} has no rows")
        if _COPY in columns:
            raise SourceError(f"{path.name}: a column is named {_COPY!r}, which augmented.{fmt} uses for the copy "
                              "index; rename it")
        clash = [c for c in _TARGET_NAMES if c in columns]
        if clash:
            raise SourceError(f"{path.name}: column(s) {clash} would be read as a stored mask in the ledger; rename them")
        _refuse_lookalikes(rows)
        return cls(path, fmt, text_field, key_field, sha256_hex(data), tuple(columns), dict(sorted(rows.items())))

    @classmethod
    def reopen(cls, path: Path, facts: Mapping[str, Any]) -> RowSource:
        """The source of a finished run (``facts``: its manifest's ``rows``), for ``verify`` and ``replay``.

        Raises:
            LedgerError: ``path`` is not a file of the run's format.
            SourceError: it can no longer be read as rows.
        """
        fmt = ROW_FORMATS.get(path.suffix.lower())
        if not path.is_file() or fmt != facts["format"]:
            raise LedgerError(f"the run read rows from a .{facts['format']} file; {str(path)!r} is not one (moved or "
                              "deleted since the run?); pass --source with its new place")
        return cls.load(path, text_field=str(facts["text_field"]), key_field=str(facts["key_field"]))

    @property
    def store(self) -> RowStore:
        return RowStore(self.rows)

    @property
    def export_name(self) -> str:
        return f"augmented.{self.format}"

    def keys(self) -> list[str]:
        return list(self.rows)

    def annotations(self) -> dict[str, Annotation]:
        """Each row's other columns as the ``carry`` of its annotation (kept in the ledger's ``targets``)."""
        own = (self.key_field, self.text_field)
        return {k: Annotation(carry={c: v for c, v in json.loads(b).items() if c not in own}) for k, b in self.rows.items()}

    def text_of(self, data: bytes) -> bytes:
        """The UTF-8 text of a row's canonical JSON (what the text codec decodes)."""
        text: str = json.loads(data)[self.text_field]
        return text.encode("utf-8")

    def identity(self) -> dict[str, str]:
        """What joins the folder's identity: another field or format makes other samples."""
        return {"format": self.format, "text_field": self.text_field, "key_field": self.key_field}

    def finish(self, out: Path, outputs: LocalStore) -> dict[str, Any]:
        """Write ``augmented.<format>`` from ``out``'s ledger and the outputs in ``outputs``; the manifest's ``rows``."""
        facts: dict[str, Any] = {**self.identity(), "columns": list(self.columns), "path": self.export_name,
                                 "source_sha256": self.digest, "source_rows": len(self.rows)}
        records = _expected(facts, read_ledger(out).rows(), outputs.read)
        unread = [k for k, _e, r in records if r is None]
        if unread:  # written by this run moments ago: a disk problem, not a sample's
            raise OSError(errno.EIO, f"outputs of {unread[:5]} cannot be read back for {self.export_name}")
        data = b"".join(r for _k, _e, r in records if r is not None)
        LocalStore(out).write(self.export_name, data)
        return {**facts, "rows": sum(k != "*" for k, _e, _r in records), "sha256": sha256_hex(data)}


def row_source(
    source: object, modality: str, options: RunOptions, annotations: object = None, masks: object = None,
) -> RowSource | None:
    """``source`` when it is a :class:`RowSource` (after checking that the run can use one), else ``None``.

    Raises:
        SourceError: the spec is not ``modality: text``, or the run asks for what rows do not have
            (originals, annotations, masks, an annotations export, webdataset shards).
    """
    if not isinstance(source, RowSource):
        return None
    if modality != "text":
        raise SourceError(f"a JSON Lines/CSV source holds text; this spec's modality is {modality!r}")
    asked = {"include_original": options.include_original, "annotations/masks": annotations is not None or masks is not None,
             "export_annotations": options.export_annotations, "format webdataset": options.format != "folder"}
    unsupported = [name for name, value in asked.items() if value]
    if unsupported:
        raise SourceError(f"a JSON Lines/CSV source does not take {', '.join(unsupported)}: its rows carry their own "
                          f"columns, and augmented.{source.format} holds every copy")
    return source


def export_problems(
    facts: Mapping[str, Any], ledger_rows: Sequence[Mapping[str, Any]], read: Callable[[str], bytes | None],
    stored: bytes | None,
) -> list[tuple[str, int, str]]:
    """``(key, copy, message)`` for each line of a stored ``augmented.<format>`` that its ledger and
    outputs do not give (at most 20 named, then a count)."""
    name = str(facts["path"])
    if stored is None:
        return [("*", 0, f"{name} is missing")]
    records = _expected(facts, ledger_rows, read)
    if b"".join(r for _k, _e, r in records if r is not None) == stored:
        return []
    found = _split(facts["format"], stored)
    problems = [(k, e, f"{name} cannot be checked for this output: it cannot be read as UTF-8 text")
                for k, e, r in records if r is None]
    unit = "record" if facts["format"] == "csv" else "line"
    for i, (key, epoch, record) in enumerate(records):
        if record is not None and (i >= len(found) or _split(facts["format"], record) != [found[i]]):
            problems.append((key, epoch, f"{name} {unit} {i + 1} does not match the ledger and the stored output "
                                         "(edited since the run?)"))
    if len(found) != len(records):
        problems.append(("*", 0, f"{name} has {len(found)} rows; the ledger has {len(records)} ok outputs"))
    if not problems:  # the same records, other bytes (a changed header, line breaks)
        problems.append(("*", 0, f"{name} does not match the ledger (its header or layout was changed)"))
    return problems[:20] + ([("*", 0, f"... and {len(problems) - 20} more lines of {name} differ")] if len(problems) > 20 else [])


def _expected(
    facts: Mapping[str, Any], ledger_rows: Iterable[Mapping[str, Any]], read: Callable[[str], bytes | None],
) -> list[tuple[str, int, bytes | None]]:
    """``(key, copy, record bytes)`` of the export per ok ledger row, in ledger order; for CSV the header
    first (key ``*``). ``None``: the output cannot be read (or is not UTF-8)."""
    key_field, text_field, fmt = str(facts["key_field"]), str(facts["text_field"]), str(facts["format"])
    carried = [c for c in facts["columns"] if c not in (key_field, text_field)]
    header = [key_field, _COPY, text_field, *carried]
    records: list[tuple[str, int, bytes | None]] = [("*", 0, _csv_line(header))] if fmt == "csv" else []
    for row in ledger_rows:
        if row["status"] != "ok":
            continue
        key, epoch = str(row["key"]), int(row["epoch"])
        try:
            data = read(str(row["output_path"]))
            text = data.decode("utf-8") if data is not None else None
        except (OSError, UnsafePath, UnicodeDecodeError):
            text = None
        if text is None:
            records.append((key, epoch, None))
            continue
        targets = json.loads(row["targets"] or "{}")
        if fmt == "csv":
            records.append((key, epoch, _csv_line([key, str(epoch), text, *(str(targets.get(c, "")) for c in carried)])))
        else:
            obj = {key_field: key, _COPY: epoch, text_field: text, **{c: targets[c] for c in carried if c in targets}}
            records.append((key, epoch, json.dumps(obj, ensure_ascii=False, allow_nan=False).encode() + b"\n"))
    return records


def _csv_line(cells: Sequence[str]) -> bytes:
    buf = io.StringIO()
    csv.writer(buf, lineterminator="\n").writerow(cells)
    return buf.getvalue().encode()


def _split(fmt: str, data: bytes) -> list[Any]:
    """The records of an export file, as comparable values (CSV cells may hold line breaks)."""
    if fmt == "csv":
        return list(csv.reader(io.StringIO(data.decode("utf-8", errors="replace"), newline="")))
    lines = data.split(b"\n")  # not splitlines(): U+2028 and friends stay inside a JSON string
    return lines[:-1] if lines and not lines[-1] else lines


def _jsonl_rows(name: str, text: str) -> list[tuple[str, dict[str, Any]]]:
    rows = []
    for i, line in enumerate(text.split("\n"), start=1):
        if not line.strip():
            continue
        try:
            row = json.loads(line, parse_constant=_no_constant)
        except ValueError as exc:
            raise SourceError(f"{name}:{i}: not valid JSON: {exc}") from None
        if not isinstance(row, dict):
            raise SourceError(f"{name}:{i}: each line must be a JSON object; got {type(row).__name__}")
        rows.append((f"{name}:{i}", row))
    return rows


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a number JSON allows (nor the ledger)")


def _csv_rows(name: str, text: str) -> list[tuple[str, dict[str, Any]]]:
    rows = []
    try:
        reader = csv.reader(io.StringIO(text, newline=""))
        header = next(reader, None)
        if not header:
            raise SourceError(f"{name}: no header row")
        if len(set(header)) != len(header):
            raise SourceError(f"{name}: the header names a column twice: {header}")
        for cells in reader:
            if not cells:
                continue
            where = f"{name}:{reader.line_num}"
            if len(cells) != len(header):
                raise SourceError(f"{where}: {len(cells)} fields, the header has {len(header)}")
            rows.append((where, dict(zip(header, cells, strict=True))))
    except csv.Error as exc:
        raise SourceError(f"{name}: not valid CSV: {exc}") from None
    return rows


def _check_key(key: Any, where: str, key_field: str) -> str:
    if not isinstance(key, str) or not key:
        raise SourceError(f"{where}: every row needs a non-empty string in {key_field!r} (its key, which names its "
                          f"output files); got {key!r}")
    try:
        normal = check_relative(key, what="key")
    except UnsafePath as exc:
        raise SourceError(f"{where}: {exc}; output files are named after keys, so a key is a relative name") from None
    if normal != key or any(part.startswith(".") for part in key.split("/")):
        raise SourceError(f"{where}: key {key!r} is not a plain relative name (output files are named after it): "
                          "no '.', '..' or empty parts, no part starting with '.', no trailing '/'")
    return key


def _refuse_lookalikes(keys: Iterable[str]) -> None:
    """Keys that differ only by case or Unicode normalisation would name one output file on macOS/Windows."""
    seen: dict[str, str] = {}
    for key in keys:
        folded = unicodedata.normalize("NFC", key).casefold()
        if folded in seen:
            raise SourceError(f"keys {seen[folded]!a} and {key!a} differ only by letter case or Unicode "
                              "normalisation; their outputs would overwrite each other on some file systems")
        seen[folded] = key
