"""Contact sheets: deterministic variants of one image, each tile labelled."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
from numpy.typing import NDArray

from augledger.pipeline import Pipeline

__all__ = ["contact_sheet", "preview_grid"]


def contact_sheet(tiles: Sequence[tuple[str, NDArray[Any]]], *, tile: int = 192, cols: int | None = None) -> NDArray[Any]:
    """Lay out labelled RGB images on a grid; each is fitted into a ``tile`` x ``tile`` cell."""
    import cv2

    if not tiles:
        raise ValueError("contact_sheet needs at least one tile")
    cols = cols or math.ceil(math.sqrt(len(tiles)))
    rows = math.ceil(len(tiles) / cols)
    label_h = 22
    sheet = np.full((rows * (tile + label_h), cols * tile, 3), 255, dtype=np.uint8)
    for i, (label, image) in enumerate(tiles):
        img = image if image.ndim == 3 else np.repeat(image[..., None], 3, axis=2)
        img = img[..., :3]
        if img.dtype != np.uint8:
            img = np.clip(img * (255.0 if img.max() <= 1.0 else 1.0), 0, 255).astype(np.uint8)
        h, w = img.shape[:2]
        scale = tile / max(h, w)
        interp = cv2.INTER_AREA if scale < 1 else cv2.INTER_NEAREST
        img = cv2.resize(img, (max(1, round(w * scale)), max(1, round(h * scale))), interpolation=interp)
        r, c = divmod(i, cols)
        y0, x0 = r * (tile + label_h), c * tile
        sheet[y0 + label_h : y0 + label_h + img.shape[0], x0 : x0 + img.shape[1]] = img
        cv2.putText(sheet, label, (x0 + 4, y0 + 16), cv2.FONT_HERSHEY_SIMPLEX, 0.45, (0, 0, 0), 1, cv2.LINE_AA)
    return sheet


def preview_grid(
    pipeline: Pipeline, sample: Mapping[str, Any], *, key: str, n: int = 16, tile: int = 192
) -> NDArray[Any]:
    """The original and ``n`` variants (epochs ``0..n-1``) of one sample, labelled by epoch."""
    tiles = [("original", np.asarray(sample["image"]))]
    for epoch in range(n):
        result = pipeline.apply(sample, key=key, epoch=epoch)
        tiles.append((f"epoch {epoch}", result.sample["image"]))
    return contact_sheet(tiles, tile=tile)
