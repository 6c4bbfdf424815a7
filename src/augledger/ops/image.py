"""The Albumentations 2.0.8 backend: the only module that imports albumentations.

What this adapter does, and why:

* **Allowlist.** A spec names ops by Albumentations class name (bare, or ``albumentations.X``).
  Only the names in :data:`IMAGE_OPS` and :data:`COMPOSITIONS` are accepted; a spec can never reach
  an arbitrary class or import path. Transforms that need callables, file paths, reference images or
  per-sample metadata (``Lambda``, ``FDA``, ``Mosaic``, ``TextImage``, ...), deprecated aliases
  (``ShiftScaleRotate``, ``FrequencyMasking``, ...) and transforms that warn on every construction
  (``PiecewiseAffine``: "very slow, use ElasticTransform") are left out.
* **Resolution.** Every op is built once with ``strict=True`` and its validated init args are read
  back (``get_transform_init_args``) and turned into JSON. That is the resolved form that is hashed,
  and the pipeline is built *from the resolved form*, so two specs with one fingerprint always build
  the same transforms. Scalars follow the backend's own rules: ``Rotate(limit=15)`` resolves to
  ``[-15.0, 15.0]`` while ``Affine(rotate=15)`` resolves to ``[15.0, 15.0]`` (a fixed angle).
* **Randomness.** One ``A.Compose`` is built per thread; before every call it receives the sample's
  NumPy and Python generators through ``set_random_state`` (about 16 µs). ``Compose(seed=...)``
  is never used: it re-seeds from the DataLoader worker's torch seed, which ties output to layout.
* **Records.** Applied params come from ``save_applied_params`` and are made JSON-safe here
  (:func:`jsonable_params`).
"""

from __future__ import annotations

import difflib
import hashlib
import inspect
import math
import os
import warnings
from collections.abc import Mapping, Sequence
from functools import cache
from typing import TYPE_CHECKING, Any

import numpy as np

from augledger._canonical import canonical_json
from augledger.errors import BackendError, ParamError, SpecError, UnknownOpError
from augledger.spec import OpSpec, Targets, format_location

if TYPE_CHECKING:
    import albumentations

__all__ = [
    "COMPOSITIONS",
    "IMAGE_OPS",
    "backend_versions",
    "build_compose",
    "canonical_op_name",
    "jsonable_params",
    "resolve_ops",
    "resolve_targets",
]

NAMESPACE = "albumentations"

#: Albumentations transforms a spec may name. Reviewed by hand for 2.0.8; see the module docstring
#: for what is left out. ``tests/test_image_ops.py`` builds and runs every one of them.
IMAGE_OPS: tuple[str, ...] = (
    "AdditiveNoise", "AdvancedBlur", "Affine", "AtLeastOneBBoxRandomCrop", "AutoContrast",
    "BBoxSafeRandomCrop", "Blur", "CLAHE", "CenterCrop", "ChannelDropout", "ChannelShuffle",
    "ChromaticAberration", "CoarseDropout", "ColorJitter", "ConstrainedCoarseDropout", "Crop",
    "CropAndPad", "CropNonEmptyMaskIfExists", "D4", "Defocus", "Downscale", "ElasticTransform",
    "Emboss", "Equalize", "Erasing", "FancyPCA", "FromFloat", "GaussNoise",
    "GaussianBlur", "GlassBlur", "GridDistortion", "GridDropout", "GridElasticDeform", "HEStain",
    "HorizontalFlip", "HueSaturationValue", "ISONoise", "Illumination", "ImageCompression",
    "InvertImg", "LongestMaxSize", "MaskDropout", "MedianBlur", "Morphological", "MotionBlur",
    "MultiplicativeNoise", "Normalize", "OpticalDistortion", "Pad", "PadIfNeeded", "Perspective",
    "PixelDropout", "PlanckianJitter", "PlasmaBrightnessContrast", "PlasmaShadow",
    "Posterize", "RGBShift", "RandomBrightnessContrast", "RandomCrop", "RandomCropFromBorders",
    "RandomFog", "RandomGamma", "RandomGravel", "RandomGridShuffle", "RandomRain", "RandomResizedCrop",
    "RandomRotate90", "RandomScale", "RandomShadow", "RandomSizedBBoxSafeCrop", "RandomSizedCrop",
    "RandomSnow", "RandomSunFlare", "RandomToneCurve", "Resize", "RingingOvershoot", "Rotate",
    "SafeRotate", "SaltAndPepper", "Sharpen", "ShotNoise", "SmallestMaxSize", "Solarize", "Spatter",
    "SquareSymmetry", "Superpixels", "ThinPlateSpline", "ToFloat", "ToGray", "ToSepia", "Transpose",
    "UnsharpMask", "VerticalFlip", "XYMasking", "ZoomBlur",
)  # fmt: skip

#: Compositions and the params each accepts (beyond ``p`` and the child ``ops``).
COMPOSITIONS: dict[str, tuple[str, ...]] = {
    "OneOf": (),
    "SomeOf": ("n", "replace"),
    "Sequential": (),
}

_IMAGE_OPS = frozenset(IMAGE_OPS)
# Applied-param keys that restate the spec or the input (the shape is in the sample; fill,
# interpolation and border mode are in the resolved spec); dropping them keeps ledger rows small.
_RESTATED = frozenset({"shape", "interpolation", "mask_interpolation", "fill", "fill_mask", "border_mode"})
# Arrays up to this many elements (an affine matrix, a per-channel shift) are digested; larger ones
# (per-pixel noise maps, ~450 µs to hash at 256x256x3) are derived from the sample seed, are
# verified through the output digest, and are summarised by shape and dtype only.
_DIGEST_MAX_ELEMENTS = 4096


def _albumentations() -> Any:
    # Albumentations checks PyPI for a newer version on import unless this is set. A library must not
    # touch the network on import, and CI machines have none.
    os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")
    try:
        import albumentations
    except ImportError as exc:  # pragma: no cover - exercised only without the extra
        raise BackendError(
            "augledger's image ops need the 'image' extra: pip install 'augledger[image]' "
            f"(could not import albumentations: {exc})"
        ) from exc
    return albumentations


@cache
def backend_versions() -> dict[str, str]:
    """Versions of the image backend's libraries, for the environment stamp."""
    A = _albumentations()
    import albucore
    import cv2

    versions = {"albumentations": A.__version__, "albucore": albucore.__version__, "opencv": cv2.__version__}
    try:  # bulk runs decode files with Pillow (the image extra installs it)
        import PIL

        versions["pillow"] = PIL.__version__
    except ImportError:  # pragma: no cover - only without the image extra's Pillow
        pass
    return versions


def canonical_op_name(name: str, *, location: str) -> str:
    """Map ``HorizontalFlip`` or ``albumentations.HorizontalFlip`` to the canonical namespaced name.

    Raises:
        UnknownOpError: the name is not on the allowlist, with the closest allowed names.
    """
    bare = name.removeprefix(f"{NAMESPACE}.")
    if bare in _IMAGE_OPS or bare in COMPOSITIONS:
        return f"{NAMESPACE}.{bare}"
    choices = [*IMAGE_OPS, *COMPOSITIONS]
    lowered = {c.lower(): c for c in choices}
    close = [lowered[m] for m in difflib.get_close_matches(bare.lower(), list(lowered), n=3, cutoff=0.6)]
    hint = f"did you mean {' or '.join(repr(c) for c in close)}?" if close else "see `augledger spec schema`"
    if "." in bare or "/" in bare:
        hint = "a spec names ops by registered name, never by import path; " + hint
    raise UnknownOpError(f"op {name!r} is not an allowed image op; {hint}", location=location)


def _init_params(cls: type) -> dict[str, inspect.Parameter]:
    return {
        k: v
        for k, v in inspect.signature(cls).parameters.items()
        if k not in ("self", "p", "strict", "always_apply") and v.kind is v.POSITIONAL_OR_KEYWORD
    }


def _to_json(value: Any) -> Any:
    """Validated init args to JSON data: tuples become lists, NumPy scalars become Python scalars."""
    if isinstance(value, Mapping):
        return {str(k): _to_json(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_to_json(v) for v in value]
    if isinstance(value, np.generic):
        return value.item()
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    raise TypeError(f"cannot represent {type(value).__name__} {value!r} as JSON")


def _build_leaf(A: Any, bare: str, p: float, params: Mapping[str, Any], *, location: str) -> Any:
    cls = getattr(A, bare)
    known = _init_params(cls)
    for field in params:
        if field not in known:
            close = difflib.get_close_matches(field, list(known), n=1)
            if field == "p":
                hint = "the probability is set beside 'op', not under params: {op: " + bare + ", p: 0.5}"
            elif close:
                hint = f"did you mean {close[0]!r}?"
            else:
                hint = f"accepted params: {', '.join(sorted(known)) or '(none)'}"
            raise ParamError(f"unknown param for {bare}; {hint}", location=f"{location}.params.{field}")
    missing = [k for k, v in known.items() if v.default is inspect.Parameter.empty and k not in params]
    if missing:
        raise ParamError(
            f"{bare} requires param(s) {', '.join(missing)}; add them under params",
            location=f"{location}.params",
        )
    schema = cls.__dict__.get("InitSchema")
    if schema is not None:
        # Validate through the transform's own schema first, to report each bad field by name.
        full = {k: v.default for k, v in known.items() if v.default is not inspect.Parameter.empty}
        full.update(params)
        full["p"] = p
        _check_schema(schema, full, bare, location=location)
    with warnings.catch_warnings():
        # Albumentations warns about deprecated or ignored arguments; a spec must say exactly what
        # it means, so each of those is an error here.
        warnings.simplefilter("error")
        try:
            kwargs = {"strict": True} if schema is not None else {}
            return cls(p=p, **kwargs, **params)
        except (ValueError, TypeError, UserWarning) as exc:
            raise ParamError(f"{bare} rejected its params: {exc}", location=f"{location}.params") from None


def _check_schema(schema: Any, full: dict[str, Any], bare: str, *, location: str) -> None:
    from pydantic import ValidationError

    try:
        schema(**full, strict=True)
    except ValidationError as exc:
        lines = []
        first = ""
        for err in exc.errors():
            field = str(err["loc"][0]) if err["loc"] else ""
            where = f"{location}.params.{field}" if field and field != "p" else location
            first = first or where
            got = full.get(field, err.get("input"))
            lines.append(f"{where}: {err['msg']}; got {got!r}")
        error = ParamError(f"invalid params for {bare}:\n    " + "\n    ".join(lines))
        error.location = first  # each line names its own location; do not prefix the message
        raise error from None
    except Exception as exc:  # schema model validators raise plain ValueErrors, e.g. low > high
        raise ParamError(f"invalid params for {bare}: {exc}", location=f"{location}.params") from None


def _resolve_op(A: Any, op: OpSpec, loc: tuple[int | str, ...]) -> dict[str, Any]:
    location = format_location(loc)
    name = canonical_op_name(op.op, location=f"{location}.op")
    bare = name.removeprefix(f"{NAMESPACE}.")
    if bare in COMPOSITIONS:
        if not op.ops:
            raise ParamError(f"{bare} needs a non-empty list of child ops under 'ops'", location=f"{location}.ops")
        allowed = COMPOSITIONS[bare]
        for field in op.params:
            if field not in allowed:
                raise ParamError(
                    f"unknown param for {bare}; accepted: {', '.join(allowed) or 'none'}",
                    location=f"{location}.params.{field}",
                )
        children = [_resolve_op(A, child, (*loc, "ops", i)) for i, child in enumerate(op.ops)]
        sig = inspect.signature(getattr(A, bare)).parameters
        p = op.p if op.p is not None else float(sig["p"].default)
        params: dict[str, Any] = {k: sig[k].default for k in allowed}
        params.update(op.params)
        if bare == "SomeOf":
            n = params["n"]
            if isinstance(n, bool) or not isinstance(n, int) or n < 1:
                raise ParamError(f"n must be a positive int; got {n!r}", location=f"{location}.params.n")
            if not isinstance(params["replace"], bool):
                raise ParamError(
                    f"replace must be true or false; got {params['replace']!r}",
                    location=f"{location}.params.replace",
                )
        return {"op": name, "p": float(p), "params": params, "ops": children}
    if op.ops is not None:
        raise ParamError(f"{bare} is a transform, not a composition; remove 'ops'", location=f"{location}.ops")
    p = op.p if op.p is not None else float(inspect.signature(getattr(A, bare)).parameters["p"].default)
    transform = _build_leaf(A, bare, p, op.params, location=location)
    known = _init_params(type(transform))
    resolved = _to_json({k: v for k, v in transform.get_transform_init_args().items() if k in known})
    # The backend's normalisation is not idempotent in JSON types (Affine's translate_px [0, 0]
    # comes back as [0.0, 0.0] on a second pass). Iterate to a fixed point, so that the resolved
    # form, which is hashed and which the pipeline is built from, reproduces itself exactly.
    for _ in range(4):
        again = _build_leaf(A, bare, p, resolved, location=location)
        nxt = _to_json({k: v for k, v in again.get_transform_init_args().items() if k in known})
        if canonical_json(nxt) == canonical_json(resolved):
            break
        resolved = nxt
    else:  # pragma: no cover - no allowlisted op needs more than two passes (tested for each)
        raise ParamError(f"{bare}'s params do not settle to a stable resolved form", location=f"{location}.params")
    for field, given in op.params.items():
        _check_not_reversed(given, resolved.get(field), f"{location}.params.{field}")
    return {"op": name, "p": float(p), "params": resolved}


def _check_not_reversed(given: Any, resolved: Any, location: str) -> None:
    """Refuse ``[high, low]`` ranges, which Albumentations would silently sort into ``[low, high]``."""
    if isinstance(given, Mapping) and isinstance(resolved, Mapping):
        for k, v in given.items():
            _check_not_reversed(v, resolved.get(k), f"{location}.{k}")
        return
    if (
        isinstance(given, (list, tuple))
        and len(given) == 2
        and all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in given)
        and given[0] > given[1]
    ):
        raise ParamError(
            f"a range must be [low, high] with low <= high; got {list(given)!r}. "
            f"Swap the bounds: [{given[1]!r}, {given[0]!r}]",
            location=location,
        )


def resolve_ops(ops: Sequence[OpSpec]) -> list[dict[str, Any]]:
    """Resolve spec ops to JSON nodes with canonical names, explicit ``p`` and every default filled in.

    Raises:
        UnknownOpError, ParamError: naming the location, e.g. ``ops[1].params.rotat``.
    """
    A = _albumentations()
    resolved: list[dict[str, Any]] = []
    errors: list[SpecError] = []
    for i, op in enumerate(ops):
        try:
            resolved.append(_resolve_op(A, op, ("ops", i)))
        except SpecError as exc:  # report every bad op at once, not one per edit-and-retry cycle
            errors.append(exc)
    if len(errors) == 1:
        raise errors[0]
    if errors:
        unknown = [e for e in errors if isinstance(e, UnknownOpError)]
        cls = UnknownOpError if len(unknown) == len(errors) else ParamError
        combined = cls(f"{len(errors)} problems:\n  " + "\n  ".join(str(e) for e in errors))
        combined.location = errors[0].location
        raise combined
    return resolved


def resolve_targets(targets: Targets) -> dict[str, Any]:
    """The targets section with every default filled in (it is already explicit in the model)."""
    return targets.model_dump(mode="json")


def _build_node(A: Any, node: Mapping[str, Any]) -> Any:
    bare = str(node["op"]).removeprefix(f"{NAMESPACE}.")
    if bare in COMPOSITIONS:
        children = [_build_node(A, child) for child in node["ops"]]
        return getattr(A, bare)(children, p=node["p"], **node["params"])
    cls = getattr(A, bare)
    kwargs = {"strict": True} if "InitSchema" in cls.__dict__ else {}
    return cls(p=node["p"], **kwargs, **node["params"])


def build_compose(ops: Sequence[Mapping[str, Any]], targets: Mapping[str, Any]) -> albumentations.Compose:
    """Build a fresh ``A.Compose`` from resolved op nodes and targets.

    The Compose applies with ``p=1`` (each op owns its own ``p``), records applied params, and is
    never given a seed: the pipeline installs per-sample generators before every call.
    """
    A = _albumentations()
    bboxes = targets.get("bboxes")
    keypoints = targets.get("keypoints")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # "no seed given" style notices at build time
        return A.Compose(
            [_build_node(A, node) for node in ops],
            bbox_params=A.BboxParams(**bboxes) if bboxes else None,
            keypoint_params=A.KeypointParams(**keypoints) if keypoints else None,
            p=1.0,
            strict=True,
            save_applied_params=True,
        )


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
