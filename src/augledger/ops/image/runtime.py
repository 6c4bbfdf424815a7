"""Running resolved image ops: one ``A.Compose`` per thread, seeded per sample, and JSON records.

* **Randomness.** Each applier builds its own ``A.Compose`` and installs one NumPy and one Python
  generator in it once (``set_random_state``); before every call both are re-seeded in place from
  the sample's seed (:class:`~augledger.seeding.SampleGenerators`, ~11 µs, most of it Mersenne
  Twister's own seeding). ``Compose(seed=...)`` is never used: it re-seeds from the DataLoader
  worker's torch seed, which ties outputs to the worker layout.
* **Checks.** The applier checks the sample's fields itself (cheaper than Albumentations' strict
  mode, and with messages that name the key), so the Compose is built strict (every transform's
  arguments validated once) and then runs with per-call validation off, which saved ~2 µs a call.
* **Records.** Applied params come from ``save_applied_params`` and are made JSON-safe only when a
  record is read (:func:`jsonable_params`). Each applied op also carries its node path in the spec
  (``ops[2].ops[0]``), so two uses of one op class can be told apart: every composition in the
  built tree tracks its children with :func:`_tracker`, which adds the path.
"""

from __future__ import annotations

import hashlib
import math
import types
import warnings
from collections.abc import Mapping, Sequence
from functools import cache
from typing import Any

import numpy as np

from augledger.errors import SampleError
from augledger.ops.image.allowlist import COMPOSITIONS, NAMESPACE
from augledger.ops.image.library import albumentations
from augledger.seeding import SampleGenerators

__all__ = ["ImageApplier", "ImageCompiled", "build_compose", "jsonable_params"]

# Applied-param keys that restate the spec or the input (the shape is in the sample; fill,
# interpolation and border mode are in the resolved spec); dropping them keeps ledger rows small.
_RESTATED = frozenset({"shape", "interpolation", "mask_interpolation", "fill", "fill_mask", "border_mode"})
# Arrays up to this many elements (an affine matrix, a per-channel shift) are digested; larger ones
# (per-pixel noise maps, ~450 µs to hash at 256x256x3) are derived from the sample seed, are
# verified through the output digest, and are summarised by shape and dtype only.
_DIGEST_MAX_ELEMENTS = 4096


def _build_node(A: Any, node: Mapping[str, Any]) -> Any:
    bare = str(node["op"]).removeprefix(f"{NAMESPACE}.")
    if bare in COMPOSITIONS:
        children = [_build_node(A, child) for child in node["ops"]]
        cls = _recorded_compositions(A).get(bare) or getattr(A, bare)
        return cls(transforms=children, p=node["p"], **node["params"])
    cls = getattr(A, bare)
    kwargs = {"strict": True} if "InitSchema" in cls.__dict__ else {}
    return cls(p=node["p"], **kwargs, **node["params"])


@cache
def _recorded_compositions(A: Any) -> dict[str, type]:
    """``OneOrOther`` and ``SelectiveChannelTransform`` whose children's params reach the record.

    In Albumentations 2.0.8 neither records what its children applied (``save_applied_params``
    sees nothing), so a ledger row would omit an op that changed the image. These subclasses make
    the same draws in the same order as the originals and add the recording.
    """

    class OneOrOther(A.OneOrOther):  # type: ignore[misc]
        def __call__(self, *args: Any, force_apply: bool = False, **data: Any) -> dict[str, Any]:
            chosen = self.transforms[0] if self.py_random.random() < self.p else self.transforms[-1]
            data = chosen(force_apply=True, **data)
            self._track_transform_params(chosen, data)
            return data

    class SelectiveChannelTransform(A.SelectiveChannelTransform):  # type: ignore[misc]
        def __call__(self, *args: Any, force_apply: bool = False, **data: Any) -> dict[str, Any]:
            if not (force_apply or self.py_random.random() < self.p):
                return data
            image = data["image"]
            part = np.ascontiguousarray(image[:, :, self.channels])
            for t in self.transforms:
                part = t(image=part)["image"]
                self._track_transform_params(t, data)
            merged = image.copy()
            merged[:, :, self.channels] = part.reshape(*part.shape[:2], -1)
            data["image"] = np.ascontiguousarray(merged)
            return data

    return {"OneOrOther": OneOrOther, "SelectiveChannelTransform": SelectiveChannelTransform}


def build_compose(ops: Sequence[Mapping[str, Any]], targets: Mapping[str, Any]) -> Any:
    """Build a fresh ``A.Compose`` from resolved op nodes and targets.

    The Compose applies with ``p=1`` (each op owns its own ``p``), records applied params, and is
    never given a seed: appliers install per-sample generators before every call.
    """
    A = albumentations()
    bboxes = targets.get("bboxes")
    keypoints = targets.get("keypoints")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # "no seed given" style notices at build time
        compose = A.Compose(
            [_build_node(A, node) for node in ops],
            bbox_params=A.BboxParams(**bboxes) if bboxes else None,
            keypoint_params=A.KeypointParams(**keypoints) if keypoints else None,
            p=1.0,
            strict=True,
            save_applied_params=True,
        )
    # Strict construction has validated every transform's arguments; the per-call key checks it
    # would add repeat what ImageApplier checks already.
    compose.strict = False
    paths: dict[int, str] = {}
    _label_paths(A, compose, "ops", paths)
    return compose


def _label_paths(A: Any, composition: Any, prefix: str, paths: dict[int, str]) -> None:
    """Give every leaf transform under ``composition`` its node path, and make the compositions record it."""
    for i, child in enumerate(composition.transforms):
        path = f"{prefix}[{i}]"
        if isinstance(child, A.BaseCompose):
            _label_paths(A, child, f"{path}.ops", paths)
        else:
            paths[id(child)] = path
    # An instance attribute shadows the class's method: this composition's tracking now adds paths.
    composition._track_transform_params = types.MethodType(_tracker(paths), composition)


def _tracker(paths: Mapping[int, str]) -> Any:
    """``BaseCompose._track_transform_params`` that appends ``(class name, params, node path)``."""

    def track(self: Any, transform: Any, data: dict[str, Any]) -> None:
        params = getattr(transform, "params", None)
        if params and "applied_transforms" in data:
            data["applied_transforms"].append((transform.__class__.__name__, params.copy(), paths[id(transform)]))

    return track


class ImageCompiled:
    """Resolved image ops and targets, ready to hand out one :class:`ImageApplier` per thread."""

    def __init__(self, ops: Sequence[Mapping[str, Any]], targets: Mapping[str, Any]) -> None:
        self.ops = [dict(op) for op in ops]
        self.targets = dict(targets)
        allowed = {"image"}
        if targets.get("mask"):
            allowed |= {"mask", "masks"}
        declared: list[tuple[str, tuple[str, ...]]] = []
        for kind in ("bboxes", "keypoints"):
            if targets.get(kind):
                allowed |= {kind, *targets[kind]["label_fields"]}
                declared.append((kind, tuple(targets[kind]["label_fields"])))
        self.sample_fields = frozenset(allowed)
        # Declared box/point targets a sample may omit (an unannotated image): filled with empty lists.
        self.optional_targets = tuple(declared)

    def new_applier(self) -> ImageApplier:
        return ImageApplier(self)

    def record_ops(self, applied: list[tuple[str, dict[str, Any], str]]) -> tuple[dict[str, Any], ...]:
        return tuple({"op": f"{NAMESPACE}.{name}", "path": path, "params": jsonable_params(params)}
                     for name, params, path in applied)


class ImageApplier:
    """One thread's Compose and generators. Not thread-safe (both are mutated by every call)."""

    __slots__ = ("_allowed", "_compose", "_generators", "_optional")

    def __init__(self, compiled: ImageCompiled) -> None:
        self._compose = build_compose(compiled.ops, compiled.targets)
        self._generators = SampleGenerators()
        # Installed once: every transform keeps references to these two generator objects, and
        # each call re-seeds them in place (propagating them again would cost ~15 µs per call).
        self._compose.set_random_state(self._generators.numpy, self._generators.python)
        self._allowed = compiled.sample_fields
        self._optional = compiled.optional_targets

    def __call__(self, sample: Mapping[str, Any], *, key: str, seed: int) -> tuple[dict[str, Any], Any]:
        self._check(sample, key)
        filled = self._fill_optional_targets(sample, key) if self._optional else ()
        self._generators.reseed(seed)
        out: dict[str, Any] = self._compose(**({**sample, **dict.fromkeys(filled, ())} if filled else sample))
        for name in filled:
            out.pop(name, None)
        return out, out.pop("applied_transforms")

    def _check(self, sample: Mapping[str, Any], key: str) -> None:
        if not isinstance(sample, Mapping) or "image" not in sample:
            raise SampleError(
                f"sample {key!r} must be a dict with an 'image' array (Albumentations' convention), "
                f"e.g. {{'image': array}}; got {type(sample).__name__}"
                + (f" with keys {sorted(sample)}" if isinstance(sample, Mapping) else "")
            )
        if not self._allowed.issuperset(sample):
            extra = set(sample) - self._allowed
            raise SampleError(
                f"sample {key!r} carries {sorted(extra)}, which the spec does not declare; "
                f"declare them under 'targets' in the spec (accepted now: {sorted(self._allowed)})"
            )
        image = sample["image"]
        if not isinstance(image, np.ndarray) or image.ndim not in (2, 3):
            raise SampleError(
                f"sample {key!r}: 'image' must be a HxW or HxWxC numpy array; got "
                f"{type(image).__name__}{getattr(image, 'shape', '')}"
            )

    def _fill_optional_targets(self, sample: Mapping[str, Any], key: str) -> tuple[str, ...]:
        """Names of declared box/point fields the sample omits (augmented as empty, then dropped)."""
        filled: list[str] = []
        for kind, fields in self._optional:
            if kind in sample:
                missing = [f for f in fields if f not in sample]
                if missing:
                    raise SampleError(
                        f"sample {key!r} has {kind} but not their label field(s) {missing} that the spec's "
                        f"targets.{kind}.label_fields declares; pass one label per box, e.g. {missing[0]}=[...]"
                    )
            else:
                stray = [f for f in fields if f in sample]
                if stray:
                    raise SampleError(
                        f"sample {key!r} has label field(s) {stray} but no {kind!r}; pass both, or neither "
                        "for a sample without annotations"
                    )
                filled += [kind, *fields]
        return tuple(filled)


def jsonable_params(params: Mapping[str, Any]) -> dict[str, Any]:
    """Make one transform's applied params JSON-safe and small.

    Keys that restate the spec or the input are dropped. Small arrays become
    ``{"array": {"shape", "dtype", "sha256"}}``; large ones (noise maps) keep shape and dtype only.
    Floats are kept exactly (JSON floats round-trip through ``repr``).
    """
    return {str(k): _jsonable(v) for k, v in params.items() if k not in _RESTATED}


_DTYPE_NAMES: dict[np.dtype[Any], str] = {}


def _jsonable(value: Any) -> Any:
    # Hot path (every op of every sample): cheapest checks first, no NumPy ufuncs on scalars.
    if isinstance(value, float):
        return value if math.isfinite(value) else repr(value)
    if value is None or isinstance(value, (bool, int, str)):
        return value
    if isinstance(value, np.ndarray):
        dtype = value.dtype
        name = _DTYPE_NAMES.get(dtype)
        if name is None:  # ``dtype.name`` costs ~10 µs (a Python property); dtypes are few
            name = _DTYPE_NAMES[dtype] = dtype.name
        summary: dict[str, Any] = {"shape": list(value.shape), "dtype": name}
        if value.size <= _DIGEST_MAX_ELEMENTS:
            summary["sha256"] = hashlib.sha256(value.tobytes()).hexdigest()
        return {"array": summary}
    if isinstance(value, np.generic):
        return _jsonable(value.item())
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, Mapping):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if callable(value):
        return getattr(value, "__name__", type(value).__name__)
    return repr(value)
