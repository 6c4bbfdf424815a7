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
from hashlib import blake2b as _blake2b
from typing import Any

import numpy as np

from augledger.seeding import PCG_PERSON, generators_for

__all__ = ["Synthetic", "interpolate", "interpolate_many", "nearest_neighbours", "plan_mixup", "plan_smote", "smote_draws", "smote_targets", "standardise"]


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


def interpolate_many(rows: Sequence[Mapping[str, Any]], values: np.ndarray[Any, Any], first: Sequence[int],
                     second: Sequence[int], weights: Sequence[float], numeric: Sequence[str],
                     categorical: Sequence[str]) -> list[dict[str, Any]]:
    """:func:`interpolate` of ``rows[first[i]]``, ``rows[second[i]]`` and ``weights[i]`` for every ``i``, the same values.

    ``values`` is :func:`~augledger.ops.tabular.stats.numeric_matrix` of ``rows`` and ``numeric``. The
    numeric columns are ``a + w * (b - a)`` in float64 arrays (the same IEEE operations, in the same
    order, as the Python floats of :func:`interpolate`); a pair with a missing value takes :func:`interpolate`.
    """
    if not len(first):
        return []
    a, b = values[np.asarray(first, dtype=np.intp)], values[np.asarray(second, dtype=np.intp)]
    w = np.asarray(weights, dtype=np.float64)
    mixed = (a + w[:, None] * (b - a)).tolist()
    missing = (np.isnan(a) | np.isnan(b)).any(axis=1).tolist()
    out: list[dict[str, Any]] = []
    for i, j, weight, numbers, gap in zip(first, second, weights, mixed, missing, strict=True):
        parent, other = rows[i], rows[j]
        if gap:
            out.append(interpolate(parent, other, weight, numeric, categorical))
            continue
        row = dict(parent)
        row.update(zip(numeric, numbers, strict=True))
        if categorical:
            nearer = parent if weight <= 0.5 else other
            for name in categorical:
                row[name] = nearer.get(name)
        out.append(row)
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
    """For each index in ``rows``, its ``k`` nearest other rows of ``z`` (indices, nearest first; ties by index).

    Squared distances are summed feature by feature, in column order, with elementwise NumPy (no
    BLAS): the same bits on every machine. A row whose ``k``-th smallest distance is tied (or NaN)
    is ordered by (distance, index) alone; the others take their ``k`` candidates in one pass.
    """
    m = z.shape[0]
    found: dict[int, list[int]] = {}
    wanted = sorted(set(rows))
    step = max(1, (1 << 17) // max(m, 1))  # ~1 MiB per array: the work stays in cache
    zt = np.ascontiguousarray(z.T)
    for start in range(0, len(wanted), step):
        chunk = np.asarray(wanted[start:start + step], dtype=np.intp)
        d = np.zeros((len(chunk), m), dtype=np.float64)
        diff = np.empty_like(d)
        zc = z[chunk]
        for f in range(z.shape[1]):
            np.subtract(zc[:, f, None], zt[None, f], out=diff)
            np.multiply(diff, diff, out=diff)  # what ``** 2`` computes, without a temporary
            d += diff
        d[np.arange(len(chunk)), chunk] = np.inf
        kth = np.partition(d, k - 1, axis=1)[:, k - 1]
        close = d <= kth[:, None]
        plain = close.sum(axis=1) == k  # exactly k candidates: no tie at the k-th distance
        picked: list[list[int]] = [[] for _ in range(len(chunk))]
        if plain.any():
            top = np.nonzero(close[plain])[1].reshape(-1, k)  # ascending index within each row
            order = np.argsort(np.take_along_axis(d[plain], top, axis=1), axis=1, kind="stable")
            for r, nearest in zip(np.flatnonzero(plain).tolist(), np.take_along_axis(top, order, axis=1).tolist(), strict=True):
                picked[r] = nearest
        for r in np.flatnonzero(~plain).tolist():
            cand = np.flatnonzero(d[r] <= kth[r])
            picked[r] = cand[np.lexsort((cand, d[r, cand]))][:k].tolist()
        found.update(zip(chunk.tolist(), picked, strict=True))
    return found


_M32 = np.uint64(0xFFFFFFFF)
_PCG_MUL = (np.uint64(0x2360ED051FC65DA4), np.uint64(0x4385DF649FCCF645))  # PCG64's 128-bit multiplier (high, low)


def _mul64(a: np.ndarray[Any, Any], b: np.uint64) -> tuple[np.ndarray[Any, Any], np.ndarray[Any, Any]]:
    """The full 128-bit products ``a * b`` of uint64 values, as (high, low) uint64 words."""
    a0, a1, b0, b1 = a & _M32, a >> np.uint64(32), b & _M32, b >> np.uint64(32)
    p00, p01, p10, p11 = a0 * b0, a0 * b1, a1 * b0, a1 * b1
    mid = (p00 >> np.uint64(32)) + (p01 & _M32) + (p10 & _M32)
    return p11 + (p01 >> np.uint64(32)) + (p10 >> np.uint64(32)) + (mid >> np.uint64(32)), a * b


def _pcg64_next(hi: np.ndarray[Any, Any], lo: np.ndarray[Any, Any], inc_hi: np.ndarray[Any, Any],
                inc_lo: np.ndarray[Any, Any]) -> tuple[np.ndarray[Any, Any], np.ndarray[Any, Any], np.ndarray[Any, Any]]:
    """One step of NumPy's PCG64 (128-bit LCG, XSL-RR output) on arrays of states: (new high, new low, output)."""
    top, low = _mul64(lo, _PCG_MUL[1])
    top = top + hi * _PCG_MUL[1] + lo * _PCG_MUL[0]
    new_lo = low + inc_lo
    new_hi = top + inc_hi + (new_lo < low).astype(np.uint64)
    x, rot = new_hi ^ new_lo, new_hi >> np.uint64(58)
    return new_hi, new_lo, (x >> rot) | (x << ((np.uint64(64) - rot) & np.uint64(63)))


def _smote_draws_one(seed: int, n: int, k: int) -> tuple[int, int, float]:
    rng, _ = generators_for(seed)
    return int(rng.integers(n)), int(rng.integers(k)), float(rng.random())


def smote_draws(seeds: Sequence[int], n: int, k: int) -> tuple[list[int], list[int], list[float]]:
    """Each SMOTE row's draws from its own generator (:func:`~augledger.seeding.generators_for` of its seed):
    ``integers(n)`` (the parent), ``integers(k)`` (the neighbour's rank), ``random()`` (the weight).

    The generators are stepped side by side: PCG64 on 128-bit states held as two uint64 arrays, and
    NumPy's bounded-integer (Lemire) and double conversions, so each row gets the bits its own
    ``Generator`` gives. A row that would need Lemire's rejection step, or any row when the first
    sure row does not match a real ``Generator`` (another NumPy), takes the generator itself.
    """
    count = len(seeds)
    if count == 0:
        return [], [], []
    if not 0 < k <= n < 0xFFFFFFFF:
        drawn = [_smote_draws_one(s, n, k) for s in seeds]
        return [d[0] for d in drawn], [d[1] for d in drawn], [d[2] for d in drawn]
    blob = b"".join([_blake2b(s.to_bytes(16, "little"), digest_size=32, person=PCG_PERSON).digest() for s in seeds])
    words = np.frombuffer(blob, dtype="<u8").reshape(count, 4)  # state low, state high, inc low, inc high
    inc_lo, inc_hi = words[:, 2] | np.uint64(1), words[:, 3].copy()
    hi, lo, first = _pcg64_next(words[:, 1].copy(), words[:, 0].copy(), inc_hi, inc_lo)
    _, _, second = _pcg64_next(hi, lo, inc_hi, inc_lo)
    # integers(n): Lemire on the low 32 bits of the first output; integers(k): on its high 32 bits
    # (PCG64 keeps them for the next 32-bit draw), none when k == 1; random(): the second output.
    m_parent = (first & _M32) * np.uint64(n)
    m_rank = (first >> np.uint64(32)) * np.uint64(k)
    parents = (m_parent >> np.uint64(32)).astype(np.int64).tolist()
    ranks = (m_rank >> np.uint64(32)).astype(np.int64).tolist() if k > 1 else [0] * count
    weights = ((second >> np.uint64(11)).astype(np.float64) * (1.0 / 9007199254740992.0)).tolist()
    unsure = (m_parent & _M32) < np.uint64(n)
    if k > 1:
        unsure |= (m_rank & _M32) < np.uint64(k)
    sure = np.flatnonzero(~unsure)
    if sure.size and _smote_draws_one(seeds[sure[0]], n, k) != (parents[sure[0]], ranks[sure[0]], weights[sure[0]]):
        unsure[:] = True
    for i in np.flatnonzero(unsure).tolist():
        parents[i], ranks[i], weights[i] = _smote_draws_one(seeds[i], n, k)
    return parents, ranks, weights


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
        names = [f"smote/{cls}/{n}" for n in range(need)]
        seeds = [derive(key) for key in names]
        parents, ranks, weights = smote_draws(seeds, len(rows), k_eff)
        neighbours = nearest_neighbours(z[rows], parents, k_eff)
        for key, seed, parent, rank, weight in zip(names, seeds, parents, ranks, weights, strict=True):
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
