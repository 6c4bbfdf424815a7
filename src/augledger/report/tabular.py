"""``augledger preview`` for ``modality: tabular``: each column's distribution before and after augmentation.

The "after" table is what a run would write with ``--copies 1`` (augmented copy 0 of every row,
plus the synthetic rows when a label column is found): :func:`augledger.run.table.build_table`,
so the preview is the run's own computation. Output: a text table (count, missing, mean, std; the
most frequent categories), and with ``-o FILE.png`` one histogram panel per column, before (blue)
beside after (orange), drawn with NumPy and written as PNG with zlib (labels with OpenCV when it
is installed; matplotlib is not a dependency).
"""

from __future__ import annotations

import struct
import zlib
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from augledger.pipeline import Pipeline
from augledger.run.table import build_table
from augledger.run.table_source import SourceTable, load_table

__all__ = ["KEY_NAMES", "LABEL_NAMES", "distribution_png", "preview_table_file", "summary_lines"]

KEY_NAMES = ("id", "key", "ID", "Id")
LABEL_NAMES = ("y", "label", "target", "class")
_BEFORE, _AFTER = (66, 114, 196), (237, 125, 49)


def _column(rows: Sequence[dict[str, Any]], name: str) -> list[Any]:
    return [r.get(name) for r in rows]


def summary_lines(table: SourceTable, before: Sequence[dict[str, Any]], after: Sequence[dict[str, Any]]) -> list[str]:
    """One line per column: before -> after (numeric: missing, mean, std; categorical: the top 3 values)."""
    lines = [f"{'column':<16} {'rows':>7} {'missing':>8} {'mean':>12} {'std':>12}   (before -> after)"]
    for name in table.numeric:
        for tag, rows in (("before", before), ("after", after)):
            values = np.array([np.nan if v is None else v for v in _column(rows, name)], dtype=np.float64)
            present = values[~np.isnan(values)]
            mean = f"{present.mean():.4g}" if present.size else "-"
            std = f"{present.std():.4g}" if present.size else "-"
            lines.append(f"{name if tag == 'before' else '':<16} {len(values):>7} {int(np.isnan(values).sum()):>8} {mean:>12} {std:>12}   {tag}")
    for name in table.categorical:
        for tag, rows in (("before", before), ("after", after)):
            counts = Counter("<missing>" if v is None else str(v) for v in _column(rows, name))
            top = ", ".join(f"{k}={v}" for k, v in sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))[:3])
            lines.append(f"{name if tag == 'before' else '':<16} {len(rows):>7} {counts.get('<missing>', 0):>8}   {top}   {tag}")
    return lines


def _panel(before: list[Any], after: list[Any], numeric: bool, width: int = 360, height: int = 120) -> np.ndarray[Any, Any]:
    panel = np.full((height, width, 3), 255, dtype=np.uint8)
    if numeric:
        b = np.array([v for v in before if v is not None], dtype=np.float64)
        a = np.array([v for v in after if v is not None], dtype=np.float64)
        both = np.concatenate([b, a]) if b.size + a.size else np.zeros(1)
        edges = np.linspace(both.min(), both.max() if both.max() > both.min() else both.min() + 1, 25)
        hb = np.histogram(b, edges)[0] / max(b.size, 1)
        ha = np.histogram(a, edges)[0] / max(a.size, 1)
    else:
        cats = sorted({str(v) for v in [*before, *after] if v is not None})[:24]
        cb, ca = Counter(map(str, before)), Counter(map(str, after))
        hb = np.array([cb[c] for c in cats], dtype=np.float64) / max(len(before), 1)
        ha = np.array([ca[c] for c in cats], dtype=np.float64) / max(len(after), 1)
    top = max(float(hb.max(initial=0)), float(ha.max(initial=0)), 1e-12)
    slot = (width - 8) // max(len(hb), 1)
    for i, (vb, va) in enumerate(zip(hb, ha, strict=True)):
        x = 4 + i * slot
        for dx, value, colour in ((0, vb, _BEFORE), (slot // 2, va, _AFTER)):
            h = round((height - 24) * value / top)
            panel[height - 4 - h:height - 4, x + dx:x + dx + max(slot // 2 - 1, 1)] = colour
    return panel


def _png(image: np.ndarray[Any, Any]) -> bytes:
    height, width, _ = image.shape
    raw = b"".join(b"\x00" + image[y].tobytes() for y in range(height))

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0))
            + chunk(b"IDAT", zlib.compress(raw, 6)) + chunk(b"IEND", b""))


def distribution_png(table: SourceTable, before: Sequence[dict[str, Any]], after: Sequence[dict[str, Any]]) -> bytes:
    """A PNG with one histogram panel per column (before blue, after orange), stacked vertically."""
    panels = []
    for name in [*table.numeric, *table.categorical]:
        panel = _panel(_column(before, name), _column(after, name), name in table.numeric)
        try:
            import cv2

            cv2.putText(panel, name[:40], (6, 14), cv2.FONT_HERSHEY_SIMPLEX, 0.45, (0, 0, 0), 1, cv2.LINE_AA)
        except ImportError:  # pragma: no cover - the image extra is not installed: panels without titles
            pass
        panels.append(panel)
        panels.append(np.full((4, panel.shape[1], 3), 200, dtype=np.uint8))
    image = np.concatenate(panels) if panels else np.full((8, 8, 3), 255, dtype=np.uint8)
    return _png(np.ascontiguousarray(image))


def preview_table_file(pipe: Pipeline, path: Path, *, out: Path | None = None) -> str:
    """The text summary of ``path`` before and after ``pipe`` (and, with ``out`` ending in .png, the histograms).

    The key column is the first of :data:`KEY_NAMES` the file has, else its first column; the label
    column (for SMOTE and mixup) the first of :data:`LABEL_NAMES`.
    """
    import pyarrow.parquet as pq

    if path.suffix.lower() == ".csv":
        import pyarrow.csv as pcsv

        names = pcsv.read_csv(path).column_names
    else:
        names = pq.read_schema(path).names
    key_field = next((n for n in KEY_NAMES if n in names), names[0] if names else "id")
    label_field = next((n for n in LABEL_NAMES if n in names), None)
    targets = pipe.resolved_targets
    table = load_table(path, key_field=key_field, label_field=label_field,
                       numeric=targets.get("numeric"), categorical=targets.get("categorical"))
    built = build_table(pipe, table, copies=1, synthetic=label_field is not None)
    after = [r for r in built.rows if r["origin"] != "original"]
    lines = summary_lines(table, table.rows, after)
    header = f"{path.name}: {len(table.rows)} rows -> {len(after)} augmented/synthetic rows (key {key_field!r}, label {label_field!r})"
    if out is not None:
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_bytes(distribution_png(table, table.rows, after))
        header += f"; histograms in {out}"
    return "\n".join([header, *lines]) + "\n"
