"""Exporting the transformed annotations of a dataset in formats detection trainers read directly.

``--export-annotations coco|yolo|voc|csv`` writes, beside the outputs:

* ``coco``: ``annotations.coco.json``: ``images`` (``file_name`` = the output's path, ``width``,
  ``height``, plus augledger's ``key`` and ``copy``), ``annotations`` (``bbox`` as x, y, width,
  height in pixels, ``area``, ``category_id``, ``iscrowd: 0``) and ``categories``.
* ``yolo``: one ``<output>.txt`` per image (``class cx cy w h``, normalised) and ``classes.txt``.
* ``voc``: one ``<output>.xml`` per image (Pascal VOC: size, one ``object`` per box).
* ``csv``: ``annotations.csv``: one row per output with its label, boxes, box labels and keypoints
  as JSON, and its size.

The export is a pure function of the ledger's rows and the outputs' sizes: the same rows give the
same bytes, and ``verify`` re-makes it to check it. Boxes are converted from the spec's
``targets.bboxes.format``; box labels come from its first ``label_fields`` entry. Class ids: when
every box label is a non-negative integer it is its own id (COCO category ``id``, YOLO class);
otherwise the labels sorted as text are numbered from 0 (YOLO) or 1 (COCO). Keypoints are exported
in ``csv`` only (COCO keypoints belong to one object each; augledger's belong to the image).
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from xml.sax.saxutils import escape

from augledger._canonical import sha256_hex
from augledger.errors import SourceError
from augledger.io.store import LocalStore
from augledger.run.folder import ORIGINAL_EPOCH, output_name

__all__ = [
    "EXPORT_FORMATS", "ONE_FILE_EXPORTS", "ExportEntry", "box_args", "check_export_names", "export_digest", "export_files",
    "image_size", "per_image_path", "write_export",
]

EXPORT_FORMATS = ("coco", "yolo", "voc", "csv")
_PER_IMAGE = {"yolo": ".txt", "voc": ".xml"}
#: Files an export writes at the top of the output folder (a rerun with another format removes them).
ONE_FILE_EXPORTS = ("annotations.coco.json", "annotations.csv", "classes.txt")


def image_size(data: bytes) -> tuple[int, int]:
    """``(width, height)`` from an encoded image's header."""
    from PIL import Image

    with Image.open(io.BytesIO(data)) as im:
        width, height = im.size
    return int(width), int(height)


@dataclass(frozen=True)
class ExportEntry:
    """One ok output: where it is, its size, and its ledger targets (boxes in the spec's format)."""

    key: str
    epoch: int
    path: str
    width: int
    height: int
    targets: Mapping[str, Any]


def box_args(targets: Mapping[str, Any]) -> dict[str, Any]:
    """The spec's box format and box-label field (from resolved ``targets``), as :func:`export_files` takes them."""
    bboxes = targets.get("bboxes") or {}
    fields = bboxes.get("label_fields") or ()
    return {"box_format": bboxes.get("format", "pascal_voc"), "label_field": fields[0] if fields else None}


def per_image_path(fmt: str, output_path: str) -> str | None:
    """The per-image annotation file of an output (``yolo``, ``voc``), or ``None`` for one-file formats."""
    suffix = _PER_IMAGE.get(fmt)
    return None if suffix is None else output_path.rsplit(".", 1)[0] + suffix


def _xyxy(box: Sequence[float], fmt: str, width: int, height: int) -> tuple[float, float, float, float]:
    a, b, c, d = (float(v) for v in box[:4])
    if fmt == "pascal_voc":
        return a, b, c, d
    if fmt == "coco":
        return a, b, a + c, b + d
    if fmt == "yolo":
        return (a - c / 2) * width, (b - d / 2) * height, (a + c / 2) * width, (b + d / 2) * height
    return a * width, b * height, c * width, d * height  # albumentations: normalised x_min, y_min, x_max, y_max


def _label_text(label: Any) -> str:
    """A label as JSON text, an integral float (how Albumentations returns integer labels) as the integer."""
    return json.dumps(int(label) if isinstance(label, float) and label.is_integer() else label)


def _class_ids(entries: Sequence[ExportEntry], label_field: str | None, base: int) -> dict[str, int]:
    labels = {_label_text(label) for e in entries for label in (e.targets.get(label_field) or [] if label_field else [])}
    values = [json.loads(v) for v in labels]
    if values and all(isinstance(v, int) and not isinstance(v, bool) and v >= 0 for v in values):
        return {json.dumps(v): int(v) for v in values}
    # Sorted as text, ties (1 and "1") broken by their JSON: the same order in every process.
    return {v: base + i for i, v in enumerate(sorted(labels, key=lambda t: (str(json.loads(t)), t)))}


def _boxes(entry: ExportEntry, box_format: str, label_field: str | None) -> list[tuple[tuple[float, float, float, float], Any]]:
    boxes = entry.targets.get("bboxes") or []
    labels = entry.targets.get(label_field) or [None] * len(boxes) if label_field else [None] * len(boxes)
    return [(_xyxy(box, box_format, entry.width, entry.height), label) for box, label in zip(boxes, labels, strict=False)]


def _round(value: float) -> float:
    return round(value, 4)


def export_files(fmt: str, entries: Sequence[ExportEntry], box_format: str, label_field: str | None) -> dict[str, bytes]:
    """The export's files, ``{relative path: bytes}``, for ``entries`` (any order: sorted here)."""
    if fmt not in EXPORT_FORMATS:
        raise ValueError(f"export format must be one of {', '.join(EXPORT_FORMATS)}; got {fmt!r}")
    entries = sorted(entries, key=lambda e: (e.key, e.epoch))
    if fmt == "csv":
        return {"annotations.csv": _csv(entries)}
    ids = _class_ids(entries, label_field, base=1 if fmt == "coco" else 0)
    if fmt == "coco":
        return {"annotations.coco.json": _coco(entries, box_format, label_field, ids)}
    files: dict[str, bytes] = {}
    if fmt == "yolo":
        names = [""] * (max(ids.values()) + 1 if ids else 0)
        for text, i in ids.items():
            names[i] = str(json.loads(text))
        files["classes.txt"] = "".join(f"{n}\n" for n in names).encode()
    for entry in entries:
        path = per_image_path(fmt, entry.path)
        assert path is not None
        boxes = _boxes(entry, box_format, label_field)
        files[path] = _yolo(entry, boxes, ids) if fmt == "yolo" else _voc(entry, boxes)
    return files


def export_digest(files: Mapping[str, bytes]) -> str:
    """One digest of an export: SHA-256 over its sorted (path, file digest) pairs."""
    return sha256_hex(json.dumps(sorted((p, sha256_hex(d)) for p, d in files.items())).encode())


def _coco(entries: Sequence[ExportEntry], box_format: str, label_field: str | None, ids: Mapping[str, int]) -> bytes:
    images: list[dict[str, Any]] = []
    annotations: list[dict[str, Any]] = []
    for image_id, entry in enumerate(entries, start=1):
        image: dict[str, Any] = {"id": image_id, "file_name": entry.path, "width": entry.width, "height": entry.height,
                                 "key": entry.key, "copy": entry.epoch}
        if "label" in entry.targets:
            image["label"] = entry.targets["label"]
        images.append(image)
        for (x0, y0, x1, y1), label in _boxes(entry, box_format, label_field):
            w, h = x1 - x0, y1 - y0
            annotations.append({
                "id": len(annotations) + 1, "image_id": image_id, "iscrowd": 0,
                "category_id": ids.get(_label_text(label), 0) if label is not None else 0,
                "bbox": [_round(x0), _round(y0), _round(w), _round(h)], "area": _round(w * h),
            })
    categories = [{"id": i, "name": str(json.loads(text))} for text, i in sorted(ids.items(), key=lambda kv: kv[1])]
    if any(a["category_id"] == 0 for a in annotations):
        categories.insert(0, {"id": 0, "name": "object"})
    doc = {"info": {"description": "exported by augledger"}, "images": images, "annotations": annotations,
           "categories": categories}
    return json.dumps(doc, sort_keys=True, separators=(",", ":")).encode()


def _yolo(entry: ExportEntry, boxes: Sequence[tuple[tuple[float, float, float, float], Any]], ids: Mapping[str, int]) -> bytes:
    lines = []
    for (x0, y0, x1, y1), label in boxes:
        cls = ids.get(_label_text(label), 0) if label is not None else 0
        cx, cy = (x0 + x1) / 2 / entry.width, (y0 + y1) / 2 / entry.height
        w, h = (x1 - x0) / entry.width, (y1 - y0) / entry.height
        lines.append(f"{cls} {cx:.6f} {cy:.6f} {w:.6f} {h:.6f}\n")
    return "".join(lines).encode()


def _voc(entry: ExportEntry, boxes: Sequence[tuple[tuple[float, float, float, float], Any]]) -> bytes:
    name = entry.path.rsplit("/", 1)[-1]
    objects = "".join(
        f"  <object>\n    <name>{escape(str(label if label is not None else 'object'))}</name>\n"
        f"    <pose>Unspecified</pose>\n    <truncated>0</truncated>\n    <difficult>0</difficult>\n"
        f"    <bndbox><xmin>{_round(x0)}</xmin><ymin>{_round(y0)}</ymin><xmax>{_round(x1)}</xmax><ymax>{_round(y1)}</ymax></bndbox>\n"
        "  </object>\n"
        for (x0, y0, x1, y1), label in boxes
    )
    return (
        f"<annotation>\n  <filename>{escape(name)}</filename>\n  <path>{escape(entry.path)}</path>\n"
        f"  <size><width>{entry.width}</width><height>{entry.height}</height><depth>3</depth></size>\n"
        f"  <segmented>0</segmented>\n{objects}</annotation>\n"
    ).encode()


def _csv(entries: Sequence[ExportEntry]) -> bytes:
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(["path", "key", "copy", "width", "height", "targets"])
    for e in entries:
        writer.writerow([e.path, e.key, e.epoch, e.width, e.height, json.dumps(dict(e.targets), sort_keys=True)])
    return buf.getvalue().encode()


def write_export(out: Path, fmt: str | None, entries: list[ExportEntry], targets: Mapping[str, Any]) -> dict[str, Any]:
    """Write the annotations export (removing one-file exports of another format); describe it for the manifest."""
    folder = LocalStore(out)
    files = export_files(fmt, entries, **box_args(targets)) if fmt else {}
    for name in ONE_FILE_EXPORTS:
        if name not in files:
            folder.remove(name)
    if not fmt:
        return {}
    for path, data in sorted(files.items()):
        folder.write(path, data)
    per_image = sorted(p for p in files if p not in ONE_FILE_EXPORTS)
    return {"format": fmt, "files": len(files), "sha256": export_digest(files), "per_image": per_image}


def check_export_names(fmt: str | None, image_format: str, keys: Sequence[str]) -> None:
    """Per-image export files of two originals must not collide (``a.jpg`` and ``a.png`` share ``a.txt``)."""
    if not fmt:
        return
    seen: dict[str, str] = {}
    for key in keys:
        path = per_image_path(fmt, output_name(key, ORIGINAL_EPOCH, image_format))
        if path is None:
            return
        if path in seen:
            raise SourceError(
                f"{seen[path]!r} and {key!r} would share the {fmt} annotation file {path!r} of their originals; "
                "rename one of them, or export coco or csv"
            )
        seen[path] = key
