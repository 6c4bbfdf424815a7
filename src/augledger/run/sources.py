"""Source datasets: a folder of images, optionally with an annotations manifest.

The sample key is the POSIX path of the file relative to the source root (``cats/0001.jpg``):
stable across machines and independent of listing order. Hidden files and folders (names starting
with ``.``) are skipped.

Annotations (``--annotations FILE``) are CSV or JSON Lines with one row per image:

==============  ============================================================================
``key``         required; the image's key (relative POSIX path)
``label``       optional class label, carried to the ledger unchanged
``bboxes``      optional JSON list of boxes in the spec's ``targets.bboxes.format``
``labels``      optional JSON list, one per box (or any name listed in ``label_fields``)
``keypoints``   optional JSON list of points in ``targets.keypoints.format``
``mask``        optional path of a mask image, relative to the source root
==============  ============================================================================

In CSV files the list columns hold JSON text, e.g. ``"[[10, 20, 50, 60]]"``.
"""

from __future__ import annotations

import csv
import hashlib
import json
import logging
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from augledger._canonical import canonical_json, sha256_hex
from augledger.errors import SourceError

log = logging.getLogger(__name__)

__all__ = ["IMAGE_EXTENSIONS", "Annotation", "FolderSource", "load_annotations"]

#: File extensions listed as images. A file with one of these that is not an image is quarantined.
IMAGE_EXTENSIONS = frozenset({".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp", ".gif"})
_LIST_COLUMNS = ("bboxes", "keypoints")


@dataclass(frozen=True)
class Annotation:
    """The targets of one image: what travels with it through the pipeline."""

    label: Any = None
    bboxes: list[Any] | None = None
    keypoints: list[Any] | None = None
    mask: str | None = None
    extra: dict[str, list[Any]] = field(default_factory=dict)  # label fields, e.g. {"labels": [...]}


@dataclass(frozen=True)
class FolderSource:
    """A folder of images; keys are POSIX paths relative to ``root``."""

    root: Path

    def __post_init__(self) -> None:
        if not self.root.is_dir():
            raise SourceError(f"source {str(self.root)!r} is not a folder; pass the folder that holds your images")

    def keys(self) -> list[str]:
        """All image keys, sorted (code-point order of the POSIX path)."""
        keys = []
        for path in self._walk(self.root):
            if path.suffix.lower() in IMAGE_EXTENSIONS:
                keys.append(path.relative_to(self.root).as_posix())
        return sorted(keys)

    def _walk(self, folder: Path, seen: set[Path] | None = None) -> Iterator[Path]:
        # Symlinked folders are followed, each real folder once: a link back up the tree would
        # otherwise repeat every image under ever longer keys.
        seen = {folder.resolve()} if seen is None else seen
        for entry in sorted(folder.iterdir()):
            if entry.name.startswith("."):
                continue
            if entry.is_dir():
                real = entry.resolve()
                if real in seen:
                    log.warning("skipping %s: it leads to a folder already read (%s)", entry, real)
                    continue
                seen.add(real)
                yield from self._walk(entry, seen)
            elif entry.is_file():
                yield entry

    def path(self, key: str) -> Path:
        return self.root / key


def _parse_cell(column: str, value: Any, where: str) -> Any:
    if not isinstance(value, str):
        return value
    text = value.strip()
    if text == "":
        return None
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        raise SourceError(f"{where}: column {column!r} must hold JSON (e.g. [[10, 20, 50, 60]]); got {value!r}") from None


def load_annotations(path: Path, *, label_fields: tuple[str, ...] = ()) -> dict[str, Annotation]:
    """Read a CSV or JSON Lines annotations manifest into ``{key: Annotation}``.

    Raises:
        SourceError: unreadable file, a row without ``key``, a repeated key or malformed JSON.
    """
    if not path.is_file():
        raise SourceError(f"annotations file {str(path)!r} does not exist")
    rows: list[tuple[str, Any]] = []
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
    else:
        raise SourceError(f"annotations file {str(path)!r} must be .csv or .jsonl; got {path.suffix or 'no extension'!r}")
    out: dict[str, Annotation] = {}
    for where, row in rows:
        key = row.get("key")
        if not key or not isinstance(key, str):
            raise SourceError(f"{where}: every row needs a 'key' column with the image's relative path")
        if key in out:
            raise SourceError(f"{where}: key {key!r} appears twice; each image has one row")
        known = {"key", "label", "bboxes", "keypoints", "mask", *label_fields}
        unknown = set(row) - known
        if unknown:
            raise SourceError(
                f"{where}: unknown column(s) {sorted(unknown)}; expected {sorted(known)} "
                "(declare extra box labels as label_fields in the spec's targets)"
            )
        label = row.get("label")
        out[key] = Annotation(
            label=None if label == "" else label,
            bboxes=_parse_cell("bboxes", row.get("bboxes"), where),
            keypoints=_parse_cell("keypoints", row.get("keypoints"), where),
            mask=(row.get("mask") or None),
            extra={f: _parse_cell(f, row.get(f), where) or [] for f in label_fields},
        )
    return out


def digest_of_sources(pairs: list[tuple[str, str]]) -> str:
    """One digest for a whole source dataset: SHA-256 of the sorted ``(key, file digest)`` list."""
    return sha256_hex(canonical_json(sorted(pairs)))


class SourcesDigest:
    """:func:`digest_of_sources` of pairs fed one by one in sorted order, without holding them."""

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


def file_digest(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()
