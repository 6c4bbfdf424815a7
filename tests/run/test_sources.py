"""Sources and annotations: what is a sample, what travels with it, and the paths that are refused."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import augledger
from augledger import SourceError
from augledger.ledger import read_ledger
from augledger.run.materialize import materialize
from augledger.run.options import RunOptions
from augledger.run.sources import load_annotations

SEG = {"schema": 1, "name": "seg", "seed": 3, "targets": {"mask": True}, "ops": [{"op": "HorizontalFlip", "p": 1.0}]}


def write_image(path: Path, seed: int, shape: tuple[int, ...] = (32, 40, 3)) -> np.ndarray:
    path.parent.mkdir(parents=True, exist_ok=True)
    array = np.random.default_rng(seed).integers(0, 255, shape, dtype=np.uint8)
    Image.fromarray(array).save(path)
    return array


def write_jsonl(path: Path, rows: list[dict[str, object]]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


@pytest.fixture(scope="module")
def seg() -> augledger.Pipeline:
    return augledger.compile(augledger.parse_spec(SEG))


def test_masks_named_by_annotations_are_targets_not_samples(seg: augledger.Pipeline, tmp_path: Path) -> None:
    src = tmp_path / "src"
    write_image(src / "images" / "a.png", 1)
    mask = write_image(src / "masks" / "a.png", 2, (32, 40))
    ann = write_jsonl(tmp_path / "ann.jsonl", [{"key": "images/a.png", "mask": "masks/a.png"}])
    result = materialize(seg, src, tmp_path / "o", annotations=ann)
    rows = read_ledger(tmp_path / "o").rows()
    assert [r["key"] for r in rows] == ["images/a.png"]  # masks/a.png is not augmented as an image
    assert result.manifest["source"]["images"] == 1
    stored = np.asarray(Image.open(tmp_path / "o" / json.loads(rows[0]["targets"])["mask"]))
    assert np.array_equal(stored, mask[:, ::-1])


def test_a_masks_folder_of_its_own(seg: augledger.Pipeline, tmp_path: Path) -> None:
    src, masks = tmp_path / "src", tmp_path / "labels"
    write_image(src / "a.png", 1)
    write_image(masks / "a.png", 2, (32, 40))
    ann = write_jsonl(tmp_path / "ann.jsonl", [{"key": "a.png", "mask": "a.png"}])
    materialize(seg, src, tmp_path / "o", annotations=ann, masks=masks)
    (row,) = read_ledger(tmp_path / "o").rows()
    assert row["status"] == "ok" and json.loads(row["targets"])["mask"] == "augmented/a.png.c0.mask.png"
    # --masks inside the source: every file under it is a mask, named by an annotation or not.
    inner = src / "m"
    write_image(inner / "a.png", 2, (32, 40))
    write_image(inner / "unused.png", 3, (32, 40))
    materialize(seg, src, tmp_path / "o2", annotations=ann, masks=inner)
    assert [r["key"] for r in read_ledger(tmp_path / "o2").rows()] == ["a.png"]


@pytest.mark.parametrize("kind", ["dotdot", "absolute", "symlink"])
def test_mask_paths_outside_the_source_are_quarantined(seg: augledger.Pipeline, tmp_path: Path, kind: str) -> None:
    src, outside = tmp_path / "src", tmp_path / "outside"
    write_image(src / "a.png", 1)
    write_image(outside / "secret.png", 2, (32, 40))
    mask = {"dotdot": "../outside/secret.png", "absolute": str(outside / "secret.png"), "symlink": "link.png"}[kind]
    if kind == "symlink":
        (src / "link.png").symlink_to(outside / "secret.png")
    ann = write_jsonl(tmp_path / "ann.jsonl", [{"key": "a.png", "mask": mask}])
    if kind == "symlink":
        # The link itself is a file of the source that leads outside it: the whole run is refused first.
        with pytest.raises(SourceError, match=r"link\.png -> .*outside"):
            materialize(seg, src, tmp_path / "o", annotations=ann)
        (src / "link.png").unlink()
        (src / "sub").mkdir()
        (src / "sub" / "link.png").symlink_to(outside / "secret.png")
        ann = write_jsonl(tmp_path / "ann.jsonl", [{"key": "a.png", "mask": "sub/link.png"}])
        with pytest.raises(SourceError, match="lead outside it"):
            materialize(seg, src, tmp_path / "o", annotations=ann)
        return
    result = materialize(seg, src, tmp_path / "o", annotations=ann)
    (row,) = read_ledger(tmp_path / "o").rows()
    assert row["status"] == "quarantined" and row["error"].startswith("annotation: mask path refused")
    assert result.exit_code == 3
    assert not list((tmp_path / "o").rglob("*.png"))


def test_symlinked_folders_leading_outside_are_refused_naming_them(seg: augledger.Pipeline, tmp_path: Path) -> None:
    src, outside = tmp_path / "src", tmp_path / "outside"
    write_image(src / "a.png", 1)
    write_image(outside / "b.png", 2)
    (src / "elsewhere").symlink_to(outside, target_is_directory=True)
    with pytest.raises(SourceError, match=r"1 symlink\(s\) under .* lead outside it \(elsewhere -> "):
        materialize(seg, src, tmp_path / "o")
    assert not (tmp_path / "o").exists()


def test_annotations_take_another_key_column_and_carry_unknown_columns(tmp_path: Path) -> None:
    csv = tmp_path / "ann.csv"
    csv.write_text('filename,label,split,source\na.png,cat,train,camera-1\nb.png,dog,,\n')
    ann = load_annotations(csv, key_column="filename")
    assert ann["a.png"].label == "cat" and ann["a.png"].carry == {"split": "train", "source": "camera-1"}
    assert ann["b.png"].carry == {}
    with pytest.raises(SourceError, match=r"needs a 'key' column .* --key-column"):
        load_annotations(csv)


def test_carried_columns_reach_the_ledger(tmp_path: Path) -> None:
    src = tmp_path / "src"
    write_image(src / "a.png", 1)
    ann = write_jsonl(tmp_path / "ann.jsonl", [{"file": "a.png", "label": 3, "split": "train"}])
    pipe = augledger.compile(augledger.parse_spec({**SEG, "targets": {}}))
    materialize(pipe, src, tmp_path / "o", annotations=ann, key_column="file", options=RunOptions(include_original=True))
    rows = read_ledger(tmp_path / "o").rows()
    assert [json.loads(r["targets"]) for r in rows] == [{"label": 3, "split": "train"}] * 2


def test_missing_targets_are_warned_about(seg: augledger.Pipeline, tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    src = tmp_path / "src"
    write_image(src / "a.png", 1)
    write_image(src / "b.png", 2)
    materialize(seg, src, tmp_path / "o")
    assert "declares targets ['mask'] but the run has no --annotations" in caplog.text
    ann = write_jsonl(tmp_path / "ann.jsonl", [{"key": "a.png", "label": 1}])
    materialize(seg, src, tmp_path / "o2", annotations=ann)
    assert "1 of 2 source images have no row in the annotations file" in caplog.text


def test_masks_in_the_source_folder_itself_and_dotted_paths_are_not_samples(seg: augledger.Pipeline, tmp_path: Path) -> None:
    src = tmp_path / "src"
    write_image(src / "a.png", 1)
    write_image(src / "masks" / "a.png", 2, (32, 40))
    ann = write_jsonl(tmp_path / "ann.jsonl", [{"key": "a.png", "mask": "./masks/a.png"}])
    materialize(seg, src, tmp_path / "o", annotations=ann, masks=src)
    assert [r["key"] for r in read_ledger(tmp_path / "o").rows()] == ["a.png"]


def test_verify_and_replay_use_the_runs_key_column(seg: augledger.Pipeline, tmp_path: Path) -> None:
    import subprocess

    from helpers import SCRIPT

    src = tmp_path / "src"
    write_image(src / "a.png", 1)
    write_image(src / "m.png", 2, (32, 40))
    ann = write_jsonl(tmp_path / "ann.jsonl", [{"filename": "a.png", "mask": "m.png"}])
    materialize(seg, src, tmp_path / "o", annotations=ann, key_column="filename")
    for argv in (["verify", str(tmp_path / "o")], ["replay", str(tmp_path / "o"), "a.png"]):
        cli = subprocess.run([SCRIPT, *argv], capture_output=True, text=True)
        assert cli.returncode == 0, cli.stderr
