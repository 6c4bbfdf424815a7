"""Shared by the hostile-input tests: small real runs, and proof that nothing was written outside ``--out``."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import numpy as np

import augledger
from augledger.ledger import read_ledger
from augledger.run.materialize import RunResult, materialize
from augledger.run.options import RunOptions

#: Geometry, crops and blur: the ops most likely to trip over degenerate images.
GEOMETRY_SPEC: dict[str, Any] = {
    "schema": 1,
    "name": "hostile",
    "seed": 5,
    "ops": [
        {"op": "Affine", "p": 1.0, "params": {"rotate": [-30, 30], "scale": [0.8, 1.2]}},
        {"op": "RandomResizedCrop", "p": 1.0, "params": {"size": [16, 16]}},
        {"op": "GaussianBlur", "p": 1.0, "params": {"blur_limit": [3, 7]}},
        {"op": "CoarseDropout", "p": 1.0},
    ],
}
BOX_SPEC: dict[str, Any] = {
    "schema": 1,
    "name": "boxes",
    "seed": 2,
    "targets": {"bboxes": {"format": "pascal_voc", "label_fields": ["labels"]}},
    "ops": [{"op": "HorizontalFlip", "p": 1.0}, {"op": "Affine", "p": 1.0, "params": {"rotate": [-5, 5]}}],
}


def photo(height: int = 32, width: int = 40) -> np.ndarray:
    """A tile of a real photograph (scikit-image's astronaut), RGB uint8."""
    from skimage import data

    return np.ascontiguousarray(data.astronaut()[100 : 100 + height, 200 : 200 + width])


def write_photo(path: Path, height: int = 32, width: int = 40) -> Path:
    from PIL import Image

    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(photo(height, width)).save(path)
    return path


def snapshot(root: Path, skip: Path) -> dict[str, str]:
    """Every file and link under ``root`` except under ``skip`` (the output folder): path -> digest."""
    out: dict[str, str] = {}
    for path in sorted(root.rglob("*")):
        if path == skip or skip in path.parents:
            continue
        if path.is_symlink():
            out[path.relative_to(root).as_posix()] = "link:" + str(path.readlink())
        elif path.is_file():
            out[path.relative_to(root).as_posix()] = hashlib.sha256(path.read_bytes()).hexdigest()
        else:
            out[path.relative_to(root).as_posix()] = "dir"
    return out


def guarded_run(
    pipeline: augledger.Pipeline, root: Path, src: Path, out: Path, *, rows: list[Any] | None = None, **options: Any,
) -> tuple[RunResult, dict[str, dict[str, Any]]]:
    """Run ``materialize`` and check that nothing under ``root`` outside ``out`` changed.

    ``rows`` are annotation rows (dicts, or JSON text lines written as they are). Returns the result
    and the ledger rows by ``(key, epoch)`` rendered as ``"key@epoch"``.
    """
    annotations = None
    if rows is not None:
        annotations = root / "annotations.jsonl"
        annotations.write_text("".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in rows))
    before = snapshot(root, out)
    try:
        result = materialize(pipeline, src, out, annotations=annotations, options=RunOptions(**options))
    finally:
        assert snapshot(root, out) == before, "a hostile run changed files outside --out"
    ledger = {f"{r['key']}@{r['epoch']}": r for r in read_ledger(out).rows()}
    return result, ledger
