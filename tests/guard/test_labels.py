"""Label integrity: drops recorded by index, labels unchanged, boxes inside, masks gain no classes,
problems counted in the manifest and quarantined with --strict-labels."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

import augledger
import augledger.cli.run  # registers `run` (imported here: importing the CLI the first time draws from `random`)
from augledger.cli._app import app
from augledger.ledger.parquet import read_ledger
from augledger.run.labels import index_labels, settle
from augledger.run.materialize import materialize
from augledger.run.options import RunOptions
from augledger.run.verify import verify

BOXES = {"format": "pascal_voc", "label_fields": ["labels", "ids"], "min_visibility": 0.5}
TARGETS = {"bboxes": {**BOXES, "min_area": 0.0, "clip": False}, "keypoints": {"format": "xy", "label_fields": ["names"],
                                                                          "remove_invisible": True}}


@pytest.fixture
def detection(tmp_path: Path) -> tuple[Path, Path]:
    """Two real photos with boxes: one near the right edge, so a shift right drops it by min_visibility."""
    from skimage import data

    src = tmp_path / "src"
    src.mkdir()
    for name, photo in (("a.png", data.astronaut()), ("b.png", data.coffee())):
        Image.fromarray(np.ascontiguousarray(photo[:80, :100])).save(src / name)
    mask = np.zeros((80, 100), dtype=np.uint8)
    mask[10:30, 10:40] = 100  # class ids far apart, so an interpolated edge lands on a value no class has
    mask[40:70, 50:90] = 200
    Image.fromarray(mask).save(src / "a_mask.png")
    ann = tmp_path / "ann.jsonl"
    ann.write_text("\n".join(json.dumps(r) for r in [
        {"key": "a.png", "label": "portrait", "bboxes": [[5, 5, 30, 30], [80, 40, 99, 70], [40, 10, 60, 30]],
         "labels": ["face", "edge", "hat"], "ids": [7, 8, 9], "mask": "a_mask.png"},
        {"key": "b.png", "label": "cup", "bboxes": [[10, 10, 50, 50]], "labels": ["cup"], "ids": [1]},
    ]) + "\n")
    return src, ann


def spec_of(**op_params: Any) -> dict[str, Any]:
    return {"schema": 1, "name": "det", "seed": 5,
            "targets": {"mask": True, "bboxes": BOXES},
            "ops": [{"op": "Affine", "p": 1.0, "params": {"translate_px": {"x": [30, 30], "y": [0, 0]}, **op_params}}]}


def test_dropped_boxes_are_recorded_by_index_and_labels_follow(detection: tuple[Path, Path], tmp_path: Path) -> None:
    src, ann = detection
    pipe = augledger.compile(augledger.parse_spec(spec_of()))
    result = materialize(pipe, src, tmp_path / "o", options=RunOptions(workers=0), annotations=ann)
    rows = {r["key"]: r for r in read_ledger(tmp_path / "o").rows()}
    a = json.loads(rows["a.png"]["targets"])
    # Shifted 30 px right on a 100 px wide image: the box at x 80-99 keeps none of itself, the one at 40-60 all.
    assert a["dropped"] == {"bboxes": [1]}
    assert a["labels"] == ["face", "hat"] and a["ids"] == [7, 9]
    assert a["label"] == "portrait"  # a class label never enters the pipeline
    assert np.allclose(a["bboxes"], [[35, 5, 60, 30], [70, 10, 90, 30]])
    assert "label_problems" not in a
    b = json.loads(rows["b.png"]["targets"])
    assert "dropped" not in b and b["labels"] == ["cup"]
    assert result.manifest["counts"]["labels"] == {"outputs_with_drops": 1, "bboxes_dropped": 1, "keypoints_dropped": 0,
                                                   "outputs_with_problems": 0, "problems": 0, "quarantined": 0}
    assert verify(tmp_path / "o").ok  # the re-made output records the same drops


def test_a_mask_that_gains_classes_is_counted_then_quarantined_with_strict_labels(
    detection: tuple[Path, Path], tmp_path: Path
) -> None:
    """Linear interpolation of a mask invents classes between 0, 100 and 200: checked, not assumed."""
    src, ann = detection
    pipe = augledger.compile(augledger.parse_spec(spec_of(rotate=[17, 17], mask_interpolation=1)))
    lenient = materialize(pipe, src, tmp_path / "lenient", options=RunOptions(workers=0), annotations=ann)
    a = json.loads({r["key"]: r for r in read_ledger(tmp_path / "lenient").rows()}["a.png"]["targets"])
    assert any(p.startswith("mask gained class value(s)") for p in a["label_problems"])
    assert lenient.manifest["counts"]["labels"]["outputs_with_problems"] == 1
    assert lenient.exit_code == 0

    strict = materialize(pipe, src, tmp_path / "strict", options=RunOptions(workers=0, strict_labels=True), annotations=ann)
    rows = {r["key"]: r for r in read_ledger(tmp_path / "strict").rows()}
    assert rows["a.png"]["status"] == "quarantined"
    assert rows["a.png"]["error"].startswith("label: mask gained class value(s)")
    assert rows["b.png"]["status"] == "ok"
    assert strict.manifest["counts"]["labels"]["quarantined"] == 1 and strict.exit_code == 3
    assert strict.manifest["options"]["strict_labels"] is True

    nearest = augledger.compile(augledger.parse_spec(spec_of(rotate=[17, 17])))
    clean = materialize(nearest, src, tmp_path / "nearest", options=RunOptions(workers=0, strict_labels=True), annotations=ann)
    assert clean.exit_code == 0 and clean.manifest["counts"]["labels"]["problems"] == 0


# -- the rules, one by one ------------------------------------------------------------------------------

def settled(before: dict[str, Any], after: dict[str, Any], targets: dict[str, Any] = TARGETS) -> list[str]:
    return settle(before, after, None, targets)[1].problems


IMAGE = np.zeros((50, 100, 3), dtype=np.uint8)


@pytest.mark.parametrize(("box", "fmt", "expected"), [
    ([10, 10, 20, 20], "pascal_voc", None),
    ([90, 10, 101, 20], "pascal_voc", "reaches outside the 100x50 image"),
    ([20, 10, 10, 20], "pascal_voc", "is empty or inverted"),
    ([10, 10, 10, 20], "pascal_voc", "is empty or inverted"),
    ([float("nan"), 1, 2, 3], "pascal_voc", "non-finite"),
    ([95, 10, 10, 10], "coco", "reaches outside"),
    ([0.5, 0.5, 0.2, 0.2], "yolo", None),
    ([0.95, 0.5, 0.2, 0.2], "yolo", "reaches outside"),
    ([0.1, 0.1, 1.2, 0.5], "albumentations", "reaches outside"),
])
def test_boxes_must_be_valid_and_inside(box: list[float], fmt: str, expected: str | None) -> None:
    targets = {"bboxes": {**TARGETS["bboxes"], "format": fmt}}
    problems = settled({"image": IMAGE}, {"image": IMAGE, "bboxes": [box]}, targets)
    assert (problems == []) if expected is None else (len(problems) == 1 and expected in problems[0])


def test_keypoints_outside_follow_the_declared_rule() -> None:
    after = {"image": IMAGE, "keypoints": [[10, 10], [120, 10]]}
    assert settled({"image": IMAGE}, after) == ["keypoint 1 at (120, 10) is outside the 100x50 image, though remove_invisible is set"]
    kept = {"keypoints": {**TARGETS["keypoints"], "remove_invisible": False}}
    assert settled({"image": IMAGE}, after, kept) == []


def test_masks_never_gain_values() -> None:
    mask = np.zeros((50, 100), dtype=np.uint8)
    mask[:10] = 3
    assert settled({"image": IMAGE, "mask": mask}, {"image": IMAGE, "mask": mask[::-1]}) == []
    blurred = mask.copy()
    blurred[10] = 1
    assert settled({"image": IMAGE, "mask": mask}, {"image": IMAGE, "mask": blurred})[0].startswith("mask gained class value(s) [1]")
    assert settled({"image": IMAGE, "masks": [mask]}, {"image": IMAGE, "masks": [blurred.astype(np.int32)]}) != []


def test_label_fields_are_restored_and_a_changed_one_is_a_problem() -> None:
    before = {"image": IMAGE, "bboxes": [[1, 1, 5, 5], [10, 10, 20, 20], [30, 30, 40, 40]], "labels": ["a", "b", "c"],
              "ids": [4, 5, 6]}
    indexed, index = index_labels(before, TARGETS)
    assert indexed["labels"] == [0, 1, 2] and index is not None
    after = {"image": IMAGE, "bboxes": [[1, 1, 5, 5], [30, 30, 40, 40]], "labels": [0.0, 2.0], "ids": [4.0, 6.0]}
    out, found = settle(before, after, index, TARGETS)
    assert out["labels"] == ["a", "c"] and out["ids"] == [4, 6] and found.dropped == {"bboxes": [1]} and not found.problems
    swapped = {**after, "ids": [6, 4]}
    _, found = settle(before, swapped, index, TARGETS)
    assert found.problems == ["label field 'ids' changed: expected [4, 6], got [6, 4]"]


def test_without_a_label_field_the_count_is_recorded() -> None:
    targets = {"bboxes": {**TARGETS["bboxes"], "label_fields": []}}
    before = {"image": IMAGE, "bboxes": [[1, 1, 5, 5], [10, 10, 20, 20]]}
    indexed, index = index_labels(before, targets)
    assert index is not None and index.fields == {} and indexed["bboxes"] is before["bboxes"]
    _, found = settle(before, {"image": IMAGE, "bboxes": [[1, 1, 5, 5]]}, index, targets)
    assert found.dropped == {"bboxes": 1}


def test_numeric_label_fields_survive_float32_and_mask_fill_is_allowed(tmp_path: Path) -> None:
    """Albumentations carries numeric label fields as float32 (123456789 -> 123456792.0): not a change.
    A mask filled by an op's declared fill_mask value gains that value by rule, not by interpolation."""
    src = tmp_path / "src"
    src.mkdir()
    Image.fromarray(np.full((60, 80, 3), 90, dtype=np.uint8)).save(src / "a.png")
    mask = np.full((60, 80), 3, dtype=np.uint8)
    mask[:, 40:] = 1  # values {1, 3}: no 0, the Affine's fill_mask
    Image.fromarray(mask).save(src / "a_mask.png")
    ann = tmp_path / "ann.jsonl"
    ann.write_text(json.dumps({"key": "a.png", "bboxes": [[5, 5, 30, 30], [40, 10, 70, 50]], "labels": ["x", "y"],
                               "ids": [123456789, 2], "mask": "a_mask.png"}) + "\n")
    spec = {"schema": 1, "name": "f32", "seed": 1, "targets": {"mask": True, "bboxes": BOXES},
            "ops": [{"op": "Affine", "p": 1.0, "params": {"rotate": [20, 20]}}]}
    pipe = augledger.compile(augledger.parse_spec(spec))
    result = materialize(pipe, src, tmp_path / "o", options=RunOptions(workers=0, strict_labels=True), annotations=ann)
    assert result.exit_code == 0, result.quarantined
    targets = json.loads(read_ledger(tmp_path / "o").rows()[0]["targets"])
    kept = [i for i in range(2) if i not in targets.get("dropped", {}).get("bboxes", [])]
    assert kept and targets["ids"] == [[123456789, 2][i] for i in kept] and "label_problems" not in targets
    out_mask = np.asarray(Image.open(tmp_path / "o" / targets["mask"]))
    assert 0 in out_mask  # the rotation filled corners with fill_mask 0, which the rule allows


def test_the_run_summary_says_how_many_outputs_have_label_problems(detection: tuple[Path, Path], tmp_path: Path) -> None:
    src, ann = detection
    spec = tmp_path / "spec.json"
    spec.write_text(json.dumps(spec_of(rotate=[17, 17], mask_interpolation=1)))
    result = CliRunner().invoke(app, ["run", str(spec), "--source", str(src), "--annotations", str(ann),
                                      "--out", str(tmp_path / "o"), "--workers", "0"])
    assert result.exit_code == 0, result.output
    assert "1 output(s) with label problems" in result.output and "--strict-labels quarantines them" in result.output
