"""The backend seam: a modality is one object behind the Backend interface, found by name."""

from __future__ import annotations

import random
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pytest

import augledger
from augledger import SpecError
from augledger.ops import registry
from augledger.ops.registry import get_backend, modalities, register_backend
from augledger.seeding import generators_for
from augledger.spec import OpSpec


class ToyApplier:
    """Adds ``amount * u`` to ``value``, with ``u`` drawn from the sample's own generator."""

    def __init__(self, ops: Sequence[Mapping[str, Any]]) -> None:
        self.ops = ops

    def __call__(self, sample: Mapping[str, Any], *, key: str, seed: int) -> tuple[dict[str, Any], Any]:
        rng, _ = generators_for(seed)
        value, applied = float(sample["value"]), []
        for op in self.ops:
            if rng.random() < op["p"]:
                u = float(rng.random())
                value += op["params"]["amount"] * u
                applied.append({"op": op["op"], "params": {"u": u}})
        return {"value": value}, applied


class ToyCompiled:
    sample_fields = frozenset({"value"})

    def __init__(self, ops: Sequence[Mapping[str, Any]]) -> None:
        self.ops = list(ops)

    def new_applier(self) -> ToyApplier:
        return ToyApplier(self.ops)

    def record_ops(self, applied: Any) -> tuple[dict[str, Any], ...]:
        return tuple(applied)


class ToyBackend:
    modality = "toy"
    namespace = "toy"

    def op_names(self) -> tuple[str, ...]:
        return ("Add",)

    def describe_ops(self) -> list[dict[str, Any]]:
        return [{"op": "Add", "modality": "toy", "p": 1.0, "params": {"amount": 1.0}, "required": [],
                 "example": {"amount": 2.0}}]

    def example_sample(self) -> dict[str, Any]:
        return {"value": 1.0}

    def resolve_ops(self, ops: Sequence[OpSpec]) -> list[dict[str, Any]]:
        resolved = []
        for i, op in enumerate(ops):
            if op.op.removeprefix("toy.") != "Add":
                raise augledger.UnknownOpError(f"unknown toy op {op.op!r}", location=f"ops[{i}].op")
            resolved.append({"op": "toy.Add", "p": 1.0 if op.p is None else op.p,
                             "params": {"amount": float(op.params.get("amount", 1.0))}})
        return resolved

    def resolve_targets(self, targets: Mapping[str, Any]) -> dict[str, Any]:
        if targets:
            raise SpecError("toy samples carry no targets", location="targets")
        return {}

    def targets_schema(self) -> dict[str, Any]:
        return {"type": "object", "maxProperties": 0}

    def compile(self, ops: Sequence[Mapping[str, Any]], targets: Mapping[str, Any]) -> ToyCompiled:
        return ToyCompiled(ops)

    def versions(self) -> dict[str, str]:
        return {"toy": "1.0"}

    def storage_problem(self, ops: Sequence[Mapping[str, Any]]) -> str | None:
        return None


@pytest.fixture
def toy(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(registry, "_loaders", dict(registry._loaders))
    monkeypatch.setattr(registry, "_loaded", dict(registry._loaded))
    register_backend("toy", ToyBackend)


def test_a_new_modality_is_one_registered_backend(toy: None) -> None:
    assert modalities() == ("audio", "image", "tabular", "text", "toy")
    spec = {"schema": 1, "name": "t", "modality": "toy", "ops": [{"op": "Add", "p": 0.5, "params": {"amount": 2}}]}
    pipe = augledger.compile(augledger.parse_spec(spec))
    assert pipe.resolved_spec["ops"] == [{"op": "toy.Add", "p": 0.5, "params": {"amount": 2.0}}]
    results = [pipe.apply({"value": 1.0}, key=f"k{i}", epoch=0) for i in range(20)]
    assert len({r.sample["value"] for r in results}) > 5  # the draws reach the backend
    again = augledger.compile(augledger.parse_spec(spec))
    for r in results:
        assert again.replay({"value": 1.0}, r.record).sample == r.sample
    assert augledger.EnvStamp.current("toy").backends == {"toy": "1.0"}
    with pytest.raises(augledger.UnknownOpError, match=r"ops\[0\]\.op: unknown toy op 'Blur'"):
        augledger.compile(augledger.parse_spec({**spec, "ops": [{"op": "Blur"}]}))


def test_registering_a_taken_modality_needs_replace(toy: None) -> None:
    with pytest.raises(ValueError, match="already has a backend"):
        register_backend("toy", ToyBackend)
    register_backend("toy", ToyBackend, replace=True)
    assert get_backend("toy").modality == "toy"


def test_backends_are_imported_on_first_use_only() -> None:
    import subprocess
    import sys

    code = (
        "import sys, augledger\n"
        "spec = augledger.parse_spec({'schema': 1, 'name': 't', 'ops': [{'op': 'Blur'}]})\n"
        "assert 'augledger.ops.image' not in sys.modules and 'albumentations' not in sys.modules\n"
        "augledger.compile(spec)\n"
        "assert 'augledger.ops.image' in sys.modules\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def test_toy_draws_do_not_touch_global_rngs(toy: None) -> None:
    spec = {"schema": 1, "name": "t", "modality": "toy", "ops": [{"op": "Add"}]}
    pipe = augledger.compile(augledger.parse_spec(spec))
    state = random.getstate(), np.random.get_state()[1].copy()
    pipe.apply({"value": 0.0}, key="a", epoch=0)
    assert random.getstate() == state[0] and np.array_equal(np.random.get_state()[1], state[1])
