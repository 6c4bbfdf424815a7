"""The main job: materialise, resume after SIGKILL, quarantine, refuse foreign folders, verify, replay."""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import os
import shutil
import signal
import subprocess
import sys
import tarfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import augledger
from augledger import FingerprintConflict, LedgerError, SourceError
from augledger.ledger import read_ledger
from augledger.run.folder import wds_key
from augledger.run.materialize import EXIT_QUARANTINED, materialize
from augledger.run.options import RunOptions
from augledger.run.verify import verify
from helpers import SCRIPT, SPEC, make_source, tree_digests


def test_worker_count_and_order_do_not_change_a_byte(pipe: augledger.Pipeline, source: Path, tmp_path: Path) -> None:
    one = materialize(pipe, source, tmp_path / "w1", options=RunOptions(copies=2, workers=1, include_original=True))
    two = materialize(pipe, source, tmp_path / "w2", options=RunOptions(copies=2, workers=2, include_original=True, chunk_size=1))
    assert one.exit_code == two.exit_code == 0
    d1, d2 = tree_digests(tmp_path / "w1"), tree_digests(tmp_path / "w2")
    assert d1 == d2
    assert len([k for k in d1 if k.startswith("augmented/")]) == 48
    assert len([k for k in d1 if k.startswith("original/")]) == 24
    rows = read_ledger(tmp_path / "w1").rows()
    assert rows == read_ledger(tmp_path / "w2").rows()
    assert [(r["key"], r["epoch"]) for r in rows] == sorted((r["key"], r["epoch"]) for r in rows)
    assert "manifest.json" in d1  # the manifest is the dataset's identity: byte-identical too
    assert one.manifest == two.manifest
    assert one.run["workers"] == 1 and two.run["workers"] == 2  # what differs lives in run.json


def test_ledger_is_plain_parquet_with_header(pipe: augledger.Pipeline, source: Path, tmp_path: Path) -> None:
    import pandas as pd
    import pyarrow.parquet as pq

    materialize(pipe, source, tmp_path / "o", options=RunOptions(copies=1, input_digests=True))
    frame = pd.read_parquet(tmp_path / "o" / "ledger.parquet")
    assert len(frame) == 24 and set(frame["status"]) == {"ok"}
    row = frame.iloc[0]
    assert row["output_digest"] == "sha256:" + hashlib.sha256((tmp_path / "o" / row["output_path"]).read_bytes()).hexdigest()
    assert isinstance(json.loads(row["ops"]), list)
    # source_digest: the file's bytes; input_digest: the decoded image (the column online ledgers share).
    from augledger.io.image import decode_image
    from augledger.record import sample_digest

    data = (source / row["key"]).read_bytes()
    assert row["source_digest"] == "sha256:" + hashlib.sha256(data).hexdigest()
    assert row["input_digest"] == sample_digest({"image": decode_image(data)[0]})
    header = json.loads(pq.read_schema(tmp_path / "o" / "ledger.parquet").metadata[b"augledger"])
    assert header["fingerprint"] == pipe.fingerprint and header["seed"] == 7
    manifest = json.loads((tmp_path / "o" / "manifest.json").read_text())
    for field in ("fingerprint", "resolved_spec", "seed", "env", "source", "counts", "augledger", "ledger"):
        assert field in manifest
    assert manifest["source"]["digest"].startswith("sha256:")
    assert manifest["ledger"]["sha256"] == "sha256:" + hashlib.sha256((tmp_path / "o" / "ledger.parquet").read_bytes()).hexdigest()
    facts = json.loads((tmp_path / "o" / "run.json").read_text())
    for field in ("started_at", "finished_at", "seconds", "command", "workers", "host", "source"):
        assert field in facts
    assert not {"started_at", "command", "workers", "root"} & (set(manifest) | set(manifest["source"]))


@pytest.mark.parametrize("workers", [1, 2])
def test_sigkill_mid_run_then_resume_equals_uninterrupted(tmp_path: Path, workers: int) -> None:
    """In-process runs write files on a background thread; worker processes write their own."""
    source = make_source(tmp_path / "src", 80, size=160)
    spec = tmp_path / "aug.json"
    spec.write_text(json.dumps(SPEC))
    args = [SCRIPT, "run", str(spec), "--source", str(source), "--copies", "3", "--workers", str(workers)]
    subprocess.run([*args, "--out", str(tmp_path / "clean")], check=True, capture_output=True)

    out = tmp_path / "killed"
    journal = out / ".augledger" / "journal.jsonl"
    proc = subprocess.Popen([*args, "--out", str(out)], start_new_session=True,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if journal.is_file() and journal.read_bytes().count(b"\n") >= 40:
            break
        time.sleep(0.005)
    assert proc.poll() is None, "the run finished before it could be killed; make the workload larger"
    os.killpg(proc.pid, signal.SIGKILL)  # the main process and its workers, mid-write
    proc.wait()
    written = journal.read_bytes().count(b"\n")
    assert 40 <= written < 240 and not (out / "manifest.json").exists()

    resumed = subprocess.run([*args, "--out", str(out)], capture_output=True, text=True)
    assert resumed.returncode == 0, resumed.stderr
    assert "output(s) were already complete and verified" in resumed.stdout, resumed.stdout
    assert tree_digests(out) == tree_digests(tmp_path / "clean")
    assert read_ledger(out).rows() == read_ledger(tmp_path / "clean").rows()
    assert not [p for p in out.rglob("*") if ".tmp-" in p.name]


@pytest.mark.skipif(not Path("/proc/self/task").is_dir(), reason="finds the workers through /proc")
def test_a_killed_worker_ends_the_run_with_a_clear_error_then_resume_completes(tmp_path: Path) -> None:
    """The OOM killer takes one worker: the run must say so and stop, not wait forever for its chunk."""
    source = make_source(tmp_path / "src", 60, size=160)
    spec = tmp_path / "aug.json"
    spec.write_text(json.dumps(SPEC))
    args = [SCRIPT, "run", str(spec), "--source", str(source), "--copies", "3", "--workers", "2"]
    subprocess.run([*args, "--out", str(tmp_path / "clean")], check=True, capture_output=True)
    out = tmp_path / "o"
    journal = out / ".augledger" / "journal.jsonl"
    proc = subprocess.Popen([*args, "--out", str(out)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and not (journal.is_file() and journal.read_bytes().count(b"\n") >= 20):
        time.sleep(0.005)
    children = Path(f"/proc/{proc.pid}/task/{proc.pid}/children").read_text().split()
    assert children and proc.poll() is None, "the run finished before a worker could be killed"
    os.kill(int(children[0]), signal.SIGKILL)
    _, stderr = proc.communicate(timeout=60)
    assert proc.returncode == 1
    assert "a worker process died" in stderr and "run the same command again to resume" in stderr
    resumed = subprocess.run([*args, "--out", str(out)], capture_output=True, text=True)
    assert resumed.returncode == 0, resumed.stderr
    assert tree_digests(out) == tree_digests(tmp_path / "clean")
    assert read_ledger(out).rows() == read_ledger(tmp_path / "clean").rows()


@pytest.mark.skipif(not Path("/proc/self/task").is_dir(), reason="finds the workers through /proc")
def test_workers_die_with_a_killed_main_process(tmp_path: Path) -> None:
    """Orphaned workers would go on writing into --out beside a resumed run."""
    source = make_source(tmp_path / "src", 60, size=160)
    spec = tmp_path / "aug.json"
    spec.write_text(json.dumps(SPEC))
    out = tmp_path / "o"
    journal = out / ".augledger" / "journal.jsonl"
    proc = subprocess.Popen([SCRIPT, "run", str(spec), "--source", str(source), "--out", str(out), "--copies", "4",
                             "--workers", "2"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and not (journal.is_file() and journal.read_bytes().count(b"\n") >= 20):
        time.sleep(0.005)
    workers = [int(pid) for pid in Path(f"/proc/{proc.pid}/task/{proc.pid}/children").read_text().split()]
    assert workers and proc.poll() is None, "the run finished before it could be killed"
    proc.kill()  # the main process only
    proc.wait()

    def alive(pid: int) -> bool:
        try:
            state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
        except OSError:
            return False
        return state not in ("Z", "X")

    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and any(alive(pid) for pid in workers):
        time.sleep(0.05)
    assert not any(alive(pid) for pid in workers), "workers outlived the killed run"


def test_a_second_run_into_a_busy_folder_is_refused(pipe: augledger.Pipeline, source: Path, tmp_path: Path) -> None:
    import fcntl

    from augledger import OutputBusy

    out = tmp_path / "o"
    first = materialize(pipe, source, out)
    with open(out / ".augledger" / "lock", "a+b") as held:  # what a running run holds
        fcntl.flock(held.fileno(), fcntl.LOCK_EX)
        with pytest.raises(OutputBusy, match="another augledger run is writing into"):
            materialize(pipe, source, out)
    assert materialize(pipe, source, out).reused == first.manifest["counts"]["outputs"]


def test_a_rerun_stopped_half_way_leaves_no_stale_manifest(pipe: augledger.Pipeline, source: Path, tmp_path: Path) -> None:
    """A finished webdataset folder is rebuilt by a rerun; stopped mid-way, it must not look finished."""
    out = tmp_path / "o"
    options = RunOptions(copies=2, format="webdataset")
    materialize(pipe, source, out, options=options)

    class Stop:
        def on_start(self, start: object) -> None: ...

        def on_rows(self, rows: object) -> None:
            raise KeyboardInterrupt

        def on_finish(self, summary: object) -> None: ...

    with pytest.raises(KeyboardInterrupt):
        materialize(pipe, source, out, options=options, observers=[Stop()])
    assert not (out / "manifest.json").exists()
    with pytest.raises(LedgerError, match=r"has no manifest\.json"):
        verify(out)
    materialize(pipe, source, out, options=options)
    assert verify(out).ok


def test_a_failed_write_ends_the_run_and_is_never_journaled(
    pipe: augledger.Pipeline, source: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The in-process path writes on a background thread: its failure must still surface."""
    from augledger.io.store import LocalStore

    real = LocalStore.write
    victim = sorted(p.relative_to(source).as_posix() for p in source.rglob("*.*"))[5]

    def failing(self: LocalStore, path: str, data: bytes) -> None:
        if Path(path).name.startswith(Path(victim).name):
            raise OSError(28, "No space left on device")
        real(self, path, data)

    monkeypatch.setattr(LocalStore, "write", failing)
    out = tmp_path / "o"
    with pytest.raises(OSError, match="No space left"):
        materialize(pipe, source, out, options=RunOptions(copies=2, workers=1, chunk_size=2))
    journal = [json.loads(line) for line in (out / ".augledger" / "journal.jsonl").read_text().splitlines()]
    assert victim not in {row["key"] for row in journal}
    for row in journal:  # every journaled output is complete
        assert hashlib.sha256((out / row["output_path"]).read_bytes()).hexdigest() == row["output_digest"].split(":")[1]
    monkeypatch.setattr(LocalStore, "write", real)
    assert materialize(pipe, source, out, options=RunOptions(copies=2, workers=1)).exit_code == 0


def test_resume_after_a_journal_line_cut_short(pipe: augledger.Pipeline, source: Path, tmp_path: Path) -> None:
    """A run killed mid-line leaves half a JSON line; the resume drops it and appends cleanly."""
    clean = materialize(pipe, source, tmp_path / "clean", options=RunOptions(copies=2))
    out = tmp_path / "o"
    materialize(pipe, source, out, options=RunOptions(copies=2))
    journal = out / ".augledger" / "journal.jsonl"
    lines = journal.read_bytes().splitlines(keepends=True)
    journal.write_bytes(b"".join(lines[:30]) + lines[30][: len(lines[30]) // 2])  # killed mid-line
    (out / "manifest.json").unlink()
    again = materialize(pipe, source, out, options=RunOptions(copies=2, workers=2))
    assert again.reused == 30
    assert [json.loads(line)["key"] for line in journal.read_bytes().splitlines()]  # every line parses
    assert tree_digests(out) == tree_digests(tmp_path / "clean")
    assert read_ledger(out).rows() == read_ledger(tmp_path / "clean").rows()
    assert again.manifest["source"] == clean.manifest["source"]


def test_resume_redoes_deleted_and_tampered_outputs(pipe: augledger.Pipeline, source: Path, tmp_path: Path) -> None:
    out = tmp_path / "o"
    materialize(pipe, source, out, options=RunOptions(copies=2))
    before = tree_digests(out)
    victims = sorted(p for p in (out / "augmented").rglob("*.png"))[:3]
    victims[0].unlink()
    victims[1].write_bytes(b"garbage")
    (victims[2].parent / f".{victims[2].name}.tmp-999").write_bytes(b"half a file")
    again = materialize(pipe, source, out, options=RunOptions(copies=2, workers=2))
    assert again.exit_code == 0
    assert again.reused == again.manifest["counts"]["outputs"] - 2  # the deleted and the tampered one
    assert tree_digests(out) == before


def test_foreign_fingerprint_seed_or_options_are_refused(pipe: augledger.Pipeline, source: Path, tmp_path: Path) -> None:
    out = tmp_path / "o"
    materialize(pipe, source, out, options=RunOptions(copies=1))
    other = augledger.compile(augledger.parse_spec({**SPEC, "ops": SPEC["ops"][:2]}))
    with pytest.raises(FingerprintConflict, match=r"holds a dataset made by another pipeline version .*fingerprint: folder has"):
        materialize(other, source, out, options=RunOptions(copies=1))
    reseeded = augledger.compile(augledger.parse_spec({**SPEC, "seed": 8}))
    with pytest.raises(FingerprintConflict, match=r"seed: folder has 7, this run 8"):
        materialize(reseeded, source, out, options=RunOptions(copies=1))
    with pytest.raises(FingerprintConflict, match=r"\(copies: folder has 1, this run 2\)"):
        materialize(pipe, source, out, options=RunOptions(copies=2))
    stranger = tmp_path / "stranger"
    stranger.mkdir()
    (stranger / "notes.txt").write_text("mine")
    with pytest.raises(FingerprintConflict, match="not empty and is not an augledger output folder"):
        materialize(pipe, source, stranger)


def _bad_inputs(root: Path) -> dict[str, str]:
    """Write one file per kind of bad input; return {key: expected reason or 'ok:<note>'}."""
    from PIL import Image

    rng = np.random.default_rng(0)
    rgb = rng.integers(0, 255, (40, 40, 3), dtype=np.uint8)
    Image.fromarray(rgb).save(root / "good.png")
    (root / "zero.jpg").write_bytes(b"")
    buf = io.BytesIO()
    Image.fromarray(rgb).save(buf, format="JPEG")
    (root / "truncated.jpg").write_bytes(buf.getvalue()[: len(buf.getvalue()) // 2])
    (root / "text.png").write_text("this is not an image")
    Image.fromarray(rgb[..., 0].astype(np.uint16) * 257).save(root / "deep16.png")
    Image.fromarray(rgb).convert("CMYK").save(root / "cmyk.jpg")
    Image.fromarray(rgb).convert("RGBA").save(root / "alpha.png")
    Image.fromarray(rgb).convert("P").save(root / "palette.png")
    transparent = Image.fromarray(rgb).convert("P")
    transparent.info["transparency"] = 0
    transparent.save(root / "palette_alpha.png", transparency=0)
    Image.fromarray(rng.integers(0, 255, (100, 100, 3), dtype=np.uint8)).save(root / "huge.png")
    return {
        "good.png": "ok", "zero.jpg": "empty", "truncated.jpg": "truncated", "text.png": "not-an-image",
        "deep16.png": "high-bit-depth", "cmyk.jpg": "ok:converted CMYK->RGB", "alpha.png": "alpha",
        "palette.png": "ok:converted P->RGB", "palette_alpha.png": "alpha", "huge.png": "too-large",
    }


def test_each_kind_of_bad_input_is_quarantined_with_its_reason(pipe: augledger.Pipeline, tmp_path: Path) -> None:
    src = tmp_path / "src"
    src.mkdir()
    expected = _bad_inputs(src)
    result = materialize(pipe, src, tmp_path / "o", options=RunOptions(copies=2, workers=2, max_pixels=5000))
    assert result.exit_code == EXIT_QUARANTINED
    rows = {(r["key"], r["epoch"]): r for r in read_ledger(tmp_path / "o").rows()}
    assert len(rows) == 2 * len(expected)  # nothing lost: every expected output has a row
    for key, want in expected.items():
        for epoch in (0, 1):
            row = rows[(key, epoch)]
            if want.startswith("ok"):
                assert row["status"] == "ok", (key, row["error"])
                assert row["note"] == (want[3:] or None)
                assert (tmp_path / "o" / row["output_path"]).is_file()
            else:
                assert row["status"] == "quarantined", key
                assert row["error"].startswith(want + ":"), (key, row["error"])
                assert row["output_path"] is None
    quarantined_keys = {q["key"] for q in result.manifest["quarantined"]}
    assert quarantined_keys == {k for k, v in expected.items() if not v.startswith("ok")}


def test_cli_exit_codes_and_summary(tmp_path: Path) -> None:
    src = tmp_path / "src"
    src.mkdir()
    _bad_inputs(src)
    spec = tmp_path / "aug.json"
    spec.write_text(json.dumps(SPEC))
    out = subprocess.run([SCRIPT, "run", str(spec), "--source", str(src), "--out", str(tmp_path / "o"), "--max-pixels", "5000"],
                         capture_output=True, text=True)
    assert out.returncode == EXIT_QUARANTINED
    assert "7 sample(s) quarantined" in out.stdout and "zero.jpg: empty: zero-byte file" in out.stdout
    (src / "text.png").unlink()
    for name in ("zero.jpg", "truncated.jpg", "deep16.png", "alpha.png", "palette_alpha.png", "huge.png"):
        (src / name).unlink()
    ok = subprocess.run([SCRIPT, "run", str(spec), "--source", str(src), "--out", str(tmp_path / "o2")], capture_output=True, text=True)
    assert ok.returncode == 0, ok.stderr


def test_annotations_move_with_the_image(tmp_path: Path) -> None:
    from PIL import Image

    src = tmp_path / "src"
    src.mkdir()
    rng = np.random.default_rng(1)
    image = rng.integers(0, 255, (40, 60, 3), dtype=np.uint8)
    Image.fromarray(image).save(src / "a.png")
    Image.fromarray(image).save(src / "b.png")
    mask = np.zeros((40, 60), dtype=np.uint8)
    mask[5:15, 10:20] = 255
    Image.fromarray(mask).save(src / "a_mask.png")
    Image.fromarray(np.zeros((10, 10), dtype=np.uint8)).save(src / "wrong_mask.png")
    ann = tmp_path / "ann.jsonl"
    ann.write_text("\n".join(json.dumps(r) for r in [
        {"key": "a.png", "label": "cat", "bboxes": [[10, 5, 20, 15]], "labels": ["eye"], "keypoints": [[12, 7]], "mask": "a_mask.png"},
        {"key": "b.png", "bboxes": [[50, 5, 70, 15]], "labels": ["out of bounds"]},
        {"key": "missing.png", "label": "dog"},
    ]) + "\n")
    spec = {
        "schema": 1, "name": "det", "seed": 1,
        "targets": {"mask": True, "bboxes": {"format": "pascal_voc", "label_fields": ["labels"]}, "keypoints": {"format": "xy"}},
        "ops": [{"op": "HorizontalFlip", "p": 1.0}],
    }
    pipe = augledger.compile(augledger.parse_spec(spec))
    result = materialize(pipe, src, tmp_path / "o", options=RunOptions(copies=1), annotations=ann)
    rows = {r["key"]: r for r in read_ledger(tmp_path / "o").rows()}
    a = rows["a.png"]
    assert a["status"] == "ok"
    targets = json.loads(a["targets"])
    assert targets["label"] == "cat" and targets["labels"] == ["eye"]
    assert np.allclose(targets["bboxes"], [[40, 5, 50, 15]])
    assert np.allclose(targets["keypoints"], [[60 - 1 - 12, 7]])
    out_mask = np.asarray(Image.open(tmp_path / "o" / targets["mask"]))
    assert np.array_equal(out_mask, mask[:, ::-1])
    assert rows["b.png"]["status"] == "quarantined" and rows["b.png"]["error"].startswith("annotation:")
    assert rows["missing.png"]["status"] == "quarantined" and rows["missing.png"]["error"].startswith("missing-image:")
    # Images without a manifest row, like the mask files themselves, are augmented with empty targets.
    assert rows["wrong_mask.png"]["status"] == "ok"
    assert result.exit_code == EXIT_QUARANTINED
    report = verify(tmp_path / "o")
    assert report.ok, report.problems

    # Annotations moved since the run: verify and replay take their new place.
    moved = tmp_path / "moved.jsonl"
    shutil.copy(ann, moved)
    ann.rename(tmp_path / "gone.jsonl")
    for argv in (["verify", str(tmp_path / "o")], ["replay", str(tmp_path / "o"), "a.png"]):
        lost = subprocess.run([SCRIPT, *argv], capture_output=True, text=True)
        assert lost.returncode == 1 and "does not exist" in lost.stderr, lost.stderr
        found = subprocess.run([SCRIPT, *argv, "--annotations", str(moved)], capture_output=True, text=True)
        assert found.returncode == 0, found.stderr
    (tmp_path / "gone.jsonl").rename(ann)

    # Edited annotations make another dataset: a rerun into the same folder is refused, not reused.
    ann.write_text(ann.read_text().replace('"label": "cat"', '"label": "lynx"'))
    with pytest.raises(FingerprintConflict, match=r"annotations: folder has 'sha256:"):
        materialize(pipe, src, tmp_path / "o", options=RunOptions(copies=1), annotations=ann)
    ann.write_text(ann.read_text().replace('"label": "lynx"', '"label": "cat"'))

    # As WebDataset shards, the ledger's mask path names the shard member that holds it.
    materialize(pipe, src, tmp_path / "w", options=RunOptions(copies=1, format="webdataset"), annotations=ann)
    a_wds = next(r for r in read_ledger(tmp_path / "w").rows() if r["key"] == "a.png")
    shard, member = json.loads(a_wds["targets"])["mask"].split("#")
    with tarfile.open(tmp_path / "w" / shard) as tar:
        stored_mask = np.asarray(Image.open(io.BytesIO(tar.extractfile(member).read())))  # type: ignore[union-attr]
        meta = json.loads(tar.extractfile(member.replace(".mask.png", ".json")).read())  # type: ignore[union-attr]
    assert np.array_equal(stored_mask, out_mask)
    assert meta["targets"]["mask"] == member  # inside the shard: the sibling member's name
    assert not (tmp_path / "w" / ".augledger" / "staging").exists()


def test_annotations_that_the_spec_cannot_carry_are_refused(pipe: augledger.Pipeline, source: Path, tmp_path: Path) -> None:
    ann = tmp_path / "ann.csv"
    ann.write_text('key,bboxes\nclass0/0000.jpg,"[[1, 2, 3, 4]]"\n')
    with pytest.raises(SourceError, match=r"carry bboxes, but the spec declares no targets\.bboxes"):
        materialize(pipe, source, tmp_path / "o", annotations=ann)


def read_with_webdataset(shards: list[Path]) -> list[dict[str, Any]]:
    """Read shards with webdataset's own tar expansion and key grouping, on file objects we close.

    (``wds.WebDataset`` itself leaves the last shard open for the garbage collector and draws from
    the global ``random`` module, which this suite's sentinels forbid.)
    """
    from webdataset.tariterators import group_by_keys, tar_file_expander

    with contextlib.ExitStack() as stack:
        streams = [{"url": str(s), "stream": stack.enter_context(s.open("rb"))} for s in shards]
        return list(group_by_keys(tar_file_expander(streams)))


def test_webdataset_shards_read_by_webdataset_and_tarfile(pipe: augledger.Pipeline, source: Path, tmp_path: Path) -> None:
    a = materialize(pipe, source, tmp_path / "a", options=RunOptions(copies=2, format="webdataset", shard_max_count=10))
    b = materialize(pipe, source, tmp_path / "b", options=RunOptions(copies=2, workers=2, format="webdataset", shard_max_count=10))
    shards = sorted((tmp_path / "a" / "shards").glob("*.tar"))
    assert len(shards) == 5  # 48 samples, 10 per shard
    assert tree_digests(tmp_path / "a") == tree_digests(tmp_path / "b")
    assert a.manifest["shards"] == b.manifest["shards"]
    samples = read_with_webdataset(shards)
    assert len(samples) == 48
    first = samples[0]
    meta = json.loads(first["json"])
    assert first["__key__"] == wds_key(meta["key"], meta["epoch"]) == "class0/0000%2Ejpg__c0"
    rows = {(r["key"], r["epoch"]): r for r in read_ledger(tmp_path / "a").rows()}
    assert "sha256:" + hashlib.sha256(first["png"]).hexdigest() == rows[(meta["key"], meta["epoch"])]["output_digest"]
    for row in rows.values():  # the ledger points at the member that holds each output
        shard, member = row["output_path"].split("#")
        with tarfile.open(tmp_path / "a" / shard) as tar:
            data = tar.extractfile(member).read()  # type: ignore[union-attr]
        assert "sha256:" + hashlib.sha256(data).hexdigest() == row["output_digest"]
    with tarfile.open(shards[0]) as tar:
        names = tar.getnames()
        assert names[:2] == ["class0/0000%2Ejpg__c0.png", "class0/0000%2Ejpg__c0.json"]
        assert all(m.mtime == 0 and m.uid == 0 for m in tar.getmembers())
    assert verify(tmp_path / "a").ok
    # One flipped byte inside a member of the third shard is found and named (and the shard's digest).
    victim = rows[sorted(rows)[25]]
    shard, member = victim["output_path"].split("#")
    with tarfile.open(tmp_path / "a" / shard) as tar:
        offset = tar.getmember(member).offset_data + 100
    with open(tmp_path / "a" / shard, "r+b") as f:
        f.seek(offset)
        byte = f.read(1)
        f.seek(offset)
        f.write(bytes([byte[0] ^ 0xFF]))
    report = verify(tmp_path / "a")
    assert [(p.key, p.epoch) for p in report.problems] == [("*", 0), (victim["key"], victim["epoch"])]
    assert f"shard {shard} was modified since the run" in report.problems[0].message
    assert "was modified since the run" in report.problems[1].message


def test_a_symlink_loop_in_the_source_is_read_once(tmp_path: Path) -> None:
    from augledger.run.sources import FolderSource

    source = make_source(tmp_path / "src", 6)
    (source / "class0" / "loop").symlink_to("..", target_is_directory=True)
    (source / "class0" / "sibling").symlink_to("../class1", target_is_directory=True)  # inside: followed once
    keys = FolderSource(source, {".png", ".jpg"}).keys()
    assert len(keys) == 6 and len(set(keys)) == 6
    assert not [k for k in keys if "loop" in k]


def test_out_inside_source_is_refused(pipe: augledger.Pipeline, source: Path) -> None:
    with pytest.raises(SourceError, match=r"is inside --source .*Choose an --out outside the source folder"):
        materialize(pipe, source, source / "augmented")
    with pytest.raises(SourceError, match=r"is inside --source"):
        materialize(pipe, source, source)


def test_an_op_failing_on_one_image_quarantines_it(source: Path, tmp_path: Path) -> None:
    """A crop larger than some images: those are quarantined with the backend's reason, the rest made."""
    from PIL import Image

    source = Path(shutil.copytree(source, tmp_path / "src"))  # the module's source stays as other tests expect
    Image.fromarray(np.full((80, 80, 3), 120, np.uint8)).save(source / "big.png")
    crop = augledger.compile(augledger.parse_spec({"schema": 1, "name": "crop", "ops": [{"op": "RandomCrop", "params": {"height": 72, "width": 72}}]}))
    result = materialize(crop, source, tmp_path / "o", options=RunOptions(copies=1, workers=2))
    assert result.exit_code == EXIT_QUARANTINED
    rows = {r["key"]: r for r in read_ledger(tmp_path / "o").rows()}
    assert rows["big.png"]["status"] == "ok"
    bad = [r for r in rows.values() if r["status"] != "ok"]
    assert bad and len(bad) == len(rows) - 1
    assert all(r["error"].startswith("augment: ") and "CropSizeError" in r["error"] for r in bad), bad[0]["error"]


FAULTS_SCRIPT = """
import json, resource, sys
from pathlib import Path
import augledger
from augledger.run.materialize import materialize
from augledger.run.options import RunOptions
spec = {"schema": 1, "name": "faults", "seed": 1, "ops": [
    {"op": "Affine", "p": 0.5, "params": {"rotate": [-20, 20]}}, {"op": "GaussianBlur", "p": 0.5},
    {"op": "ColorJitter", "p": 0.5}, {"op": "RandomResizedCrop", "params": {"size": [320, 320]}}]}
pipe = augledger.compile(augledger.parse_spec(spec))
faults = []
for name in ("warm", "small", "large"):
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    materialize(pipe, sys.argv[1] + "/" + ("large" if name == "large" else "small"), sys.argv[2] + "/" + name,
                options=RunOptions(workers=1, image_format="jpg"))
    faults.append(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
print(json.dumps(faults))
"""


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc allocator tuning")
def test_in_process_run_does_not_page_fault_per_image(tmp_path: Path) -> None:
    """Per-image page faults (a fresh mmap of zeroed pages per array) stay near zero.

    Counted, not timed: with glibc's default thresholds this pipeline cost ~570 faults per
    320x320 image (the time of a JPEG decode); tuned, fewer than 25.
    """
    make_source(tmp_path / "src" / "small", 20, size=320)
    make_source(tmp_path / "src" / "large", 80, size=320)
    proc = subprocess.run([sys.executable, "-c", FAULTS_SCRIPT, str(tmp_path / "src"), str(tmp_path / "out")],
                          capture_output=True, text=True, check=True, env={**os.environ, "PYTHONHASHSEED": "0"})
    _warm, small, large = json.loads(proc.stdout.splitlines()[-1])
    per_image = (large - small) / 60
    assert per_image < 25, f"{per_image:.0f} page faults per image (runs of 20 and 80 images: {small}, {large})"


def test_identical_runs_make_identical_folders_wherever_they_write(pipe: augledger.Pipeline, source: Path, tmp_path: Path) -> None:
    """What a data-versioning tool hashes: everything but run.json and .augledger/ is byte-identical."""
    a = materialize(pipe, source, tmp_path / "first" / "out", options=RunOptions(copies=2, workers=1, include_original=True))
    b = materialize(pipe, source, tmp_path / "second-place", options=RunOptions(copies=2, workers=2, include_original=True))
    assert tree_digests(tmp_path / "first" / "out") == tree_digests(tmp_path / "second-place")
    assert (tmp_path / "first" / "out" / "manifest.json").read_bytes() == (tmp_path / "second-place" / "manifest.json").read_bytes()
    assert a.run["out"] != b.run["out"] and a.run["workers"] != b.run["workers"]


class Recorder:
    def __init__(self) -> None:
        self.events: list[tuple[str, Any]] = []

    def on_start(self, start: Any) -> None:
        self.events.append(("start", start))

    def on_rows(self, rows: Any) -> None:
        self.events.append(("rows", list(rows)))

    def on_finish(self, summary: Any) -> None:
        self.events.append(("finish", summary))


def test_observers_see_start_every_row_and_the_manifest(pipe: augledger.Pipeline, source: Path, tmp_path: Path) -> None:
    first, again = Recorder(), Recorder()
    result = materialize(pipe, source, tmp_path / "o", options=RunOptions(copies=2, workers=2), observers=[first])
    kinds = [kind for kind, _ in first.events]
    assert kinds[0] == "start" and kinds[-1] == "finish" and set(kinds[1:-1]) == {"rows"}
    start = first.events[0][1]
    assert (start.kind, start.total, start.reused, start.fingerprint) == ("offline", 48, 0, pipe.fingerprint)
    rows = [row for kind, batch in first.events if kind == "rows" for row in batch]
    assert sorted((r.key, r.epoch) for r in rows) == [(r["key"], r["epoch"]) for r in read_ledger(tmp_path / "o").rows()]
    assert first.events[-1][1] == result.manifest
    materialize(pipe, source, tmp_path / "o", options=RunOptions(copies=2), observers=[again])
    assert again.events[0][1].reused == 48 and [k for k, _ in again.events] == ["start", "finish"]


def test_a_folder_of_an_earlier_version_is_refused_with_the_fix(pipe: augledger.Pipeline, source: Path, tmp_path: Path) -> None:
    out = tmp_path / "o"
    (out / ".augledger").mkdir(parents=True)
    (out / ".augledger" / "run.json").write_text('{"fingerprint": "sha256:old"}')
    with pytest.raises(FingerprintConflict, match=r"made by an earlier augledger .*delete it to rebuild"):
        materialize(pipe, source, out)
