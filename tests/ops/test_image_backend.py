"""Contract tests generated from the allowlist: every image op resolves, runs and replays.

A new op is covered by adding its name to ``IMAGE_OPS`` (and, if it has required params, one row
to ``REQUIRED_PARAMS``).
"""

from __future__ import annotations

import inspect
import json
from typing import Any

import numpy as np
import pytest

import augledger
from augledger.ops.image import COMPOSITIONS, IMAGE_OPS, albumentations

REQUIRED_PARAMS: dict[str, dict[str, Any]] = {
    "AtLeastOneBBoxRandomCrop": {"height": 32, "width": 32},
    "CenterCrop": {"height": 32, "width": 32},
    "ConstrainedCoarseDropout": {"mask_indices": [1]},
    "CropAndPad": {"percent": [-0.1, 0.1]},
    "Crop": {"x_min": 4, "y_min": 4, "x_max": 40, "y_max": 40},
    "CropNonEmptyMaskIfExists": {"height": 32, "width": 32},
    "GridElasticDeform": {"num_grid_xy": [4, 4], "magnitude": 5},
    "LongestMaxSize": {"max_size": 48},
    "RandomCrop": {"height": 32, "width": 32},
    "RandomResizedCrop": {"size": [32, 32]},
    "RandomSizedBBoxSafeCrop": {"height": 32, "width": 32},
    "RandomSizedCrop": {"min_max_height": [16, 48], "size": [32, 32]},
    "Resize": {"height": 32, "width": 32},
    "SmallestMaxSize": {"max_size": 48},
}
# Ops that legitimately change nothing on the sample below at their default params (with why).
UNCHANGED_ON_THIS_SAMPLE: dict[str, str] = {
    "Affine": "its defaults are the identity (scale 1, no rotation, shear or translation)",
    "Pad": "its default padding is 0",
    "RandomRotate90": "(k.png, epoch 1) draws 0 quarter turns",
    "XYMasking": "its default mask counts are 0",
    "NoOp": "it does nothing, by definition",
}
TARGETS = {"mask": True, "bboxes": {"format": "pascal_voc", "label_fields": ["labels"]}}


def sample(photo: np.ndarray) -> dict[str, Any]:
    mask = np.zeros(photo.shape[:2], dtype=np.uint8)
    mask[16:48, 16:48] = 1
    return {"image": photo, "mask": mask, "bboxes": [[16, 16, 48, 48]], "labels": [1]}


def pipeline_for(name: str) -> augledger.Pipeline:
    spec = {"schema": 1, "name": name, "targets": TARGETS, "ops": [{"op": name, "p": 1.0, "params": REQUIRED_PARAMS.get(name, {})}]}
    return augledger.compile(augledger.parse_spec(spec))


def test_allowlist_matches_the_backend() -> None:
    A = albumentations()
    for name in (*IMAGE_OPS, *COMPOSITIONS):
        assert inspect.isclass(getattr(A, name)), name
    assert len(set(IMAGE_OPS)) == len(IMAGE_OPS)
    for refused in ("Lambda", "FDA", "HistogramMatching", "Mosaic", "TextImage", "ShiftScaleRotate", "ToTensorV2", "PiecewiseAffine"):
        assert refused not in IMAGE_OPS


@pytest.mark.parametrize("name", IMAGE_OPS)
def test_every_op_resolves_runs_and_replays(name: str, photos: list[np.ndarray]) -> None:
    pipe = pipeline_for(name)
    # The resolved form is a fixed point: compiling it again changes nothing.
    again = augledger.compile(augledger.parse_spec(pipe.resolved_spec))
    assert again.fingerprint == pipe.fingerprint
    photo = photos[0].copy()
    data = sample(photo)
    a = pipe.apply(data, key="k.png", epoch=1, digests=True)
    b = again.apply(sample(photos[0]), key="k.png", epoch=1, digests=True)
    assert a.record.output_digest == b.record.output_digest
    assert a.record.to_dict() == {**b.record.to_dict(), "fingerprint": a.record.fingerprint}
    assert np.array_equal(photo, photos[0]), "the op modified its input"
    json.dumps(a.record.to_dict(), allow_nan=False)  # JSON-safe params
    pipe.replay(sample(photos[0]), a.record)
    assert [op["op"] for op in a.record.ops] == [f"albumentations.{name}"], "the op was not applied at p=1"
    out = a.sample
    changed = (
        out["image"].shape != photo.shape or out["image"].dtype != photo.dtype
        or not np.array_equal(out["image"], photo) or not np.array_equal(out["mask"], data["mask"])
        or not np.allclose(np.asarray(out["bboxes"], dtype=float).reshape(-1, 4), [[16, 16, 48, 48]])
    )
    if name in UNCHANGED_ON_THIS_SAMPLE:
        assert not changed, f"{name} now changes the sample; remove it from UNCHANGED_ON_THIS_SAMPLE"
    else:
        assert changed, f"{name} at p=1 left image, mask and boxes unchanged"


COMPOSED = {
    "RandomOrder": {"op": "RandomOrder", "params": {"n": 2}, "ops": [
        {"op": "HorizontalFlip", "p": 1.0}, {"op": "RandomBrightnessContrast", "p": 1.0}, {"op": "Blur", "p": 1.0}]},
    "OneOrOther": {"op": "OneOrOther", "p": 0.5, "ops": [{"op": "HorizontalFlip", "p": 1.0}, {"op": "VerticalFlip", "p": 1.0}]},
    "SelectiveChannelTransform": {"op": "SelectiveChannelTransform", "params": {"channels": [0, 2]},
                                  "ops": [{"op": "RandomBrightnessContrast", "p": 1.0}]},
}


@pytest.mark.parametrize("name", sorted(COMPOSED))
def test_compositions_run_replay_and_record_what_their_children_applied(name: str, photos: list[np.ndarray]) -> None:
    spec = {"schema": 1, "name": name, "targets": TARGETS, "ops": [COMPOSED[name]]}
    pipe = augledger.compile(augledger.parse_spec(spec))
    assert augledger.compile(augledger.parse_spec(pipe.resolved_spec)).fingerprint == pipe.fingerprint
    applied = set()
    for epoch in range(6):
        result = pipe.apply(sample(photos[1]), key="c.png", epoch=epoch)
        ops = [op["op"].split(".")[-1] for op in result.record.ops]
        assert ops, f"{name} applied nothing the record shows (epoch {epoch})"
        applied.update(ops)
        pipe.replay(sample(photos[1]), result.record)
    if name == "SelectiveChannelTransform":
        out = pipe.apply(sample(photos[1]), key="c.png", epoch=0).sample["image"]
        assert np.array_equal(out[..., 1], photos[1][..., 1]) and not np.array_equal(out[..., 0], photos[1][..., 0])
    if name == "OneOrOther":
        assert applied == {"HorizontalFlip", "VerticalFlip"}


def test_composition_rules_are_errors_not_silent_changes() -> None:
    def compile_ops(op: dict[str, Any]) -> None:
        augledger.compile(augledger.parse_spec({"schema": 1, "name": "c", "ops": [op]}))

    with pytest.raises(augledger.ParamError, match=r"ops\[0\]\.params\.n: n=3 but RandomOrder has 2 child op"):
        compile_ops({"op": "RandomOrder", "params": {"n": 3}, "ops": [{"op": "Blur"}, {"op": "HorizontalFlip"}]})
    with pytest.raises(augledger.ParamError, match="OneOrOther takes exactly 2 child ops"):
        compile_ops({"op": "OneOrOther", "ops": [{"op": "Blur"}]})
    with pytest.raises(augledger.ParamError, match=r"ops\[0\]\.ops\[0\]\.op: Affine is not a pixel-level transform"):
        compile_ops({"op": "SelectiveChannelTransform", "ops": [{"op": "Affine"}]})
    with pytest.raises(augledger.ParamError, match="channels must be a non-empty list of distinct"):
        compile_ops({"op": "SelectiveChannelTransform", "params": {"channels": [0, 0]}, "ops": [{"op": "Blur"}]})


@pytest.mark.parametrize(("value", "kind"), [(True, "bool"), ("64", "str"), (64.5, "float")])
def test_params_are_taken_as_written_not_coerced(value: Any, kind: str) -> None:
    spec = {"schema": 1, "name": "c", "ops": [{"op": "RandomCrop", "params": {"height": value, "width": 32}}]}
    with pytest.raises(augledger.ParamError, match=rf"ops\[0\]\.params\.height: RandomCrop: .*got {value!r} \({kind}\)"):
        augledger.compile(augledger.parse_spec(spec))


def test_refused_ops_say_why() -> None:
    from augledger.ops.image import REFUSED

    with pytest.raises(augledger.UnknownOpError, match="'Lambda' is not allowed in a spec: runs arbitrary Python code"):
        augledger.compile(augledger.parse_spec({"schema": 1, "name": "c", "ops": [{"op": "Lambda"}]}))
    A = albumentations()
    assert not set(REFUSED) & set(IMAGE_OPS)
    assert all(inspect.isclass(getattr(A, name)) for name in REFUSED)


def test_float_outputs_are_a_storage_problem_unless_restored() -> None:
    def problem(ops: list[dict[str, Any]]) -> str | None:
        return augledger.compile(augledger.parse_spec({"schema": 1, "name": "c", "ops": ops})).storage_problem()

    assert "ops[1] (Normalize)" in (problem([{"op": "Blur"}, {"op": "Normalize"}]) or "")
    assert "ops[0].ops[1] (ToFloat)" in (problem([{"op": "OneOf", "ops": [{"op": "Blur"}, {"op": "ToFloat"}]}]) or "")
    assert problem([{"op": "ToFloat", "p": 1}, {"op": "FromFloat", "p": 1}]) is None
    assert problem([{"op": "ToFloat", "p": 1}, {"op": "FromFloat", "p": 0.5}]) is not None
    assert problem([{"op": "Blur"}]) is None


def test_the_readme_names_every_refused_op() -> None:
    from pathlib import Path

    from augledger.ops.image import REFUSED

    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text()
    section = readme[readme.index("### What a spec may name"):]
    named_3d = {n for n in REFUSED if n.endswith("3D") or n == "CubicSymmetry"}
    missing = [n for n in REFUSED if f"`{n}`" not in section and n not in named_3d]
    assert not missing, f"README's 'What a spec may name' does not list {missing}"
