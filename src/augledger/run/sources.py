"""Source datasets: a folder of files read through a store, optionally with an annotations file.

The sample key is the POSIX path of the file relative to the source root (``cats/0001.jpg``):
stable across machines and independent of listing order. Hidden files and folders (names starting
with ``.``) are skipped, and so is every file an annotation names as a mask: a mask is a target
that travels with its image, never a training image of its own. Symlinks are followed only while
they stay inside the root (a link leading outside is refused with the list of such links).

Annotations (``--annotations FILE``) are CSV or JSON Lines with one row per image (the format is
described, with examples, in the README and ``augledger run --help``):

==============  ============================================================================
``key``         required (``--key-column`` names another column); the image's relative path
``label``       optional class label, carried to the ledger unchanged
``bboxes``      optional JSON list of boxes in the spec's ``targets.bboxes.format``
``labels``      optional JSON list, one per box (or any name listed in ``label_fields``)
``keypoints``   optional JSON list of points in ``targets.keypoints.format``
``mask``        optional path of a mask image, relative to the source root (or to ``--masks``)
anything else   carried to the ledger's ``targets`` as it is (``split``, ``source``, ...)
==============  ============================================================================

In CSV files the list columns hold JSON text, e.g. ``"[[10, 20, 50, 60]]"``.
"""

from __future__ import annotations

import csv
import dataclasses
import hashlib
import json
import logging
import math
import unicodedata
from collections.abc import Collection
from pathlib import Path
from typing import Any

from augledger._canonical import canonical_json
from augledger.errors import SourceError, UnsafePath
from augledger.io.codecs import Annotation
from augledger.io.store import LocalStore

log = logging.getLogger(__name__)

__all__ = ["FolderSource", "SourcesDigest", "load_annotations"]

_LIST_COLUMNS = ("bboxes", "keypoints")


class FolderSource:
    """The sample files of a folder: keys are POSIX paths relative to ``root``.

    Args:
        root: the source folder.
        extensions: file extensions that are samples (lower case, with the dot).
        exclude: keys that are not samples (the masks the annotations name).
        exclude_dirs: folders (relative to ``root``) whose files are not samples (``--masks`` inside the source).
    """

    def __init__(
        self, root: Path, extensions: Collection[str], *, exclude: Collection[str] = (), exclude_dirs: Collection[str] = ()
    ) -> None:
        if not root.is_dir():
            raise SourceError(f"source {str(root)!r} is not a folder; pass the folder that holds your images")
        self.root = root
        self.store = LocalStore(root)
        self.extensions = frozenset(extensions)
        self.exclude = frozenset(exclude)
        self.exclude_dirs = tuple(d.rstrip("/") + "/" for d in exclude_dirs)

    def keys(self) -> list[str]:
        """All sample keys, sorted (code-point order of the POSIX path).

        Raises:
            SourceError: a symlink under the root leads outside it.
        """
        try:
            files = self.store.list()
        except UnsafePath as exc:
            raise SourceError(str(exc)) from None
        def is_mask(key: str) -> bool:
            return key in self.exclude or key.startswith(self.exclude_dirs)

        keys = [k for k in files if Path(k).suffix.lower() in self.extensions and not is_mask(k)]
        skipped = sum(1 for k in files if is_mask(k))
        if skipped:
            log.info("%d mask file(s) under the source are targets, not samples: not augmented on their own", skipped)
        _refuse_lookalikes(keys)
        return keys


def _refuse_lookalikes(keys: Collection[str]) -> None:
    """Refuse keys that differ only by Unicode normalisation or letter case (``café`` NFC and NFD,
    ``A.png`` and ``a.png``, ``Dir/x`` and ``dir/x``).

    Output names are made from keys, and on a case-insensitive or normalisation-insensitive file
    system (macOS, Windows) such outputs would be one file, each overwriting the other; ledgers,
    shard keys and annotation rows would be ambiguous everywhere else. Neither can be picked as
    "the real one", so the run is refused, naming every pair, before anything is written.

    Raises:
        SourceError: naming each pair of look-alike keys (as ``ascii()`` spells them, so they differ visibly).
    """
    seen: dict[str, str] = {}
    pairs: list[str] = []
    for key in keys:
        folded = unicodedata.normalize("NFC", key).casefold()
        if folded in seen:
            pairs.append(f"{seen[folded]!a} and {key!a}")
        else:
            seen[folded] = key
    if pairs:
        shown = "; ".join(pairs[:5]) + (f"; and {len(pairs) - 5} more" if len(pairs) > 5 else "")
        raise SourceError(
            f"{len(pairs)} pair(s) of source files differ only by letter case or Unicode normalisation ({shown}); "
            "their outputs would overwrite each other on case-insensitive file systems. Rename one of each pair"
        )


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a number JSON allows")


def _parse_cell(column: str, value: Any, where: str) -> Any:
    if not isinstance(value, str):
        return value
    text = value.strip()
    if text == "":
        return None
    try:
        return json.loads(text, parse_constant=_reject_constant)
    except ValueError:
        raise SourceError(f"{where}: column {column!r} must hold JSON (e.g. [[10, 20, 50, 60]]); got {value!r}") from None


def _problem(ann: Annotation, label_fields: tuple[str, ...]) -> str | None:
    """What makes a row unusable for its sample (its image is quarantined as ``annotation``), or ``None``."""
    for name in ("bboxes", "keypoints"):
        value = getattr(ann, name)
        if value is not None and not (
            isinstance(value, list) and all(isinstance(item, list) and all(_finite(v) for v in item) for item in value)
        ):
            return f"{name} must be a list of lists of finite numbers, e.g. [[10, 20, 50, 60]]; got {value!r}"
    # One label per box or point: a field is declared for boxes, points or both, so its length must be one of theirs.
    counts = {len(v) for v in (ann.bboxes, ann.keypoints) if isinstance(v, list)} or {0}
    for name in label_fields:
        labels = ann.extra.get(name)
        if not isinstance(labels, list):
            return f"{name} must be a list with one label per box or point; got {labels!r}"
        if len(labels) not in counts:
            return (f"{name} has {len(labels)} label(s) but the row has {' or '.join(map(str, sorted(counts)))} "
                    f"box(es)/point(s); give one label per box or point")
    if not _json_safe(ann.label) or not _json_safe(ann.carry) or not _json_safe(ann.extra):
        return "a value is NaN or infinite, which JSON (and the ledger) cannot hold"
    return None


def _finite(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _json_safe(value: Any) -> bool:
    if isinstance(value, float):
        return math.isfinite(value)
    if isinstance(value, dict):
        return all(_json_safe(v) for v in value.values())
    if isinstance(value, list):
        return all(_json_safe(v) for v in value)
    return True


def load_annotations(
    path: Path, *, label_fields: tuple[str, ...] = (), key_column: str = "key"
) -> dict[str, Annotation]:
    """Read a CSV or JSON Lines annotations file into ``{key: Annotation}``.

    Columns augledger does not use are kept in :attr:`Annotation.carry` (and so in the ledger).

    Raises:
        SourceError: unreadable file, a row without a key, a repeated key or malformed JSON.
    """
    if not path.is_file():
        raise SourceError(f"annotations file {str(path)!r} does not exist")
    rows: list[tuple[str, Any]] = []
    try:
        if path.suffix.lower() == ".csv":
            with path.open(newline="", encoding="utf-8") as f:
                for i, row in enumerate(csv.DictReader(f), start=2):
                    rows.append((f"{path.name}:{i}", row))
        elif path.suffix.lower() in (".jsonl", ".ndjson"):
            with path.open(encoding="utf-8") as f:
                for i, line in enumerate(f, start=1):
                    if not line.strip():
                        continue
                    try:
                        rows.append((f"{path.name}:{i}", json.loads(line)))
                    except json.JSONDecodeError as exc:
                        raise SourceError(f"{path.name}:{i}: not valid JSON: {exc}") from None
                    # NaN and Infinity pass json.loads; each row is checked below, and such a row
                    # quarantines its sample instead of stopping the run.
        else:
            raise SourceError(
                f"annotations file {str(path)!r} must be .csv or .jsonl; got {path.suffix or 'no extension'!r}"
            )
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise SourceError(f"annotations file {str(path)!r} cannot be read: {exc}") from None
    out: dict[str, Annotation] = {}
    used = {key_column, "label", "bboxes", "keypoints", "mask", *label_fields}
    for where, row in rows:
        if not isinstance(row, dict):
            raise SourceError(f"{where}: each line must be a JSON object with a {key_column!r} field")
        key = row.get(key_column)
        if not key or not isinstance(key, str):
            raise SourceError(
                f"{where}: every row needs a {key_column!r} column with the image's path relative to --source"
                + ("" if key_column != "key" else " (name another column with --key-column, e.g. filename)")
            )
        if key in out:
            raise SourceError(f"{where}: key {key!r} appears twice; each image has one row")
        label = row.get("label")
        mask = row.get("mask") or None
        if mask is not None and not isinstance(mask, str):
            raise SourceError(f"{where}: column 'mask' must be a path; got {mask!r}")
        ann = Annotation(
            label=None if label == "" else label,
            bboxes=_parse_cell("bboxes", row.get("bboxes"), where),
            keypoints=_parse_cell("keypoints", row.get("keypoints"), where),
            mask=mask,
            extra={f: _parse_cell(f, row.get(f), where) or [] for f in label_fields},
            carry={k: v for k, v in row.items() if k not in used and v not in (None, "")},
        )
        problem = _problem(ann, label_fields)
        out[key] = dataclasses.replace(ann, problem=f"{where}: {problem}") if problem else ann
    return out


class SourcesDigest:
    """One digest for a whole source dataset: SHA-256 of the canonical JSON of the sorted
    ``[[key, file digest], ...]`` list, computed from pairs fed one by one in sorted order."""

    def __init__(self) -> None:
        self._hash = hashlib.sha256(b"[")
        self._last: tuple[str, str] | None = None

    def add(self, key: str, digest: str) -> None:
        pair = (key, digest)
        if self._last is not None:
            if pair <= self._last:
                raise ValueError(f"pairs must come sorted and unique; {pair} came after {self._last}")
            self._hash.update(b",")
        self._hash.update(canonical_json(pair))
        self._last = pair

    def hexdigest(self) -> str:
        final = self._hash.copy()
        final.update(b"]")
        return "sha256:" + final.hexdigest()

