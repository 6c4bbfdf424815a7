"""Dataset-level tabular ops: SMOTE-style oversampling and same-class row mixup, with provenance.

Both make *synthetic* rows from two original rows of one class and a weight ``w``::

    numeric column:      parent + w * (other - parent)        (the nearer parent's value if either is missing)
    categorical column:  the nearer parent's value             (parent if w <= 0.5, else other)
    any other column:    the parent's (the label is the class)

:func:`interpolate` is that formula, in Python floats, and nothing else: ``verify`` recomputes every
synthetic row with it from the recorded parents' keys and weight.

Every synthetic row has a stable key, ``smote/<class>/<n>`` or ``mixup/<class>/<n>``, and its draws
come from generators seeded by ``derive(key)`` (the run passes the sample seed of (fingerprint,
seed, epoch 0, key)), so a row never depends on the order or number of the others.

* **SMOTE**: classes below their target count get ``target - count`` rows. Row ``n`` draws a parent
  uniformly among the class's rows, then one of its ``k`` nearest neighbours within the class
  (Euclidean distance on numeric columns standardised by the table statistics, missing values at
  the mean; ties broken by key), then ``w ~ U[0, 1)``. Distances are summed feature by feature
  with elementwise NumPy (no BLAS), so they are the same bytes on every machine and thread count.
* **Mixup**: ``round(fraction x count)`` rows per class with at least two rows; two distinct rows
  of the class drawn uniformly, ``w ~ Beta(alpha, alpha)``. Pairs stay within a class, so the label
  is a hard label and needs no soft-label column.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from augledger.seeding import generators_for

__all__ = ["Synthetic", "interpolate", "nearest_neighbours", "plan_mixup", "plan_smote", "smote_targets", "standardise"]


@dataclass(frozen=True)
class Synthetic:
    """One synthetic row's recipe: its key, class, method, parents' keys, weight and the op record."""

    key: str
    label: str
    method: str  # "SMOTE" or "RowMixup"
    parents: tuple[str, str]
    weight: float
    seed: int
    record: dict[str, Any]


def interpolate(parent: Mapping[str, Any], other: Mapping[str, Any], weight: float,
                numeric: Sequence[str], categorical: Sequence[str]) -> dict[str, Any]:
    """The synthetic row of ``parent``, ``other`` and ``weight`` (see the module docstring)."""
    out = dict(parent)
    nearer = parent if weight <= 0.5 else other
    for name in numeric:
        a, b = parent.get(name), other.get(name)
        out[name] = nearer.get(name) if a is None or b is None else float(a) + weight * (float(b) - float(a))
    for name in categorical:
        out[name] = nearer.get(name)
    return out


def standardise(values: np.ndarray[Any, Any], means: Sequence[float | None], stds: Sequence[float | None]) -> np.ndarray[Any, Any]:
    """``(x - mean) / std`` per column (0 where the std is 0 or unknown, and where a value is missing)."""
    z = np.zeros_like(values)
    for j in range(values.shape[1]):
        mean, std = means[j], stds[j]
        if mean is not None and std:
            z[:, j] = (values[:, j] - mean) / std
    z[np.isnan(z)] = 0.0
    return z


def nearest_neighbours(z: np.ndarray[Any, Any], rows: Sequence[int], k: int) -> dict[int, list[int]]:
    """For each index in ``rows``, its ``k`` nearest other rows of ``z`` (indices, nearest first; ties by index)."""
    m = z.shape[0]
    found: dict[int, list[int]] = {}
    wanted = sorted(set(rows))
    step = max(1, (1 << 22) // max(m, 1))
    for start in range(0, len(wanted), step):
        chunk = np.asarray(wanted[start:start + step], dtype=np.intp)
        d = np.zeros((len(chunk), m), dtype=np.float64)
        for f in range(z.shape[1]):
            d += (z[chunk, f][:, None] - z[None, :, f]) ** 2
        d[np.arange(len(chunk)), chunk] = np.inf
        kth = np.partition(d, k - 1, axis=1)[:, k - 1]
        for r, i in enumerate(chunk.tolist()):
            cand = np.flatnonzero(d[r] <= kth[r])
            order = cand[np.lexsort((cand, d[r, cand]))][:k]
            found[i] = order.tolist()
    return found


def smote_targets(counts: Mapping[str, int], strategy: str | Mapping[str, int]) -> dict[str, int]:
    """Target count per class: ``auto`` raises every class to the majority count; a dict names them.

    Raises:
        ValueError: a class the table does not have, or a target below the class's count.
    """
    if strategy == "auto":
        top = max(counts.values(), default=0)
        return {c: top for c in sorted(counts)}
    if not isinstance(strategy, Mapping):
        raise ValueError(f"targets.smote.sampling_strategy must be 'auto' or class -> count; got {strategy!r}")
    unknown = sorted(set(strategy) - set(counts))
    if unknown:
        raise ValueError(f"targets.smote.sampling_strategy names class(es) {unknown} that the label column does not "
                         f"have (classes: {', '.join(sorted(counts))})")
    low = {c: (n, counts[c]) for c, n in strategy.items() if n < counts[c]}
    if low:
        raise ValueError(f"targets.smote.sampling_strategy asks fewer rows than a class has ({low}: target, rows); "
                         "SMOTE only adds rows")
    return {c: int(strategy.get(c, counts[c])) for c in sorted(counts)}


def plan_smote(keys: Sequence[str], labels: Sequence[str], z: np.ndarray[Any, Any], *, targets: Mapping[str, int], k: int,
               derive: Callable[[str], int]) -> list[Synthetic]:
    """The SMOTE rows that bring each class to its target; ``keys`` sorted, ``labels`` and ``z`` aligned with them.

    Raises:
        ValueError: a class that needs rows has fewer than two.
    """
    members: dict[str, list[int]] = {}
    for i, label in enumerate(labels):
        members.setdefault(label, []).append(i)
    out: list[Synthetic] = []
    for cls in sorted(targets):
        rows = members.get(cls, [])
        need = targets[cls] - len(rows)
        if need <= 0:
            continue
        if len(rows) < 2:
            raise ValueError(f"class {cls!r} has {len(rows)} row(s); SMOTE needs at least 2 to interpolate between")
        k_eff = min(k, len(rows) - 1)
        draws = []
        for n in range(need):
            key = f"smote/{cls}/{n}"
            seed = derive(key)
            rng, _ = generators_for(seed)
            draws.append((key, seed, int(rng.integers(len(rows))), int(rng.integers(k_eff)), float(rng.random())))
        neighbours = nearest_neighbours(z[rows], [d[2] for d in draws], k_eff)
        for key, seed, parent, rank, weight in draws:
            a, b = keys[rows[parent]], keys[rows[neighbours[parent][rank]]]
            record = {"op": "augledger.tabular.SMOTE", "path": "targets.smote",
                      "params": {"parents": [a, b], "neighbour_rank": rank, "weight": weight}}
            out.append(Synthetic(key, cls, "SMOTE", (a, b), weight, seed, record))
    return out


def plan_mixup(keys: Sequence[str], labels: Sequence[str], *, fraction: float, alpha: float,
               derive: Callable[[str], int]) -> list[Synthetic]:
    """The mixup rows of every class with at least two rows; ``keys`` sorted, ``labels`` aligned."""
    members: dict[str, list[int]] = {}
    for i, label in enumerate(labels):
        members.setdefault(label, []).append(i)
    out: list[Synthetic] = []
    for cls in sorted(members):
        rows = members[cls]
        if len(rows) < 2:
            continue
        for n in range(math.floor(fraction * len(rows) + 0.5)):
            key = f"mixup/{cls}/{n}"
            seed = derive(key)
            rng, _ = generators_for(seed)
            first = int(rng.integers(len(rows)))
            second = int(rng.integers(len(rows) - 1))
            second += second >= first
            weight = float(rng.beta(alpha, alpha))
            a, b = keys[rows[first]], keys[rows[second]]
            record = {"op": "augledger.tabular.RowMixup", "path": "targets.mixup", "params": {"parents": [a, b], "weight": weight}}
            out.append(Synthetic(key, cls, "RowMixup", (a, b), weight, seed, record))
    return out
