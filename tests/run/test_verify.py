"""verify and replay: every way a folder can stop matching its ledger is found and named."""

from __future__ import annotations

import hashlib
import json
import shutil
import subprocess
from pathlib import Path

import pyarrow as pa
import pytest

import augledger
from augledger import LedgerError
from augledger.ledger import read_ledger
from augledger.run.materialize import materialize
from augledger.run.options import RunOptions
from augledger.run.verify import replay_output, verify
from helpers import SCRIPT


def test_verify_catches_tampering_missing_and_changed_sources(pipe: augledger.Pipeline, source: Path, tmp_path: Path) -> None:
    src = tmp_path / "src"
    shutil.copytree(source, src)
    out = tmp_path / "o"
    materialize(pipe, src, out, options=RunOptions(copies=2))
    assert verify(out).ok
    assert verify(out, sample=5).checked == 5
    outputs = sorted((out / "augmented").rglob("*.png"))
    tampered, deleted = outputs[0], outputs[1]
    data = bytearray(tampered.read_bytes())
    data[-20] ^= 1
    tampered.write_bytes(bytes(data))
    deleted.unlink()
    report = verify(out)
    assert not report.ok
    messages = {(p.key, p.epoch): p.message for p in report.problems}
    assert any("was modified since the run" in m for m in messages.values())
    assert any("is missing" in m for m in messages.values())
    assert len(report.problems) == 2
    # A verify CLI run names the files and exits 1.
    cli = subprocess.run([SCRIPT, "verify", str(out)], capture_output=True, text=True)
    assert cli.returncode == 1 and "MISMATCH" in cli.stdout and tampered.name.split(".c")[0] in cli.stdout


def test_replay_reproduces_one_output(pipe: augledger.Pipeline, source: Path, tmp_path: Path) -> None:
    out = tmp_path / "o"
    materialize(pipe, source, out, options=RunOptions(copies=3))
    row = read_ledger(out).find("class1/0001.png", 2)[0]
    replayed = replay_output(out, "class1/0001.png", 2)
    assert replayed.data == (out / row["output_path"]).read_bytes()
    assert replayed.row == row and replayed.ops == json.loads(row["ops"]) and replayed.env_differences == ""
    with pytest.raises(LedgerError, match=r"no output for key 'class1/0001.png' copy 7 .*it has copies \[0, 1, 2\]"):
        replay_output(out, "class1/0001.png", 7)


def test_verify_rederives_from_the_source(pipe: augledger.Pipeline, source: Path, tmp_path: Path) -> None:
    """The stored-digest check alone cannot catch these two: the source check and the re-derivation must."""
    import pyarrow.parquet as pq

    src = Path(shutil.copytree(source, tmp_path / "src"))
    out = tmp_path / "o"
    materialize(pipe, src, out, options=RunOptions(copies=1))
    # 1. The source changed since the run; outputs and ledger untouched.
    victim = src / "class0" / "0003.png"
    original = victim.read_bytes()
    victim.write_bytes((src / "class1" / "0001.png").read_bytes())
    report = verify(out)
    assert [(p.key, p.message) for p in report.problems] == [("class0/0003.png", "source file changed since the run")]
    victim.write_bytes(original)
    # 2. An output replaced together with its ledger digest (and the manifest's ledger digest): only
    #    re-deriving the output from the source can tell.
    rows = read_ledger(out).rows()
    row = next(r for r in rows if r["key"] == "class2/0002.jpg")
    fake = (out / rows[0]["output_path"]).read_bytes()
    (out / row["output_path"]).write_bytes(fake)
    table = pq.read_table(out / "ledger.parquet")
    digests = [hashlib.sha256(fake).hexdigest() if k == row["key"] else d
               for k, d in zip(table.column("key").to_pylist(), table.column("output_digest").to_pylist(), strict=True)]
    table = table.set_column(table.schema.get_field_index("output_digest"), "output_digest",
                             pa.array(["sha256:" + d if not d.startswith("sha256:") else d for d in digests]))
    pq.write_table(table, out / "ledger.parquet")
    manifest = json.loads((out / "manifest.json").read_text())
    manifest["ledger"]["sha256"] = "sha256:" + hashlib.sha256((out / "ledger.parquet").read_bytes()).hexdigest()
    (out / "manifest.json").write_text(json.dumps(manifest))
    report = verify(out)
    assert [(p.key, p.message) for p in report.problems] == [("class2/0002.jpg", "re-derived output differs from the recorded one")]


def test_verify_and_replay_warn_when_the_environment_differs(pipe: augledger.Pipeline, source: Path, tmp_path: Path) -> None:
    out = tmp_path / "o"
    materialize(pipe, source, out)
    manifest = json.loads((out / "manifest.json").read_text())
    manifest["env"]["backends"]["opencv"] = "3.0.0"
    (out / "manifest.json").write_text(json.dumps(manifest))
    report = verify(out, sample=2)
    assert report.ok and report.env_differences.startswith("opencv 3.0.0 -> ")
    replayed = replay_output(out, "class1/0001.png", 0)
    assert replayed.env_differences.startswith("opencv 3.0.0 -> ")
    for argv in (["verify", str(out), "--sample", "1"], ["replay", str(out), "class1/0001.png"]):
        cli = subprocess.run([SCRIPT, *argv], capture_output=True, text=True)
        assert cli.returncode == 0 and "warning: environment differs from the run's: opencv 3.0.0 -> " in cli.stderr, cli.stderr


def test_a_moved_source_gets_one_message_saying_to_pass_source(pipe: augledger.Pipeline, source: Path, tmp_path: Path) -> None:
    src = Path(shutil.copytree(source, tmp_path / "src"))
    out = tmp_path / "o"
    materialize(pipe, src, out)
    src.rename(tmp_path / "moved")
    for argv in (["verify", str(out)], ["replay", str(out), "class1/0001.png"]):
        cli = subprocess.run([SCRIPT, *argv], capture_output=True, text=True)
        assert cli.returncode == 1 and cli.stdout == "", cli.stdout
        assert cli.stderr.count("\n") <= 3 and "does not exist (moved or deleted since the run?); pass --source" in cli.stderr
    assert verify(out, source=tmp_path / "moved").ok


def test_ledger_show_json_gives_ops_and_targets_as_json(pipe: augledger.Pipeline, source: Path, tmp_path: Path) -> None:
    out = tmp_path / "o"
    materialize(pipe, source, out)
    cli = subprocess.run([SCRIPT, "ledger", "show", str(out), "class1/0001.png", "--json"], capture_output=True, text=True)
    (line,) = cli.stdout.splitlines()
    row = json.loads(line)
    assert isinstance(row["ops"], list) and row["ops"] and isinstance(row["ops"][0]["params"], dict)
    assert row["targets"] is None and row["key"] == "class1/0001.png"
