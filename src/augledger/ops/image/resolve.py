"""Resolving a spec's ops and targets against Albumentations: validate, fill every default, settle.

Every op is built once with ``strict=True`` and its validated init args are read back
(``get_transform_init_args``) and turned into JSON. That is the resolved form that is hashed, and
the pipeline is built *from the resolved form*, so two specs with one fingerprint always build the
same transforms. Scalars follow the backend's own rules: ``Rotate(limit=15)`` resolves to
``[-15.0, 15.0]`` while ``Affine(rotate=15)`` resolves to ``[15.0, 15.0]`` (a fixed angle).
"""

from __future__ import annotations

import difflib
import inspect
import json
import warnings
from collections.abc import Mapping, Sequence
from functools import cache
from typing import Any, Literal

import numpy as np
from pydantic import BaseModel, ConfigDict

from augledger._canonical import canonical_json
from augledger.errors import ParamError
from augledger.ops.base import resolve_each
from augledger.ops.image.aliases import translate_alias
from augledger.ops.image.allowlist import COMPOSITIONS, NAMESPACE, canonical_op_name
from augledger.ops.image.library import albumentations
from augledger.ops.image.limits import check_limits
from augledger.spec import OpSpec, format_location, validate_model

__all__ = ["BboxTargets", "KeypointTargets", "Targets", "resolve_ops", "resolve_targets", "storage_problem"]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class BboxTargets(_Strict):
    """Bounding boxes travel with the image (Albumentations' ``BboxParams``)."""

    format: Literal["pascal_voc", "coco", "yolo", "albumentations"]
    label_fields: tuple[str, ...] = ()
    min_area: float = 0.0
    min_visibility: float = 0.0
    min_width: float = 0.0
    min_height: float = 0.0
    clip: bool = False
    filter_invalid_bboxes: bool = False
    check_each_transform: bool = True
    max_accept_ratio: float | None = None


class KeypointTargets(_Strict):
    """Keypoints travel with the image (Albumentations' ``KeypointParams``)."""

    format: Literal["xy", "yx", "xya", "xys", "xyas", "xysa", "xyz"]
    label_fields: tuple[str, ...] = ()
    remove_invisible: bool = True
    angle_in_degrees: bool = True
    check_each_transform: bool = True


class Targets(_Strict):
    """What travels with the image. A sample carrying an undeclared target is rejected."""

    mask: bool = False
    bboxes: BboxTargets | None = None
    keypoints: KeypointTargets | None = None


def resolve_targets(targets: Mapping[str, Any]) -> dict[str, Any]:
    """The ``targets`` section validated strictly, with every default filled in.

    Raises:
        SpecError: naming the location, e.g. ``targets.bboxes.fromat``.
    """
    model = validate_model(Targets, dict(targets), location=("targets",))
    return model.model_dump(mode="json")


def targets_schema() -> dict[str, Any]:
    """JSON Schema of the ``targets`` section."""
    return Targets.model_json_schema()


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
        _check_types(schema, params, bare, location=location)
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


@cache
def _strict_adapter(schema: Any, field: str) -> Any:
    from typing import Annotated

    from pydantic import TypeAdapter
    from pydantic.errors import PydanticSchemaGenerationError

    info = schema.model_fields[field]
    annotation: Any = Annotated[(info.annotation, *info.metadata)] if info.metadata else info.annotation
    try:
        return TypeAdapter(annotation)
    except PydanticSchemaGenerationError:  # e.g. a NumPy array: not a JSON value, left to the schema
        return None


def _check_types(schema: Any, params: Mapping[str, Any], bare: str, *, location: str) -> None:
    """Each given param must have its declared JSON type as written: no ``true`` for 1, no ``"64"`` for 64.

    The transform's own schema coerces in lax mode (``height: true`` would become 1); a spec says
    exactly what it means, so each given value is first checked strictly as JSON (arrays stand for
    tuples, integers for floats).
    """
    from pydantic import ValidationError

    problems: list[tuple[str, str]] = []
    for field, value in params.items():
        if field not in schema.model_fields:
            continue
        adapter = _strict_adapter(schema, field)
        if adapter is None:
            continue
        try:
            adapter.validate_json(json.dumps(value), strict=True)
        except ValidationError as exc:
            err = exc.errors()[0]
            if not (err["type"].endswith("_type") or "parsing" in err["type"]):
                continue  # a value of the right type out of range: the schema's own message says it best
            # Union members appear in the location by type name; only list positions say where.
            where = "".join(f"[{p}]" for p in err["loc"] if isinstance(p, int))
            problems.append((f"{location}.params.{field}{where}", f"{err['msg']}; got {value!r} ({type(value).__name__})"))
        except (TypeError, ValueError):  # a value JSON cannot hold: left to the schema's own message
            continue
    if problems:
        fix = 'write the value itself, e.g. 64 not "64", 1 not true'
        if len(problems) == 1:
            raise ParamError(f"{bare}: {problems[0][1]}; {fix}", location=problems[0][0])
        error = ParamError(f"invalid params for {bare} ({fix}):\n    " + "\n    ".join(f"{w}: {m}" for w, m in problems))
        error.location = problems[0][0]
        raise error


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
    op = translate_alias(A, op, location)  # ShiftScaleRotate -> Affine, ... (aliases.py)
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
        params: dict[str, Any] = _to_json({k: sig[k].default for k in allowed})
        params.update(op.params)
        _check_composition(A, bare, params, children, op, location)
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
    check_limits(bare, resolved, location)
    return {"op": name, "p": float(p), "params": resolved}


#: Ops a composition may pick per sample (``SomeOf``'s ``n``; with ``replace`` it may exceed the children).
_MAX_COMPOSITION_N = 100


def _check_composition(
    A: Any, bare: str, params: Mapping[str, Any], children: Sequence[Mapping[str, Any]], op: OpSpec, location: str
) -> None:
    """Rules Albumentations would otherwise bend silently (it warns and changes ``n``, or ignores a child)."""
    if "n" in params:
        n = params["n"]
        if isinstance(n, bool) or not isinstance(n, int) or n < 1:
            raise ParamError(f"n must be a positive int; got {n!r}", location=f"{location}.params.n")
        if n > _MAX_COMPOSITION_N:
            raise ParamError(f"n must be at most {_MAX_COMPOSITION_N} ops per sample; got {n!r}",
                             location=f"{location}.params.n")
        if not isinstance(params["replace"], bool):
            raise ParamError(f"replace must be true or false; got {params['replace']!r}", location=f"{location}.params.replace")
        if n > len(children) and not params["replace"]:
            raise ParamError(
                f"n={n} but {bare} has {len(children)} child op(s); lower n, add ops, or set replace: true",
                location=f"{location}.params.n",
            )
    if bare == "OneOf" and children and not any(float(c["p"]) > 0 for c in children):
        raise ParamError("OneOf picks a child op with its children's p as weights, and every child has p 0 (found by "
                         "fuzzing: Albumentations divides by their sum); give one child a p above 0, or remove the OneOf",
                         location=f"{location}.ops")
    if bare == "OneOrOther" and len(children) != 2:
        raise ParamError(f"OneOrOther takes exactly 2 child ops (the one, the other); got {len(children)}",
                         location=f"{location}.ops")
    if bare == "SelectiveChannelTransform":
        channels = params["channels"]
        if (not isinstance(channels, list) or not channels or len(set(channels)) != len(channels)
                or not all(isinstance(c, int) and not isinstance(c, bool) and c >= 0 for c in channels)):
            raise ParamError(f"channels must be a non-empty list of distinct channel indices (>= 0); got {channels!r}",
                             location=f"{location}.params.channels")
        for i, child in enumerate(children):
            name = str(child["op"]).removeprefix(f"{NAMESPACE}.")
            cls = getattr(A, name)
            if name in COMPOSITIONS or not issubclass(cls, A.ImageOnlyTransform):
                raise ParamError(
                    f"{name} is not a pixel-level transform: inside SelectiveChannelTransform it would move the "
                    "selected channels but not the others, nor masks or boxes; use pixel-level ops only",
                    location=f"{location}.ops[{i}].op",
                )


def storage_problem(ops: Sequence[Mapping[str, Any]]) -> str | None:
    """Why outputs of these resolved ops cannot be stored as 8-bit image files, or ``None``.

    ``Normalize`` and ``ToFloat`` make float images; a later top-level ``FromFloat`` at ``p=1``
    makes them 8-bit again.
    """
    floats: list[str] = []

    def walk(nodes: Sequence[Mapping[str, Any]], loc: str) -> None:
        for i, node in enumerate(nodes):
            name = str(node["op"]).removeprefix(f"{NAMESPACE}.")
            if name in ("Normalize", "ToFloat"):
                floats.append(f"{loc}[{i}] ({name})")
            if node.get("ops"):
                walk(node["ops"], f"{loc}[{i}].ops")

    walk(ops, "ops")
    if not floats:
        return None
    last_float = max(i for i, node in enumerate(ops) if _makes_float(node))
    restored = any(
        str(node["op"]).endswith(".FromFloat") and node["p"] >= 1.0 for node in ops[last_float + 1 :]
    )
    if restored:
        return None
    return (
        f"{', '.join(floats)} make float images, which cannot be stored as PNG, JPEG or WebP files. "
        "Materialise without them (normalise in the training loader instead), or end the pipeline "
        "with {op: FromFloat, p: 1}"
    )


def _makes_float(node: Mapping[str, Any]) -> bool:
    if str(node["op"]).removeprefix(f"{NAMESPACE}.") in ("Normalize", "ToFloat"):
        return True
    return any(_makes_float(child) for child in node.get("ops") or ())


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
    A = albumentations()
    return resolve_each(ops, lambda op, i: _resolve_op(A, op, ("ops", i)))
