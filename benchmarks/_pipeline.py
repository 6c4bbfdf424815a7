"""The eight-transform pipeline every benchmark runs: as an augledger spec and as plain Albumentations.

HorizontalFlip, Affine, RandomBrightnessContrast, GaussianBlur, CoarseDropout, RGBShift,
ColorJitter and RandomResizedCrop (to ``size`` x ``size``). Both forms must stay the same pipeline:
``overhead.py`` checks that they draw the same params from the same generators.
"""

from __future__ import annotations

import os
from typing import Any

os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")

import albumentations as A
import cv2
import numpy as np


def spec(size: int, *, name: str = "bench", seed: int = 7) -> dict[str, Any]:
    """The pipeline as an augledger spec (plain data)."""
    return {
        "schema": 1,
        "name": name,
        "seed": seed,
        "ops": [
            {"op": "HorizontalFlip", "p": 0.5},
            {"op": "Affine", "p": 0.5, "params": {"rotate": [-15, 15], "scale": [0.9, 1.1]}},
            {"op": "RandomBrightnessContrast", "p": 0.5},
            {"op": "GaussianBlur", "p": 0.5},
            {"op": "CoarseDropout", "p": 0.5},
            {"op": "RGBShift", "p": 0.5},
            {"op": "ColorJitter", "p": 0.5},
            {"op": "RandomResizedCrop", "p": 1.0, "params": {"size": [size, size]}},
        ],
    }


def plain_compose(size: int, **compose_args: Any) -> A.Compose:
    """The same transforms, written the way a plain Albumentations user writes them."""
    return A.Compose(
        [
            A.HorizontalFlip(p=0.5),
            A.Affine(rotate=(-15, 15), scale=(0.9, 1.1), p=0.5),
            A.RandomBrightnessContrast(p=0.5),
            A.GaussianBlur(p=0.5),
            A.CoarseDropout(p=0.5),
            A.RGBShift(p=0.5),
            A.ColorJitter(p=0.5),
            A.RandomResizedCrop(size=(size, size), p=1.0),
        ],
        **compose_args,
    )


def photo_variants(size: int, n: int) -> list[np.ndarray]:
    """``n`` distinct but realistic inputs: shifted copies of scikit-image's astronaut photograph."""
    from skimage import data

    base = cv2.resize(data.astronaut(), (size, size), interpolation=cv2.INTER_AREA)
    return [np.ascontiguousarray(np.roll(base, shift=(7 * i) % size, axis=1)) for i in range(n)]
