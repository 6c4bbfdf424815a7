"""Resolving text ops: strict validation naming each location, and every default filled in.

The resolved form is what the fingerprint hashes. ``SynonymReplacement``'s table is data in the
spec (``synonyms: {word: [alternatives]}``), never a path: it is resolved (keys lower-cased,
sorted; alternatives de-duplicated in order) into the resolved spec, so the fingerprint covers the
table's content.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Mapping, Sequence
from typing import Any

from augledger.errors import ParamError, SpecError, UnknownOpError
from augledger.ops.base import resolve_each
from augledger.ops.text.ops import CASE_MODES, TEXT_OPS
from augledger.spec import OpSpec, format_location

__all__ = ["COMPOSITIONS", "NAMESPACE", "canonical_op_name", "resolve_ops", "resolve_targets"]

NAMESPACE = "augledger.text"
#: Composition -> (default p, {param: default}); the semantics of Albumentations' namesakes.
COMPOSITIONS: dict[str, tuple[float, dict[str, Any]]] = {
    "OneOf": (0.5, {}),
    "SomeOf": (1.0, {"n": 1, "replace": False}),
    "Sequential": (0.5, {}),
}
#: The default probability of a leaf op.
DEFAULT_P = 0.5
_MAX_CHANGES = 10_000
_MAX_N = 100
_WORD = re.compile(r"\w+")


def canonical_op_name(name: str, *, location: str) -> str:
    """``WordSwap`` or ``augledger.text.WordSwap`` -> ``augledger.text.WordSwap``; else UnknownOpError."""
    bare = name.removeprefix(f"{NAMESPACE}.")
    if bare in TEXT_OPS or bare in COMPOSITIONS:
        return f"{NAMESPACE}.{bare}"
    close = difflib.get_close_matches(bare, [*TEXT_OPS, *COMPOSITIONS], n=1)
    hint = f"did you mean {close[0]!r}?" if close else f"text ops: {', '.join([*TEXT_OPS, *COMPOSITIONS])}"
    raise UnknownOpError(f"unknown text op {name!r}; {hint}", location=location)


def resolve_targets(targets: Mapping[str, Any]) -> dict[str, Any]:
    """Text samples carry no targets (labels of JSON Lines/CSV rows travel in the ledger untouched)."""
    if targets:
        raise SpecError(f"text specs take no targets; remove {', '.join(sorted(targets))}", location="targets")
    return {}


def _number(value: Any, where: str, *, integer: bool, low: float, high: float) -> Any:
    kind = "an integer" if integer else "a number"
    if isinstance(value, bool) or not isinstance(value, int if integer else (int, float)):
        raise ParamError(f"must be {kind} in [{low}, {high}]; got {value!r} ({type(value).__name__})", location=where)
    if not low <= value <= high:
        raise ParamError(f"must be {kind} in [{low}, {high}]; got {value!r}", location=where)
    return value if integer else float(value)


def _strings(value: Any, where: str, *, allowed: Sequence[str] | None = None) -> list[str]:
    if not isinstance(value, list) or not value:
        raise ParamError(f"must be a non-empty list of strings; got {value!r}", location=where)
    for i, item in enumerate(value):
        if not isinstance(item, str) or not item or "\n" in item or "\r" in item:
            raise ParamError(f"must be a non-empty string without line breaks; got {item!r}", location=f"{where}[{i}]")
        if allowed is not None and item not in allowed:
            close = difflib.get_close_matches(item, allowed, n=1)
            hint = f"did you mean {close[0]!r}?" if close else f"choose from {', '.join(allowed)}"
            raise ParamError(f"unknown value {item!r}; {hint}", location=f"{where}[{i}]")
    return list(dict.fromkeys(value))


def _synonyms(value: Any, where: str) -> dict[str, list[str]]:
    if not isinstance(value, Mapping) or not value:
        raise ParamError("must be a non-empty mapping {word: [alternatives]} given in the spec itself "
                         f"(a table is data, never a file path); got {value!r}", location=where)
    table: dict[str, list[str]] = {}
    for word, alternatives in value.items():
        if not isinstance(word, str) or not _WORD.fullmatch(word):
            raise ParamError(f"keys must be single words (\\w+); got {word!r}", location=f"{where}.{word}")
        key = word.lower()
        if key in table:
            raise ParamError(f"{word!r} repeats another key ignoring case; merge their alternatives",
                             location=f"{where}.{word}")
        alternatives = [a for a in _strings(alternatives, f"{where}.{word}") if a.lower() != key]
        if not alternatives:
            raise ParamError("needs an alternative other than the word itself", location=f"{where}.{word}")
        table[key] = alternatives
    return dict(sorted(table.items()))


def _check_param(name: str, value: Any, where: str) -> Any:
    if name == "aug_p":
        return _number(value, where, integer=False, low=0.0, high=1.0)
    if name in ("min_changes", "max_changes"):
        return _number(value, where, integer=True, low=0 if name == "min_changes" else 1, high=_MAX_CHANGES)
    if name in ("chars_per_word", "min_word_length"):
        return _number(value, where, integer=True, low=1, high=100)
    if name == "modes":
        return _strings(value, where, allowed=list(CASE_MODES))
    if name == "marks":
        marks = _strings(value, where)
        for i, mark in enumerate(marks):
            if any(c.isspace() or c.isalnum() or c == "_" for c in mark):
                raise ParamError(f"a mark is punctuation only; got {mark!r}", location=f"{where}[{i}]")
        return marks
    if name == "synonyms":
        return _synonyms(value, where)
    raise AssertionError(name)  # pragma: no cover - every default has a checker (tested)


def _resolve_leaf(bare: str, op: OpSpec, location: str) -> dict[str, Any]:
    spec = TEXT_OPS[bare]
    known = [*spec.defaults, *spec.required]
    for name in op.params:
        if name not in known:
            close = difflib.get_close_matches(name, known, n=1)
            if name == "p":
                hint = "the probability is set beside 'op', not under params: {op: " + bare + ", p: 0.5}"
            else:
                hint = f"did you mean {close[0]!r}?" if close else f"accepted params: {', '.join(sorted(known))}"
            raise ParamError(f"unknown param for {bare}; {hint}", location=f"{location}.params.{name}")
    missing = [name for name in spec.required if name not in op.params]
    if missing:
        raise ParamError(f"{bare} requires param(s) {', '.join(missing)}; add them under params, e.g. "
                         f"synonyms: {{quick: [fast, swift]}}", location=f"{location}.params")
    params = {**spec.defaults, **op.params}
    resolved = {name: _check_param(name, params[name], f"{location}.params.{name}") for name in sorted(params)}
    if resolved["min_changes"] > resolved["max_changes"]:
        raise ParamError(f"min_changes ({resolved['min_changes']}) is above max_changes ({resolved['max_changes']})",
                         location=f"{location}.params.min_changes")
    p = DEFAULT_P if op.p is None else float(op.p)
    return {"op": f"{NAMESPACE}.{bare}", "p": p, "params": resolved}


def _resolve_op(op: OpSpec, loc: tuple[int | str, ...]) -> dict[str, Any]:
    location = format_location(loc)
    name = canonical_op_name(op.op, location=f"{location}.op")
    bare = name.removeprefix(f"{NAMESPACE}.")
    if bare not in COMPOSITIONS:
        if op.ops is not None:
            raise ParamError(f"{bare} is an op, not a composition; remove 'ops'", location=f"{location}.ops")
        return _resolve_leaf(bare, op, location)
    default_p, allowed = COMPOSITIONS[bare]
    if not op.ops:
        raise ParamError(f"{bare} needs a non-empty list of child ops under 'ops'", location=f"{location}.ops")
    for field in op.params:
        if field not in allowed:
            raise ParamError(f"unknown param for {bare}; accepted: {', '.join(allowed) or 'none'}",
                             location=f"{location}.params.{field}")
    children = [_resolve_op(child, (*loc, "ops", i)) for i, child in enumerate(op.ops)]
    params = {**allowed, **op.params}
    if "n" in params:
        n = _number(params["n"], f"{location}.params.n", integer=True, low=1, high=_MAX_N)
        if not isinstance(params["replace"], bool):
            raise ParamError(f"must be true or false; got {params['replace']!r}", location=f"{location}.params.replace")
        if n > len(children) and not params["replace"]:
            raise ParamError(f"n={n} but {bare} has {len(children)} child op(s); lower n, add ops, or set replace: true",
                             location=f"{location}.params.n")
    if bare == "OneOf" and not any(child["p"] > 0 for child in children):
        raise ParamError("OneOf picks a child by the children's p; at least one must be above 0", location=f"{location}.ops")
    p = default_p if op.p is None else float(op.p)
    return {"op": name, "p": p, "params": params, "ops": children}


def resolve_ops(ops: Sequence[OpSpec]) -> list[dict[str, Any]]:
    """Resolve spec ops to JSON nodes with canonical names, explicit ``p`` and every default filled in.

    Raises:
        UnknownOpError, ParamError: naming the location, e.g. ``ops[1].params.aug_p``; every bad op at once.
    """
    return resolve_each(ops, lambda op, i: _resolve_op(op, ("ops", i)))
