"""Hostile keys, paths and annotation rows: a project error or a quarantine with its reason, and
nothing read or written outside the folders a run was given (checked around ``--out`` after each run)."""

from __future__ import annotations

import json
import os
import unicodedata
from pathlib import Path
from typing import Any

import pytest

import augledger
from augledger.errors import SourceError, UnsafePath
from augledger.io.store import LocalStore
from guard._hostile import BOX_SPEC, GEOMETRY_SPEC, guarded_run, snapshot, write_photo


@pytest.fixture(scope="module")
def boxes() -> augledger.Pipeline:
    return augledger.compile(augledger.parse_spec(BOX_SPEC))


@pytest.fixture(scope="module")
def geometry() -> augledger.Pipeline:
    return augledger.compile(augledger.parse_spec(GEOMETRY_SPEC))


HOSTILE_PATHS = ["/etc/passwd", "../a.png", "a/../../x.png", "a\x00.png", "C:/x.png", "\\\\host\\x.png", "a\\..\\..\\x.png",
                 "a.png/..", "//etc/passwd", "~/.ssh/id_rsa"]


@pytest.mark.parametrize("key", HOSTILE_PATHS)
def test_hostile_annotation_keys_are_quarantined_and_never_read(boxes: augledger.Pipeline, tmp_path: Path, key: str) -> None:
    write_photo(tmp_path / "src" / "a.png")
    result, ledger = guarded_run(boxes, tmp_path, tmp_path / "src", tmp_path / "out",
                                 rows=[{"key": key, "bboxes": [[1, 1, 5, 5]], "labels": [1]}])
    row = ledger[f"{key}@0"]
    assert row["status"] == "quarantined" and row["error"].startswith("missing-image:")
    assert ledger["a.png@0"]["status"] == "ok" and result.exit_code == 3


@pytest.mark.parametrize("mask", ["/etc/passwd", "../outside.png", "a/../../outside.png", "a\x00.png", "C:/x.png", "a\\b.png"])
def test_hostile_mask_paths_are_quarantined_with_the_reason(tmp_path: Path, mask: str) -> None:
    seg = augledger.compile(augledger.parse_spec({"schema": 1, "name": "seg", "targets": {"mask": True},
                                                  "ops": [{"op": "HorizontalFlip", "p": 1.0}]}))
    write_photo(tmp_path / "src" / "a.png")
    write_photo(tmp_path / "outside.png")
    _, ledger = guarded_run(seg, tmp_path, tmp_path / "src", tmp_path / "out", rows=[{"key": "a.png", "mask": mask}])
    row = ledger["a.png@0"]
    assert row["status"] == "quarantined" and row["error"].startswith("annotation: mask path refused")


@pytest.mark.parametrize("kind", ["file", "folder", "chain"])
def test_symlinks_escaping_the_source_refuse_the_run(geometry: augledger.Pipeline, tmp_path: Path, kind: str) -> None:
    src = tmp_path / "src"
    write_photo(src / "a.png")
    secret = write_photo(tmp_path / "secret" / "s.png")
    if kind == "file":
        os.symlink(secret, src / "link.png")
    elif kind == "folder":
        os.symlink(secret.parent, src / "link")
    else:  # a link inside the root that points at a link leading out
        os.symlink(secret.parent, src / "hop")
        os.symlink(src / "hop", src / "link")
    before = snapshot(tmp_path, tmp_path / "out")
    with pytest.raises(SourceError, match=r"lead outside it \(.*link"):
        guarded_run(geometry, tmp_path, src, tmp_path / "out")
    assert not (tmp_path / "out").exists() and snapshot(tmp_path, tmp_path / "out") == before


@pytest.mark.parametrize(("first", "second"), [
    (unicodedata.normalize("NFC", "caf\u00e9.png"), unicodedata.normalize("NFD", "caf\u00e9.png")),
    ("A.png", "a.png"),
    ("Dir/x.png", "dir/x.png"),
    ("x.JPG", "x.jpg"),
    ("stra\u00dfe.png", "STRASSE.png"),
])
def test_keys_that_differ_only_by_case_or_normalisation_refuse_the_run(
    geometry: augledger.Pipeline, tmp_path: Path, first: str, second: str,
) -> None:
    """The rule: such keys would write outputs that are one file on macOS and Windows; the run is
    refused before anything is written, naming both keys (``ascii()`` makes NFC and NFD visibly differ)."""
    src = tmp_path / "src"
    write_photo(src / first)
    write_photo(src / second)
    if len(os.listdir(src)) < 2 and "/" not in first:
        pytest.fail("this test needs a case- and normalisation-sensitive file system")
    with pytest.raises(SourceError) as info:
        guarded_run(geometry, tmp_path, src, tmp_path / "out")
    assert ascii(first) in str(info.value) and ascii(second) in str(info.value)
    assert "differ only by letter case or Unicode normalisation" in str(info.value)
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("path", [*(p for p in HOSTILE_PATHS if not p.startswith("~")), "", ".", "./", "a/./../.."])
def test_the_store_refuses_hostile_paths_for_reading_and_writing(tmp_path: Path, path: str) -> None:
    store = LocalStore(tmp_path / "root")
    (tmp_path / "root").mkdir()
    before = snapshot(tmp_path, tmp_path / "nothing")
    for action in (lambda: store.write(path, b"x"), lambda: store.read(path), lambda: store.remove(path)):
        try:
            action()
        except UnsafePath:
            pass
        else:
            pytest.fail(f"the store accepted {path!r}")
    assert {k for k in snapshot(tmp_path, tmp_path / "nothing") if not k.startswith("root/")} == {
        k for k in before if not k.startswith("root/")}


@pytest.mark.parametrize(("row", "problem"), [
    ('{"key": "a.png", "bboxes": [[NaN, 1, 5, 5]], "labels": [1]}', "finite numbers"),
    ('{"key": "a.png", "bboxes": [[1, 1, Infinity, 5]], "labels": [1]}', "finite numbers"),
    ('{"key": "a.png", "bboxes": [[1, 1, -Infinity, 5]], "labels": [1]}', "finite numbers"),
    ({"key": "a.png", "bboxes": [[5, 5, 1, 1]], "labels": [1]}, "x_max is less than or equal to x_min"),
    ({"key": "a.png", "bboxes": [[1, 5, 5, 1]], "labels": [1]}, "y_max is less than or equal to y_min"),
    ({"key": "a.png", "bboxes": [[-100, -100, -50, -50]], "labels": [1]}, "to be in the range [0.0, 1.0]"),
    ({"key": "a.png", "bboxes": [[1, 1, 500, 500]], "labels": [1]}, "to be in the range [0.0, 1.0]"),
    ({"key": "a.png", "bboxes": [[1, 1, 5]], "labels": [1]}, "bbox"),
    ({"key": "a.png", "bboxes": [["a", "b", "c", "d"]], "labels": [1]}, "finite numbers"),
    ({"key": "a.png", "bboxes": [[True, 1, 5, 5]], "labels": [1]}, "finite numbers"),
    ({"key": "a.png", "bboxes": [1, 1, 5, 5], "labels": [1]}, "list of lists"),
    ({"key": "a.png", "bboxes": {"x": 1}, "labels": [1]}, "list of lists"),
    ({"key": "a.png", "bboxes": [[1, 1, 5, 5]], "labels": [1, 2]}, "labels has 2 label(s) but the row has 1"),
    ({"key": "a.png", "bboxes": [[1, 1, 5, 5]], "labels": None}, "labels has 0 label(s) but the row has 1"),
    ({"key": "a.png", "bboxes": [[1, 1, 5, 5]]}, "labels has 0 label(s) but the row has 1"),
    ({"key": "a.png", "labels": [7]}, "labels has 1 label(s) but the row has 0"),
    ({"key": "a.png", "bboxes": [[1, 1, 5, 5]], "labels": 3}, "one label per box"),
    ({"key": "a.png", "bboxes": [[1, 1, 5, 5]], "labels": {"a": 1}}, "one label per box"),
    ('{"key": "a.png", "bboxes": [[1, 1, 5, 5]], "labels": [NaN]}', "NaN or infinite"),
    ('{"key": "a.png", "label": NaN}', "NaN or infinite"),
    ('{"key": "a.png", "source": {"deep": [Infinity]}}', "NaN or infinite"),
])
def test_bad_annotation_rows_quarantine_their_sample(boxes: augledger.Pipeline, tmp_path: Path, row: Any, problem: str) -> None:
    write_photo(tmp_path / "src" / "a.png")
    write_photo(tmp_path / "src" / "b.png")
    _, ledger = guarded_run(boxes, tmp_path, tmp_path / "src", tmp_path / "out",
                            rows=[row, {"key": "b.png", "bboxes": [[2, 2, 9, 9]], "labels": [0]}])
    bad = ledger["a.png@0"]
    assert bad["status"] == "quarantined" and bad["error"].startswith("annotation:") and problem in bad["error"]
    assert ledger["b.png@0"]["status"] == "ok"  # one bad row never stops the run


@pytest.mark.parametrize(("row", "problem"), [
    ('{"key": "a.png", "bboxes": "[[1, 1"}', "must hold JSON"),
    ('["a.png"]', "must be a JSON object"),
    ('{"key": 5}', "needs a 'key' column"),
    ('{"key": ""}', "needs a 'key' column"),
    ('{"key": "a.png", "mask": 7}', "must be a path"),
    ('{"key": "a.png"', "not valid JSON"),
])
def test_unreadable_annotation_files_are_a_source_error(boxes: augledger.Pipeline, tmp_path: Path, row: str, problem: str) -> None:
    write_photo(tmp_path / "src" / "a.png")
    with pytest.raises(SourceError, match=problem):
        guarded_run(boxes, tmp_path, tmp_path / "src", tmp_path / "out", rows=[row])


def test_fields_the_spec_does_not_declare_are_carried_not_transformed(boxes: augledger.Pipeline, tmp_path: Path) -> None:
    """A label field the spec does not declare (``classes``) travels to the ledger as written; it is
    never handed to the backend as a target (which would reject it, or move it with the boxes)."""
    write_photo(tmp_path / "src" / "a.png")
    _, ledger = guarded_run(boxes, tmp_path, tmp_path / "src", tmp_path / "out",
                            rows=[{"key": "a.png", "bboxes": [[1, 1, 5, 5]], "labels": ["cat"], "classes": [[9, 9, 9, 9]]}])
    targets = json.loads(ledger["a.png@0"]["targets"])
    assert ledger["a.png@0"]["status"] == "ok" and targets["classes"] == [[9, 9, 9, 9]] and targets["labels"] == ["cat"]


def test_annotations_with_boxes_for_a_spec_without_box_targets_are_refused(geometry: augledger.Pipeline, tmp_path: Path) -> None:
    write_photo(tmp_path / "src" / "a.png")
    with pytest.raises(SourceError, match=r"declares no targets\.bboxes"):
        guarded_run(geometry, tmp_path, tmp_path / "src", tmp_path / "out", rows=[{"key": "a.png", "bboxes": [[1, 1, 5, 5]]}])
