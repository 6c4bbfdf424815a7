"""The tabular backend: our own per-row ops on table rows, NumPy only.

* :mod:`~augledger.ops.tabular.kernels`: the ops (GaussianJitter, FeatureMask, CategoricalSwap),
  each a draw function and a pure apply function that replays from the recorded params alone.
* :mod:`~augledger.ops.tabular.resolve`: strict validation of ``ops`` and the ``targets`` section
  (column roles; the dataset-level ``smote`` and ``mixup``).
* :mod:`~augledger.ops.tabular.runtime`: per-sample seeding and JSON records.
* :mod:`~augledger.ops.tabular.stats`: the column statistics a run computes once from the whole table.
* :mod:`~augledger.ops.tabular.synth`: SMOTE-style oversampling and row mixup (run by ``augledger.run.table``).
"""

from __future__ import annotations

import copy
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from augledger.ops.tabular.kernels import OPS, apply_params
from augledger.ops.tabular.resolve import NAMESPACE, resolve_ops, resolve_targets, targets_schema
from augledger.ops.tabular.runtime import TabularCompiled
from augledger.spec import OpSpec

__all__ = ["BACKEND", "NAMESPACE", "OPS", "TabularBackend", "apply_params"]

_EXAMPLE: dict[str, Any] = {
    "row": {"id": "r1", "age": 41.0, "income": 52000.0, "city": "lyon", "smoker": "no", "y": "a"},
    "stats": {"numeric": {"age": {"mean": 40.0, "std": 12.5, "count": 10},
                          "income": {"mean": 48000.0, "std": 9000.0, "count": 10}},
              "categorical": {"city": ["lyon", "nice", "paris"], "smoker": ["no", "yes"]}},
}


class TabularBackend:
    """:class:`~augledger.ops.base.Backend` for ``modality: tabular``."""

    modality = "tabular"
    namespace = NAMESPACE

    def op_names(self) -> tuple[str, ...]:
        return tuple(OPS)

    def describe_ops(self) -> list[dict[str, Any]]:
        return sorted(({"op": op.name, "modality": "tabular", "p": 1.0, "params": dict(op.params), "required": [],
                        "example": dict(op.example), "doc": op.doc} for op in OPS.values()), key=lambda e: str(e["op"]))

    def example_sample(self) -> dict[str, Any]:
        return copy.deepcopy(_EXAMPLE)

    def resolve_ops(self, ops: Sequence[OpSpec]) -> list[dict[str, Any]]:
        return resolve_ops(ops)

    def resolve_targets(self, targets: Mapping[str, Any]) -> dict[str, Any]:
        return resolve_targets(targets)

    def targets_schema(self) -> dict[str, Any]:
        return targets_schema()

    def compile(self, ops: Sequence[Mapping[str, Any]], targets: Mapping[str, Any]) -> TabularCompiled:
        return TabularCompiled(ops)

    def versions(self) -> dict[str, str]:
        return {"numpy": np.__version__}

    def storage_problem(self, ops: Sequence[Mapping[str, Any]]) -> str | None:
        return None


BACKEND = TabularBackend()
