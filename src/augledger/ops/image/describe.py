"""Every image op a spec may name, described as data, and the example sample its examples run on.

``augledger ops list`` prints :func:`describe_ops`, and ``tests/ops/test_contract.py`` generates a
contract test for each entry: the ``example`` params on :func:`example_sample`. Defaults are read
from the Albumentations 2.0.8 signatures (which its ``InitSchema`` validates); params without a
default are listed under ``required`` and have a hand-written example in :data:`EXAMPLES`.
"""

from __future__ import annotations

import copy
import inspect
from typing import Any

import numpy as np

from augledger.ops.image.aliases import DEPRECATED_ALIASES
from augledger.ops.image.allowlist import COMPOSITIONS, IMAGE_OPS
from augledger.ops.image.library import albumentations

__all__ = ["EXAMPLES", "EXAMPLE_TARGETS", "describe_ops", "example_sample"]

#: Params that make each op do something visible on :func:`example_sample` (64x64 RGB): the
#: required ones (crop sizes, coordinates, target sizes), and a few whose defaults are the identity.
EXAMPLES: dict[str, dict[str, Any]] = {
    "Affine": {"rotate": [-20, 20], "scale": [0.9, 1.1], "translate_percent": [-0.1, 0.1]},
    "AtLeastOneBBoxRandomCrop": {"height": 32, "width": 32},
    "CenterCrop": {"height": 32, "width": 32},
    "ConstrainedCoarseDropout": {"mask_indices": [1], "num_holes_range": [2, 4]},
    "Crop": {"x_min": 4, "y_min": 4, "x_max": 40, "y_max": 40},
    "CropAndPad": {"percent": [-0.1, 0.1]},
    "CropNonEmptyMaskIfExists": {"height": 32, "width": 32},
    "GridElasticDeform": {"num_grid_xy": [4, 4], "magnitude": 5},
    "LongestMaxSize": {"max_size": 48},
    "Pad": {"padding": 4},
    "RandomCrop": {"height": 32, "width": 32},
    "RandomResizedCrop": {"size": [32, 32]},
    "RandomSizedBBoxSafeCrop": {"height": 32, "width": 32},
    "RandomSizedCrop": {"min_max_height": [16, 48], "size": [32, 32]},
    "Resize": {"height": 32, "width": 32},
    "SmallestMaxSize": {"max_size": 48},
    "XYMasking": {"num_masks_x": 2, "mask_x_length": [4, 12]},
}

#: The ``targets`` a spec needs for :func:`example_sample` (a mask, boxes with one label field):
#: box-driven crops (``BBoxSafeRandomCrop``, ...) and mask-driven dropouts need them to run at all.
EXAMPLE_TARGETS: dict[str, Any] = {"mask": True, "bboxes": {"format": "pascal_voc", "label_fields": ["labels"]}}

_SKIPPED = ("self", "p", "strict", "always_apply", "transforms")


def example_sample() -> dict[str, Any]:
    """A 64x64 RGB ``uint8`` image with structure (colour gradients, a disc, a box, stripes, a ramp),
    its mask (disc 1, box 2) and the box as a ``pascal_voc`` bbox labelled 2 (:data:`EXAMPLE_TARGETS`).

    Synthetic and built with NumPy only, so it is the same bytes everywhere (a photo from an
    optional package would tie the golden digests to that package).
    """
    y, x = np.mgrid[0:64, 0:64].astype(np.float32)
    image = np.stack([x * 4.0, y * 4.0, (x + y) * 2.0], axis=-1)
    mask = np.zeros((64, 64), dtype=np.uint8)
    disc = (x - 20) ** 2 + (y - 22) ** 2 <= 100
    image[disc], mask[disc] = (230, 40, 40), 1
    image[36:56, 30:52], mask[36:56, 30:52] = (30, 200, 60), 2
    stripes = (x + 2 * y) % 8 < 3
    image[stripes & (y < 12) & (x > 36)] = (250, 250, 250)
    image[58:, :, :] = np.linspace(0, 255, 64, dtype=np.float32)[:, None]
    return {"image": np.ascontiguousarray(np.clip(image, 0, 255).astype(np.uint8)), "mask": mask,
            "bboxes": [[30.0, 36.0, 52.0, 56.0]], "labels": [2]}


def _json(value: Any) -> Any:
    if isinstance(value, (list, tuple)):
        return [_json(v) for v in value]
    if isinstance(value, dict):
        return {str(k): _json(v) for k, v in value.items()}
    if isinstance(value, np.generic):
        return value.item()
    return value


def _describe(A: Any, name: str) -> dict[str, Any]:
    cls = getattr(A, name)
    signature = inspect.signature(cls).parameters
    params = {k: _json(v.default) for k, v in signature.items()
              if k not in _SKIPPED and v.default is not inspect.Parameter.empty}
    required = [k for k, v in signature.items() if k not in _SKIPPED and v.default is inspect.Parameter.empty
                and v.kind is v.POSITIONAL_OR_KEYWORD]
    doc = (inspect.getdoc(cls) or "").strip().splitlines()
    entry: dict[str, Any] = {
        "op": name, "modality": "image", "p": float(signature["p"].default), "params": params,
        "required": required, "example": dict(EXAMPLES.get(name, {})), "example_targets": copy.deepcopy(EXAMPLE_TARGETS),
    }
    if doc:
        entry["doc"] = doc[0]
    return entry


def describe_ops() -> list[dict[str, Any]]:
    """Every op a spec may name, sorted by name: ``op``, ``modality``, ``p`` (its default), ``params``
    (name -> default), ``required`` (params without a default), ``example`` (params that work on
    :func:`example_sample`), ``example_targets`` (the spec's ``targets`` for that sample), ``doc``; compositions have ``"composition": true`` (their children go
    under ``ops``), deprecated aliases ``"alias_of"`` (what they resolve to)."""
    A = albumentations()
    entries = [_describe(A, name) for name in IMAGE_OPS]
    for name in COMPOSITIONS:
        entry = _describe(A, name)
        entry["params"] = {k: v for k, v in entry["params"].items() if k in COMPOSITIONS[name]}
        entries.append({**entry, "composition": True})
    for name, (modern, _) in DEPRECATED_ALIASES.items():
        entries.append({**_describe(A, name), "alias_of": modern})
    return sorted(entries, key=lambda e: str(e["op"]))
