"""Spec loading, validation errors, resolution and fingerprints."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import pytest
import yaml

import augledger
from augledger import ParamError, SpecError, UnknownOpError
from augledger.spec import diff_resolved
from helpers import STANDARD_SPEC

GOLDEN = Path(__file__).parent / "golden"


def fp(data: dict[str, Any]) -> str:
    return augledger.compile(augledger.parse_spec(data)).fingerprint


# -- fingerprints ---------------------------------------------------------------------------------


def test_golden_fingerprint_never_changes() -> None:
    expected = (GOLDEN / "spec_v1.fingerprint").read_text().strip()
    assert augledger.compile(augledger.load_spec(GOLDEN / "spec_v1.yaml")).fingerprint == expected


def test_reformatting_and_key_order_do_not_change_fingerprint(tmp_path: Path) -> None:
    base = fp(STANDARD_SPEC)
    # YAML with comments, flow vs block style, keys reordered everywhere.
    reordered = {k: STANDARD_SPEC[k] for k in reversed(list(STANDARD_SPEC))}
    reordered["ops"] = [{k: op[k] for k in reversed(list(op))} for op in STANDARD_SPEC["ops"]]
    text = "# a comment\n" + yaml.safe_dump(reordered, default_flow_style=False, sort_keys=False)
    path = tmp_path / "spec.yaml"
    path.write_text(text)
    assert augledger.compile(augledger.load_spec(path)).fingerprint == base
    json_path = tmp_path / "spec.json"
    json_path.write_text(json.dumps(STANDARD_SPEC, indent=4))
    assert augledger.compile(augledger.load_spec(json_path)).fingerprint == base


def test_equivalent_values_share_a_fingerprint() -> None:
    spec = copy.deepcopy(STANDARD_SPEC)
    base = fp(spec)
    # 1 vs 1.0, bare vs namespaced op names, defaults written out vs omitted.
    spec["ops"][1] = {
        "op": "albumentations.Affine",
        "p": 0.7,
        "params": {"rotate": [-15.0, 15.0], "scale": [0.9, 1.1], "shear": [0, 0], "fit_output": False},
    }
    spec["ops"][0] = {"op": "HorizontalFlip"}  # HorizontalFlip's default p is 0.5
    assert fp(spec) == base
    # A scalar limit is normalised by the backend's own rules: Rotate(limit=15) means [-15, 15].
    a = {**STANDARD_SPEC, "ops": [{"op": "Rotate", "p": 1, "params": {"limit": 15}}]}
    b = {**STANDARD_SPEC, "ops": [{"op": "Rotate", "p": 1.0, "params": {"limit": [-15, 15]}}]}
    assert fp(a) == fp(b)


def test_labels_do_not_change_fingerprint_but_meaning_does() -> None:
    base = fp(STANDARD_SPEC)
    assert fp({**STANDARD_SPEC, "name": "other", "seed": 99, "description": "x"}) == base
    changes: list[dict[str, Any]] = []
    for mutate in (
        lambda s: s["ops"][0].update(p=0.51),
        lambda s: s["ops"][1]["params"].update(rotate=[-15, 16]),
        lambda s: s["ops"][2]["ops"][0]["params"].update(blur_limit=[3, 9]),
        lambda s: s["ops"].reverse(),
        lambda s: s.update(splits=["train", "test"]),
        lambda s: s.update(targets={"mask": True}),
        lambda s: s["ops"].pop(),
    ):
        spec = copy.deepcopy(STANDARD_SPEC)
        mutate(spec)
        changes.append(spec)
    prints = [fp(s) for s in changes]
    assert base not in prints
    assert len(set(prints)) == len(prints)


def test_resolved_spec_is_a_fixed_point() -> None:
    pipe = augledger.compile(augledger.parse_spec(STANDARD_SPEC))
    again = augledger.compile(augledger.parse_spec(pipe.resolved_spec))
    assert again.resolved_spec == pipe.resolved_spec
    assert again.fingerprint == pipe.fingerprint


def test_diff_resolved_names_param_locations() -> None:
    a = augledger.compile(augledger.parse_spec(STANDARD_SPEC)).resolved_spec
    spec = copy.deepcopy(STANDARD_SPEC)
    spec["ops"][1]["params"]["rotate"] = [-10, 10]
    b = augledger.compile(augledger.parse_spec(spec)).resolved_spec
    assert diff_resolved(a, b) == [("ops[1].params.rotate", [-15.0, 15.0], [-10.0, 10.0])]
    assert diff_resolved(a, a) == []


# -- errors ---------------------------------------------------------------------------------------


def spec_with(op: dict[str, Any]) -> dict[str, Any]:
    return {"schema": 1, "name": "t", "ops": [{"op": "HorizontalFlip"}, op]}


def test_unknown_op_suggests_the_closest_name() -> None:
    with pytest.raises(UnknownOpError, match=r"ops\[1\]\.op: op 'Afine' is not an allowed image op; did you mean 'Affine'"):
        augledger.compile(augledger.parse_spec(spec_with({"op": "Afine"})))


@pytest.mark.parametrize("name", ["Lambda", "albumentations.Lambda", "os.system", "albumentations.core.composition.Compose"])
def test_only_allowlisted_ops_are_accepted(name: str) -> None:
    with pytest.raises(UnknownOpError, match=r"ops\[1\]\.op"):
        augledger.compile(augledger.parse_spec(spec_with({"op": name})))


def test_misspelled_param_names_location_and_fix() -> None:
    with pytest.raises(ParamError, match=r"ops\[1\]\.params\.rotat: unknown param for Affine; did you mean 'rotate'\?"):
        augledger.compile(augledger.parse_spec(spec_with({"op": "Affine", "params": {"rotat": 3}})))


def test_reversed_range_is_an_error_not_silently_sorted() -> None:
    with pytest.raises(ParamError, match=r"ops\[1\]\.params\.blur_limit: .*got \[7, 3\]\. Swap the bounds: \[3, 7\]"):
        augledger.compile(augledger.parse_spec(spec_with({"op": "GaussianBlur", "params": {"blur_limit": [7, 3]}})))
    with pytest.raises(ParamError, match=r"ops\[1\]\.params\.scale\.x: .*got \[1\.2, 0\.8\]"):
        augledger.compile(augledger.parse_spec(spec_with({"op": "Affine", "params": {"scale": {"x": [1.2, 0.8]}}})))


def test_wrong_type_names_field_and_value() -> None:
    with pytest.raises(ParamError, match=r"ops\[1\]\.params\.blur_limit: .*got 'big'"):
        augledger.compile(augledger.parse_spec(spec_with({"op": "GaussianBlur", "params": {"blur_limit": "big"}})))


def test_missing_required_param() -> None:
    with pytest.raises(ParamError, match=r"ops\[1\]\.params: Resize requires param\(s\) height, width"):
        augledger.compile(augledger.parse_spec(spec_with({"op": "Resize"})))


def test_bad_probability_and_unknown_top_level_key() -> None:
    bad = {"schema": 1, "name": "t", "sed": 3, "ops": [{"op": "HorizontalFlip", "p": 2}]}
    with pytest.raises(SpecError) as info:
        augledger.parse_spec(bad)
    text = str(info.value)
    assert "ops[0].p: Input should be less than or equal to 1; got 2" in text
    assert "sed: unknown key; did you mean 'seed'?" in text


def test_every_problem_is_reported_at_once() -> None:
    spec = {"schema": 1, "name": "t", "ops": [{"op": "Afine"}, {"op": "Affine", "params": {"rotat": 1}}]}
    with pytest.raises(SpecError, match=r"2 problems:\n  ops\[0\]\.op: .*\n  ops\[1\]\.params\.rotat"):
        augledger.compile(augledger.parse_spec(spec))


def test_composition_rules() -> None:
    with pytest.raises(ParamError, match=r"ops\[1\]\.ops: OneOf needs a non-empty list"):
        augledger.compile(augledger.parse_spec(spec_with({"op": "OneOf"})))
    with pytest.raises(ParamError, match=r"ops\[1\]\.ops: Blur is a transform, not a composition"):
        augledger.compile(augledger.parse_spec(spec_with({"op": "Blur", "ops": [{"op": "Blur"}]})))
    with pytest.raises(ParamError, match=r"ops\[1\]\.params\.n: n must be a positive int; got 0"):
        augledger.compile(augledger.parse_spec(spec_with({"op": "SomeOf", "params": {"n": 0}, "ops": [{"op": "Blur"}]})))
    nested = spec_with({"op": "Sequential", "ops": [{"op": "OneOf", "ops": [{"op": "Blurr"}]}]})
    with pytest.raises(UnknownOpError, match=r"ops\[1\]\.ops\[0\]\.ops\[0\]\.op: .*did you mean 'Blur'"):
        augledger.compile(augledger.parse_spec(nested))


def test_non_finite_numbers_are_refused(tmp_path: Path) -> None:
    path = tmp_path / "nan.yaml"
    path.write_text("schema: 1\nname: n\nops:\n  - {op: Affine, params: {rotate: .nan}}\n")
    with pytest.raises(ParamError, match=r"ops\[0\]\.params\.rotate: expected a finite number; got nan"):
        augledger.load_spec(path)
    with pytest.raises(ParamError, match=r"ops\[0\]\.params\.scale\[1\]: expected a finite number; got inf"):
        augledger.parse_spec({"schema": 1, "name": "n", "ops": [{"op": "Affine", "params": {"scale": [1, float("inf")]}}]})


def test_unsafe_yaml_tags_are_refused(tmp_path: Path) -> None:
    path = tmp_path / "evil.yaml"
    path.write_text('schema: 1\nname: !!python/object/apply:os.system ["echo pwned"]\nops: [{op: Blur}]\n')
    with pytest.raises(SpecError, match=r"unsupported YAML tag .*line 2.*A spec is data, never code"):
        augledger.load_spec(path)


def test_duplicate_keys_are_refused(tmp_path: Path) -> None:
    path = tmp_path / "dup.yaml"
    path.write_text("schema: 1\nname: a\nseed: 1\nseed: 2\nops: [{op: Blur}]\n")
    with pytest.raises(SpecError, match=r"duplicate key 'seed' at line 4"):
        augledger.load_spec(path)
    jpath = tmp_path / "dup.json"
    jpath.write_text('{"schema": 1, "name": "a", "name": "b", "ops": [{"op": "Blur"}]}')
    with pytest.raises(SpecError, match=r"duplicate key\(s\) \['name'\]"):
        augledger.load_spec(jpath)


def test_missing_file_and_non_mapping() -> None:
    with pytest.raises(SpecError, match=r"spec file 'nope\.yaml' does not exist"):
        augledger.load_spec("nope.yaml")
    with pytest.raises(SpecError, match=r"must be a mapping"):
        augledger.loads_spec("- a\n- b\n")
    with pytest.raises(SpecError, match=r"load_spec takes a file path; .* use augledger\.loads_spec\(text\)"):
        augledger.load_spec("schema: 1\nname: t\nops: [{op: Blur}]\n")


def test_loads_spec_reads_yaml_and_strict_json() -> None:
    text = '{"schema": 1, "name": "t", "ops": [{"op": "Blur"}]}'
    assert augledger.loads_spec(text) == augledger.loads_spec(text, format="json")
    assert augledger.loads_spec("schema: 1\nname: t\nops: [{op: Blur}]\n").name == "t"
    with pytest.raises(SpecError, match="is not valid JSON"):
        augledger.loads_spec("schema: 1", format="json")


def test_spec_files_must_be_yaml_or_json(tmp_path: Path) -> None:
    path = tmp_path / "aug.txt"
    path.write_text("schema: 1\nname: t\nops: [{op: Blur}]\n")
    with pytest.raises(SpecError, match=r"must end in \.yaml, \.yml or \.json; got '\.txt'"):
        augledger.load_spec(path)
    upper = tmp_path / "AUG.YML"
    upper.write_text(path.read_text())
    assert augledger.load_spec(upper).name == "t"


def test_schema_version_is_required() -> None:
    with pytest.raises(SpecError, match=r"schema: required key is missing"):
        augledger.parse_spec({"name": "t", "ops": [{"op": "Blur"}]})
    with pytest.raises(SpecError, match=r"schema: Input should be 1; got 2"):
        augledger.parse_spec({"schema": 2, "name": "t", "ops": [{"op": "Blur"}]})


def test_json_schema_lists_allowed_ops_modalities_and_targets() -> None:
    from augledger.ops.registry import spec_json_schema

    schema = spec_json_schema()
    enum = schema["$defs"]["OpSpec"]["properties"]["op"]["enum"]
    assert "Affine" in enum and "albumentations.Affine" in enum and "Lambda" not in enum
    assert schema["properties"]["modality"]["enum"] == ["audio", "image", "tabular", "text"]
    image = next(b for b in schema["allOf"] if b["if"]["properties"]["modality"]["const"] == "image")
    targets = image["then"]["properties"]["targets"]
    assert "$ref" not in json.dumps(targets)  # nested anywhere, it must stand alone
    assert targets["properties"]["bboxes"]["anyOf"][0]["properties"]["format"]["enum"][0] == "pascal_voc"


def test_unknown_modality_names_the_field_and_the_choices() -> None:
    with pytest.raises(SpecError, match=r"modality: unknown modality 'imge'; did you mean 'image'\?"):
        augledger.compile(augledger.parse_spec({**STANDARD_SPEC, "modality": "imge"}))
    with pytest.raises(SpecError, match=r"modality: String should match pattern"):
        augledger.parse_spec({**STANDARD_SPEC, "modality": "../image"})


def test_targets_are_validated_by_the_backend_with_locations() -> None:
    bad = {**STANDARD_SPEC, "targets": {"bboxes": {"fromat": "coco"}}}
    with pytest.raises(SpecError) as info:
        augledger.compile(augledger.parse_spec(bad))
    message = str(info.value)
    assert "targets.bboxes.fromat: unknown key; did you mean 'format'?" in message
    assert "targets.bboxes.format: required key is missing" in message
    assert info.value.location.startswith("targets.bboxes")


def test_a_param_beside_op_is_pointed_under_params() -> None:
    spec = {"schema": 1, "name": "t", "ops": [{"op": "SomeOf", "n": 2, "ops": [{"op": "Blur"}]}]}
    with pytest.raises(SpecError, match=r"ops\[0\]\.n: unknown key; an op takes op, p, params, ops; if 'n' is a param of the op, write it under params: \{params: \{n: 2\}\}"):
        augledger.parse_spec(spec)
