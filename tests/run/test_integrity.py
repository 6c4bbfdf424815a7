"""What a run leaves behind is exactly what the ledger says and verify proves (issue: trust in the output folder)."""

from __future__ import annotations

import hashlib
import io
import json
import struct
import subprocess
import zlib
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image

import augledger
from augledger import SpecError
from augledger.ledger import read_ledger
from augledger.run.materialize import EXIT_QUARANTINED, materialize
from augledger.run.options import RunOptions
from augledger.run.verify import verify
from helpers import SCRIPT, SPEC, make_source, tree_digests


def damaged_in_the_middle(photo: np.ndarray) -> bytes:
    """A JPEG with a few hundred bytes overwritten in the middle, its length kept (a bad sector, a bad copy),
    chosen so that OpenCV still decodes it: to a smeared image, with only "Corrupt JPEG data" on stderr."""
    import cv2

    buf = io.BytesIO()
    Image.fromarray(photo).resize((384, 384)).save(buf, format="JPEG", quality=90)
    clean = buf.getvalue()
    rng = np.random.default_rng(1)
    for attempt in range(200):
        data = bytearray(clean)
        start = len(data) // 3 + 37 * attempt
        data[start : start + 300] = rng.integers(0, 256, 300, dtype=np.uint8).tobytes()
        if cv2.imdecode(np.frombuffer(bytes(data), np.uint8), cv2.IMREAD_COLOR) is not None:
            return bytes(data)
    raise AssertionError("no damage OpenCV accepts was found")


def png_chunk(kind: bytes, payload: bytes) -> bytes:
    return struct.pack(">I", len(payload)) + kind + payload + struct.pack(">I", zlib.crc32(kind + payload))


def decompression_bomb() -> bytes:
    """A tiny palette PNG whose header claims 20000x20000 pixels."""
    header = struct.pack(">IIBBBBB", 20000, 20000, 8, 3, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + png_chunk(b"IHDR", header) + png_chunk(b"PLTE", b"\0\0\0")
            + png_chunk(b"IDAT", zlib.compress(b"\0" * 16)) + png_chunk(b"IEND", b""))


def more_inputs(root: Path, photo: np.ndarray) -> dict[str, str]:
    root.mkdir(parents=True, exist_ok=True)
    (root / "damaged.jpg").write_bytes(damaged_in_the_middle(photo))
    (root / "bomb.png").write_bytes(decompression_bomb())
    Image.fromarray(photo).convert("LA").save(root / "grey_alpha.png")
    Image.fromarray(photo[..., 0].astype(np.float32)).save(root / "float32.tif")
    Image.fromarray(photo[..., 0].astype(np.int32)).save(root / "int32.tif")
    Image.fromarray(photo).convert("LAB").save(root / "lab.tif")
    Image.fromarray(photo).convert("YCbCr").save(root / "ycbcr.tif")
    return {
        "damaged.jpg": "corrupt", "bomb.png": "too-large", "grey_alpha.png": "alpha", "float32.tif": "high-bit-depth",
        "int32.tif": "high-bit-depth", "lab.tif": "ok:converted LAB->RGB", "ycbcr.tif": "ok:converted YCbCr->RGB",
    }


def test_more_kinds_of_input_through_a_run(pipe: augledger.Pipeline, astronaut: np.ndarray, tmp_path: Path) -> None:
    expected = more_inputs(tmp_path / "src", astronaut)
    materialize(pipe, tmp_path / "src", tmp_path / "o", options=RunOptions(workers=2))
    rows = {r["key"]: r for r in read_ledger(tmp_path / "o").rows()}
    assert set(rows) == set(expected)
    for key, want in expected.items():
        if want.startswith("ok"):
            assert rows[key]["status"] == "ok" and rows[key]["note"] == want[3:], (key, rows[key]["error"])
        else:
            assert rows[key]["error"].startswith(f"{want}:"), (key, rows[key]["error"])
    assert "decompression bomb" in rows["bomb.png"]["error"]
    assert rows["damaged.jpg"]["error"].startswith("corrupt: damaged JPEG data")


def test_a_jpeg_damaged_in_the_middle_is_corrupt_and_says_so_only_with_its_key(astronaut: np.ndarray, tmp_path: Path) -> None:
    src = tmp_path / "src"
    src.mkdir()
    (src / "cat.jpg").write_bytes(damaged_in_the_middle(astronaut))
    Image.fromarray(astronaut).save(src / "fine.jpg", quality=90)
    spec = tmp_path / "aug.json"
    spec.write_text(json.dumps(SPEC))
    run = subprocess.run([SCRIPT, "run", str(spec), "--source", str(src), "--out", str(tmp_path / "o"), "--workers", "2"],
                         capture_output=True, text=True)
    assert run.returncode == EXIT_QUARANTINED, run.stderr
    assert "cat.jpg: corrupt: damaged JPEG data: " in run.stdout
    for line in (run.stderr + run.stdout).splitlines():  # a decoder's message never stands without its key
        if "Corrupt JPEG" in line or "libpng" in line or "premature end" in line:
            assert "cat.jpg" in line, line
    assert verify(tmp_path / "o").ok


def test_a_rerun_removes_outputs_of_sources_gone_or_now_quarantined(pipe: augledger.Pipeline, tmp_path: Path) -> None:
    src = make_source(tmp_path / "src", 9)
    out = tmp_path / "o"
    materialize(pipe, src, out, options=RunOptions(copies=2, include_original=True))
    gone, broken = "class0/0000.jpg", "class1/0001.png"
    (src / gone).unlink()
    (src / broken).write_bytes(b"not an image any more")
    spec = tmp_path / "aug.json"
    spec.write_text(json.dumps(SPEC))
    rerun = subprocess.run([SCRIPT, "run", str(spec), "--source", str(src), "--out", str(out), "--copies", "2",
                            "--include-original"], capture_output=True, text=True)
    assert rerun.returncode == EXIT_QUARANTINED, rerun.stderr
    assert "removed 6 output file(s)" in rerun.stdout  # 2 copies + original, for each of the two
    files = {p.relative_to(out).as_posix() for p in out.rglob("*") if p.is_file() and ".augledger" not in p.parts}
    assert not [f for f in files if gone in f or broken in f]
    rows = read_ledger(out).rows()
    assert gone not in {r["key"] for r in rows}
    assert {r["status"] for r in rows if r["key"] == broken} == {"quarantined"}
    assert json.loads((out / "run.json").read_text())["removed_stale"] == 6
    # And the folder equals a fresh run over the source as it is now.
    fresh = tmp_path / "fresh"
    materialize(pipe, src, fresh, options=RunOptions(copies=2, include_original=True))
    assert tree_digests(out) == tree_digests(fresh)
    assert verify(out).ok


def test_verify_fails_naming_files_the_ledger_does_not_list(pipe: augledger.Pipeline, tmp_path: Path) -> None:
    src = make_source(tmp_path / "src", 4)
    out = tmp_path / "o"
    materialize(pipe, src, out)
    stray = out / "augmented" / "class0" / "smuggled.png"
    stray.write_bytes((out / "augmented" / "class0" / "0000.jpg.c0.png").read_bytes())
    report = verify(out)
    assert not report.ok and [p.message for p in report.problems] == [
        "augmented/class0/smuggled.png is not in the ledger: a file no run recorded (remove it, or rerun)"
    ]
    cli = subprocess.run([SCRIPT, "verify", str(out)], capture_output=True, text=True)
    assert cli.returncode == 1 and "smuggled.png is not in the ledger" in cli.stdout


DET = {
    "schema": 1, "name": "det", "seed": 5,
    "targets": {"mask": True, "bboxes": {"format": "pascal_voc", "label_fields": ["labels"]}, "keypoints": {"format": "xy"}},
    "ops": [{"op": "HorizontalFlip", "p": 1.0}],
}


def annotated_source(tmp_path: Path) -> tuple[Path, Path, np.ndarray]:
    src = tmp_path / "src"
    src.mkdir()
    image = np.random.default_rng(1).integers(0, 255, (40, 60, 3), dtype=np.uint8)
    Image.fromarray(image).save(src / "a.png")
    mask = np.zeros((40, 60), dtype=np.uint8)
    mask[5:15, 10:20] = 255
    (src / "masks").mkdir()
    Image.fromarray(mask).save(src / "masks" / "a.png")
    ann = tmp_path / "ann.jsonl"
    ann.write_text(json.dumps({"key": "a.png", "label": "cat", "bboxes": [[10, 5, 20, 15]], "labels": ["eye"],
                               "keypoints": [[12, 7]], "mask": "masks/a.png", "split": "train"}) + "\n")
    return src, ann, mask


def test_originals_carry_their_targets_like_the_copies(tmp_path: Path) -> None:
    src, ann, mask = annotated_source(tmp_path)
    pipe = augledger.compile(augledger.parse_spec(DET))
    materialize(pipe, src, tmp_path / "o", annotations=ann, options=RunOptions(include_original=True))
    rows = {r["epoch"]: r for r in read_ledger(tmp_path / "o").rows()}
    original, copy = json.loads(rows[-1]["targets"]), json.loads(rows[0]["targets"])
    assert set(original) == set(copy) == {"label", "bboxes", "labels", "keypoints", "mask", "mask_digest", "mask_source_digest", "split"}
    assert original["bboxes"] == [[10, 5, 20, 15]] and original["labels"] == ["eye"] and original["keypoints"] == [[12, 7]]
    assert original["mask"] == "original-masks/a.png.png"
    assert original["mask_source_digest"] == copy["mask_source_digest"] == "sha256:" + hashlib.sha256(
        (src / "masks" / "a.png").read_bytes()).hexdigest()
    assert np.array_equal(np.asarray(Image.open(tmp_path / "o" / original["mask"])), mask)
    assert verify(tmp_path / "o").ok
    # As WebDataset: the original's JSON member names its mask member, which holds the mask.
    import tarfile

    materialize(pipe, src, tmp_path / "w", annotations=ann, options=RunOptions(include_original=True, format="webdataset"))
    with tarfile.open(next((tmp_path / "w" / "shards").glob("*.tar"))) as tar:
        meta = json.loads(tar.extractfile("a%2Epng__orig.json").read())  # type: ignore[union-attr]
        stored = np.asarray(Image.open(io.BytesIO(tar.extractfile(meta["targets"]["mask"]).read())))  # type: ignore[union-attr]
    assert meta["targets"]["bboxes"] == [[10, 5, 20, 15]] and np.array_equal(stored, mask)


def test_a_spec_whose_outputs_cannot_be_stored_is_refused_before_any_work(tmp_path: Path) -> None:
    src = make_source(tmp_path / "src", 2)
    pipe = augledger.compile(augledger.parse_spec({"schema": 1, "name": "n", "ops": [{"op": "Normalize"}]}))
    with pytest.raises(SpecError, match=r"cannot be materialised: ops\[0\] \(Normalize\) make float images"):
        materialize(pipe, src, tmp_path / "o")
    assert not (tmp_path / "o").exists()


def test_unencodable_unreadable_and_unsupported_mode_reasons(astronaut: np.ndarray, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from augledger.io import image as image_codec
    from augledger.run.work import SampleJob, Task

    src = tmp_path / "src"
    src.mkdir()
    Image.fromarray(astronaut).save(src / "a.png")
    Image.fromarray(astronaut).convert("LAB").save(src / "lab.tif")
    floats = augledger.compile(augledger.parse_spec({"schema": 1, "name": "f", "ops": [{"op": "ToFloat", "p": 1}]}))
    job = SampleJob(floats, str(src), RunOptions())
    (out,) = job.produce(Task("a.png", (0,), False, None))
    assert out.row.reason == "unencodable" and "dtype float32" in str(out.row.error)
    (out,) = job.produce(Task("gone.png", (0,), False, None))
    assert out.row.reason == "unreadable" and "No such file" in str(out.row.error)
    (out,) = job.produce(Task("../a.png", (0,), False, None))
    assert out.row.reason == "unsafe-path"
    monkeypatch.setattr(image_codec, "_TO_RGB", image_codec._TO_RGB - {"LAB"})
    (out,) = job.produce(Task("lab.tif", (0,), False, None))
    assert out.row.reason == "unsupported-mode" and "image mode LAB is not supported" in str(out.row.error)


class DeleteOnStart:
    """Removes a source file after the run has listed it: the read fails mid-run."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def on_start(self, start: Any) -> None:
        self.path.unlink()

    def on_rows(self, rows: Any) -> None: ...

    def on_finish(self, summary: Any) -> None: ...


def test_a_file_that_vanishes_mid_run_is_unreadable_and_the_run_goes_on(pipe: augledger.Pipeline, tmp_path: Path) -> None:
    src = make_source(tmp_path / "src", 4)
    result = materialize(pipe, src, tmp_path / "o", observers=[DeleteOnStart(src / "class1" / "0001.png")])
    assert result.exit_code == EXIT_QUARANTINED
    (row,) = [r for r in read_ledger(tmp_path / "o").rows() if r["status"] != "ok"]
    assert row["key"] == "class1/0001.png" and row["error"].startswith("unreadable:")


def test_one_bit_and_16_bit_masks_are_kept_and_32_bit_ones_quarantined(tmp_path: Path) -> None:
    src = tmp_path / "src"
    (src / "masks").mkdir(parents=True)
    image = np.random.default_rng(2).integers(0, 255, (24, 32, 3), dtype=np.uint8)
    rows = []
    for name, mask in {"bit": np.eye(24, 32, dtype=bool), "deep": (np.arange(24 * 32).reshape(24, 32) * 50).astype(np.uint16),
                       "wide": np.ones((24, 32), dtype=np.int32) * 70000}.items():
        Image.fromarray(image).save(src / f"{name}.png")
        ext = "tif" if name == "wide" else "png"  # PNG holds no 32-bit grey
        Image.fromarray(mask).save(src / "masks" / f"{name}.{ext}")
        rows.append({"key": f"{name}.png", "mask": f"masks/{name}.{ext}"})
    ann = tmp_path / "ann.jsonl"
    ann.write_text("".join(json.dumps(r) + "\n" for r in rows))
    pipe = augledger.compile(augledger.parse_spec({**DET, "targets": {"mask": True}}))
    result = materialize(pipe, src, tmp_path / "o", annotations=ann, options=RunOptions(include_original=True))
    by = {(r["key"], r["epoch"]): r for r in read_ledger(tmp_path / "o").rows()}
    for name, dtype in (("bit", np.uint8), ("deep", np.uint16)):
        for epoch in (-1, 0):
            row = by[(f"{name}.png", epoch)]
            assert row["status"] == "ok", row["error"]
            stored = np.asarray(Image.open(tmp_path / "o" / json.loads(row["targets"])["mask"]))
            source = np.asarray(Image.open(src / "masks" / f"{name}.png"))
            assert stored.dtype == dtype or stored.max() <= 1
            want = source.astype(stored.dtype) if epoch == -1 else source[:, ::-1].astype(stored.dtype)
            assert np.array_equal(stored, want), (name, epoch)
    assert {by[("wide.png", e)]["error"].split(":")[0] for e in (-1, 0)} == {"annotation"}
    assert result.exit_code == EXIT_QUARANTINED


def test_bad_annotation_rows_quarantine_their_sample_not_the_run(tmp_path: Path) -> None:
    src = make_source(tmp_path / "src", 4)
    ann = tmp_path / "ann.jsonl"
    ann.write_text(
        '{"key": "class0/0000.jpg", "bboxes": 5, "labels": []}\n'
        '{"key": "class1/0001.png", "label": NaN}\n'
        '{"key": "class2/0002.jpg", "bboxes": [[1, 2, 8, 9]], "labels": ["a"], "score": Infinity}\n'
        '{"key": "class0/0003.png", "bboxes": [[1, 2, 8, 9]], "labels": ["a"]}\n'
    )
    spec = {**SPEC, "targets": {"bboxes": {"format": "pascal_voc", "label_fields": ["labels"]}}}
    pipe = augledger.compile(augledger.parse_spec(spec))
    result = materialize(pipe, src, tmp_path / "o", annotations=ann)
    rows = {r["key"]: r for r in read_ledger(tmp_path / "o").rows()}
    assert rows["class0/0000.jpg"]["error"] == "annotation: ann.jsonl:1: bboxes must be a list of lists of finite numbers, e.g. [[10, 20, 50, 60]]; got 5"
    assert rows["class1/0001.png"]["error"].startswith("annotation: ann.jsonl:2: a value is NaN or infinite")
    assert rows["class2/0002.jpg"]["error"].startswith("annotation: ann.jsonl:3: a value is NaN or infinite")
    assert rows["class0/0003.png"]["status"] == "ok" and result.exit_code == EXIT_QUARANTINED


def test_an_over_long_file_name_is_quarantined_before_any_write(pipe: augledger.Pipeline, tmp_path: Path) -> None:
    src = make_source(tmp_path / "src", 2)
    long_name = "x" * 236 + ".png"  # fits the file system; its output name (+ .c0.png) does not fit the budget
    Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(src / long_name)
    result = materialize(pipe, src, tmp_path / "o")
    row = next(r for r in read_ledger(tmp_path / "o").rows() if r["key"] == long_name)
    assert row["error"].startswith("name-too-long: the output file name") and result.exit_code == EXIT_QUARANTINED


def test_quarantine_messages_hold_no_absolute_paths(tmp_path: Path) -> None:
    """The same data in two places gives the same ledger and manifest."""
    folders = []
    for place in ("here", "there/deeper"):
        src = tmp_path / place / "src"
        (src / "masks").mkdir(parents=True)
        Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(src / "a.png")
        ann = tmp_path / place / "ann.jsonl"
        ann.write_text(json.dumps({"key": "a.png", "mask": "masks/gone.png"}) + "\n")
        pipe = augledger.compile(augledger.parse_spec({**DET, "targets": {"mask": True}}))
        materialize(pipe, src, tmp_path / place / "o", annotations=ann)
        folders.append(tmp_path / place / "o")
    (row,) = read_ledger(folders[0]).rows()
    assert row["error"] == "annotation: mask 'masks/gone.png' cannot be read: No such file or directory"
    assert tree_digests(folders[0]) == tree_digests(folders[1])


def test_resume_redoes_outputs_whose_mask_changed_and_refuses_another_environment(tmp_path: Path) -> None:
    from augledger import FingerprintConflict

    src, ann, mask = annotated_source(tmp_path)
    pipe = augledger.compile(augledger.parse_spec(DET))
    out = tmp_path / "o"
    materialize(pipe, src, out, annotations=ann, options=RunOptions(copies=2))
    changed = mask.copy()
    changed[20:30, 30:40] = 7
    Image.fromarray(changed).save(src / "masks" / "a.png")
    again = materialize(pipe, src, out, annotations=ann, options=RunOptions(copies=2))
    assert again.reused == 0  # both copies were made from the old mask
    stored = np.asarray(Image.open(out / json.loads(read_ledger(out).rows()[0]["targets"])["mask"]))
    assert np.array_equal(stored, changed[:, ::-1])
    identity = out / ".augledger" / "identity.json"
    held = json.loads(identity.read_text())
    held["env"]["backends"]["opencv"] = "3.0.0"
    identity.write_text(json.dumps(held))
    with pytest.raises(FingerprintConflict, match=r"environment: opencv 3\.0\.0 -> .* \(outputs would mix library versions\)"):
        materialize(pipe, src, out, annotations=ann, options=RunOptions(copies=2))


def test_a_source_inside_out_or_an_out_that_is_a_file_is_refused(pipe: augledger.Pipeline, tmp_path: Path) -> None:
    from augledger import FingerprintConflict, SourceError

    make_source(tmp_path / "o" / "augmented", 2)
    with pytest.raises(SourceError, match="is inside --out"):
        materialize(pipe, tmp_path / "o" / "augmented", tmp_path / "o")
    (tmp_path / "file").write_text("x")
    with pytest.raises(FingerprintConflict, match="is a file; choose a folder"):
        materialize(pipe, tmp_path / "o" / "augmented", tmp_path / "file")


def test_verify_reports_a_damaged_shard_instead_of_crashing(pipe: augledger.Pipeline, tmp_path: Path) -> None:
    src = make_source(tmp_path / "src", 4)
    out = tmp_path / "o"
    materialize(pipe, src, out, options=RunOptions(format="webdataset"))
    shard = next((out / "shards").glob("*.tar"))
    shard.write_bytes(b"\x00" * 100 + b"not a tar file at all")
    report = verify(out)
    assert not report.ok and f"shard shards/{shard.name} was modified since the run" in report.problems[0].message
    assert all("is missing" in p.message for p in report.problems[1:]) and len(report.problems) == 5


def test_verify_checks_masks_stored_and_at_the_source(tmp_path: Path) -> None:
    src, ann, mask = annotated_source(tmp_path)
    pipe = augledger.compile(augledger.parse_spec(DET))
    out = tmp_path / "o"
    materialize(pipe, src, out, annotations=ann, options=RunOptions(include_original=True, copies=2))
    assert verify(out).ok
    rows = {r["epoch"]: r for r in read_ledger(out).rows()}
    stored = out / json.loads(rows[1]["targets"])["mask"]
    good = stored.read_bytes()
    Image.fromarray(np.zeros_like(mask)).save(stored)
    assert [(p.epoch, p.message) for p in verify(out).problems] == [(1, f"mask {stored.relative_to(out).as_posix()} was modified since the run")]
    stored.write_bytes(good)
    changed = mask.copy()
    changed[0:4, 0:4] = 9
    Image.fromarray(changed).save(src / "masks" / "a.png")
    assert {p.message for p in verify(out).problems} == {"source mask changed since the run"}


def test_verify_and_replay_notice_other_annotations(tmp_path: Path) -> None:
    src, ann, _mask = annotated_source(tmp_path)
    pipe = augledger.compile(augledger.parse_spec(DET))
    out = tmp_path / "o"
    materialize(pipe, src, out, annotations=ann)
    other = tmp_path / "other.jsonl"
    other.write_text(ann.read_text().replace('"eye"', '"nose"'))
    messages = [p.message for p in verify(out, annotations=other).problems]
    assert messages[0].startswith(f"the annotations file ({other}) is not the one the run used")
    assert "re-derived targets (boxes, labels, mask) differ from the recorded ones" in messages[1]
    from augledger import LedgerError
    from augledger.run.verify import replay_output

    with pytest.raises(LedgerError, match=r"other targets .* the annotations are not those the run used"):
        replay_output(out, "a.png", 0, annotations=other)


def test_integer_box_labels_stay_integers_in_the_ledger_and_the_exports(tmp_path: Path) -> None:
    src = make_source(tmp_path / "src", 2)
    ann = tmp_path / "ann.jsonl"
    ann.write_text(json.dumps({"key": "class0/0000.jpg", "bboxes": [[2, 2, 20, 20]], "labels": [3]}) + "\n"
                   + json.dumps({"key": "class1/0001.png", "bboxes": [[5, 5, 30, 30]], "labels": [1]}) + "\n")
    spec = {**SPEC, "targets": {"bboxes": {"format": "pascal_voc", "label_fields": ["labels"]}}}
    pipe = augledger.compile(augledger.parse_spec(spec))
    materialize(pipe, src, tmp_path / "o", annotations=ann, options=RunOptions(export_annotations="yolo"))
    labels = [json.loads(r["targets"])["labels"] for r in read_ledger(tmp_path / "o").rows()]
    assert labels == [[3], [1]] and all(isinstance(v, int) for group in labels for v in group)
    assert (tmp_path / "o" / "classes.txt").read_text() == "\n1\n\n3\n"  # ids are the labels themselves
    first = (tmp_path / "o" / "augmented" / "class0" / "0000.jpg.c0.txt").read_text()
    assert first.startswith("3 ")


def test_replay_says_when_the_stored_file_no_longer_matches_and_writes_the_mask(tmp_path: Path) -> None:
    src, ann, _mask = annotated_source(tmp_path)
    spec = tmp_path / "det.json"
    spec.write_text(json.dumps(DET))
    out = tmp_path / "o"
    subprocess.run([SCRIPT, "run", str(spec), "--source", str(src), "--out", str(out), "--annotations", str(ann)],
                   check=True, capture_output=True)
    stored = out / "augmented" / "a.png.c0.png"
    stored.write_bytes(stored.read_bytes()[:-10] + b"0123456789")
    cli = subprocess.run([SCRIPT, "replay", str(out), "a.png", "-o", str(tmp_path / "r.png")], capture_output=True, text=True)
    assert cli.returncode == 0 and "no longer matches the ledger" in cli.stderr
    assert json.loads(cli.stdout)["stored_matches"] is False
    assert (tmp_path / "r.mask.png").read_bytes() == (out / "augmented" / "a.png.c0.mask.png").read_bytes()


def test_a_closed_pipe_is_not_an_error_message(pipe: augledger.Pipeline, source: Path, tmp_path: Path) -> None:
    materialize(pipe, source, tmp_path / "o", options=RunOptions(copies=6))
    listing = f"'{SCRIPT}' ledger show '{tmp_path / 'o'}' --json --limit 1000"
    whole = subprocess.run(listing, shell=True, capture_output=True, text=True)
    assert len(whole.stdout) > 100_000  # more than a pipe holds (64 KiB): the writer meets the closed pipe
    shell = subprocess.run(f"{listing} | head -1", shell=True, capture_output=True, text=True)
    assert shell.stdout.count("\n") == 1 and "Broken pipe" not in shell.stderr and "Traceback" not in shell.stderr
