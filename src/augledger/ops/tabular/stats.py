"""Column statistics of a whole table: what per-row tabular ops read besides the row itself.

A run computes them once from the source table (rows sorted by key, so the summation order and
the result do not depend on the file's row order) and hands the same dict to every row as the
sample's ``stats`` field. A row's output is therefore a pure function of (fingerprint, seed,
epoch, key, the row, the statistics); :func:`stats_digest` names the statistics in the manifest.

Shape (JSON data)::

    {"numeric": {"age": {"mean": 38.2, "std": 12.1, "count": 150}},
     "categorical": {"city": ["lyon", "nice", "paris"]}}

``std`` is the population standard deviation (``ddof=0``) over the non-missing values; ``None``
when a column has no values. Categorical values are the observed non-missing values, as strings, sorted.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import numpy as np

from augledger._canonical import canonical_json, sha256_hex

__all__ = ["column_stats", "numeric_matrix", "stats_digest"]


def numeric_matrix(rows: Sequence[Mapping[str, Any]], columns: Sequence[str]) -> np.ndarray[Any, Any]:
    """``float64`` array (rows x columns) of the numeric values, NaN where a value is missing."""
    out = np.full((len(rows), len(columns)), np.nan, dtype=np.float64)
    for j, name in enumerate(columns):
        out[:, j] = [np.nan if r.get(name) is None else float(r[name]) for r in rows]
    return out


def column_stats(rows: Sequence[Mapping[str, Any]], numeric: Iterable[str], categorical: Iterable[str]) -> dict[str, Any]:
    """The statistics of ``rows`` (in the order given: sort them by key first) for the named columns."""
    numeric, categorical = sorted(numeric), sorted(categorical)
    values = numeric_matrix(rows, numeric)
    num: dict[str, Any] = {}
    for j, name in enumerate(numeric):
        col = values[:, j]
        present = col[~np.isnan(col)]
        if present.size:
            mean = float(present.mean())
            std = float(np.sqrt(np.mean((present - mean) ** 2)))
        else:
            mean = std = math.nan
        num[name] = {"mean": None if math.isnan(mean) else mean, "std": None if math.isnan(std) else std,
                     "count": int(present.size)}
    cat = {name: sorted({str(r[name]) for r in rows if r.get(name) is not None}) for name in categorical}
    return {"numeric": num, "categorical": cat}


def stats_digest(stats: Mapping[str, Any]) -> str:
    """``sha256:<hex>`` of the statistics' canonical JSON."""
    return sha256_hex(canonical_json(stats))
