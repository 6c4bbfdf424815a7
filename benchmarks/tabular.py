"""Tabular ops: augledger against plain NumPy implementations of the same algorithms, in one run.

    .venv/bin/python benchmarks/tabular.py [--rows 20000]

* per-row ops (GaussianJitter + FeatureMask + CategoricalSwap): ``Pipeline.apply`` per row (seed
  derivation, record, checks included) against a plain loop drawing from one NumPy generator per row;
* SMOTE: :func:`augledger.ops.tabular.synth.plan_smote` + :func:`interpolate_many` (per-row seeded draws,
  BLAS-free distances, provenance) against a plain vectorised NumPy SMOTE (one generator, BLAS
  distances, ``argsort``), and imbalanced-learn's ``SMOTE`` when its wheel is in /tmp/x
  (``pip download imbalanced-learn --no-deps -d /tmp/x``; never a dependency).

Prints each time and the ratio augledger / baseline (below 1: augledger is faster).
"""

from __future__ import annotations

import argparse
import glob
import sys
import time
from collections.abc import Callable
from typing import Any

import numpy as np

import augledger
from augledger.ops.tabular.stats import column_stats, numeric_matrix
from augledger.ops.tabular.synth import interpolate_many, plan_smote, standardise


def timed(fn: Callable[[], Any], repeat: int = 3) -> float:
    best = float("inf")
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t)
    return best


def make_rows(n: int, d: int) -> tuple[list[dict[str, Any]], list[str], list[str]]:
    rng = np.random.default_rng(0)
    x = rng.normal(size=(n, d))
    labels = np.where(rng.random(n) < 0.1, "1", "0")
    num = [f"f{j}" for j in range(d)]
    rows = [{"id": f"r{i:07d}", **{num[j]: float(x[i, j]) for j in range(d)}, "city": ["a", "b", "c"][i % 3], "y": labels[i]}
            for i in range(n)]
    return rows, num, labels.tolist()


def per_row(rows: list[dict[str, Any]], num: list[str]) -> None:
    stats = column_stats(rows, num, ["city"])
    pipe = augledger.compile(augledger.parse_spec({"schema": 1, "name": "b", "modality": "tabular", "ops": [
        {"op": "GaussianJitter", "params": {"scale": 0.1}}, {"op": "FeatureMask", "params": {"rate": 0.1}},
        {"op": "CategoricalSwap", "params": {"rate": 0.2}}]}))
    cats = stats["categorical"]["city"]
    stds = np.array([stats["numeric"][c]["std"] for c in sorted(num)])
    cols = sorted(num)
    mask_cols = sorted([*num, "city"])

    def ours() -> None:
        for r in rows:
            pipe.apply({"row": r, "stats": stats}, key=r["id"], epoch=0)

    def plain() -> None:
        for i, r in enumerate(rows):
            rng = np.random.default_rng(i)
            out = dict(r)
            z = rng.standard_normal(len(cols)) * 0.1 * stds
            for c, dz in zip(cols, z.tolist(), strict=True):
                out[c] = out[c] + dz
            for c, u in zip(mask_cols, rng.random(len(mask_cols)).tolist(), strict=True):
                if u < 0.1:
                    out[c] = None
            u, pick = rng.random(), rng.random()
            others = [v for v in cats if v != out["city"]]
            if u < 0.2 and others:
                out["city"] = others[int(pick * len(others))]

    a, b = timed(ours), timed(plain)
    print(f"per-row ops, {len(rows)} rows: augledger {a * 1e6 / len(rows):.1f} µs/row, plain NumPy {b * 1e6 / len(rows):.1f} µs/row, ratio {a / b:.2f}")


def smote(rows: list[dict[str, Any]], num: list[str], labels: list[str], k: int = 5) -> None:
    stats = column_stats(rows, num, [])
    names = sorted(num)
    x = numeric_matrix(rows, names)
    keys = [r["id"] for r in rows]
    counts = {c: labels.count(c) for c in set(labels)}
    targets = {c: max(counts.values()) for c in counts}
    deriver = augledger.seeding.SeedDeriver("sha256:bench", 0)

    def ours() -> None:
        z = standardise(x, [stats["numeric"][n]["mean"] for n in names], [stats["numeric"][n]["std"] for n in names])
        plan = plan_smote(keys, labels, z, targets=targets, k=k, derive=lambda key: deriver(epoch=0, key=key))
        where = {key: i for i, key in enumerate(keys)}
        interpolate_many(rows, x, [where[s.parents[0]] for s in plan], [where[s.parents[1]] for s in plan],
                         [s.weight for s in plan], names, [])

    minority = np.array([i for i, lab in enumerate(labels) if lab == "1"])
    need = targets["1"] - len(minority)

    def plain() -> None:
        rng = np.random.default_rng(0)
        xm = x[minority]
        z = (xm - x.mean(0)) / x.std(0)
        sq = (z * z).sum(1)
        d = sq[:, None] + sq[None, :] - 2 * z @ z.T
        np.fill_diagonal(d, np.inf)
        nn = np.argsort(d, axis=1)[:, :k]
        parent = rng.integers(len(xm), size=need)
        other = nn[parent, rng.integers(k, size=need)]
        w = rng.random(need)[:, None]
        _ = xm[parent] + w * (xm[other] - xm[parent])

    a, b = timed(ours), timed(plain)
    line = f"SMOTE, {len(minority)} minority rows -> {need} synthetic: augledger {a:.3f}s, plain NumPy {b:.3f}s, ratio {a / b:.1f}"
    wheels = glob.glob("/tmp/x/imbalanced_learn-*.whl")
    if wheels:
        sys.path.insert(0, wheels[0])
        try:
            from imblearn.over_sampling import SMOTE

            y = np.array(labels)
            c = timed(lambda: SMOTE(k_neighbors=k, random_state=0).fit_resample(x, y))
            line += f"; imbalanced-learn {c:.3f}s, ratio {a / c:.1f}"
        except ImportError as exc:
            line += f"; imbalanced-learn not importable ({exc})"
    print(line)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rows", type=int, default=20000)
    parser.add_argument("--features", type=int, default=8)
    args = parser.parse_args()
    rows, num, labels = make_rows(args.rows, args.features)
    per_row(rows, num)
    smote(rows, num, labels)


if __name__ == "__main__":
    main()
