"""Running resolved tabular ops on one row: seeded per sample, recorded as replay recipes.

A sample is ``{"row": {column: value}, "stats": column statistics}`` (:mod:`~augledger.ops.tabular.stats`).
Each applier owns one :class:`~augledger.seeding.SampleGenerators`, re-seeded in place from the
sample's 128-bit seed before every call; ops draw from its NumPy generator in spec order (an op at
``p < 1`` draws one uniform first). The global ``random`` and ``numpy.random`` are never touched.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from augledger.errors import SampleError
from augledger.ops.tabular.kernels import OPS, candidate_columns
from augledger.seeding import SampleGenerators

__all__ = ["SAMPLE_FIELDS", "TabularApplier", "TabularCompiled"]

SAMPLE_FIELDS = frozenset({"row", "stats"})


class TabularApplier:
    """Augments one row at a time. Not thread-safe (its generators are re-seeded per call)."""

    def __init__(self, ops: Sequence[Mapping[str, Any]]) -> None:
        self._ops = [(i, OPS[str(node["op"]).rpartition(".")[2]], float(node["p"]), dict(node["params"]))
                     for i, node in enumerate(ops)]
        self._generators = SampleGenerators()

    def __call__(self, sample: Mapping[str, Any], *, key: str, seed: int) -> tuple[dict[str, Any], Any]:
        extra = set(sample) - SAMPLE_FIELDS
        if extra or not isinstance(sample.get("row"), Mapping) or not isinstance(sample.get("stats"), Mapping):
            raise SampleError(f"sample {key!r}: a tabular sample is {{'row': {{column: value}}, 'stats': column "
                              f"statistics}}; got fields {sorted(sample)}")
        row: Mapping[str, Any] = sample["row"]
        stats: Mapping[str, Any] = sample["stats"]
        rng, _ = self._generators.reseed(seed)
        applied: list[tuple[int, str, dict[str, Any]]] = []
        for index, op, p, params in self._ops:
            if p < 1.0 and not rng.random() < p:
                continue
            columns = candidate_columns(stats, op.kinds, params.get("columns"), op=op.name, key=key)
            drawn = op.draw(row, stats, columns, params, rng)
            row = op.apply(row, drawn)
            applied.append((index, op.name, drawn))
        return {"row": dict(row), "stats": stats}, applied

class TabularCompiled:
    """Resolved tabular ops: a factory of appliers and the record converter."""

    sample_fields = SAMPLE_FIELDS

    def __init__(self, ops: Sequence[Mapping[str, Any]]) -> None:
        self._ops = [dict(node) for node in ops]

    def new_applier(self) -> TabularApplier:
        return TabularApplier(self._ops)

    def record_ops(self, applied: Any) -> tuple[dict[str, Any], ...]:
        return tuple({"op": f"augledger.tabular.{name}", "path": f"ops[{index}]", "params": params}
                     for index, name, params in applied)
