"""DVC: the example stage in a temporary git repository: it runs, a second repro does nothing, a changed
spec reruns it, and another checkout reproduces the same output hash."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from helpers import SCRIPT, make_source

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "dvc"
DVC = shutil.which("dvc", path=os.path.dirname(sys.executable)) or "dvc"


def sh(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PATH": f"{os.path.dirname(sys.executable)}{os.pathsep}{os.environ.get('PATH', '')}",
           "DVC_NO_ANALYTICS": "1", "GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@t", "GIT_COMMITTER_NAME": "t",
           "GIT_COMMITTER_EMAIL": "t@t"}
    done = subprocess.run(list(args), capture_output=True, text=True, cwd=cwd, env=env)
    assert done.returncode == 0, f"{args}: {done.stdout}\n{done.stderr}"
    return done


def out_hash(repo: Path) -> str:
    lock = yaml.safe_load((repo / "dvc.lock").read_text())
    (out,) = lock["stages"]["augment"]["outs"]
    return str(out["md5"])


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    root = tmp_path / "project"
    root.mkdir()
    for name in ("dvc.yaml", "params.yaml", "aug.yaml", ".dvcignore"):
        shutil.copy(EXAMPLE / name, root / name)
    make_source(root / "data" / "raw", 6)
    sh("git", "init", "-q", cwd=root)
    sh(DVC, "init", "-q", cwd=root)
    return root


def test_repro_runs_then_does_nothing_then_reruns_on_a_spec_change(repo: Path, tmp_path: Path) -> None:
    first = sh(DVC, "repro", cwd=repo)
    assert "Running stage 'augment'" in first.stdout
    manifest = (repo / "data" / "augmented" / "manifest.json").read_bytes()
    lock = yaml.safe_load((repo / "dvc.lock").read_text())["stages"]["augment"]
    assert lock["params"]["params.yaml"]["augment.seed"] == 1234 and "--seed 1234" in lock["cmd"]
    assert lock["outs"][0]["nfiles"] == 14  # 12 outputs, manifest, ledger: run.json and .augledger/ are ignored
    hash1 = out_hash(repo)

    second = sh(DVC, "repro", cwd=repo)
    assert "didn't change, skipping" in second.stdout and "Running stage" not in second.stdout
    assert out_hash(repo) == hash1 and (repo / "data" / "augmented" / "manifest.json").read_bytes() == manifest

    # Another machine: a fresh checkout with the same raw data reproduces the same output hash.
    sh("git", "add", "-A", cwd=repo)
    sh("git", "commit", "-qm", "augment", cwd=repo)
    other = tmp_path / "other"
    sh("git", "clone", "-q", str(repo), str(other), cwd=tmp_path)
    sh(DVC, "repro", "--force", cwd=other)
    assert out_hash(other) == hash1

    spec = (repo / "aug.yaml").read_text().replace("rotate: [-15, 15]", "rotate: [-25, 25]")
    assert "[-25, 25]" in spec
    (repo / "aug.yaml").write_text(spec)
    third = sh(DVC, "repro", cwd=repo)
    assert "Running stage 'augment'" in third.stdout and out_hash(repo) != hash1

    (repo / "params.yaml").write_text("augment:\n  seed: 7\n")
    fourth = sh(DVC, "repro", cwd=repo)
    assert "Running stage 'augment'" in fourth.stdout
    assert yaml.safe_load((repo / "data" / "augmented" / "manifest.json").read_text())["seed"] == 7


def test_dvc_stage_prints_the_example_and_writes_a_stage_that_runs(tmp_path: Path) -> None:
    shutil.copy(EXAMPLE / "aug.yaml", tmp_path / "aug.yaml")
    make_source(tmp_path / "data" / "raw", 3)
    args = ["dvc-stage", "aug.yaml", "--source", "data/raw", "--out", "data/augmented", "--copies", "2", "--allow-quarantine"]
    done = subprocess.run([SCRIPT, *args], capture_output=True, text=True, cwd=tmp_path, check=True)
    printed = yaml.safe_load(done.stdout)
    example = yaml.safe_load((EXAMPLE / "dvc.yaml").read_text())
    assert printed == example  # the example is exactly what the command prints
    assert "data/augmented/run.json" in done.stdout and "data/augmented/.augledger/" in done.stdout
    sh("git", "init", "-q", cwd=tmp_path)
    sh(DVC, "init", "-q", cwd=tmp_path)
    (tmp_path / "params.yaml").write_text("train:\n  lr: 0.1\n")  # the user's own params stay
    sh(SCRIPT, *args, "--write", cwd=tmp_path)
    assert yaml.safe_load((tmp_path / "params.yaml").read_text()) == {"train": {"lr": 0.1}, "augment": {"seed": 1234}}
    assert "data/augmented/run.json" in (tmp_path / ".dvcignore").read_text()
    (tmp_path / "data" / "raw" / "broken.jpg").write_bytes(b"\xff\xd8\xff not a jpeg")  # quarantined, not fatal
    assert "Running stage 'augment'" in sh(DVC, "repro", cwd=tmp_path).stdout
    again = subprocess.run([SCRIPT, *args, "--write"], capture_output=True, text=True, cwd=tmp_path)
    assert again.returncode == 2 and "already has a stage 'augment'" in again.stderr
    nested = subprocess.run([SCRIPT, "dvc-stage", "aug.yaml", "--source", "data/raw", "--out", "o", "--params-key",
                             "train.augment.seed"], capture_output=True, text=True, cwd=tmp_path, check=True)
    assert "#   train:\n#     augment:\n#       seed: 1234" in nested.stdout
    for bad_args, message in ((["missing.yaml", "--source", "data/raw"], "does not exist"),
                              (["aug.yaml", "--source", "nowhere"], "is not a folder"),
                              (["digits@production", "--source", "data/raw"], "is an alias"),
                              (["aug.yaml", "--source", str(tmp_path / "data" / "raw")], "must be relative")):
        bad = subprocess.run([SCRIPT, "dvc-stage", *bad_args, "--out", "b"], capture_output=True, text=True, cwd=tmp_path)
        assert bad.returncode in (1, 2) and message in bad.stderr, bad.stderr
