"""Resolving a spec's audio ops: validate strictly, fill every default and ``p``, settle the JSON form.

audiomentations validates little itself (a few ``assert``s, which ``python -O`` removes), so each
param is checked here against the constructor's signature: its type hint (``float`` takes any
finite JSON number and resolves to a float, so ``12`` and ``12.0`` fingerprint the same; ``int``
takes integers only; ``Literal`` takes its choices), ``min_X <= max_X`` for every pair, then the
transform is built once with warnings as errors. Params that are not JSON data (``RepeatPart``'s
``part_transform``, a callable) are not spec params at all.
"""

from __future__ import annotations

import difflib
import inspect
import math
import typing
import warnings
from collections.abc import Mapping, Sequence
from functools import cache
from types import NoneType, UnionType
from typing import Any, Literal

from augledger.errors import ParamError
from augledger.ops.audio.allowlist import COMPOSITIONS, NAMESPACE, canonical_op_name
from augledger.ops.audio.library import audiomentations
from augledger.ops.base import resolve_each
from augledger.spec import OpSpec, format_location

__all__ = ["param_rules", "resolve_ops", "resolve_targets", "targets_schema"]

_SKIPPED = ("self", "p", "transforms")


@cache
def param_rules(bare: str) -> dict[str, tuple[Any, tuple[Any, ...]]]:
    """``{param: (default, accepted)}`` of a leaf op, from its signature; ``accepted`` holds ``float``,
    ``int``, ``bool``, ``None`` and the choices of a ``Literal``. Params without a JSON form are left out."""
    cls = getattr(audiomentations(), bare)
    hints = typing.get_type_hints(cls.__init__)
    rules: dict[str, tuple[Any, tuple[Any, ...]]] = {}
    for name, param in inspect.signature(cls).parameters.items():
        if name in _SKIPPED or param.kind is not param.POSITIONAL_OR_KEYWORD:
            continue
        accepted = _accepted(hints.get(name, type(param.default)))
        if accepted is None:
            continue
        if param.default is None:
            accepted = (*accepted, None)
        rules[name] = (param.default, accepted)
    return rules


def _accepted(hint: Any) -> tuple[Any, ...] | None:
    if hint in (float, int, bool, str):
        return (hint,)
    if hint is NoneType:
        return (None,)
    origin = typing.get_origin(hint)
    if origin is Literal:
        return ("choice", *typing.get_args(hint))
    if origin in (typing.Union, UnionType):
        parts = [_accepted(a) for a in typing.get_args(hint)]
        if any(p is None for p in parts):
            return None
        return tuple(x for p in parts for x in p or ())
    return None


def _check_value(bare: str, name: str, value: Any, accepted: tuple[Any, ...], location: str) -> Any:
    if value is None and None in accepted:
        return None
    if "choice" in accepted:
        choices = accepted[accepted.index("choice") + 1:]
        if value in choices and isinstance(value, str):
            return value
        raise ParamError(f"{bare}.{name} must be one of {', '.join(repr(c) for c in choices)}; got {value!r}", location=location)
    if isinstance(value, bool):
        if bool in accepted:
            return value
    elif isinstance(value, int) and int in accepted:
        return value
    elif isinstance(value, (int, float)) and float in accepted:
        if math.isfinite(value):
            return float(value)
        raise ParamError(f"{bare}.{name} must be a finite number; got {value!r}", location=location)
    elif isinstance(value, str) and str in accepted:
        return value
    names = {float: "a number", int: "an integer", bool: "true or false", str: "a string", None: "null"}
    want = " or ".join(names[a] for a in accepted if a in names)
    raise ParamError(f"{bare}.{name} must be {want}; got {value!r} ({type(value).__name__}); "
                     'write the value itself, e.g. 6 not "6", 1 not true', location=location)


def _unknown(bare: str, field: str, known: Sequence[str], location: str) -> ParamError:
    if field == "p":
        hint = "the probability is set beside 'op', not under params: {op: " + bare + ", p: 0.5}"
    else:
        close = difflib.get_close_matches(field, list(known), n=1)
        hint = f"did you mean {close[0]!r}?" if close else f"accepted params: {', '.join(sorted(known)) or '(none)'}"
    return ParamError(f"unknown param for {bare}; {hint}", location=f"{location}.params.{field}")


def _resolve_leaf(am: Any, bare: str, op: OpSpec, location: str) -> dict[str, Any]:
    rules = param_rules(bare)
    params: dict[str, Any] = {}
    for field, value in op.params.items():
        if field not in rules:
            raise _unknown(bare, field, list(rules), location)
        params[field] = _check_value(bare, field, value, rules[field][1], f"{location}.params.{field}")
    resolved = {k: params.get(k, default) for k, (default, _) in rules.items()}
    for name, low in resolved.items():
        high = resolved.get("max_" + name.removeprefix("min_")) if name.startswith("min_") else None
        if isinstance(low, (int, float)) and isinstance(high, (int, float)) and low > high:
            raise ParamError(f"{name} ({low!r}) is above max_{name[4:]} ({high!r}); a range needs min <= max",
                             location=f"{location}.params.{name}")
    p = op.p if op.p is not None else float(inspect.signature(getattr(am, bare)).parameters["p"].default)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a spec says exactly what it means: a notice about its params is an error
        try:
            getattr(am, bare)(p=p, **resolved)
        except Exception as exc:  # audiomentations raises ValueError, TypeError, AssertionError or warns
            detail = str(exc) or type(exc).__name__
            raise ParamError(f"{bare} rejected its params: {detail}", location=f"{location}.params") from None
    return {"op": f"{NAMESPACE}.{bare}", "p": float(p), "params": resolved}


def _resolve_composition(am: Any, bare: str, op: OpSpec, loc: tuple[int | str, ...]) -> dict[str, Any]:
    location = format_location(loc)
    if not op.ops:
        raise ParamError(f"{bare} needs a non-empty list of child ops under 'ops'", location=f"{location}.ops")
    allowed = COMPOSITIONS[bare]
    for field in op.params:
        if field not in allowed:
            raise _unknown(bare, field, allowed, location)
    children = [_resolve_op(am, child, (*loc, "ops", i)) for i, child in enumerate(op.ops)]
    params = dict(op.params)
    where = f"{location}.params"
    if bare == "Compose":
        shuffle = params.setdefault("shuffle", False)
        if not isinstance(shuffle, bool):
            raise ParamError(f"shuffle must be true or false; got {shuffle!r}", location=f"{where}.shuffle")
    elif bare == "OneOf":
        weights = params.setdefault("weights", None)
        if weights is not None:
            if (not isinstance(weights, list) or len(weights) != len(children) or not all(
                    isinstance(w, (int, float)) and not isinstance(w, bool) and math.isfinite(w) and w >= 0 for w in weights)
                    or not sum(weights) > 0):
                raise ParamError(f"weights must be null or {len(children)} non-negative numbers (one per child op) "
                                 f"with a positive sum; got {weights!r}", location=f"{where}.weights")
            params["weights"] = [float(w) for w in weights]
    else:  # SomeOf
        params["num_transforms"] = _num_transforms(params.get("num_transforms"), len(children), f"{where}.num_transforms")
    p = op.p if op.p is not None else 1.0
    return {"op": f"{NAMESPACE}.{bare}", "p": float(p), "params": params, "ops": children}


def _num_transforms(value: Any, count: int, location: str) -> Any:
    """``n`` (exactly n children) or ``[low, high]`` (``high`` may be null: up to all children)."""
    def is_count(v: Any) -> bool:
        return isinstance(v, int) and not isinstance(v, bool) and 0 <= v <= count
    if is_count(value):
        return value
    if isinstance(value, list) and len(value) == 2 and is_count(value[0]) and (value[1] is None or is_count(value[1])):
        if value[1] is not None and value[0] > value[1]:
            raise ParamError(f"a range must be [low, high] with low <= high; got {value!r}", location=location)
        return value
    raise ParamError(f"num_transforms must be an int in [0, {count}] or [low, high] (high may be null: all "
                     f"{count} child ops); got {value!r}", location=location)


def _resolve_op(am: Any, op: OpSpec, loc: tuple[int | str, ...]) -> dict[str, Any]:
    location = format_location(loc)
    bare = canonical_op_name(op.op, location=f"{location}.op").removeprefix(f"{NAMESPACE}.")
    if bare in COMPOSITIONS:
        return _resolve_composition(am, bare, op, loc)
    if op.ops is not None:
        raise ParamError(f"{bare} is a transform, not a composition; remove 'ops'", location=f"{location}.ops")
    return _resolve_leaf(am, bare, op, location)


def resolve_ops(ops: Sequence[OpSpec]) -> list[dict[str, Any]]:
    """Resolve spec ops to JSON nodes with canonical names, explicit ``p`` and every default filled in.

    Raises:
        UnknownOpError, ParamError: naming the location, e.g. ``ops[1].params.min_gain_db``;
            every bad top-level op at once.
    """
    am = audiomentations()
    return resolve_each(ops, lambda op, i: _resolve_op(am, op, ("ops", i)))


def resolve_targets(targets: Mapping[str, Any]) -> dict[str, Any]:
    """Audio samples carry no targets: the section must be empty (labels travel beside the sample)."""
    for name in targets:
        raise ParamError("audio samples carry no targets; keep labels beside the sample (the ledger's targets "
                         "column holds annotation columns as they are)", location=f"targets.{name}")
    return {}


def targets_schema() -> dict[str, Any]:
    """JSON Schema of the (empty) ``targets`` section."""
    return {"title": "AudioTargets", "type": "object", "properties": {}, "additionalProperties": False}
