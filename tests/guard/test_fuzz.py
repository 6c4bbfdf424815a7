"""Hypothesis properties: anything invalid raises augledger's own error type or is quarantined.

Deterministic in CI: ``derandomize=True`` and no example database. Example counts are small so
the file runs in a few seconds on two cores.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import augledger
from augledger.errors import AugLedgerError, Quarantined, SourceError, SpecError, UnsafePath
from augledger.io.image import decode_image
from augledger.io.store import LocalStore, check_relative
from augledger.ops.image.allowlist import COMPOSITIONS, IMAGE_OPS
from augledger.run.sources import load_annotations


def fuzz(examples: int) -> settings:
    return settings(max_examples=examples, derandomize=True, database=None, deadline=None,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])

json_leaf = st.none() | st.booleans() | st.integers(-(2**70), 2**70) | st.floats(allow_nan=True) | st.text(max_size=8)
json_value = st.recursive(json_leaf, lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=6), inner, max_size=4),
                          max_leaves=12)
op_names = st.sampled_from([*IMAGE_OPS, *COMPOSITIONS, "Lambda", "os.system", "__import__", "augledger.X"]) | st.text(max_size=12)
param_names = st.sampled_from(["rotate", "scale", "blur_limit", "p", "height", "width", "limit", "n", "__class__"]) | st.text(max_size=8)
ops = st.recursive(
    st.fixed_dictionaries({"op": op_names}, optional={"p": json_leaf, "params": st.dictionaries(param_names, json_value, max_size=3)}),
    lambda inner: st.fixed_dictionaries({"op": st.sampled_from(list(COMPOSITIONS)), "ops": st.lists(inner, max_size=3)}),
    max_leaves=4,
)
specs = st.fixed_dictionaries(
    {"schema": st.sampled_from([1, 1, 1, 2, "1"]), "name": st.text(max_size=5) | json_leaf, "ops": st.lists(ops, max_size=3)},
    optional={"seed": json_leaf, "targets": json_value, "splits": json_value, "modality": st.sampled_from(["image", "x", ""])},
)


@fuzz(300)
@given(specs)
def test_generated_specs_compile_or_raise_a_spec_error(data: dict[str, Any]) -> None:
    try:
        pipe = augledger.compile(augledger.parse_spec(data))
    except SpecError as exc:
        assert str(exc)
    else:
        assert pipe.fingerprint.startswith("sha256:")


@fuzz(200)
@given(st.text(max_size=200) | specs.map(json.dumps))
def test_any_text_loads_as_a_spec_or_raises_a_spec_error(text: str) -> None:
    for fmt in ("yaml", "json"):
        try:
            augledger.loads_spec(text, format=fmt)  # type: ignore[arg-type]
        except SpecError:
            pass


keys = st.text(st.characters(codec="utf-8"), max_size=20) | st.sampled_from(["/x", "../x", "a/../../b", "a\x00b", ".", "C:/x"])


@fuzz(300)
@given(keys)
def test_store_paths_stay_inside_the_root_or_are_refused(tmp_path_factory: Any, key: str) -> None:
    root = Path("/nonexistent-augledger-root")
    try:
        rel = check_relative(key)
    except UnsafePath:
        return
    local = LocalStore(root).path(rel)
    assert root in local.parents


box = st.lists(st.floats(allow_nan=True, allow_infinity=True) | st.integers(-100, 100) | json_leaf, max_size=5)
rows = st.fixed_dictionaries({"key": keys | json_leaf},
                             optional={"bboxes": st.lists(box, max_size=3) | json_value, "labels": json_value,
                                       "label": json_value, "mask": keys | json_leaf})


@fuzz(200)
@given(st.lists(rows, max_size=4))
def test_annotation_rows_load_or_raise_a_source_error(tmp_path_factory: Any, data: list[dict[str, Any]]) -> None:
    path = tmp_path_factory.mktemp("ann") / "a.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in data))
    try:
        loaded = load_annotations(path, label_fields=("labels",))
    except SourceError:
        return
    import numpy as np

    from augledger.io.image import ImageCodec

    targets = {"bboxes": {"format": "pascal_voc", "label_fields": ["labels"]}, "mask": True}
    for ann in loaded.values():
        try:
            ImageCodec().attach({"image": np.zeros((8, 8, 3), np.uint8)}, ann, targets, lambda p: b"")
        except Quarantined as exc:
            assert exc.reason in ("annotation", "empty") and str(exc)


signatures = st.sampled_from([b"", b"\x89PNG\r\n\x1a\n", b"\xff\xd8\xff\xe0", b"GIF89a", b"BM", b"RIFF\x00\x00\x00\x00WEBP", b"II*\x00"])


@fuzz(300)
@given(signatures, st.binary(max_size=300))
def test_random_bytes_decode_or_are_quarantined(head: bytes, body: bytes) -> None:
    try:
        image, _ = decode_image(head + body)
    except Quarantined as exc:
        assert exc.reason and str(exc)
    else:
        assert image.dtype.name == "uint8" and image.ndim == 3


@fuzz(12)
@given(st.lists(st.tuples(st.sampled_from(["a.png", "b.jpg", "c/d.png"]), signatures, st.binary(max_size=64)), max_size=3, unique_by=lambda t: t[0]),
       st.lists(rows, max_size=3))
def test_runs_over_random_files_and_rows_never_crash(tmp_path_factory: Any, files: list[tuple[str, bytes, bytes]],
                                                     data: list[dict[str, Any]]) -> None:
    from guard._hostile import BOX_SPEC, guarded_run, write_photo

    root = tmp_path_factory.mktemp("run")
    write_photo(root / "src" / "real.png")
    for name, head, body in files:
        (root / "src" / name).parent.mkdir(parents=True, exist_ok=True)
        (root / "src" / name).write_bytes(head + body)
    try:
        _, ledger = guarded_run(augledger.compile(augledger.parse_spec(BOX_SPEC)), root, root / "src", root / "out", rows=data)
    except AugLedgerError as exc:
        assert isinstance(exc, SourceError) and str(exc)
        return
    for row in ledger.values():
        assert row["status"] == "ok" or (row["status"] == "quarantined" and ":" in row["error"])


# -- valid specs: the success branch, run for real ----------------------------------------------------

def _range(low: float, high: float) -> st.SearchStrategy[list[float]]:
    return st.tuples(st.floats(low, high), st.floats(low, high)).map(lambda t: sorted(t))


leaf_ops = st.one_of(
    st.fixed_dictionaries({"op": st.sampled_from(["HorizontalFlip", "VerticalFlip", "Transpose"]), "p": st.floats(0, 1)}),
    st.fixed_dictionaries({"op": st.just("Affine"), "p": st.floats(0, 1),
                           "params": st.fixed_dictionaries({"rotate": _range(-180, 180), "scale": _range(0.5, 1.5)})}),
    st.fixed_dictionaries({"op": st.just("GaussianBlur"), "p": st.floats(0, 1),
                           "params": st.fixed_dictionaries({"blur_limit": st.sampled_from([[3, 3], [3, 5], [5, 9]])})}),
    st.fixed_dictionaries({"op": st.just("RandomBrightnessContrast"), "p": st.floats(0, 1),
                           "params": st.fixed_dictionaries({"brightness_limit": st.floats(0, 0.5)})}),
)
valid_ops = st.recursive(leaf_ops, lambda inner: st.fixed_dictionaries(
    {"op": st.sampled_from(["OneOf", "Sequential"]), "p": st.floats(0, 1), "ops": st.lists(inner, min_size=1, max_size=3)},
).filter(lambda node: node["op"] != "OneOf" or any(c["p"] > 0 for c in node["ops"])), max_leaves=5)


def test_a_one_of_whose_children_all_have_p_0_is_a_spec_error() -> None:
    """Found by the property below: Albumentations' OneOf divides by its children's summed p."""
    from augledger.errors import ParamError

    spec = {"schema": 1, "name": "z", "ops": [{"op": "OneOf", "p": 1, "ops": [{"op": "HorizontalFlip", "p": 0.0}]}]}
    try:
        augledger.compile(augledger.parse_spec(spec))
    except ParamError as exc:
        assert exc.location == "ops[0].ops" and "every child has p 0" in str(exc)
    else:
        raise AssertionError("a OneOf that can pick nothing compiled")
valid_specs = st.fixed_dictionaries({"schema": st.just(1), "name": st.text(min_size=1, max_size=8), "seed": st.integers(0, 2**31),
                                     "ops": st.lists(valid_ops, min_size=1, max_size=4)})
IMAGE = __import__("numpy").arange(24 * 32 * 3, dtype="uint8").reshape(24, 32, 3)


def _paths(ops: list[dict[str, Any]], prefix: str = "ops") -> set[str]:
    found: set[str] = set()
    for i, node in enumerate(ops):
        path = f"{prefix}[{i}]"
        found |= _paths(node["ops"], f"{path}.ops") if "ops" in node else {path}
    return found


@fuzz(150)
@given(valid_specs, st.text(max_size=10), st.integers(0, 5))
def test_valid_specs_compile_apply_and_replay(data: dict[str, Any], key: str, epoch: int) -> None:
    """Every generated valid spec compiles, augments an image, names real node paths, and replays exactly."""
    pipe = augledger.compile(augledger.parse_spec(data))
    out = pipe.apply({"image": IMAGE}, key=key, epoch=epoch)
    assert {op["path"] for op in out.record.ops} <= _paths(data["ops"])
    again = pipe.replay({"image": IMAGE}, out.record)
    assert (again.sample["image"] == out.sample["image"]).all()


# -- policies -----------------------------------------------------------------------------------------

bound_keys = st.sampled_from(["Affine.rotate", "Affine.scale", "GaussianBlur.blur_limit", "Affine.rotat", "rotate",
                              "x.y.z", "ShiftScaleRotate.rotate_limit"]) | st.text(max_size=10)
policies = st.fixed_dictionaries(
    {"policy": st.sampled_from([1, 1, 1, 2, "1"]), "name": st.text(max_size=5) | json_leaf},
    optional={"forbid": st.lists(op_names, max_size=3) | json_leaf, "require": st.lists(op_names, max_size=2),
              "bounds": st.dictionaries(bound_keys, st.lists(json_leaf, max_size=3), max_size=3) | json_leaf,
              "max_ops_per_sample": json_leaf, "splits": json_value},
)


@fuzz(300)
@given(policies, valid_specs)
def test_generated_policies_validate_then_check_without_crashing(data: dict[str, Any], spec: dict[str, Any]) -> None:
    from augledger.ops.registry import policy_vocabulary
    from augledger.policy import check_spec, policy_ops
    from augledger.spec import PolicySpec, validate_model

    try:
        policy = validate_model(PolicySpec, data, what="policy")
    except SpecError as exc:
        assert str(exc)
        return
    pipe = augledger.compile(augledger.parse_spec(spec))
    names, aliases = policy_vocabulary("image", policy_ops(policy))
    for violation in check_spec(policy, pipe.resolved_spec, op_names=names, aliases=aliases):
        assert violation.location and violation.message


records = st.lists(st.fixed_dictionaries({"op": op_names, "path": st.text(max_size=8)},
                                         optional={"params": st.dictionaries(param_names, json_value, max_size=3)}),
                   max_size=4)


@fuzz(300)
@given(records)
def test_record_checks_take_any_recorded_ops(ops: list[dict[str, Any]]) -> None:
    from augledger.policy import RecordCheck
    from augledger.spec import PolicySpec

    check = RecordCheck([PolicySpec.model_validate({"name": "p", "forbid": ["Lambda"], "max_ops_per_sample": 2,
                                                    "bounds": {"Affine.rotate": [-10, 10], "x.scale": [0, 1]}})])
    for violation in check.check("k", 0, ops):
        assert violation.location.startswith("'k' copy 0")
