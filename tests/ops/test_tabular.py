"""The tabular backend's per-row ops: deterministic per (key, epoch), replayable from params alone, strict params."""

from __future__ import annotations

import json
import random
import subprocess
import sys

import numpy as np
import pytest

import augledger
from augledger.errors import ParamError, SampleError, SpecError, UnknownOpError
from augledger.ops.registry import get_backend
from augledger.ops.tabular import apply_params

OPS = [{"op": "GaussianJitter", "params": {"scale": 0.2}}, {"op": "FeatureMask", "p": 0.7, "params": {"rate": 0.3}},
       {"op": "CategoricalSwap", "params": {"rate": 0.5}}]


def pipe(ops: list[dict] = OPS, targets: dict | None = None) -> augledger.Pipeline:
    return augledger.compile(augledger.parse_spec({"schema": 1, "name": "t", "modality": "tabular",
                                                   "targets": targets or {}, "ops": ops}))


def sample() -> dict:
    return get_backend("tabular").example_sample()


def run_keys(n: int = 20) -> list:
    p = pipe()
    return [(p.apply(sample(), key=f"k{i}", epoch=e).sample["row"], p.apply(sample(), key=f"k{i}", epoch=e).record.to_json())
            for i in range(n) for e in (0, 1)]


def test_deterministic_per_key_and_epoch_and_across_processes() -> None:
    here = run_keys()
    code = "import json, sys; sys.path.insert(0, 'tests/ops'); import test_tabular as t; print(json.dumps(t.run_keys()))"
    there = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                           env={"PYTHONHASHSEED": "123", "PATH": ""}).stdout
    assert json.loads(there) == json.loads(json.dumps(here))
    rows = [r for r, _ in here]
    assert len({json.dumps(r, sort_keys=True) for r in rows}) > len(rows) // 2, "keys and epochs should differ"


def test_global_rng_untouched_and_input_not_modified() -> None:
    py, npst = random.getstate(), np.random.get_state()
    s = sample()
    pipe().apply(s, key="a", epoch=0)
    assert random.getstate() == py and np.array_equal(np.random.get_state()[1], npst[1])
    assert s == sample()


def test_replay_from_params_alone() -> None:
    p = pipe()
    for i in range(30):
        result = p.apply(sample(), key=f"k{i}", epoch=3)
        row = sample()["row"]
        for op in json.loads(result.record.to_json())["ops"]:
            row = apply_params(op["op"], row, op["params"])
        assert row == result.sample["row"]
        assert p.replay(sample(), result.record).sample == result.sample


def test_op_semantics() -> None:
    stats = sample()["stats"]
    for i in range(50):
        out = pipe([{"op": "GaussianJitter", "params": {"scale": 0.1, "columns": ["age"]}}]).apply(sample(), key=f"k{i}", epoch=0)
        (op,) = out.record.ops
        assert op["op"] == "augledger.tabular.GaussianJitter" and op["path"] == "ops[0]"
        assert set(op["params"]["deltas"]) == {"age"} and out.sample["row"]["income"] == 52000.0
        masked = pipe([{"op": "FeatureMask", "params": {"rate": 1.0, "columns": ["city"], "fill": "?"}}]).apply(sample(), key=f"k{i}", epoch=0)
        assert masked.sample["row"]["city"] == "?"
        swapped = pipe([{"op": "CategoricalSwap", "params": {"rate": 1.0}}]).apply(sample(), key=f"k{i}", epoch=0)
        for col, values in stats["categorical"].items():
            assert swapped.sample["row"][col] in values and swapped.sample["row"][col] != sample()["row"][col]
    deltas = [pipe([{"op": "GaussianJitter", "params": {"scale": 0.1}}]).apply(sample(), key=f"k{i}", epoch=0).record.ops[0]["params"]["deltas"]["age"]
              for i in range(400)]
    assert abs(np.std(deltas) - 0.1 * 12.5) < 0.15


@pytest.mark.parametrize(("ops", "location", "error"), [
    ([{"op": "GausianJitter"}], "ops[0].op", UnknownOpError),
    ([{"op": "SMOTE"}], "ops[0].op", UnknownOpError),
    ([{"op": "FeatureMask", "params": {"rat": 0.2}}], "ops[0].params.rat", ParamError),
    ([{"op": "FeatureMask", "params": {"rate": 1.5}}], "ops[0].params.rate", ParamError),
    ([{"op": "GaussianJitter", "params": {"scale": "big"}}], "ops[0].params.scale", ParamError),
    ([{"op": "CategoricalSwap", "params": {"columns": []}}], "ops[0].params.columns", ParamError),
    ([{"op": "FeatureMask", "params": {"fill": [1]}}], "ops[0].params.fill", ParamError),
])
def test_strict_params_name_the_location(ops: list, location: str, error: type) -> None:
    with pytest.raises(error) as info:
        pipe(ops)
    assert info.value.location == location


def test_strict_targets() -> None:
    with pytest.raises(SpecError, match=r"targets.smote.k_neighbours"):
        pipe(targets={"smote": {"k_neighbours": 3}})
    with pytest.raises(SpecError, match="both numeric and categorical"):
        pipe(targets={"numeric": ["a"], "categorical": ["a"]})
    with pytest.raises(SpecError, match=r"sampling_strategy"):
        pipe(targets={"smote": {"sampling_strategy": "most"}})


def test_unknown_column_and_bad_fill_are_sample_errors() -> None:
    with pytest.raises(SampleError, match="not numeric columns"):
        pipe([{"op": "GaussianJitter", "params": {"columns": ["city"]}}]).apply(sample(), key="a", epoch=0)
    with pytest.raises(SampleError, match="does not fit numeric column"):
        pipe([{"op": "FeatureMask", "params": {"rate": 1.0, "columns": ["age"], "fill": "x"}}]).apply(sample(), key="a", epoch=0)


def test_describe_ops() -> None:
    entries = get_backend("tabular").describe_ops()
    assert [e["op"] for e in entries] == ["CategoricalSwap", "FeatureMask", "GaussianJitter"]
    assert all(e["modality"] == "tabular" and "example" in e and e["doc"] for e in entries)


def test_smote_draws_are_each_rows_own_generator() -> None:
    """The side-by-side PCG64 draws equal each row's own ``generators_for`` draws (Lemire rejections included)."""
    import random

    from augledger.ops.tabular.synth import smote_draws
    from augledger.seeding import generators_for

    r = random.Random(7)
    for n, k in [(2, 1), (3, 2), (6, 5), (2000, 5), (2**31 + 11, 7)]:
        seeds = [r.getrandbits(128) for _ in range(500)]
        want = []
        for s in seeds:
            rng, _ = generators_for(s)
            want.append((int(rng.integers(n)), int(rng.integers(k)), float(rng.random())))
        assert list(zip(*smote_draws(seeds, n, k), strict=True)) == want


def test_vectorised_neighbours_and_interpolation_match_the_scalar_definitions() -> None:
    import numpy as np

    from augledger.ops.tabular.stats import numeric_matrix
    from augledger.ops.tabular.synth import interpolate, interpolate_many, nearest_neighbours

    rng = np.random.default_rng(3)
    z = np.round(rng.normal(size=(300, 3)) * 2) / 2  # many tied distances
    found = nearest_neighbours(z, list(range(300)), 4)
    for i, got in found.items():
        d = ((z - z[i]) ** 2).sum(axis=1)
        d[i] = np.inf
        assert got == sorted(range(300), key=lambda j: (d[j], j))[:4]
    rows = [{"id": f"r{i}", "a": float(rng.normal()), "b": None if i % 5 == 0 else float(rng.normal()),
             "c": ["x", "y"][i % 2]} for i in range(40)]
    first, second = rng.integers(40, size=200).tolist(), rng.integers(40, size=200).tolist()
    weights = rng.random(200).tolist()
    many = interpolate_many(rows, numeric_matrix(rows, ["a", "b"]), first, second, weights, ["a", "b"], ["c"])
    assert many == [interpolate(rows[i], rows[j], w, ["a", "b"], ["c"]) for i, j, w in zip(first, second, weights, strict=True)]
