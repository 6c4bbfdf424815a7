"""The command line, run as a user would: real subprocesses of the installed ``augledger`` script."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import yaml

from helpers import STANDARD_SPEC

SCRIPT = shutil.which("augledger", path=os.path.dirname(sys.executable)) or "augledger"


def cli(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([SCRIPT, *args], capture_output=True, text=True, cwd=cwd, env={**os.environ, "COLUMNS": "200"})


@pytest.fixture()
def spec_file(tmp_path: Path) -> Path:
    path = tmp_path / "aug.yaml"
    path.write_text(yaml.safe_dump(STANDARD_SPEC))
    return path


def test_validate_and_hash(spec_file: Path) -> None:
    import augledger

    fingerprint = augledger.compile(augledger.load_spec(spec_file)).fingerprint
    out = cli("spec", "validate", str(spec_file))
    assert out.returncode == 0 and fingerprint in out.stdout
    out = cli("spec", "hash", str(spec_file))
    assert out.returncode == 0 and out.stdout.strip() == fingerprint
    out = cli("spec", "validate", str(spec_file), "--json")
    assert json.loads(out.stdout) == {"valid": True, "name": "digits-train", "fingerprint": fingerprint}


def test_validate_reports_location_and_exits_1(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("schema: 1\nname: x\nops:\n  - {op: Affine, params: {rotat: 3}}\n")
    out = cli("spec", "validate", str(bad))
    assert out.returncode == 1
    assert "ops[0].params.rotat: unknown param for Affine; did you mean 'rotate'?" in out.stderr


def test_diff_names_params_and_exit_code(spec_file: Path, tmp_path: Path) -> None:
    other = tmp_path / "other.json"
    changed = json.loads(json.dumps(STANDARD_SPEC))
    changed["ops"][1]["params"]["rotate"] = [-20, 20]
    other.write_text(json.dumps(changed))
    out = cli("spec", "diff", str(spec_file), str(other), "--json")
    assert out.returncode == 1
    report = json.loads(out.stdout)
    assert report["same_fingerprint"] is False
    assert report["changes"] == [{"location": "ops[1].params.rotate", "a": [-15.0, 15.0], "b": [-20.0, 20.0]}]
    same = cli("spec", "diff", str(spec_file), str(spec_file))
    assert same.returncode == 0 and "0 difference(s); same fingerprint" in same.stdout


def test_schema_is_json(tmp_path: Path) -> None:
    out = cli("spec", "schema")
    assert out.returncode == 0
    assert json.loads(out.stdout)["title"] == "augledger pipeline spec"


def test_preview_writes_a_deterministic_grid(spec_file: Path, tmp_path: Path, astronaut: np.ndarray) -> None:
    import cv2

    image = tmp_path / "astronaut.png"
    cv2.imwrite(str(image), astronaut[..., ::-1])
    a, b = tmp_path / "a.png", tmp_path / "b.png"
    assert cli("preview", str(spec_file), str(image), "-n", "6", "-o", str(a)).returncode == 0
    assert cli("preview", str(spec_file), str(image), "-n", "6", "-o", str(b)).returncode == 0
    assert a.read_bytes() == b.read_bytes()
    grid = cv2.imread(str(a))
    assert grid is not None and grid.shape[0] > 192 and grid.shape[1] >= 3 * 192


def test_missing_extra_hint_is_documented() -> None:
    out = cli("--help")
    assert out.returncode == 0 and "spec" in out.stdout and "preview" in out.stdout


def test_cli_does_not_import_torch(spec_file: Path) -> None:
    """Albumentations imports torch (~2 s) when it is installed; the CLI needs neither."""
    code = (
        "import sys; from augledger.cli import main\n"
        f"sys.argv = ['augledger', 'spec', 'hash', {str(spec_file)!r}]\n"
        "try:\n    main()\nexcept SystemExit:\n    pass\n"
        "assert 'albumentations' in sys.modules and 'torch' not in sys.modules, 'torch imported'\n"
    )
    env = {**os.environ, "NO_ALBUMENTATIONS_UPDATE": "1"}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.startswith("sha256:")


def test_demo_runs_end_to_end(tmp_path: Path) -> None:
    """`make demo`: materialise, verify, preview and ledger on scikit-image photos, through the CLI."""
    demo = Path(__file__).resolve().parents[2] / "examples" / "demo.py"
    env = {**os.environ, "NO_ALBUMENTATIONS_UPDATE": "1"}
    out = subprocess.run([sys.executable, str(demo), "--out", str(tmp_path / "d"), "--copies", "1"],
                         capture_output=True, text=True, env=env, timeout=300)
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    assert "verified: 120 output(s)" in out.stdout  # 60 good images: one copy and the original each
    assert "quarantined  broken/truncated.jpg: truncated:" in out.stdout
    assert (tmp_path / "d" / "preview.png").stat().st_size > 10_000


def test_preview_with_source_uses_the_run_key_so_epoch_c_is_copy_c(spec_file: Path, tmp_path: Path, astronaut: np.ndarray) -> None:
    """The preview's tile for epoch 1 is pixel for pixel the run's copy 1 of that image."""
    import cv2

    src = tmp_path / "src"
    (src / "people").mkdir(parents=True)
    image = src / "people" / "astronaut.png"
    cv2.imwrite(str(image), astronaut[..., ::-1])
    out = cli("preview", str(spec_file), str(image), "--source", str(src), "-n", "2", "-o", str(tmp_path / "g.png"))
    assert out.returncode == 0 and "key 'people/astronaut.png'" in out.stdout
    bare = cli("preview", str(spec_file), str(image), "-n", "2", "-o", str(tmp_path / "h.png"))
    assert "key 'astronaut.png'" in bare.stdout
    run = cli("run", str(spec_file), "--source", str(src), "--out", str(tmp_path / "o"), "--copies", "2", "--workers", "0")
    assert run.returncode == 0, run.stderr
    import augledger
    from augledger.report.grid import preview_grid

    pipe = augledger.compile(augledger.load_spec(spec_file))
    copy1 = cv2.imread(str(tmp_path / "o" / "augmented" / "people" / "astronaut.png.c1.png"))[..., ::-1]
    assert np.array_equal(copy1, pipe.apply({"image": astronaut}, key="people/astronaut.png", epoch=1).sample["image"])
    grid = cv2.imread(str(tmp_path / "g.png"))[..., ::-1]
    assert np.array_equal(grid, preview_grid(pipe, {"image": astronaut}, key="people/astronaut.png", n=2))
    outside = cli("preview", str(spec_file), str(image), "--source", str(tmp_path / "elsewhere"))
    assert outside.returncode == 2 and "is not inside --source" in outside.stderr


@pytest.mark.parametrize(("workers", "expected"), [("auto", None), ("0", 0), ("3", 3)])
def test_workers_auto_and_zero(spec_file: Path, tmp_path: Path, astronaut: np.ndarray, workers: str, expected: int | None) -> None:
    import cv2

    src = tmp_path / "src"
    src.mkdir()
    cv2.imwrite(str(src / "a.png"), astronaut)
    out = cli("run", str(spec_file), "--source", str(src), "--out", str(tmp_path / "o"), "--workers", workers)
    assert out.returncode == 0, out.stderr
    recorded = json.loads((tmp_path / "o" / "run.json").read_text())["workers"]
    assert recorded == (expected if expected is not None else len(os.sched_getaffinity(0)))
    bad = cli("run", str(spec_file), "--source", str(src), "--out", str(tmp_path / "p"), "--workers", "many")
    assert bad.returncode == 2 and "must be 'auto' or a number >= 0" in bad.stderr


def test_webp_and_jpeg_quality_outputs(spec_file: Path, tmp_path: Path, astronaut: np.ndarray) -> None:
    import cv2

    src = tmp_path / "src"
    src.mkdir()
    cv2.imwrite(str(src / "a.png"), astronaut)
    assert cli("run", str(spec_file), "--source", str(src), "--out", str(tmp_path / "w"), "--image-format", "webp").returncode == 0
    webp = tmp_path / "w" / "augmented" / "a.png.c0.webp"
    assert webp.read_bytes()[8:12] == b"WEBP"
    sizes = {}
    for quality in ("30", "95"):
        out = cli("run", str(spec_file), "--source", str(src), "--out", str(tmp_path / quality), "--image-format", "jpg",
                  "--jpeg-quality", quality)
        assert out.returncode == 0, out.stderr
        sizes[quality] = (tmp_path / quality / "augmented" / "a.png.c0.jpg").stat().st_size
    assert sizes["30"] < sizes["95"]
    # The quality is part of the folder's identity: a rerun with another is refused, naming it.
    again = cli("run", str(spec_file), "--source", str(src), "--out", str(tmp_path / "30"), "--image-format", "jpg",
                "--jpeg-quality", "50")
    assert again.returncode == 1 and "jpeg_quality: folder has 30, this run 50" in again.stderr
    assert cli("verify", str(tmp_path / "w")).returncode == 0


def test_a_spec_that_cannot_be_stored_is_refused_by_run(tmp_path: Path) -> None:
    spec = tmp_path / "norm.yaml"
    spec.write_text("schema: 1\nname: n\nops:\n  - {op: Normalize}\n")
    (tmp_path / "src").mkdir()
    out = cli("run", str(spec), "--source", str(tmp_path / "src"), "--out", str(tmp_path / "o"))
    assert out.returncode == 1 and "ops[0] (Normalize) make float images" in out.stderr
    assert not (tmp_path / "o").exists()


def test_version() -> None:
    import augledger

    out = cli("--version")
    assert out.returncode == 0 and out.stdout.strip() == f"augledger {augledger.__version__}"
