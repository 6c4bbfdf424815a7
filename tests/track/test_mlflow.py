"""MLflow tracking against a real local store (sqlite), read back through MlflowClient."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import mlflow
import pytest
import yaml
from mlflow import MlflowClient

import augledger
import augledger.mlflow as aml
from augledger.errors import AugLedgerError
from helpers import SCRIPT, SPEC, make_source


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> str:
    """One sqlite store per module (creating MLflow's tables takes ~2 s)."""
    folder = tmp_path_factory.mktemp("mlflow")
    uri = f"sqlite:///{folder / 'mlflow.db'}"
    mlflow.set_tracking_uri(uri)
    for name in ("warm-up", "user-training", "training", "in-process", "lineage-errors"):
        # Artifacts beside the store: MLflow's default is ./mlruns of the working directory (the checkout).
        mlflow.create_experiment(name, artifact_location=(folder / "artifacts" / name).as_uri())
    mlflow.set_experiment("warm-up")
    return uri


@pytest.fixture
def client(store: str) -> MlflowClient:
    mlflow.set_tracking_uri(store)
    return MlflowClient(store)


def cli(*args: str, cwd: Path, uri: str, **env: str) -> subprocess.CompletedProcess[str]:
    full = {**os.environ, "COLUMNS": "200", "MLFLOW_TRACKING_URI": uri, "AUGLEDGER_USER": "alice", **env}
    full.pop("AUGLEDGER_REGISTRY", None)
    return subprocess.run([SCRIPT, *args], capture_output=True, text=True, cwd=cwd, env=full)


def test_run_with_mlflow_logs_tags_artifacts_metrics_and_the_dataset(tmp_path: Path, store: str, client: MlflowClient) -> None:
    (tmp_path / "aug.yaml").write_text(yaml.safe_dump({**SPEC, "name": "digits"}))
    make_source(tmp_path / "src", 5)
    (tmp_path / "src" / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 not a jpeg")
    assert cli("registry", "add", "aug.yaml", cwd=tmp_path, uri=store).returncode == 0
    done = cli("run", "digits@1", "--source", "src", "--out", "out", "--copies", "2", "--workers", "1", "--mlflow",
               "--experiment", "aug-tests", "--json", cwd=tmp_path, uri=store)
    assert done.returncode == 3, done.stderr  # finished, one quarantined
    run_id = json.loads(done.stdout)["mlflow_run_id"]
    run = client.get_run(run_id)
    manifest = json.loads((tmp_path / "out" / "manifest.json").read_text())
    assert client.get_experiment(run.info.experiment_id).name == "aug-tests"
    assert run.info.status == "FINISHED"
    tags = run.data.tags
    assert tags["augledger.fingerprint"] == manifest["fingerprint"]
    assert (tags["augledger.spec_name"], tags["augledger.seed"]) == ("digits", str(SPEC["seed"]))
    assert (tags["augledger.ref"], tags["augledger.version"], tags["augledger.state"]) == ("digits@1", "1", "draft")
    metrics = run.data.metrics
    assert (metrics["augledger.outputs"], metrics["augledger.ok"], metrics["augledger.quarantined"]) == (12.0, 10.0, 2.0)
    assert metrics["augledger.outputs_per_second"] > 0
    artifacts = {f.path for f in client.list_artifacts(run_id, "augledger")}
    assert {"augledger/spec.json", "augledger/manifest.json", "augledger/preview.png"} <= artifacts
    spec = mlflow.artifacts.load_dict(f"runs:/{run_id}/augledger/spec.json")
    assert spec == manifest["resolved_spec"]
    assert mlflow.artifacts.load_dict(f"runs:/{run_id}/augledger/manifest.json") == manifest
    (dataset_input,) = run.inputs.dataset_inputs
    digest = aml.dataset_digest(tmp_path / "out")
    assert dataset_input.dataset.digest == digest[7:43] and tags["augledger.dataset_digest"] == digest
    assert dataset_input.dataset.name == "digits-augmented"
    assert json.loads(dataset_input.dataset.source)["uri"] == (tmp_path / "out").resolve().as_uri()
    assert {t.key: t.value for t in dataset_input.tags}["mlflow.data.context"] == "training"


def test_a_canary_run_logs_per_variant_counts(tmp_path: Path, store: str, client: MlflowClient) -> None:
    (tmp_path / "a.yaml").write_text(yaml.safe_dump(SPEC))
    (tmp_path / "b.yaml").write_text(yaml.safe_dump({**SPEC, "seed": 99}))
    make_source(tmp_path / "src", 12)
    done = cli("run", "a.yaml", "--variant", "b=b.yaml:0.5", "--source", "src", "--out", "out", "--workers", "1",
               "--mlflow", "--json", cwd=tmp_path, uri=store)
    assert done.returncode == 0, done.stderr
    run = client.get_run(json.loads(done.stdout)["mlflow_run_id"])
    counts = json.loads((tmp_path / "out" / "manifest.json").read_text())["counts"]["variants"]
    assert run.data.metrics["augledger.variant.b.ok"] == counts["b"]["ok"]
    assert run.data.metrics["augledger.variant.control.ok"] == counts["control"]["ok"]
    assert set(json.loads(run.data.tags["augledger.variants"])) == {"control", "b"}


def test_log_pipeline_and_ledger_inside_the_users_run(tmp_path: Path, client: MlflowClient, astronaut: Any) -> None:
    from augledger.torch import OnlineLedger

    pipe = augledger.compile(augledger.parse_spec(SPEC))
    with pytest.raises(AugLedgerError, match=r"inside `with mlflow.start_run\(\):`"):
        aml.log_pipeline(pipe)
    ledger = OnlineLedger(tmp_path / "ledger", pipe)
    from augledger.ledger.online import fill_ops, online_row

    rows = [online_row({"image": astronaut}, pipe.apply({"image": astronaut}, key=f"k{i}", epoch=0)) for i in range(4)]
    ledger.write(fill_ops(rows))
    ledger.close()
    path = ledger.merge()
    mlflow.set_experiment("user-training")
    # A run name: without one, MLflow draws a "fancy" name from Python's global `random` (its doing, not ours).
    with mlflow.start_run(run_name="user-run") as run:
        mlflow.log_param("lr", 0.003)  # the user's own logging is untouched
        aml.log_pipeline(pipe, provenance={"ref": "digits@production", "version": 2, "state": "approved"})
        assert aml.log_ledger(path) == "augledger/ledger.parquet"
        assert aml.log_ledger(path, max_bytes=1) == "augledger/ledger-summary.json"
    got = client.get_run(run.info.run_id)
    assert got.data.params == {"lr": "0.003"}
    assert got.data.tags["augledger.fingerprint"] == pipe.fingerprint
    assert got.data.tags["augledger.ref"] == "digits@production"
    assert mlflow.artifacts.load_dict(f"runs:/{run.info.run_id}/augledger/spec.json") == pipe.resolved_spec
    summary = mlflow.artifacts.load_dict(f"runs:/{run.info.run_id}/augledger/ledger-summary.json")
    assert summary["rows"] == 4 and summary["epochs"] == [0] and summary["header"]["fingerprint"] == pipe.fingerprint


def test_lineage_from_a_model_version_back_to_fingerprint_spec_and_registry(
    tmp_path: Path, store: str, client: MlflowClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    from augledger.registry import Registry

    monkeypatch.chdir(tmp_path)
    spec = {**SPEC, "name": "digits-lineage"}
    with Registry(create=True) as reg:  # .augledger/registry.db in the current folder
        reg.add(spec, actor="alice")
        reg.promote("digits-lineage@1", reason="reviewed", actor="bob")
    source = augledger.registry.resolve_spec("digits-lineage@1")
    pipe = source.compile()
    mlflow.set_experiment("training")
    with mlflow.start_run(run_name="training") as run:
        aml.log_pipeline(pipe, provenance=source.provenance())
    name = "digits-cnn-lineage"
    client.create_registered_model(name)
    mv = client.create_model_version(name, source=f"runs:/{run.info.run_id}/model", run_id=run.info.run_id)
    aml.tag_model_version(name, mv.version, pipe, ref="digits-lineage@1", dataset_digest="sha256:" + "ab" * 32)
    found = aml.lineage(name, mv.version)
    assert found["fingerprint"] == pipe.fingerprint and found["ref"] == "digits-lineage@1"
    assert found["spec"] == pipe.resolved_spec
    assert [(r["ref"], r["state"]) for r in found["registry"]] == [("digits-lineage@1", "approved")]
    assert found["dataset_digest"] == "sha256:" + "ab" * 32
    client.set_registered_model_alias(name, "champion", mv.version)
    assert aml.lineage(name, "champion")["fingerprint"] == pipe.fingerprint
    shown = cli("lineage", f"{name}@{mv.version}", cwd=tmp_path, uri=store)
    assert shown.returncode == 0, shown.stderr
    assert pipe.fingerprint in shown.stdout
    assert "digits-lineage@1 (version 1, approved when it trained)" in shown.stdout
    assert "digits-lineage@1 is approved (added by alice; approved by bob at " in shown.stdout
    as_json = json.loads(cli("lineage", f"{name}@champion", "--json", cwd=tmp_path, uri=store).stdout)
    assert as_json["spec"] == pipe.resolved_spec
    untagged = client.create_model_version(name, source="runs:/x/model")
    missing = cli("lineage", f"{name}@{untagged.version}", cwd=tmp_path, uri=store)
    assert missing.returncode == 1 and "carries no augledger tags" in missing.stderr


def test_without_mlflow_the_install_hint(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "aug.yaml").write_text(yaml.safe_dump(SPEC))
    make_source(tmp_path / "src", 2)
    code = ("import sys; sys.modules['mlflow'] = None; sys.argv = ['augledger', 'run', 'aug.yaml', '--source', 'src', "
            "'--out', 'out', '--mlflow']; from augledger.cli import main; main()")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=tmp_path)
    assert done.returncode == 1
    assert "pip install 'augledger[mlflow]'" in done.stderr and not (tmp_path / "out").exists()
    monkeypatch.setitem(sys.modules, "mlflow", None)  # what an install without the extra looks like
    with pytest.raises(augledger.BackendError, match=r"pip install 'augledger\[mlflow\]'"):
        aml.log_pipeline(augledger.compile(augledger.parse_spec(SPEC)))


def test_observer_in_process_leaves_global_rng_alone_and_ends_unfinished_runs(
    tmp_path: Path, store: str, client: MlflowClient
) -> None:
    from augledger.observe.base import RunStart
    from augledger.run.materialize import materialize
    from augledger.run.options import RunOptions

    pipe = augledger.compile(augledger.parse_spec(SPEC))
    observer = aml.MlflowObserver(pipe, experiment="in-process", tracking_uri=store)
    materialize(pipe, make_source(tmp_path / "src", 3), tmp_path / "out", options=RunOptions(workers=0),
                observers=[observer])  # the autouse fixture checks the global RNGs afterwards
    assert observer.last_run_id is not None
    assert client.get_run(observer.last_run_id).info.status == "FINISHED"
    stopped = aml.MlflowObserver(pipe, experiment="in-process", tracking_uri=store)
    stopped.on_start(RunStart("offline", pipe.fingerprint, pipe.name, pipe.seed, 10, 0, str(tmp_path / "x")))
    run_id = stopped.run_id
    stopped.close(KeyboardInterrupt())
    assert run_id is not None and client.get_run(run_id).info.status == "KILLED"
    failed = aml.MlflowObserver(pipe, experiment="in-process", tracking_uri=store)
    failed.on_start(RunStart("offline", pipe.fingerprint, pipe.name, pipe.seed, 10, 0, str(tmp_path / "y")))
    run_id = failed.run_id
    failed.close(OSError("disk full"))
    assert run_id is not None and client.get_run(run_id).info.status == "FAILED"


def test_lineage_errors_are_one_line_and_never_create_a_store(tmp_path: Path, store: str, client: MlflowClient) -> None:
    missing = cli("lineage", "nosuch@1", cwd=tmp_path, uri=store)
    assert missing.returncode == 1 and missing.stderr.startswith("error: MLflow:") and "Traceback" not in missing.stderr
    nowhere = cli("lineage", "nosuch@1", cwd=tmp_path, uri=f"sqlite:///{tmp_path / 'none.db'}")
    assert nowhere.returncode == 1 and "no MLflow store at" in nowhere.stderr and not (tmp_path / "none.db").exists()
    pipe = augledger.compile(augledger.parse_spec(SPEC))
    mlflow.set_experiment("lineage-errors")
    with mlflow.start_run(run_name="a") as a:
        aml.log_pipeline(pipe)
    with mlflow.start_run(run_name="b") as b:
        aml.log_pipeline(pipe)
    client.create_registered_model("lineage-errors")
    mv = client.create_model_version("lineage-errors", source="runs:/x/model", run_id=a.info.run_id)
    aml.tag_model_version("lineage-errors", mv.version, pipe)
    mixed = cli("lineage", f"lineage-errors@{mv.version}", "--run", b.info.run_id, cwd=tmp_path, uri=store)
    assert mixed.returncode == 1 and "is not the run of lineage-errors" in mixed.stderr
