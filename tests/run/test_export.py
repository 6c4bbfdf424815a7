"""Exported annotations: standard readers load them, and their boxes are the ledger's."""

from __future__ import annotations

import csv
import json
import os
import subprocess
import xml.etree.ElementTree as ET
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import augledger
from augledger.ledger import read_ledger
from augledger.run.materialize import materialize
from augledger.run.options import RunOptions
from augledger.run.verify import verify
from helpers import SCRIPT

DET = {
    "schema": 1, "name": "det", "seed": 11,
    "targets": {"bboxes": {"format": "coco", "label_fields": ["labels"], "min_visibility": 0.3}},
    "ops": [{"op": "HorizontalFlip", "p": 0.5}, {"op": "RandomResizedCrop", "params": {"size": [48, 64], "scale": [0.5, 1.0]}}],
}


@pytest.fixture(scope="module")
def detection(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    root = tmp_path_factory.mktemp("det")
    src = root / "src"
    src.mkdir()
    rng = np.random.default_rng(3)
    rows = []
    for i in range(6):
        Image.fromarray(rng.integers(0, 255, (60, 80, 3), dtype=np.uint8)).save(src / f"{i}.png")
        rows.append({"key": f"{i}.png", "bboxes": [[10 + i, 12, 30, 20], [40, 5, 25, 40]], "labels": ["cat", "dog"]})
    ann = root / "ann.jsonl"
    ann.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return src, ann


def run(tmp_path: Path, detection: tuple[Path, Path], fmt: str, **options: object) -> Path:
    src, ann = detection
    pipe = augledger.compile(augledger.parse_spec(DET))
    out = tmp_path / fmt
    materialize(pipe, src, out, annotations=ann, options=RunOptions(copies=2, export_annotations=fmt, **options))  # type: ignore[arg-type]
    return out


def size_of(path: Path) -> tuple[int, int]:
    with Image.open(path) as im:
        return im.size


def ledger_boxes(out: Path) -> dict[str, list[list[float]]]:
    return {r["output_path"]: json.loads(r["targets"])["bboxes"] for r in read_ledger(out).rows() if r["status"] == "ok"}


def test_coco_export_loads_with_pycocotools_and_matches_the_ledger(tmp_path: Path, detection: tuple[Path, Path]) -> None:
    from pycocotools.coco import COCO

    out = run(tmp_path, detection, "coco", include_original=True)
    coco = COCO(str(out / "annotations.coco.json"))
    boxes = ledger_boxes(out)
    assert len(coco.getImgIds()) == len(boxes) == 18
    assert {c["name"] for c in coco.loadCats(coco.getCatIds())} == {"cat", "dog"}
    for image in coco.loadImgs(coco.getImgIds()):
        assert (image["width"], image["height"]) == size_of(out / image["file_name"])
        got = sorted(a["bbox"] for a in coco.loadAnns(coco.getAnnIds(imgIds=image["id"])))
        assert np.allclose(got, sorted(boxes[image["file_name"]]), atol=1e-3)  # the spec's format is coco too
    assert verify(out).ok


def test_yolo_export_is_a_txt_per_image_plus_classes(tmp_path: Path, detection: tuple[Path, Path]) -> None:
    out = run(tmp_path, detection, "yolo")
    classes = (out / "classes.txt").read_text().split()
    assert classes == ["cat", "dog"]
    for path, boxes in ledger_boxes(out).items():
        w, h = size_of(out / path)
        lines = [line.split() for line in (out / path).with_suffix(".txt").read_text().splitlines()]
        assert len(lines) == len(boxes)
        for (cls, cx, cy, bw, bh), (x, y, ww, hh) in zip(sorted(lines, key=lambda parts: float(parts[1])), sorted(boxes), strict=True):
            assert classes[int(cls)] in ("cat", "dog")
            assert np.allclose([float(cx) * w, float(cy) * h, float(bw) * w, float(bh) * h],
                               [x + ww / 2, y + hh / 2, ww, hh], atol=1e-3)
    assert verify(out).ok
    # The export is checked too: a label file edited by hand is named.
    victim = next((out / "augmented").glob("*.txt"))
    victim.write_text("0 0.5 0.5 1 1\n")
    assert [p.message for p in verify(out).problems] == [
        f"yolo export file {victim.relative_to(out).as_posix()} does not match the ledger"
    ]


def test_voc_and_csv_exports(tmp_path: Path, detection: tuple[Path, Path]) -> None:
    out = run(tmp_path, detection, "voc")
    for path, boxes in ledger_boxes(out).items():
        root = ET.parse((out / path).with_suffix(".xml")).getroot()
        assert root.findtext("filename") == Path(path).name
        got = sorted([float(o.findtext(f"bndbox/{k}") or 0) for k in ("xmin", "ymin", "xmax", "ymax")] for o in root.iter("object"))
        assert np.allclose(got, sorted([x, y, x + w, y + h] for x, y, w, h in boxes), atol=1e-3)
        assert sorted(o.findtext("name") for o in root.iter("object")) == sorted(
            json.loads(next(r["targets"] for r in read_ledger(out).rows() if r["output_path"] == path))["labels"])
    out = run(tmp_path, detection, "csv")
    with (out / "annotations.csv").open() as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 12 and {r["path"] for r in rows} == set(ledger_boxes(out))
    assert all(json.loads(r["targets"])["bboxes"] == ledger_boxes(out)[r["path"]] for r in rows)


def test_another_export_on_rerun_replaces_the_first(tmp_path: Path, detection: tuple[Path, Path]) -> None:
    src, ann = detection
    out = run(tmp_path, detection, "yolo")
    spec = tmp_path / "det.json"
    spec.write_text(json.dumps(DET))
    cli = subprocess.run([SCRIPT, "run", str(spec), "--source", str(src), "--out", str(out), "--annotations", str(ann),
                          "--copies", "2", "--export-annotations", "coco"], capture_output=True, text=True)
    assert cli.returncode == 0, cli.stderr
    assert not list(out.rglob("*.txt")) and (out / "annotations.coco.json").is_file()
    assert json.loads((out / "manifest.json").read_text())["export"]["format"] == "coco"
    refused = subprocess.run([SCRIPT, "run", str(spec), "--source", str(src), "--out", str(tmp_path / "w"),
                              "--format", "webdataset", "--export-annotations", "yolo"], capture_output=True, text=True,
                             env={**os.environ, "COLUMNS": "300"})
    assert refused.returncode == 2 and "with the webdataset format, use coco or csv" in refused.stderr


def test_class_ids_do_not_depend_on_hash_order_and_original_name_clashes_are_refused(tmp_path: Path) -> None:
    from augledger import SourceError
    from augledger.run.export import ExportEntry, export_files

    entries = [ExportEntry("k", 0, "augmented/k.c0.png", 10, 10, {"bboxes": [[0, 0, 1, 1], [1, 1, 2, 2]], "labels": [1, "1"]})]
    files = export_files("yolo", entries, "pascal_voc", "labels")
    # Labels that print alike ("1" and 1) sort by their JSON text: the same ids in every process.
    assert files["classes.txt"] == b"1\n1\n"
    lines = files["augmented/k.c0.txt"].splitlines()
    assert lines[0].startswith(b"1 ") and lines[1].startswith(b"0 ")
    src = tmp_path / "src"
    src.mkdir()
    for name in ("a.png", "a.jpg"):
        Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(src / name)
    pipe = augledger.compile(augledger.parse_spec(DET))
    with pytest.raises(SourceError, match=r"'a.jpg' and 'a.png' would share the yolo annotation file 'original/a.txt'"):
        materialize(pipe, src, tmp_path / "o", options=RunOptions(include_original=True, export_annotations="yolo"))
