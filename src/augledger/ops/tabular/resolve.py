"""Resolving a tabular spec: per-row ops (``ops``) and the table section (``targets``), strictly.

Per-row ops go under ``ops`` like every modality's; they are checked here against :data:`~augledger.ops.tabular.kernels.OPS`
with errors that name the location (``ops[1].params.rat: unknown param for FeatureMask; did you mean 'rate'?``).

Dataset-level ops (SMOTE-style oversampling, row mixup) are not per-sample: an op in ``ops`` must
augment one sample given its seed, and the contract suite runs every op that way. They are
declared in the backend-owned ``targets`` section, beside the column roles, so they are still
validated strictly and covered by the fingerprint::

    targets:
      numeric: [age, income]          # optional; default: every numeric source column but key and label
      categorical: [city]             # optional; default: every other source column but key and label
      smote: {k_neighbors: 5, sampling_strategy: auto}   # or {sampling_strategy: {"1": 120}}
      mixup: {fraction: 0.1, alpha: 0.4}                 # same-class pairs, Beta(alpha, alpha) weights
"""

from __future__ import annotations

import difflib
from collections.abc import Mapping, Sequence
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from augledger.errors import ParamError, SpecError, UnknownOpError
from augledger.ops.base import resolve_each
from augledger.ops.tabular.kernels import OPS
from augledger.spec import OpSpec, format_location, validate_model

__all__ = ["NAMESPACE", "MixupTargets", "SmoteTargets", "TabularTargets", "canonical_op_name", "resolve_ops",
           "resolve_targets", "targets_schema"]

NAMESPACE = "augledger.tabular"


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class SmoteTargets(_Strict):
    """SMOTE-style oversampling of the classes below their target count (original rows only)."""

    k_neighbors: int = Field(default=5, ge=1, le=1000, strict=True)
    #: ``auto``: every class up to the majority class's count; or class (as a string) -> target count.
    sampling_strategy: Literal["auto"] | dict[str, int] = "auto"


class MixupTargets(_Strict):
    """Row mixup within each class: ``round(fraction x class count)`` new rows per class."""

    fraction: float = Field(default=0.1, gt=0.0, le=10.0)
    alpha: float = Field(default=0.4, gt=0.0, le=100.0)


class TabularTargets(_Strict):
    """The table section of a tabular spec: column roles and dataset-level ops."""

    numeric: tuple[str, ...] | None = None
    categorical: tuple[str, ...] | None = None
    smote: SmoteTargets | None = None
    mixup: MixupTargets | None = None


def resolve_targets(targets: Mapping[str, Any]) -> dict[str, Any]:
    """The ``targets`` section validated strictly, with every default filled in.

    Raises:
        SpecError: naming the location, e.g. ``targets.smote.k_neighbours``.
    """
    model = validate_model(TabularTargets, dict(targets), location=("targets",))
    for field in ("numeric", "categorical"):
        names = getattr(model, field)
        if names is not None and len(set(names)) != len(names):
            raise SpecError(f"lists a column twice: {list(names)}", location=f"targets.{field}")
    both = set(model.numeric or ()) & set(model.categorical or ())
    if both:
        raise SpecError(f"column(s) {sorted(both)} are listed as both numeric and categorical", location="targets")
    if model.smote is not None and isinstance(model.smote.sampling_strategy, dict):
        for cls, count in model.smote.sampling_strategy.items():
            if count < 1:
                raise SpecError(f"a target count must be >= 1; got {count}", location=f"targets.smote.sampling_strategy.{cls}")
    resolved = model.model_dump(mode="json")
    if model.smote is not None and isinstance(model.smote.sampling_strategy, dict):
        resolved["smote"]["sampling_strategy"] = dict(sorted(model.smote.sampling_strategy.items()))
    return resolved


def targets_schema() -> dict[str, Any]:
    """JSON Schema of the ``targets`` section."""
    return TabularTargets.model_json_schema()


def canonical_op_name(name: str, *, location: str) -> str:
    """``augledger.tabular.<Op>`` for a bare or namespaced op name.

    Raises:
        UnknownOpError: not a tabular op (with the closest name).
    """
    bare = name.removeprefix(f"{NAMESPACE}.")
    if bare in OPS:
        return f"{NAMESPACE}.{bare}"
    close = difflib.get_close_matches(bare, list(OPS), n=1)
    hint = f"did you mean {close[0]!r}?" if close else f"tabular ops: {', '.join(sorted(OPS))}"
    if bare.lower() in ("smote", "mixup", "rowmixup"):
        hint = "dataset-level ops go in the spec's targets section (targets: {smote: {...}} or {mixup: {...}})"
    raise UnknownOpError(f"unknown tabular op {name!r}; {hint}", location=location)


def _resolve_op(op: OpSpec, index: int) -> dict[str, Any]:
    location = format_location(("ops", index))
    name = canonical_op_name(op.op, location=f"{location}.op")
    definition = OPS[name.rpartition(".")[2]]
    if op.ops:
        raise ParamError(f"{definition.name} takes no child ops", location=f"{location}.ops")
    params = dict(definition.params)
    for field, value in op.params.items():
        if field not in definition.params:
            close = difflib.get_close_matches(field, list(definition.params), n=1)
            if field == "p":
                hint = "the probability is set beside 'op', not under params: {op: " + definition.name + ", p: 0.5}"
            else:
                hint = f"did you mean {close[0]!r}?" if close else f"accepted params: {', '.join(definition.params)}"
            raise ParamError(f"unknown param for {definition.name}; {hint}", location=f"{location}.params.{field}")
        problem = definition.checks[field](value)
        if problem is not None:
            raise ParamError(f"{problem}; got {value!r}", location=f"{location}.params.{field}")
        params[field] = float(value) if isinstance(value, int) and field in ("scale", "rate") else value
    return {"op": name, "p": 1.0 if op.p is None else float(op.p), "params": params}


def resolve_ops(ops: Sequence[OpSpec]) -> list[dict[str, Any]]:
    """Resolve spec ops to ``{"op": "augledger.tabular.X", "p": float, "params": {...}}`` with every default.

    Raises:
        UnknownOpError, ParamError: naming the location; every bad op is reported at once.
    """
    return resolve_each(ops, _resolve_op)
