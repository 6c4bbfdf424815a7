"""Label integrity: what augmentation did to a sample's boxes, keypoints, mask and labels, checked.

Geometry moves labels with the pixels, and a label that no longer describes its pixels poisons
training quietly. Every augmented output of an offline run goes through :func:`settle`:

* **Which boxes and points were dropped.** Before the pipeline runs, the first label field of the
  spec's ``targets.bboxes`` (and ``targets.keypoints``) is replaced by each item's index; after,
  the indices that came out name the survivors, and the label values are put back from the
  annotation. The dropped indices go into the ledger row's ``targets`` (``"dropped"``), by the rule
  the spec declares (``min_visibility``, ``min_area``, ``clip``; ``remove_invisible`` for points).
  Without a label field Albumentations carries nothing to track, and the row records the count.
* **Labels pass through unchanged.** Every other label field that came out must equal the
  annotation's value at the survivor's index; a class label (``label``) never enters the pipeline.
* **Geometry is valid.** Each box that came out must be finite, non-empty and inside the image (in
  the spec's box format); with ``remove_invisible``, each point inside the image.
* **Masks gain no classes.** A mask's values after augmentation must be a subset of its values
  before (nearest-neighbour interpolation is checked, not assumed).

Problems are listed in the row's ``targets`` (``"label_problems"``) and counted in the manifest;
with ``--strict-labels`` the output is quarantined with reason ``label`` instead.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

__all__ = ["LabelFindings", "LabelIndex", "index_labels", "mask_fills", "settle"]

#: Boxes and points may overshoot the image by this many pixels (float rounding in the library).
_TOLERANCE = 1e-3


@dataclass
class LabelFindings:
    """What happened to one output's labels: input indices dropped per kind, and problems found."""

    dropped: dict[str, list[int] | int] = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)

    def to_targets(self) -> dict[str, Any]:
        """The keys these findings add to a ledger row's ``targets``."""
        out: dict[str, Any] = {}
        if self.dropped:
            out["dropped"] = dict(self.dropped)
        if self.problems:
            out["label_problems"] = list(self.problems)
        return out


@dataclass(frozen=True)
class LabelIndex:
    """The label fields replaced by indices (kind -> field), and the annotation's values before."""

    fields: dict[str, str]
    counts: dict[str, int]
    before: dict[str, Any]
    #: kind -> its label fields that are not shared with the other kind.
    label_fields: dict[str, tuple[str, ...]]


def _own_fields(targets: Mapping[str, Any], kind: str) -> tuple[str, ...]:
    """The label fields of ``kind`` that the other kind does not also declare."""
    declared = (targets.get(kind) or {}).get("label_fields") or ()
    other = "keypoints" if kind == "bboxes" else "bboxes"
    shared = set((targets.get(other) or {}).get("label_fields") or ())
    return tuple(f for f in declared if f not in shared)


def index_labels(sample: Mapping[str, Any], targets: Mapping[str, Any]) -> tuple[Mapping[str, Any], LabelIndex | None]:
    """``sample`` with one label field per box/point kind replaced by item indices (or as is, and ``None``)."""
    fields: dict[str, str] = {}
    counts: dict[str, int] = {}
    for kind in ("bboxes", "keypoints"):
        if kind in sample and targets.get(kind):
            counts[kind] = len(sample[kind])
            own = [f for f in _own_fields(targets, kind) if f in sample]
            if own:
                fields[kind] = own[0]
    if not counts:
        return sample, None
    own_fields = {kind: _own_fields(targets, kind) for kind in counts}
    before = {name: sample[name] for names in own_fields.values() for name in names if name in sample}
    indexed = dict(sample)
    for kind, name in fields.items():
        indexed[name] = list(range(counts[kind]))
    return indexed, LabelIndex(fields, counts, before, own_fields)


def settle(
    before: Mapping[str, Any], after: Mapping[str, Any], index: LabelIndex | None, targets: Mapping[str, Any],
    mask_fill: frozenset[int] = frozenset(),
) -> tuple[dict[str, Any], LabelFindings]:
    """Restore label values, record drops and check the output's labels against its input's.

    Args:
        before: the pipeline's input as the annotation gave it (not the indexed one).
        after: the pipeline's output (of the indexed input, when ``index`` is given).
        index: what :func:`index_labels` replaced.
        targets: the spec's resolved ``targets``.
        mask_fill: values the pipeline's ops fill masks with (``fill_mask``): new, but by rule.

    Returns:
        The output with the annotation's label values, and the findings.
    """
    out = dict(after)
    findings = LabelFindings()
    if index is not None:
        _restore(out, index, findings)
    h, w = np.asarray(after["image"]).shape[:2]
    boxes = targets.get("bboxes")
    if boxes and "bboxes" in out:
        for i, box in enumerate(out["bboxes"]):
            problem = _box_problem(box, str(boxes["format"]), w, h)
            if problem:
                findings.problems.append(f"box {i} {problem}")
    points = targets.get("keypoints")
    if points and points.get("remove_invisible") and "keypoints" in out:
        yx = str(points["format"]).startswith("yx")
        for i, point in enumerate(out["keypoints"]):
            y, x = (float(point[0]), float(point[1])) if yx else (float(point[1]), float(point[0]))
            if not (math.isfinite(x) and math.isfinite(y) and -_TOLERANCE <= x <= w + _TOLERANCE
                    and -_TOLERANCE <= y <= h + _TOLERANCE):
                findings.problems.append(f"keypoint {i} at ({x:g}, {y:g}) is outside the {w}x{h} image, "
                                         "though remove_invisible is set")
    for name in ("mask", "masks"):
        if name in before and name in out:
            gained = [v for v in _new_values(before[name], out[name]) if v not in mask_fill]
            if gained:
                fills = f" nor a fill_mask value of the spec ({sorted(mask_fill)})" if mask_fill else ""
                findings.problems.append(f"{name} gained class value(s) {gained} that its source does not have{fills}: "
                                         "masks must be interpolated with nearest neighbour (mask_interpolation: 0)")
    return out, findings


def mask_fills(resolved: Mapping[str, Any]) -> frozenset[int]:
    """The values the resolved spec's ops fill masks with (every ``fill_mask`` number)."""
    found: set[int] = set()
    stack = list(resolved.get("ops") or ())
    while stack:
        node = stack.pop()
        fill = (node.get("params") or {}).get("fill_mask")
        for value in fill if isinstance(fill, (list, tuple)) else [fill]:
            if isinstance(value, (int, float)) and not isinstance(value, bool) and float(value).is_integer():
                found.add(int(value))
        stack.extend(node.get("ops") or ())
    return frozenset(found)


def _restore(out: dict[str, Any], index: LabelIndex, findings: LabelFindings) -> None:
    survivors: dict[str, list[int]] = {}
    for kind, count in index.counts.items():
        name = index.fields.get(kind)
        if name is None:  # no label field to carry indices: only the count is known
            left = len(out.get(kind, ()))
            if left < count:
                findings.dropped[kind] = count - left
            continue
        kept = [int(i) for i in out[name]]
        survivors[kind] = kept
        gone = sorted(set(range(count)) - set(kept))
        if gone:
            findings.dropped[kind] = gone
    for kind, kept in survivors.items():
        for name in index.label_fields[kind]:
            given = index.before.get(name)
            if given is None:
                continue
            expected = [given[i] for i in kept]
            if name != index.fields[kind] and name in out and not _same_labels(out[name], expected):
                findings.problems.append(f"label field {name!r} changed: expected {expected}, got {list(out[name])}")
            out[name] = expected


def _same_labels(got: Sequence[Any], expected: Sequence[Any]) -> bool:
    """Equal, numbers compared at float32 precision: Albumentations carries numeric label fields as
    float32 (123456789 comes back as 123456792.0), which changes no label the annotation gave."""
    if len(got) != len(expected):
        return False
    for a, b in zip(got, expected, strict=True):
        if a == b:
            continue
        if not (isinstance(a, (int, float, np.number)) and isinstance(b, (int, float, np.number))):
            return False
        if np.float32(a) != np.float32(b):
            return False
    return True


def _box_problem(box: Sequence[Any], fmt: str, w: int, h: int) -> str | None:
    try:
        a, b, c, d = (float(v) for v in list(box)[:4])
    except (TypeError, ValueError):
        return f"is not four numbers: {box!r}"
    if fmt == "coco":
        x1, y1, x2, y2 = a, b, a + c, b + d
    elif fmt == "yolo":
        x1, y1, x2, y2 = (a - c / 2) * w, (b - d / 2) * h, (a + c / 2) * w, (b + d / 2) * h
    elif fmt == "albumentations":
        x1, y1, x2, y2 = a * w, b * h, c * w, d * h
    else:  # pascal_voc
        x1, y1, x2, y2 = a, b, c, d
    if not all(math.isfinite(v) for v in (x1, y1, x2, y2)):
        return f"has a non-finite coordinate: {list(box)[:4]}"
    if x2 <= x1 or y2 <= y1:
        return f"is empty or inverted: {list(box)[:4]} ({fmt})"
    if x1 < -_TOLERANCE or y1 < -_TOLERANCE or x2 > w + _TOLERANCE or y2 > h + _TOLERANCE:
        return f"{list(box)[:4]} ({fmt}) reaches outside the {w}x{h} image"
    return None


def _values(mask: Any) -> set[int]:
    arrays = mask if isinstance(mask, (list, tuple)) else [mask]
    found: set[int] = set()
    for m in arrays:
        arr = np.asarray(m)
        if arr.dtype == np.uint8:  # the common case: a histogram is ~10x cheaper than np.unique
            found.update(np.flatnonzero(np.bincount(arr.ravel(), minlength=256)).tolist())
        else:
            found.update(np.unique(arr).tolist())
    return found


def _new_values(before: Any, after: Any) -> list[int]:
    return sorted(_values(after) - _values(before))
