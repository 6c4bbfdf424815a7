"""Helpers shared by the run tests: a source folder of real photo tiles, folder digests, the CLI."""

from __future__ import annotations

import hashlib
import os
import shutil
import sys
from pathlib import Path
from typing import Any

#: The pipeline most pipeline, spec and CLI tests use.
STANDARD_SPEC: dict[str, Any] = {
    "schema": 1,
    "name": "digits-train",
    "seed": 1234,
    "modality": "image",
    "ops": [
        {"op": "HorizontalFlip", "p": 0.5},
        {"op": "Affine", "p": 0.7, "params": {"rotate": [-15, 15], "scale": [0.9, 1.1]}},
        {
            "op": "OneOf",
            "p": 0.3,
            "ops": [{"op": "GaussianBlur", "params": {"blur_limit": [3, 7]}}, {"op": "GaussNoise"}],
        },
        {"op": "RandomBrightnessContrast", "p": 0.5},
        {"op": "CoarseDropout", "p": 0.3},
    ],
}

def standard_spec(rotate: int = 15, **changes: Any) -> dict[str, Any]:
    """:data:`STANDARD_SPEC` with another Affine rotation range and top-level fields changed."""
    import copy

    data = copy.deepcopy(STANDARD_SPEC)
    data["ops"][1]["params"]["rotate"] = [-rotate, rotate]
    data.update(changes)
    return data


#: The pipeline of the run tests.
SPEC: dict[str, Any] = {
    "schema": 1,
    "name": "run-test",
    "seed": 7,
    "ops": [
        {"op": "HorizontalFlip", "p": 0.5},
        {"op": "Affine", "p": 0.7, "params": {"rotate": [-20, 20]}},
        {"op": "RandomBrightnessContrast", "p": 0.5},
        {"op": "GaussNoise", "p": 0.3},
    ],
}
SCRIPT = shutil.which("augledger", path=os.path.dirname(sys.executable)) or "augledger"


def make_source(root: Path, n: int, size: int = 48) -> Path:
    """``n`` real-photo tiles (scikit-image sample images) in nested folders, as PNG and JPEG."""
    import cv2
    from skimage import data

    photos = [data.astronaut(), data.chelsea(), data.coffee(), data.rocket()]
    for i in range(n):
        photo = photos[i % len(photos)]
        y = (i * 37) % (photo.shape[0] - size)
        x = (i * 53) % (photo.shape[1] - size)
        tile = photo[y : y + size, x : x + size, ::-1]
        folder = root / f"class{i % 3}"
        folder.mkdir(parents=True, exist_ok=True)
        cv2.imwrite(str(folder / f"{i:04d}.{'png' if i % 2 else 'jpg'}"), tile)
    return root


def tree_digests(root: Path) -> dict[str, str]:
    """sha256 of every file under root except run state and run.json (which holds times and paths)."""
    out = {}
    for path in sorted(root.rglob("*")):
        rel = path.relative_to(root).as_posix()
        if path.is_file() and not rel.startswith(".augledger") and rel != "run.json":
            out[rel] = hashlib.sha256(path.read_bytes()).hexdigest()
    return out
