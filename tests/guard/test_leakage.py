"""Train/eval leakage: identical files, near-duplicates by pHash, outputs traced to their source keys."""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

import numpy as np
import pytest

import augledger
from augledger.errors import BackendError, SourceError
from augledger.guard.leakage import DEFAULT_THRESHOLD, check_leakage, hamming, perceptual_hash
from helpers import SCRIPT

NAMES = ("astronaut", "chelsea", "coffee", "rocket", "camera", "coins")
UNRELATED = ("immunohistochemistry", "brick", "page", "moon")


def _photo(name: str, size: int = 96) -> np.ndarray:
    import cv2
    from skimage import data

    image = getattr(data, name)()
    if image.ndim == 2:
        image = np.stack([image] * 3, axis=-1)
    return np.ascontiguousarray(cv2.resize(image, (size, size), interpolation=cv2.INTER_AREA))


def _write(path: Path, image: np.ndarray) -> Path:
    import cv2

    path.parent.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(path), np.ascontiguousarray(image[..., ::-1]))
    return path


@pytest.fixture(scope="module")
def train(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("train")
    for i, name in enumerate(NAMES):
        _write(root / f"class{i % 2}" / f"{name}.png", _photo(name))
    return root


@pytest.fixture(scope="module")
def unrelated(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("eval_clean")
    for name in UNRELATED:
        _write(root / f"{name}.png", _photo(name))
    return root


#: Rotates every image by 10 to 40 degrees: the outputs' pHashes are far from their sources', so a match with a
#: copy of an output can only come from the output.
ROTATE = {"schema": 1, "name": "rotate", "seed": 3, "ops": [{"op": "Affine", "p": 1.0, "params": {"rotate": [10, 40]}}]}


@pytest.fixture(scope="module")
def out_folder(train: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    from augledger.run.materialize import materialize
    from augledger.run.options import RunOptions

    out = tmp_path_factory.mktemp("runs") / "out"
    pipe = augledger.compile(augledger.parse_spec(ROTATE))
    materialize(pipe, train, out, options=RunOptions(copies=2, workers=0))
    return out


def test_unrelated_images_are_not_flagged(train: Path, unrelated: Path) -> None:
    report = check_leakage(train, [unrelated])
    assert report.clean and report.findings == [] and report.unreadable == []
    assert report.compared == {"train_sources": len(NAMES), "train_outputs": 0, str(unrelated): len(UNRELATED)}
    ours = np.array([perceptual_hash(_photo(n)) for n in NAMES], dtype=np.uint64)
    theirs = np.array([perceptual_hash(_photo(n)) for n in UNRELATED], dtype=np.uint64)
    assert hamming(ours, theirs).min() > DEFAULT_THRESHOLD  # the margin the default is chosen for


def test_a_copy_of_a_train_image_is_identical(train: Path, tmp_path: Path) -> None:
    shutil.copy(train / "class1" / "chelsea.png", tmp_path / "cat.png")
    report = check_leakage(train, [tmp_path])
    assert [f.to_dict() for f in report.findings] == [{
        "kind": "identical", "eval_folder": str(tmp_path), "eval_path": "cat.png", "distance": 0,
        "train_key": "class1/chelsea.png", "output_path": None, "other_folder": None, "other_path": None,
        "mirrored": False,
    }]  # and not reported a second time as a near-duplicate at distance 0


@pytest.mark.parametrize("change", ["brighter", "darker", "half-size", "jpeg", "blur", "mirrored"])
def test_changed_copies_are_near(train: Path, tmp_path: Path, change: str) -> None:
    import cv2

    image = _photo("coffee")
    changed = {
        "brighter": lambda a: np.clip(a.astype(np.int16) + 30, 0, 255).astype(np.uint8),
        "darker": lambda a: (a * 0.8).astype(np.uint8),
        "half-size": lambda a: cv2.resize(a, (48, 48), interpolation=cv2.INTER_AREA),
        "jpeg": lambda a: cv2.imdecode(cv2.imencode(".jpg", a, [cv2.IMWRITE_JPEG_QUALITY, 60])[1], cv2.IMREAD_UNCHANGED),
        "blur": lambda a: cv2.GaussianBlur(a, (5, 5), 0),
        "mirrored": lambda a: a[:, ::-1],
    }[change](image)
    _write(tmp_path / "val" / "x.png", changed)
    report = check_leakage(train, [tmp_path / "val"])
    assert len(report.findings) == 1, report.findings
    found = report.findings[0]
    assert (found.kind, found.train_key, found.eval_path, found.output_path) == ("near", "class0/coffee.png", "x.png", None)
    assert found.distance <= DEFAULT_THRESHOLD
    assert found.mirrored is (change == "mirrored")
    assert not check_leakage(train, [tmp_path / "val"], threshold=0).findings or found.distance == 0


def test_an_augmented_output_is_traced_to_its_source_key(out_folder: Path, tmp_path: Path) -> None:
    import cv2

    from augledger.ledger.parquet import read_ledger

    rows = {(r["key"], r["epoch"]): r for r in read_ledger(out_folder).rows()}
    output = rows[("class1/rocket.png", 1)]["output_path"]
    # A copy of the output, re-encoded at another size: near the output, far from the unrotated source.
    image = cv2.imread(str(out_folder / output))
    (tmp_path / "eval").mkdir()
    cv2.imwrite(str(tmp_path / "eval" / "r.jpg"), cv2.resize(image, (80, 80), interpolation=cv2.INTER_AREA))
    shutil.copy(out_folder / rows[("class0/astronaut.png", 0)]["output_path"], tmp_path / "eval" / "same.png")
    report = check_leakage(out_folder, [tmp_path / "eval"])
    assert report.compared["train_sources"] == len(NAMES) and report.compared["train_outputs"] == 2 * len(NAMES)
    by_path = {f.eval_path: f for f in report.findings}
    assert set(by_path) == {"r.jpg", "same.png"}, report.findings
    near = by_path["r.jpg"]
    assert (near.kind, near.train_key, near.output_path) == ("near", "class1/rocket.png", output)
    assert near.distance <= DEFAULT_THRESHOLD
    same = by_path["same.png"]
    assert (same.kind, same.train_key, same.distance) == ("identical", "class0/astronaut.png", 0)
    assert same.output_path == rows[("class0/astronaut.png", 0)]["output_path"]


def test_the_same_file_in_two_eval_folders(train: Path, unrelated: Path, tmp_path: Path) -> None:
    shutil.copy(unrelated / "brick.png", tmp_path / "brick-again.png")
    report = check_leakage(train, [unrelated, tmp_path])
    assert [(f.kind, f.eval_folder, f.eval_path, f.other_folder, f.other_path, f.train_key) for f in report.findings] == [
        ("identical", str(tmp_path), "brick-again.png", str(unrelated), "brick.png", None)
    ]


def test_an_unreadable_eval_file_is_reported_not_raised(train: Path, tmp_path: Path) -> None:
    (tmp_path / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"\x00" * 40)
    (tmp_path / "empty.jpg").write_bytes(b"")
    report = check_leakage(train, [tmp_path])
    assert report.clean
    assert sorted((u.split, u.path, u.reason.split(":")[0]) for u in report.unreadable) == [
        (str(tmp_path), "broken.png", "corrupt"), (str(tmp_path), "empty.jpg", "empty"),
    ]


def test_bad_arguments(train: Path, tmp_path: Path) -> None:
    with pytest.raises(SourceError, match="not a folder"):
        check_leakage(train, [tmp_path / "nope"])
    with pytest.raises(SourceError, match="at least one evaluation folder"):
        check_leakage(train, [])
    with pytest.raises(SourceError, match=r"threshold must be .* \[0, 64\]; got 65"):
        check_leakage(train, [tmp_path], threshold=65)


def test_missing_imagehash_names_the_extra(train: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "imagehash", None)
    with pytest.raises(BackendError, match=r"pip install 'augledger\[leakage\]'"):
        check_leakage(train, [tmp_path])


def test_hamming_matches_a_plain_popcount(monkeypatch: pytest.MonkeyPatch) -> None:
    rng = np.random.default_rng(0)
    a = rng.integers(0, 2**63, size=7, dtype=np.uint64) * np.uint64(2) + np.uint64(1)
    b = rng.integers(0, 2**63, size=5, dtype=np.uint64)
    expected = [[bin(int(x) ^ int(y)).count("1") for y in b] for x in a]
    assert hamming(a, b).tolist() == expected
    monkeypatch.delattr(np, "bitwise_count", raising=False)  # numpy < 2: the byte table
    assert hamming(a, b).tolist() == expected


def _cli(*args: str) -> tuple[int, str, str]:
    import os
    import subprocess

    done = subprocess.run([SCRIPT, *args], capture_output=True, text=True, env={**os.environ, "COLUMNS": "200"})
    return done.returncode, done.stdout, done.stderr


def test_cli_exit_codes_and_json(train: Path, unrelated: Path, tmp_path: Path) -> None:
    code, out, _ = _cli("check-leakage", "--train", str(train), "--eval", str(unrelated))
    assert code == 0 and "no leakage found" in out
    shutil.copy(train / "class0" / "astronaut.png", tmp_path / "a.png")
    _write(tmp_path / "b.png", np.clip(_photo("rocket").astype(np.int16) - 30, 0, 255).astype(np.uint8))
    (tmp_path / "junk.png").write_bytes(b"not an image")
    code, out, err = _cli("check-leakage", "--train", str(train), "--eval", str(unrelated), "--eval", str(tmp_path))
    assert code == 1
    assert f"identical {tmp_path}/a.png <-> train class0/astronaut.png (distance 0)" in out
    assert f"{tmp_path}/b.png <-> train class1/rocket.png (distance" in out and "2 finding(s)" in out
    assert "not compared" in err and "junk.png" in err
    code, out, _ = _cli("check-leakage", "--train", str(train), "--eval", str(tmp_path), "--json", "--threshold", "4")
    report = json.loads(out)
    assert code == 1 and report["clean"] is False and report["threshold"] == 4 and report["hash"] == "phash-64"
    assert set(report) == {"clean", "hash", "threshold", "compared", "findings", "unreadable"}
    assert report["compared"] == {"train_sources": len(NAMES), "train_outputs": 0, str(tmp_path): 2}
    assert {f["kind"] for f in report["findings"]} <= {"identical", "near"}
    assert set(report["findings"][0]) == {"kind", "eval_folder", "eval_path", "distance", "train_key", "output_path",
                                          "other_folder", "other_path", "mirrored"}
    assert report["unreadable"][0]["path"] == "junk.png"


def test_a_moved_source_is_found_with_source(train: Path, tmp_path: Path) -> None:
    from augledger.errors import LedgerError
    from augledger.run.materialize import materialize
    from augledger.run.options import RunOptions

    src = tmp_path / "src"
    shutil.copytree(train, src)
    out = tmp_path / "out"
    materialize(augledger.compile(augledger.parse_spec(ROTATE)), src, out, options=RunOptions(workers=0))
    (tmp_path / "eval").mkdir()
    shutil.copy(train / "class0" / f"{NAMES[0]}.png", tmp_path / "eval" / "copy.png")
    src.rename(tmp_path / "moved")
    with pytest.raises(LedgerError, match="pass --source with its new place"):
        check_leakage(out, [tmp_path / "eval"])
    report = check_leakage(out, [tmp_path / "eval"], source=tmp_path / "moved")
    assert [(f.kind, f.train_key) for f in report.findings] == [("identical", f"class0/{NAMES[0]}.png")]
