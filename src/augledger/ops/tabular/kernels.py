"""The per-row tabular ops: each one draws its params from the sample's generator, then applies them.

Every op is two plain functions: ``draw(row, stats, columns, params, rng) -> applied params`` (the
only place randomness enters) and ``apply(row, applied) -> new row`` (pure: the applied params
alone say what changes, so a record replays without the generator, the statistics or the spec).
Applied params are small JSON: ``{"deltas": {"age": 0.31}}``, ``{"masked": ["city"], "fill": null}``,
``{"swaps": {"city": "nice"}}``.

Each op draws the same number of values whatever the row holds (one per candidate column), so a
column's draw never depends on another column being missing.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from augledger.errors import SampleError

__all__ = ["OPS", "OpDef", "apply_params", "candidate_columns"]

Row = dict[str, Any]


@dataclass(frozen=True)
class OpDef:
    """One op: its params (name -> default), the columns it works on, an example, and its two functions."""

    name: str
    doc: str
    params: dict[str, Any]
    kinds: tuple[str, ...]  # which columns of the statistics it may touch: "numeric", "categorical"
    example: dict[str, Any]
    draw: Callable[[Mapping[str, Any], Mapping[str, Any], Sequence[str], Mapping[str, Any], np.random.Generator], dict[str, Any]]
    apply: Callable[[Mapping[str, Any], Mapping[str, Any]], Row]
    checks: dict[str, Callable[[Any], str | None]] = field(default_factory=dict)


def candidate_columns(stats: Mapping[str, Any], kinds: Sequence[str], columns: Sequence[str] | None, *, op: str, key: str) -> list[str]:
    """The columns an op works on: all columns of its kinds in the statistics (sorted), or those listed."""
    known = sorted(name for kind in kinds for name in stats.get(kind, {}))
    if columns is None:
        return known
    unknown = [c for c in columns if c not in known]
    if unknown:
        raise SampleError(f"sample {key!r}: {op} names column(s) {unknown} that are not {' or '.join(kinds)} columns "
                          f"of the table (those are: {', '.join(known) or 'none'})")
    return list(columns)


# -- GaussianJitter ------------------------------------------------------------------------------
def _jitter_draw(row: Mapping[str, Any], stats: Mapping[str, Any], cols: Sequence[str], params: Mapping[str, Any],
                 rng: np.random.Generator) -> dict[str, Any]:
    z = rng.standard_normal(len(cols))
    deltas: dict[str, float] = {}
    for name, zi in zip(cols, z.tolist(), strict=True):
        std = stats["numeric"][name]["std"] or 0.0
        if row.get(name) is not None:
            deltas[name] = zi * params["scale"] * std
    return {"deltas": deltas}


def _jitter_apply(row: Mapping[str, Any], applied: Mapping[str, Any]) -> Row:
    out = dict(row)
    for name, delta in applied["deltas"].items():
        out[name] = float(out[name]) + float(delta)
    return out


# -- FeatureMask ---------------------------------------------------------------------------------
def _mask_draw(row: Mapping[str, Any], stats: Mapping[str, Any], cols: Sequence[str], params: Mapping[str, Any],
               rng: np.random.Generator) -> dict[str, Any]:
    u = rng.random(len(cols))
    fill = params["fill"]
    masked = [name for name, ui in zip(cols, u.tolist(), strict=True) if ui < params["rate"]]
    for name in masked:
        numeric = name in stats.get("numeric", {})
        if fill is not None and numeric != (isinstance(fill, (int, float)) and not isinstance(fill, bool)):
            kind = "numeric" if numeric else "categorical"
            raise SampleError(f"FeatureMask fill {fill!r} does not fit {kind} column {name!r}; use null (missing), "
                              "or restrict columns to one kind")
    return {"masked": masked, "fill": fill}


def _mask_apply(row: Mapping[str, Any], applied: Mapping[str, Any]) -> Row:
    out = dict(row)
    fill = applied["fill"]
    for name in applied["masked"]:
        out[name] = float(fill) if isinstance(fill, (int, float)) and not isinstance(fill, bool) else fill
    return out


# -- CategoricalSwap -----------------------------------------------------------------------------
def _swap_draw(row: Mapping[str, Any], stats: Mapping[str, Any], cols: Sequence[str], params: Mapping[str, Any],
               rng: np.random.Generator) -> dict[str, Any]:
    u, pick = rng.random(len(cols)).tolist(), rng.random(len(cols)).tolist()
    swaps: dict[str, str] = {}
    for name, ui, ri in zip(cols, u, pick, strict=True):
        current = row.get(name)
        others = [v for v in stats["categorical"][name] if v != (None if current is None else str(current))]
        if ui < params["rate"] and others:
            swaps[name] = others[min(int(ri * len(others)), len(others) - 1)]
    return {"swaps": swaps}


def _swap_apply(row: Mapping[str, Any], applied: Mapping[str, Any]) -> Row:
    return {**row, **applied["swaps"]}


# -- param checks --------------------------------------------------------------------------------
def _number(low: float, high: float | None = None) -> Callable[[Any], str | None]:
    def check(value: Any) -> str | None:
        ok = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
        if ok and value >= low and (high is None or value <= high):
            return None
        return f"must be a number in [{low}, {high}]" if high is not None else f"must be a number >= {low}"
    return check


def _columns(value: Any) -> str | None:
    if value is None:
        return None
    if isinstance(value, list) and value and all(isinstance(v, str) and v for v in value) and len(set(value)) == len(value):
        return None
    return "must be null (every column of the op's kind) or a non-empty list of distinct column names"


def _fill(value: Any) -> str | None:
    if value is None or isinstance(value, str) or (isinstance(value, (int, float)) and not isinstance(value, bool)
                                                  and math.isfinite(value)):
        return None
    return "must be null (a missing value), a finite number (numeric columns) or a string (categorical columns)"


OPS: dict[str, OpDef] = {
    op.name: op for op in (
        OpDef("GaussianJitter", "Add Gaussian noise to numeric columns: sigma = scale x the column's std.",
              {"scale": 0.05, "columns": None}, ("numeric",), {"scale": 0.1},
              _jitter_draw, _jitter_apply, {"scale": _number(0.0), "columns": _columns}),
        OpDef("FeatureMask", "Set each column to fill (default: missing) with probability rate.",
              {"rate": 0.1, "columns": None, "fill": None}, ("numeric", "categorical"), {"rate": 0.5},
              _mask_draw, _mask_apply, {"rate": _number(0.0, 1.0), "columns": _columns, "fill": _fill}),
        OpDef("CategoricalSwap", "Replace each categorical value, with probability rate, by another observed value.",
              {"rate": 0.1, "columns": None}, ("categorical",), {"rate": 0.8},
              _swap_draw, _swap_apply, {"rate": _number(0.0, 1.0), "columns": _columns}),
    )
}


def apply_params(op: str, row: Mapping[str, Any], applied: Mapping[str, Any]) -> Row:
    """Replay one applied op on ``row`` from its recorded params alone (bare or namespaced name)."""
    return OPS[op.rpartition(".")[2]].apply(row, applied)
