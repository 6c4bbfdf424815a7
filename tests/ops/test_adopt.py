"""Adopting Albumentations pipelines: ``from_albumentations``, ``spec import``, and deprecated names.

The outputs of an adopted spec must equal the raw ``Compose``'s when both draw from the same
generators: the raw Compose gets ``set_random_state(*generators_for(pipe.sample_seed(...)))``,
which is what augledger's applier installs (benchmarks/overhead.py does the same).
"""

from __future__ import annotations

import contextlib
import json
import random
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from typer.testing import CliRunner

import augledger
import augledger.cli.ops
import augledger.cli.spec
from augledger.cli._app import app
from augledger.ops.image import DEPRECATED_ALIASES, IMAGE_OPS, albumentations, example_sample
from augledger.ops.image.describe import EXAMPLES
from augledger.seeding import generators_for

KEYS = [f"img/{i}.png" for i in range(8)]


@pytest.fixture(scope="module")
def A() -> Any:
    return albumentations()


@contextlib.contextmanager
def library_calls() -> Iterator[None]:
    """Raw Albumentations constructions: their warnings (deprecated aliases, lambdas) are not ours, and
    a Compose without a seed draws its own from the global RNGs, which the test must leave as it found them."""
    py_state, np_state = random.getstate(), np.random.get_state()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        yield
    random.setstate(py_state)
    np.random.set_state(np_state)


def raw(A: Any, transforms: list[Any], **kwargs: Any) -> Any:
    with library_calls():
        return A.Compose(transforms, **kwargs)


def assert_same_outputs(pipe: augledger.Pipeline, compose: Any, samples: list[dict[str, Any]], epochs: int = 2) -> None:
    for epoch in range(epochs):
        for key, sample in zip(KEYS, samples, strict=False):
            compose.set_random_state(*generators_for(pipe.sample_seed(key=key, epoch=epoch)))
            expected = compose(**sample)
            got = pipe.apply(sample, key=key, epoch=epoch).sample
            for field in ("image", "mask", "bboxes"):
                if field in sample:
                    assert np.array_equal(np.asarray(got[field]), np.asarray(expected[field])), (key, epoch, field)


def photo_samples(photos: list[np.ndarray], *, boxes: bool = False) -> list[dict[str, Any]]:
    out = []
    for i in range(len(KEYS)):
        sample: dict[str, Any] = {"image": photos[i % len(photos)]}
        if boxes:
            sample |= {"bboxes": [[8.0, 8.0, 40.0, 48.0]], "labels": [i]}
        out.append(sample)
    return out


def test_a_saved_albumentations_json_imports_to_a_spec_with_the_same_outputs(
    A: Any, tmp_path: Path, photos: list[np.ndarray]
) -> None:
    """The issue's test: ``A.save`` -> ``spec import`` -> outputs equal to the raw Compose's."""
    with library_calls():
        compose = raw(A, [
            A.HorizontalFlip(p=0.5),
            A.ShiftScaleRotate(shift_limit=0.1, scale_limit=0.15, rotate_limit=20, p=0.8),
            A.OneOf([A.GaussianBlur(blur_limit=(3, 5)), A.MotionBlur(), A.RandomBrightnessContrast(p=1.0)], p=0.7),
            A.SomeOf([A.HueSaturationValue(), A.ToGray(), A.CoarseDropout()], n=2, p=0.9),
            A.RandomCrop(height=48, width=48, p=1.0),
        ], bbox_params=A.BboxParams(format="pascal_voc", label_fields=["labels"], min_visibility=0.1))
    saved = tmp_path / "pipeline.json"
    A.save(compose, str(saved))
    out = tmp_path / "spec.yaml"
    result = CliRunner().invoke(app, ["spec", "import", str(saved), "-o", str(out), "--name", "adopted"])
    assert result.exit_code == 0, result.output
    pipe = augledger.compile(augledger.load_spec(out))
    assert result.output.strip().endswith(pipe.fingerprint)
    assert out.read_text().startswith("# Imported from ")
    assert pipe.name == "adopted"
    # The Compose as the file describes it (A.load), and the one built in code: the same outputs.
    with library_calls():
        loaded = A.load(str(saved))
    assert_same_outputs(pipe, loaded, photo_samples(photos, boxes=True))
    assert_same_outputs(pipe, compose, photo_samples(photos, boxes=True))
    # In Python, from the object: the same spec.
    assert augledger.compile(augledger.from_albumentations(compose, name="adopted")).fingerprint == pipe.fingerprint


def test_yaml_files_and_nested_compositions(A: Any, tmp_path: Path, photos: list[np.ndarray]) -> None:
    with library_calls():
        compose = raw(A, [
            A.Sequential([A.VerticalFlip(), A.Rotate(limit=15)], p=0.8),
            A.Compose([A.Blur(p=1.0)], p=0.5),
            A.OneOrOther(A.Posterize(p=1.0), A.Solarize(p=1.0)),
            A.RandomOrder([A.Sharpen(), A.Emboss(), A.CLAHE()], n=2),
        ])
    saved = tmp_path / "pipeline.yaml"
    A.save(compose, str(saved), data_format="yaml")
    result = CliRunner().invoke(app, ["spec", "import", str(saved), "-o", str(tmp_path / "s.yaml")])
    assert result.exit_code == 0, result.output
    spec = augledger.load_spec(tmp_path / "s.yaml")
    assert [op.op for op in spec.ops] == ["Sequential", "Sequential", "OneOrOther", "RandomOrder"]
    pipe = augledger.compile(spec)
    assert_same_outputs(pipe, compose, photo_samples(photos))


def test_refused_and_unknown_ops_name_the_op_and_the_path(A: Any) -> None:
    with library_calls():
        compose = raw(A, [A.HorizontalFlip(), A.Blur(), A.OneOf([A.Blur(), A.Lambda(image=lambda x, **_: x)])])
    with pytest.raises(augledger.UnknownOpError, match=r"transforms\[2\]\.transforms\[1\]: Lambda cannot be adopted.*arbitrary"):
        augledger.from_albumentations(compose)
    data = {"__version__": "2.0.8", "transform": {"__class_fullname__": "Compose", "p": 1.0, "transforms": [
        {"__class_fullname__": "HorizontalFlip", "p": 0.5}, {"__class_fullname__": "Blur", "p": 0.5},
        {"__class_fullname__": "my_project.MyTransform", "p": 0.5}]}}
    with pytest.raises(augledger.UnknownOpError, match=r"transforms\[2\]: my_project\.MyTransform is not"):
        augledger.from_albumentations(data)
    with pytest.raises(augledger.SpecError, match="additional_targets"):
        augledger.from_albumentations(raw(A, [A.Blur()], additional_targets={"image2": "image"}))


def test_every_allowlisted_op_round_trips_through_to_dict(A: Any) -> None:
    """``A.to_dict`` of each op, built with its example params, adopts to the spec naming it directly."""
    for name in IMAGE_OPS:
        params = EXAMPLES.get(name, {})
        spec = augledger.parse_spec({"schema": 1, "name": "x", "ops": [{"op": name, "p": 1.0, "params": params}]})
        direct = augledger.compile(spec)
        with library_calls():
            built = getattr(A, name)(p=1.0, **params)
        adopted = augledger.from_albumentations(A.to_dict(raw(A, [built])), name="x", description="")
        assert augledger.compile(adopted).fingerprint == direct.fingerprint, name


# -- deprecated names --------------------------------------------------------------------------------------------


def compile_ops(*ops: dict[str, Any]) -> augledger.Pipeline:
    return augledger.compile(augledger.parse_spec({"schema": 1, "name": "x", "ops": list(ops)}))


@pytest.mark.parametrize(("alias", "modern"), [
    ({"op": "ShiftScaleRotate", "p": 0.7, "params": {"shift_limit": 0.1, "scale_limit": 0.2, "rotate_limit": 30}},
     {"op": "Affine", "p": 0.7, "params": {"translate_percent": [-0.1, 0.1], "scale": [0.8, 1.2], "rotate": [-30, 30]}}),
    ({"op": "ShiftScaleRotate"},  # its own defaults, and p 0.5
     {"op": "Affine", "p": 0.5, "params": {"translate_percent": [-0.0625, 0.0625], "scale": [0.9, 1.1], "rotate": [-45, 45]}}),
    ({"op": "albumentations.ShiftScaleRotate", "params": {"shift_limit_x": [0, 0.2], "border_mode": 4, "fill": 7,
                                                          "interpolation": 2, "rotate_method": "ellipse"}},
     {"op": "Affine", "params": {"translate_percent": {"x": [0, 0.2], "y": [-0.0625, 0.0625]}, "scale": [0.9, 1.1],
                                 "rotate": [-45, 45], "border_mode": 4, "fill": 7, "interpolation": 2,
                                 "rotate_method": "ellipse"}}),
    ({"op": "TimeReverse", "p": 1.0}, {"op": "HorizontalFlip", "p": 1.0}),
], ids=lambda v: json.dumps(v)[:60] if isinstance(v, dict) else str(v))
def test_deprecated_names_fingerprint_as_their_modern_equivalent(A: Any, alias: dict[str, Any], modern: dict[str, Any]) -> None:
    pipe, equivalent = compile_ops(alias), compile_ops(modern)
    assert pipe.fingerprint == equivalent.fingerprint
    assert pipe.resolved_spec["ops"][0]["op"] == f"albumentations.{modern['op']}"
    # The same outputs as the deprecated class itself, given the same generators.
    bare = alias["op"].removeprefix("albumentations.")
    with library_calls():
        original = raw(A, [getattr(A, bare)(**alias.get("params", {}), **({"p": alias["p"]} if "p" in alias else {}))])
    image = example_sample()["image"]
    assert_same_outputs(pipe, original, [{"image": image}] * len(KEYS), epochs=3)


def test_shift_scale_rotate_equals_a_raw_affine_with_the_mapped_params(A: Any, photos: list[np.ndarray]) -> None:
    pipe = compile_ops({"op": "ShiftScaleRotate", "p": 0.9, "params": {"shift_limit": 0.2, "scale_limit": [-0.3, 0.1],
                                                                       "rotate_limit": [-10, 40], "border_mode": 1}})
    affine = raw(A, [A.Affine(translate_percent={"x": (-0.2, 0.2), "y": (-0.2, 0.2)}, scale=(0.7, 1.1),
                              rotate=(-10, 40), border_mode=1, p=0.9)])
    assert_same_outputs(pipe, affine, photo_samples(photos), epochs=3)


def test_deprecated_names_report_their_own_params() -> None:
    with pytest.raises(augledger.ParamError, match=r"ops\[0\]\.params\.shift_limt: .*did you mean 'shift_limit'"):
        compile_ops({"op": "ShiftScaleRotate", "params": {"shift_limt": 0.1}})
    with pytest.raises(augledger.ParamError, match=r"ops\[0\]\.params\.rotate_limit: a range must be \[low, high\].*\[-30, 30\]"):
        compile_ops({"op": "ShiftScaleRotate", "params": {"rotate_limit": [30, -30]}})
    with pytest.raises(augledger.ParamError, match=r"ops\[0\]\.params\.rotate_limit: .*got '30' \(str\)"):
        compile_ops({"op": "ShiftScaleRotate", "params": {"rotate_limit": "30"}})
    with pytest.raises(augledger.ParamError, match=r"ops\[0\]\.params: ShiftScaleRotate .* rejected its params: .*shift_limit_x must be within \[-1, 1\]"):
        compile_ops({"op": "ShiftScaleRotate", "params": {"shift_limit": 2}})
    assert set(DEPRECATED_ALIASES) == {"ShiftScaleRotate", "TimeReverse"}
    # TimeMasking's int mask count draws nothing; a validated XYMasking always draws: refused, with the fix.
    with pytest.raises(augledger.UnknownOpError, match=r"'TimeMasking' is not allowed.*use \{op: XYMasking"):
        compile_ops({"op": "TimeMasking"})


def test_a_compose_with_p_below_1_imports_with_a_warning(A: Any, tmp_path: Path) -> None:
    """A spec has no top-level p: the ops go into one Sequential(p), which draws once more than the
    Compose did, so outputs match in distribution only; the import says so instead of claiming more."""
    with library_calls():
        compose = A.Compose([A.HorizontalFlip(p=1.0), A.Blur(p=1.0)], p=0.95)
    with pytest.warns(UserWarning, match="in distribution, not draw for draw"):
        spec = augledger.from_albumentations(A.to_dict(compose))
    assert spec.ops[0].op == "Sequential" and spec.ops[0].p == 0.95
    with library_calls():
        A.save(compose, str(tmp_path / "p95.json"))
    result = CliRunner().invoke(app, ["spec", "import", str(tmp_path / "p95.json"), "-o", str(tmp_path / "p95.yaml")])
    assert result.exit_code == 0 and "in distribution, not draw for draw" in result.output
