"""Tabular runs: provenance columns, SMOTE/mixup provenance that recomputes, verify, determinism, source errors."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.csv as pcsv
import pyarrow.parquet as pq
import pytest
from sklearn.datasets import load_breast_cancer, load_iris, load_wine

import augledger
from augledger.errors import SourceError
from augledger.ops.tabular.synth import interpolate
from augledger.run.table import run_table
from augledger.run.verify import verify

SPEC = {"schema": 1, "name": "tab", "modality": "tabular",
        "targets": {"smote": {"k_neighbors": 5}, "mixup": {"fraction": 0.05}},
        "ops": [{"op": "GaussianJitter", "params": {"scale": 0.1}}, {"op": "FeatureMask", "p": 0.5},
                {"op": "CategoricalSwap", "params": {"rate": 0.3}}]}


def pipe(**targets: object) -> augledger.Pipeline:
    spec = {**SPEC, "targets": {**SPEC["targets"], **targets}} if targets else SPEC
    return augledger.compile(augledger.parse_spec(spec))


def imbalanced(loader, keep_every: dict[int, int]) -> pa.Table:
    """A scikit-learn bundled dataset with some classes thinned (keep every n-th row), a categorical column added."""
    d = loader()
    rows = [i for i in range(len(d.target)) if i % keep_every.get(int(d.target[i]), 1) == 0]
    cols: dict[str, list] = {"id": [f"r{i:04d}" for i in rows]}
    for j, name in enumerate(d.feature_names[:8]):
        cols[name.replace(" ", "_")] = [float(d.data[i, j]) for i in rows]
    cols["colour"] = [["red", "green", "blue"][i % 3] for i in rows]
    cols["y"] = [int(d.target[i]) for i in rows]
    return pa.table(cols)


@pytest.fixture(scope="module")
def iris_csv(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("src") / "iris.csv"
    pcsv.write_csv(imbalanced(load_iris, {2: 5}), path)
    return path


@pytest.fixture(scope="module")
def iris_out(tmp_path_factory: pytest.TempPathFactory, iris_csv: Path) -> Path:
    out = tmp_path_factory.mktemp("out") / "o"
    run_table(pipe(), iris_csv, out, key_field="id", label_field="y", copies=2)
    return out


def rows_of(out: Path) -> list[dict]:
    return pq.read_table(out / "augmented.parquet").to_pylist()


def test_layout_and_provenance_columns(iris_out: Path) -> None:
    table = pq.read_table(iris_out / "augmented.parquet")
    assert table.column_names[:8] == ["key", "copy", "origin", "parents", "weight", "ops", "seed", "fingerprint"]
    manifest = json.loads((iris_out / "manifest.json").read_text())
    assert manifest["modality"] == "tabular" and manifest["source"]["digest"].startswith("sha256:")
    assert manifest["stats"]["sha256"].startswith("sha256:") and (iris_out / "stats.json").is_file()
    rows = table.to_pylist()
    assert {r["origin"] for r in rows} == {"original", "augmented", "synthetic"}
    assert [(r["key"], r["copy"]) for r in rows] == sorted((r["key"], r["copy"]) for r in rows)
    aug = next(r for r in rows if r["origin"] == "augmented")
    assert json.loads(aug["parents"]) == [aug["key"]] and len(aug["seed"]) == 32
    assert all(op["op"].startswith("augledger.tabular.") for op in json.loads(aug["ops"]))
    from augledger.ledger.parquet import read_ledger

    ledger = read_ledger(iris_out / "ledger.parquet")
    assert len(ledger) == len(rows) == manifest["counts"]["outputs"]


def test_smote_provenance_recomputes_each_synthetic_row_exactly(iris_out: Path, iris_csv: Path) -> None:
    rows = rows_of(iris_out)
    by_key = {r["key"]: r for r in rows if r["origin"] == "original"}
    numeric = ["sepal_length_(cm)", "sepal_width_(cm)", "petal_length_(cm)", "petal_width_(cm)"]
    synthetic = [r for r in rows if r["origin"] == "synthetic"]
    assert any(r["key"].startswith("smote/2/") for r in synthetic) and any(r["key"].startswith("mixup/") for r in synthetic)
    for row in synthetic:
        a, b = json.loads(row["parents"])
        assert by_key[a]["y"] == by_key[b]["y"] == row["y"] and a != b
        again = interpolate(by_key[a], by_key[b], row["weight"], numeric, ["colour"])
        for name in [*numeric, "colour"]:
            assert row[name] == again[name], (row["key"], name)
        if row["key"].startswith("smote/"):  # on the segment between its parents
            assert 0.0 <= row["weight"] < 1.0
            for name in numeric:
                lo, hi = sorted((by_key[a][name], by_key[b][name]))
                assert lo <= row[name] <= hi


def test_class_counts_reach_the_target(iris_out: Path, tmp_path: Path, iris_csv: Path) -> None:
    counts = json.loads((iris_out / "manifest.json").read_text())["counts"]["classes"]
    assert counts["original"] == {"0": 50, "1": 50, "2": 10}
    assert {c: counts["original"][c] + counts["smote"].get(c, 0) for c in counts["original"]} == {"0": 50, "1": 50, "2": 50}
    result = run_table(pipe(smote={"sampling_strategy": {"2": 30}}, mixup=None), iris_csv, tmp_path / "o",
                       key_field="id", label_field="y", copies=0)
    assert result.manifest["counts"]["classes"]["total"] == {"0": 50, "1": 50, "2": 30}


def test_verify_passes_then_names_an_edited_row(iris_out: Path, tmp_path: Path) -> None:
    assert verify(iris_out).ok
    import shutil

    copy = tmp_path / "edited"
    shutil.copytree(iris_out, copy)
    table = pq.read_table(copy / "augmented.parquet")
    rows = table.to_pylist()
    target = next(i for i, r in enumerate(rows) if r["key"] == "smote/2/3")
    rows[target]["petal_length_(cm)"] += 0.01
    pq.write_table(pa.Table.from_pylist(rows, schema=table.schema), copy / "augmented.parquet")
    report = verify(copy)
    assert not report.ok
    named = [p for p in report.problems if p.key == "smote/2/3"]
    assert named and any("petal_length" in p.message for p in named)
    assert any("parent + weight" in p.message for p in named)


def test_byte_identical_under_shuffled_rows_parquet_source_and_fresh_interpreters(iris_out: Path, iris_csv: Path, tmp_path: Path) -> None:
    table = pcsv.read_csv(iris_csv)
    shuffled = table.take(np.random.default_rng(3).permutation(len(table)))
    pcsv.write_csv(shuffled, tmp_path / "iris.csv")
    run_table(pipe(), tmp_path / "iris.csv", tmp_path / "a", key_field="id", label_field="y", copies=2)
    data = (iris_out / "augmented.parquet").read_bytes()
    assert (tmp_path / "a" / "augmented.parquet").read_bytes() == data
    pq.write_table(shuffled, tmp_path / "iris.parquet")
    parquet_out = tmp_path / "p"
    run_table(pipe(), tmp_path / "iris.parquet", parquet_out, key_field="id", label_field="y", copies=2)
    assert verify(parquet_out).ok
    assert pq.read_table(parquet_out / "augmented.parquet").to_pylist() == rows_of(iris_out)
    code = (f"import augledger; from augledger.run.table import run_table; "
            f"run_table(augledger.compile(augledger.parse_spec({SPEC!r})), {str(tmp_path / 'iris.csv')!r}, "
            f"{str(tmp_path / 'b')!r}, key_field='id', label_field='y', copies=2)")
    subprocess.run([sys.executable, "-c", code], check=True, env={"PYTHONHASHSEED": "7", "PATH": ""})
    assert (tmp_path / "b" / "augmented.parquet").read_bytes() == data
    assert (tmp_path / "b" / "manifest.json").read_bytes() == (tmp_path / "a" / "manifest.json").read_bytes()


@pytest.mark.parametrize(("loader", "keep"), [(load_wine, {0: 3}), (load_breast_cancer, {1: 4})])
def test_other_bundled_datasets(loader, keep: dict, tmp_path: Path) -> None:
    pq.write_table(imbalanced(loader, keep), tmp_path / "d.parquet")
    result = run_table(pipe(mixup=None), tmp_path / "d.parquet", tmp_path / "o", key_field="id", label_field="y", copies=1)
    total = result.manifest["counts"]["classes"]["total"]
    assert len(set(total.values())) == 1
    assert verify(tmp_path / "o").ok


def write_csv(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


@pytest.mark.parametrize(("text", "kwargs", "match"), [
    ("a,b,y\n1,2,0\n", {}, r"no column 'id' \(--key-field\)"),
    ("id,b,y\nx,2,0\nx,3,1\n", {}, r"key 'x' appears twice in column 'id' \(line 2 and line 3\)"),
    ("id,b,y\nx,2,0\nz,abc,1\nw,4,0\nv,5,1\n", {}, r"line 3 \(key 'z'\): column 'b' holds numbers"),
    ("id,b,y\nx,2,0\nz,abc,1\n", {"numeric": ["b"]}, r"line 3 \(key 'z'\): column 'b' is numeric but holds 'abc'"),
    ("id,b,y\nx,2,0\n,3,1\n", {}, r"line 3: the key field 'id' is empty"),
    ("id,b,copy\nx,2,0\n", {}, r"clash with the provenance columns"),
])
def test_source_errors_name_the_column_and_row(tmp_path: Path, text: str, kwargs: dict, match: str) -> None:
    from augledger.run.table_source import load_table

    with pytest.raises(SourceError, match=match):
        load_table(write_csv(tmp_path / "s.csv", text), key_field="id", label_field=None, **kwargs)


def test_cli_run_verify_preview(iris_csv: Path, tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from augledger.cli import inspect, run  # noqa: F401  (registers the commands)
    from augledger.cli._app import app

    spec = tmp_path / "spec.json"
    spec.write_text(json.dumps(SPEC))
    runner = CliRunner()
    result = runner.invoke(app, ["run", str(spec), "--source", str(iris_csv), "--key-field", "id", "--label-field", "y",
                                 "--out", str(tmp_path / "o")])
    assert result.exit_code == 0, result.output
    assert "synthetic" in result.output
    result = runner.invoke(app, ["verify", str(tmp_path / "o")])
    assert result.exit_code == 0 and "verified" in result.output, result.output
    result = runner.invoke(app, ["preview", str(spec), str(iris_csv), "-o", str(tmp_path / "p.png")])
    assert result.exit_code == 0 and "petal_length" in result.output, result.output
    assert (tmp_path / "p.png").read_bytes()[:4] == b"\x89PNG"

    # --copies 0: originals and synthetic rows only (the SMOTE-only job); refused for folder runs.
    result = runner.invoke(app, ["run", str(spec), "--source", str(iris_csv), "--key-field", "id", "--label-field", "y",
                                 "--out", str(tmp_path / "o0"), "--copies", "0"])
    assert result.exit_code == 0, result.output
    assert {r["origin"] for r in rows_of(tmp_path / "o0")} == {"original", "synthetic"}
    image_spec = tmp_path / "image.json"
    image_spec.write_text(json.dumps({"schema": 1, "name": "i", "ops": [{"op": "HorizontalFlip"}]}))
    result = runner.invoke(app, ["run", str(image_spec), "--source", str(tmp_path), "--out", str(tmp_path / "oi"),
                                 "--copies", "0"])
    assert result.exit_code == 2 and "0 copies is for tabular runs" in result.output, result.output


def test_replay_checks_one_row_and_names_an_edited_one(iris_out: Path, tmp_path: Path) -> None:
    """`augledger replay` on a table re-makes it and checks the one row asked for (a synthetic one too)."""
    import shutil

    import pyarrow.parquet as pq
    from typer.testing import CliRunner

    from augledger.cli import inspect  # noqa: F401  (registers the commands)
    from augledger.cli._app import app
    from augledger.errors import LedgerError
    from augledger.run.table_verify import replay_table_row

    rows = rows_of(iris_out)
    synthetic = next(r for r in rows if r["origin"] == "synthetic")
    assert replay_table_row(iris_out, synthetic["key"], synthetic["copy"]) == synthetic
    result = CliRunner().invoke(app, ["replay", str(iris_out), synthetic["key"], "--copy", str(synthetic["copy"])])
    assert result.exit_code == 0, result.output
    assert json.loads(result.output)["row"]["parents"] == synthetic["parents"]
    with pytest.raises(LedgerError, match="no row for key 'nope' copy 0"):
        replay_table_row(iris_out, "nope")

    edited = tmp_path / "edited"
    shutil.copytree(iris_out, edited)
    table = pq.read_table(edited / "augmented.parquet").to_pylist()
    victim = next(r for r in table if r["origin"] == "augmented")
    numeric = next(k for k, v in victim.items() if isinstance(v, float) and k != "weight")
    victim[numeric] += 1.0
    pq.write_table(pa.Table.from_pylist(table, schema=pq.read_schema(edited / "augmented.parquet")), edited / "augmented.parquet")
    with pytest.raises(LedgerError, match=f"re-making {victim['key']!r} copy {victim['copy']} does not give the stored row"):
        replay_table_row(edited, victim["key"], victim["copy"])
