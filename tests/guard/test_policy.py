"""Intensity policies: the static check names op paths and bounds, runs enforce them on every value
drawn, records name each op by its node path, and check-policy re-checks a dataset from its ledger."""

from __future__ import annotations

import copy
import json
import os
import subprocess
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow.parquet as pq
import pytest
import yaml

import augledger
from augledger.errors import PolicyViolation, SpecError
from augledger.guard.policy import check_output
from augledger.policy import RecordCheck, check_spec, load_policy, max_ops_per_sample, policy_digest
from augledger.record import Record, same_ops
from augledger.run.materialize import materialize
from augledger.run.options import RunOptions
from augledger.spec import PolicySpec
from helpers import SCRIPT, make_source

SPEC: dict[str, Any] = {
    "schema": 1,
    "name": "policed",
    "seed": 3,
    "ops": [
        {"op": "Affine", "p": 0.9, "params": {"rotate": [-8, 8], "scale": [0.95, 1.05]}},
        {"op": "OneOf", "p": 0.5, "ops": [
            {"op": "Affine", "params": {"rotate": [-4, 4]}},
            {"op": "GaussianBlur", "params": {"blur_limit": [3, 5]}},
        ]},
        {"op": "RandomBrightnessContrast", "p": 0.5},
    ],
}
POLICY: dict[str, Any] = {
    "policy": 1,
    "name": "digits",
    "forbid": ["HorizontalFlip", "VerticalFlip"],
    "bounds": {"Affine.rotate": [-10, 10], "Affine.scale": [0.9, 1.1]},
    "max_ops_per_sample": 3,
    "splits": ["train"],
}


def policy(**changes: Any) -> PolicySpec:
    return PolicySpec.model_validate({**POLICY, **changes})


def resolved(**changes: Any) -> dict[str, Any]:
    return augledger.compile(augledger.parse_spec({**copy.deepcopy(SPEC), **changes})).resolved_spec


def write(path: Path, data: Any) -> Path:
    path.write_text(yaml.safe_dump(data))
    return path


def cli(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([SCRIPT, *args], capture_output=True, text=True, cwd=cwd, env={**os.environ, "COLUMNS": "250"})


# -- the policy file ----------------------------------------------------------------------------------

def test_policy_file_loads_and_has_a_stable_digest(tmp_path: Path) -> None:
    p = load_policy(write(tmp_path / "p.yaml", POLICY))
    assert p.bounds["Affine.rotate"] == (-10.0, 10.0)
    reordered = write(tmp_path / "q.yaml", dict(reversed(list(POLICY.items()))))
    assert policy_digest(load_policy(reordered)) == policy_digest(p)
    assert policy_digest(policy(max_ops_per_sample=4)) != policy_digest(p)


@pytest.mark.parametrize(("change", "expected"), [
    ({"policy": None}, "policy file"),
    ({"max_op_per_sample": 3}, "did you mean 'max_ops_per_sample'"),
    ({"bounds": {"Affine.rotate": [10, -10]}}, "finite low <= high"),
    ({"bounds": {"rotate": [-1, 1]}}, "must be OP.PARAM"),
    ({"bounds": {"Affine.rotate": [float("nan"), 1]}}, "finite"),
    ({"splits": ["training"]}, "splits[0]"),
    ({"max_ops_per_sample": 0}, "max_ops_per_sample"),
])
def test_bad_policy_files_name_the_field(tmp_path: Path, change: dict[str, Any], expected: str) -> None:
    data = {**POLICY, **change}
    if change.get("policy", 1) is None:
        del data["policy"]
    path = tmp_path / "p.json"
    path.write_text(json.dumps(data))
    with pytest.raises(SpecError, match=None) as info:
        load_policy(path)
    assert expected in str(info.value)


def test_policy_file_is_data_never_code(tmp_path: Path) -> None:
    path = tmp_path / "p.yaml"
    path.write_text("policy: 1\nname: !!python/object/apply:os.system ['echo owned']\n")
    with pytest.raises(SpecError, match="unsupported YAML tag"):
        load_policy(path)


# -- the static check ---------------------------------------------------------------------------------

def test_compliant_spec_has_no_violations() -> None:
    from augledger.ops.registry import get_backend

    assert check_spec(policy(), resolved(), op_names=get_backend("image").op_names()) == []


def test_bounds_name_the_node_path_param_bound_and_value() -> None:
    spec = copy.deepcopy(SPEC)
    spec["ops"][1]["ops"][0]["params"]["rotate"] = [-30, 4]
    found = [str(v) for v in check_spec(policy(), resolved(ops=spec["ops"]))]
    assert found == ["ops[1].ops[0].params.rotate[0]: Affine.rotate must lie in [-10, 10] (policy 'digits'); "
                     "the spec allows -30"]


def test_bounds_cover_each_axis_and_scalars() -> None:
    spec = copy.deepcopy(SPEC)
    spec["ops"][0]["params"]["scale"] = {"x": [0.95, 1.05], "y": [0.8, 1.0]}
    spec["ops"][0]["params"]["rotate"] = 12
    found = {v.location for v in check_spec(policy(), resolved(ops=spec["ops"]))}
    assert found == {"ops[0].params.scale.y[0]", "ops[0].params.rotate[0]", "ops[0].params.rotate[1]"}


def test_forbid_require_unknown_names_and_missing_params() -> None:
    spec = copy.deepcopy(SPEC)
    spec["ops"][1]["ops"].append({"op": "HorizontalFlip"})
    rules = policy(require=["CLAHE"], bounds={"Affine.rotat": [-1, 1]}, forbid=["HorizontalFlip", "HorizontalFlp"])
    found = [str(v) for v in check_spec(rules, resolved(ops=spec["ops"]), op_names=["Affine", "HorizontalFlip", "CLAHE"])]
    assert "policy 'digits' forbid: 'HorizontalFlp' is not an op of modality 'image'; check the spelling " \
           "(`augledger ops list` lists them)" in found
    assert "ops[1].ops[2]: HorizontalFlip is forbidden by policy 'digits'; remove it" in found
    assert "ops: policy 'digits' requires CLAHE; the spec has none that can apply (p > 0)" in found
    assert any(s.startswith("ops[0].params: policy 'digits' bounds Affine.rotat, but Affine has no param 'rotat'")
               for s in found)


def test_max_ops_per_sample_counts_what_one_sample_can_receive() -> None:
    def leaf(p: float = 1.0) -> dict[str, Any]:
        return {"op": "a.X", "p": p, "params": {}}

    assert max_ops_per_sample([leaf(), leaf(0.0), leaf(0.1)]) == 2
    assert max_ops_per_sample([{"op": "a.OneOf", "p": 1, "params": {}, "ops": [leaf(), {"op": "a.Sequential", "p": 1,
                               "params": {}, "ops": [leaf(), leaf()]}]}]) == 2
    some = {"op": "a.SomeOf", "p": 1, "params": {"n": 2, "replace": False}, "ops": [leaf(), leaf(), leaf()]}
    assert max_ops_per_sample([some]) == 2
    assert max_ops_per_sample([{**some, "params": {"n": 2, "replace": True}, "ops": [some]}]) == 4
    assert max_ops_per_sample(resolved()["ops"]) == 3
    found = check_spec(policy(max_ops_per_sample=2), resolved())
    assert [str(v) for v in found] == ["ops: up to 3 ops can apply to one sample; policy 'digits' allows 2 (max_ops_per_sample)"]


def test_splits() -> None:
    found = check_spec(policy(), resolved(splits=["train", "val"]))
    assert [str(v) for v in found] == ["splits: the spec augments ['val']; policy 'digits' allows only ['train']"]


def test_a_specs_own_policy_is_enforced_when_it_compiles_and_is_not_fingerprinted() -> None:
    plain = augledger.compile(augledger.parse_spec(SPEC))
    kept = augledger.compile(augledger.parse_spec({**SPEC, "policy": {k: v for k, v in POLICY.items() if k != "policy"}}))
    assert kept.fingerprint == plain.fingerprint and kept.policy is not None and kept.policy.name == "digits"
    with pytest.raises(PolicyViolation, match=r"ops\[0\]\.params\.rotate\[1\]: Affine.rotate must lie in \[-5, 5\]") as info:
        augledger.compile(augledger.parse_spec({**SPEC, "policy": {**POLICY, "bounds": {"Affine.rotate": [-5, 5]}}}))
    assert len(info.value.violations) == 2


# -- records name their node paths ----------------------------------------------------------------------

def test_records_name_each_op_by_its_node_path(astronaut: np.ndarray) -> None:
    pipe = augledger.compile(augledger.parse_spec({**SPEC, "ops": [
        {"op": "Affine", "p": 1, "params": {"rotate": [-8, 8]}},
        {"op": "OneOf", "p": 1, "ops": [{"op": "Affine", "params": {"rotate": [-4, 4]}}]},
    ]}))
    ops = pipe.apply({"image": astronaut}, key="a", epoch=0).record.ops
    assert [(o["op"], o["path"]) for o in ops] == [("albumentations.Affine", "ops[0]"), ("albumentations.Affine", "ops[1].ops[0]")]
    assert abs(ops[1]["params"]["rotate"]) <= 4


def test_records_without_paths_still_replay(astronaut: np.ndarray) -> None:
    """Ledgers before format 4 have no paths; replay compares them without, and still catches a changed param."""
    pipe = augledger.compile(augledger.parse_spec(SPEC))
    record = pipe.apply({"image": astronaut}, key="k", epoch=2).record
    old = Record.from_dict({**record.to_dict(), "ops": [{k: v for k, v in o.items() if k != "path"} for o in record.ops]})
    pipe.replay({"image": astronaut}, old)
    assert same_ops(old.ops, record.ops) and not same_ops(record.ops, old.ops[:-1])
    edited = [dict(o) for o in old.ops]
    edited[0] = {**edited[0], "params": {**edited[0]["params"], "rotate": 1.0}}
    assert not same_ops(edited, record.ops)


# -- the check of drawn values ---------------------------------------------------------------------------

def test_record_check_names_sample_path_param_value_and_bound() -> None:
    check = RecordCheck([policy()])
    ops = [{"op": "albumentations.Affine", "path": "ops[1].ops[0]", "params": {"rotate": 12.5, "scale": {"x": 1.0, "y": 1.2}}},
           {"op": "albumentations.HorizontalFlip", "path": "ops[2]", "params": {}}]
    found = [str(v) for v in check.check("cat.png", 2, ops)]
    assert found == [
        "'cat.png' copy 2 ops[1].ops[0].rotate: drew 12.5, outside Affine.rotate [-10, 10] of policy 'digits'",
        "'cat.png' copy 2 ops[1].ops[0].scale.y: drew 1.2, outside Affine.scale [0.9, 1.1] of policy 'digits'",
        "'cat.png' copy 2 ops[2]: HorizontalFlip is forbidden by policy 'digits'",
    ]
    assert check.checked == {"Affine.rotate": 1, "Affine.scale": 1}
    assert str(check.check("b", 0, ops[:1] * 4)[0]) == "'b' copy 0: received 4 ops; the policy allows 3 per sample"


@pytest.fixture(scope="module")
def src(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_source(tmp_path_factory.mktemp("src"), 8)


def test_run_records_policy_and_check_policy_rechecks(src: Path, tmp_path: Path) -> None:
    pipe = augledger.compile(augledger.parse_spec(SPEC))
    result = materialize(pipe, src, tmp_path / "out", options=RunOptions(copies=3, workers=0), policies=[policy()])
    summary = result.manifest["policy"]
    assert summary["policies"] == [{"name": "digits", "digest": policy_digest(policy())}]
    assert summary["violations"] == 0 and summary["samples_checked"] == 24
    assert summary["values_checked"]["Affine.rotate"] >= 20
    report = check_output(tmp_path / "out", policy())
    assert report.ok and report.enforced_at_run and report.samples == 24

    tight = check_output(tmp_path / "out", policy(bounds={"Affine.rotate": [-6, 6]}))
    assert not tight.enforced_at_run
    drawn = [v for v in tight.violations if "drew" in v.message]
    assert drawn and all(abs(float(v.message.split()[1].rstrip(","))) > 6 for v in drawn)
    assert {v.location for v in tight.violations if "drew" not in v.message} == {"ops[0].params.rotate[0]", "ops[0].params.rotate[1]"}


def test_check_policy_finds_a_value_edited_into_the_ledger(src: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    materialize(augledger.compile(augledger.parse_spec(SPEC)), src, out, options=RunOptions(copies=2, workers=0))
    table = pq.read_table(out / "ledger.parquet")
    rows = table.to_pylist()
    victim = next(r for r in rows if r["ops"] and '"rotate"' in r["ops"])
    ops = json.loads(victim["ops"])
    ops[0]["params"]["rotate"] = 45.0
    victim["ops"] = json.dumps(ops)
    pq.write_table(type(table).from_pylist(rows, schema=table.schema), out / "ledger.parquet")
    proc = cli("check-policy", str(out), "--policy", str(write(tmp_path / "p.yaml", POLICY)))
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert f"'{victim['key']}' copy {victim['epoch']} ops[0].rotate: drew 45.0, outside Affine.rotate [-10, 10]" in proc.stdout
    assert "ledger.parquet: its SHA-256" in proc.stdout and "the ledger was changed after the run" in proc.stdout
    assert "2 violation(s)" in proc.stdout and "not enforced when the run was made" in proc.stdout

    victim["ops"] = "not json"
    pq.write_table(type(table).from_pylist(rows, schema=table.schema), out / "ledger.parquet")
    from augledger.errors import LedgerError

    with pytest.raises(LedgerError, match=f"the ledger row of '{victim['key']}' copy {victim['epoch']} has ops that are not"):
        check_output(out, policy())


def test_a_value_drawn_outside_its_bound_stops_the_run(src: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A library that draws outside the range it was given is a defect the run must not pass on."""
    from augledger.ops.image import runtime

    real = runtime.jsonable_params

    def defective(params: Any) -> dict[str, Any]:
        out = real(params)
        if "rotate" in out:
            out["rotate"] = out["rotate"] + 100.0
        return out

    monkeypatch.setattr(runtime, "jsonable_params", defective)
    pipe = augledger.compile(augledger.parse_spec(SPEC))
    with pytest.raises(PolicyViolation, match=r"copy \d ops\[\d\](\.ops\[0\])?\.rotate: drew 1\d\d\.\d+, outside Affine\.rotate \[-10, 10\]"):
        materialize(pipe, src, tmp_path / "out", options=RunOptions(copies=2, workers=0), policies=[policy()])
    assert not (tmp_path / "out" / "manifest.json").exists()


def test_cli_run_refuses_a_spec_outside_the_policy_before_any_work(src: Path, tmp_path: Path) -> None:
    spec = write(tmp_path / "spec.yaml", {**SPEC, "ops": [{"op": "HorizontalFlip"}, *SPEC["ops"]]})
    pol = write(tmp_path / "p.yaml", POLICY)
    proc = cli("run", str(spec), "--source", str(src), "--out", str(tmp_path / "out"), "--policy", str(pol), "--workers", "0")
    assert proc.returncode == 1
    assert "ops[0]: HorizontalFlip is forbidden by policy 'digits'; remove it" in proc.stderr
    assert "up to 4 ops can apply to one sample" in proc.stderr
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").rglob("*.png"))

    proc = cli("spec", "validate", str(spec), "--policy", str(pol))
    assert proc.returncode == 1
    assert proc.stdout.splitlines()[:2] == ["ops[0]: HorizontalFlip is forbidden by policy 'digits'; remove it",
                                            "ops: up to 4 ops can apply to one sample; policy 'digits' allows 3 (max_ops_per_sample)"]
    data = json.loads(cli("spec", "validate", str(spec), "--policy", str(pol), "--json").stdout)
    assert data["valid"] is False and len(data["violations"]) == 2
    ok = cli("spec", "validate", str(write(tmp_path / "ok.yaml", SPEC)), "--policy", str(pol))
    assert ok.returncode == 0 and "keeps policy 'digits'" in ok.stdout
    schema = json.loads(cli("spec", "schema", "--policy").stdout)
    assert "policy" in schema["required"] and "bounds" in schema["properties"]


def test_the_example_policy_passes_the_mild_digits_spec_and_fails_the_strong_one() -> None:
    """What the README shows: examples/policies/digits.yaml against examples/specs/digits-*.yaml."""
    from augledger.ops.registry import get_backend

    root = Path(__file__).resolve().parents[2] / "examples"
    rules = load_policy(root / "policies" / "digits.yaml")
    names = get_backend("image").op_names()
    mild = augledger.compile(augledger.load_spec(root / "specs" / "digits-mild.yaml"))
    strong = augledger.compile(augledger.load_spec(root / "specs" / "digits-strong.yaml"))
    assert check_spec(rules, mild.resolved_spec, op_names=names) == []
    found = [str(v) for v in check_spec(rules, strong.resolved_spec, op_names=names)]
    assert len(found) == 7 and found[0] == ("ops[0].params.rotate[0]: Affine.rotate must lie in [-10, 10] "
                                            "(policy 'digits'); the spec allows -25")


def test_recorded_arrays_are_not_drawn_values_and_strings_are_reported() -> None:
    check = RecordCheck([policy(bounds={"MultiplicativeNoise.multiplier": [0.8, 1.2], "Affine.rotate": [-10, 10]})])
    summary = {"array": {"shape": [3], "dtype": "float32", "sha256": "ab"}}
    ops = [{"op": "albumentations.MultiplicativeNoise", "path": "ops[0]", "params": {"multiplier": summary}},
           {"op": "albumentations.Affine", "path": "ops[1]", "params": {"rotate": "99"}}]
    found = [str(v) for v in check.check("k", 0, ops, variant="candidate")]
    assert found == ["'k' copy 0 (variant 'candidate') ops[1].rotate: recorded '99' where Affine.rotate needs a number"]
    assert check.checked == {"Affine.rotate": 1}  # the array summary checked nothing, and says so


def test_a_run_with_an_array_param_under_a_bound_passes(src: Path, tmp_path: Path) -> None:
    spec = {**SPEC, "ops": [{"op": "MultiplicativeNoise", "p": 1.0, "params": {"multiplier": [0.9, 1.1]}}]}
    rules = policy(bounds={"MultiplicativeNoise.multiplier": [0.8, 1.2]})
    result = materialize(augledger.compile(augledger.parse_spec(spec)), src, tmp_path / "out",
                         options=RunOptions(workers=0), policies=[rules])
    assert result.manifest["policy"]["violations"] == 0
    assert "MultiplicativeNoise.multiplier" not in result.manifest["policy"]["values_checked"]


def test_policies_naming_deprecated_aliases_or_unreachable_ops_are_reported() -> None:
    from augledger.ops.registry import policy_vocabulary
    from augledger.policy import policy_ops

    rules = policy(forbid=["ShiftScaleRotate"], require=["GaussianBlur"], bounds={})
    names, aliases = policy_vocabulary("image", policy_ops(rules))
    assert aliases == {"ShiftScaleRotate": "Affine"}
    spec = copy.deepcopy(SPEC)
    spec["ops"][1]["p"] = 0.0  # the OneOf holding the only GaussianBlur can never apply
    found = [str(v) for v in check_spec(rules, resolved(ops=spec["ops"]), op_names=names, aliases=aliases)]
    assert found == [
        "policy 'digits' forbid: 'ShiftScaleRotate' is a deprecated name that specs resolve to 'Affine'; name 'Affine' "
        "in the policy (with its params)",
        "ops: policy 'digits' requires GaussianBlur; the spec has none that can apply (p > 0)",
    ]


@pytest.mark.parametrize("pair", [[True, 5], ["1", 5]])
def test_bounds_must_be_numbers(pair: list[Any]) -> None:
    with pytest.raises(Exception, match="must be two numbers"):
        PolicySpec.model_validate({**POLICY, "bounds": {"Affine.rotate": pair}})


def test_a_registered_spec_keeps_its_own_policy(src: Path, tmp_path: Path) -> None:
    """The registry stores the resolved spec; a spec's policy must survive it and be enforced through a REF."""
    from augledger.pipeline import compile_spec
    from augledger.registry import Registry, load_spec

    registry = Registry(tmp_path / "r.db", create=True, single_user=True)
    own = {**SPEC, "policy": {"name": "own", "bounds": {"Affine.rotate": [-9, 9]}}}
    added = registry.add(own, actor="alice")
    again = registry.add({**own, "policy": {"name": "other"}}, actor="alice")
    assert again.version.version == added.version.version and again.differs == ("policy",)
    pipe = compile_spec(load_spec(f"{SPEC['name']}@{added.version.version}", registry=registry))
    assert pipe.policy is not None and pipe.policy.name == "own"
    result = materialize(pipe, src, tmp_path / "out", options=RunOptions(workers=0))
    assert result.manifest["policy"]["policies"][0]["name"] == "own"


def test_rows_reused_by_a_resumed_run_are_checked_too(src: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A policy is not part of the folder's identity, so a rerun with one reuses earlier rows: it must check them."""
    from augledger.ops.image import runtime

    real = runtime.jsonable_params
    monkeypatch.setattr(runtime, "jsonable_params",
                        lambda params: {k: (v + 100.0 if k == "rotate" else v) for k, v in real(params).items()})
    pipe = augledger.compile(augledger.parse_spec(SPEC))
    materialize(pipe, src, tmp_path / "out", options=RunOptions(copies=2, workers=0))  # no policy: passes
    monkeypatch.setattr(runtime, "jsonable_params", real)
    with pytest.raises(PolicyViolation, match=r"drew 1\d\d\.\d+, outside Affine\.rotate \[-10, 10\]"):
        materialize(pipe, src, tmp_path / "out", options=RunOptions(copies=2, workers=0), policies=[policy()])
