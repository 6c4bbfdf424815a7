"""verify and replay: every way a folder can stop matching its ledger is found and named."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest

import augledger
from augledger import LedgerError
from augledger.ledger import read_ledger
from augledger.run.materialize import materialize
from augledger.run.options import RunOptions
from augledger.run.verify import replay_output, verify
from helpers import SCRIPT, SPEC, make_source


@pytest.fixture(scope="module")
def pipe() -> augledger.Pipeline:
    return augledger.compile(augledger.parse_spec(SPEC))


@pytest.fixture(scope="module")
def source(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_source(tmp_path_factory.mktemp("src"), 24)


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
