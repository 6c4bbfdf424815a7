"""MLflow: log which augmentation made a dataset or trained a model, and read it back from a model.

Everything here imports MLflow lazily (``pip install 'augledger[mlflow]'``: mlflow-skinny with the
SQL store); without it, :class:`~augledger.errors.BackendError` says what to install. The store is
``$MLFLOW_TRACKING_URI``, else ``sqlite:///mlflow.db`` in the current folder.

What a run gets (:data:`TAG_PREFIX` tags, ``augledger/`` artifacts):

* tags ``augledger.fingerprint``, ``augledger.spec_name``, ``augledger.seed``, and when the spec
  came from the registry ``augledger.ref``, ``augledger.version``, ``augledger.state``; with
  variants ``augledger.variants`` (name -> fingerprint, JSON);
* artifacts ``augledger/spec.json`` (the resolved spec; with variants, every variant's) and, for an
  offline run, ``augledger/manifest.json`` and ``augledger/preview.png``;
* metrics ``augledger.outputs``, ``augledger.ok``, ``augledger.quarantined``,
  ``augledger.variant.<name>.ok``, ``augledger.outputs_per_second``;
* the augmented dataset as an MLflow dataset input: its digest is :func:`dataset_digest` (cut to
  the 36 characters MLflow stores; the full value is the ``augledger.dataset_digest`` tag).
"""

from __future__ import annotations

import json
import logging
import os
import time
import warnings
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from augledger._canonical import sha256_hex
from augledger.errors import AugLedgerError, BackendError, Interrupted
from augledger.ledger.row import LedgerRow
from augledger.observe.base import RunStart
from augledger.pipeline import Pipeline
from augledger.variants import Augmenter, Variants

__all__ = [
    "DEFAULT_EXPERIMENT", "TAG_PREFIX", "MlflowObserver", "dataset_digest", "default_tracking_uri", "log_ledger",
    "log_pipeline", "mlflow_module", "tag_model_version",
]

log = logging.getLogger(__name__)

TAG_PREFIX = "augledger."
DEFAULT_EXPERIMENT = "augledger"
_DIGEST_CHARS = 36  # MLflow's datasets.digest column


def mlflow_module() -> Any:
    """``mlflow``, or :class:`~augledger.errors.BackendError` with the install hint."""
    try:
        import mlflow
    except ImportError:
        raise BackendError("MLflow tracking needs the mlflow extra: pip install 'augledger[mlflow]'") from None
    return mlflow


def default_tracking_uri() -> str:
    """``$MLFLOW_TRACKING_URI``, else ``sqlite:///mlflow.db`` (a file in the current folder)."""
    return os.environ.get("MLFLOW_TRACKING_URI") or "sqlite:///mlflow.db"


def dataset_digest(out: str | Path) -> str:
    """The digest of an output folder as a dataset: SHA-256 of the canonical JSON of its ``manifest.json``
    without what names the version (``registry``, and the ledger file's digest, whose header holds the
    REF): ``digits@production`` and ``digits@2`` make one dataset.

    The manifest keeps the digest of the ledger's rows (``ledger.rows_sha256``), which hold every
    output's digest, so this changes exactly when an output, the spec, the seed, the options or the
    source does.
    """
    from augledger._canonical import canonical_json

    manifest = json.loads((Path(out) / "manifest.json").read_text(encoding="utf-8"))
    manifest.pop("registry", None)
    ledger = dict(manifest.get("ledger") or {})
    if "rows_sha256" in ledger:  # older manifests have only the file's digest: keep it
        ledger.pop("sha256", None)
    manifest["ledger"] = ledger
    return sha256_hex(canonical_json(manifest))


def _identity_tags(pipe: Augmenter, provenance: Mapping[str, Any] | None) -> dict[str, str]:
    control = pipe.control if isinstance(pipe, Variants) else pipe
    tags = {"fingerprint": pipe.fingerprint, "spec_name": pipe.name, "seed": str(control.seed),
            "spec_fingerprint": control.fingerprint}
    if isinstance(pipe, Variants):
        tags["variants"] = json.dumps({n: p.fingerprint for n, p in pipe.pipelines.items()}, sort_keys=True)
        tags["salt"] = pipe.salt
    if provenance:
        for key in ("ref", "version", "state"):
            if provenance.get(key) is not None:
                tags[key] = str(provenance[key])
        others = {n: {k: p.get(k) for k in ("ref", "version", "state")}
                  for n, p in (provenance.get("variants") or {}).items() if p}
        if others:
            tags["variant_refs"] = json.dumps(others, sort_keys=True)
    return {TAG_PREFIX + k: v for k, v in tags.items()}


def _spec_document(pipe: Augmenter) -> dict[str, Any]:
    return pipe.describe() if isinstance(pipe, Variants) else pipe.resolved_spec


def _active_run(mlflow: Any, what: str) -> Any:
    run = mlflow.active_run()
    if run is None:
        raise AugLedgerError(f"{what} logs into the active MLflow run, and there is none: call it inside "
                             "`with mlflow.start_run():`")
    return run


def log_pipeline(pipe: Augmenter, *, provenance: Mapping[str, Any] | None = None) -> None:
    """Log a pipeline into the user's active MLflow run (online training): tags and ``augledger/spec.json``.

    Args:
        pipe: the :class:`~augledger.Pipeline` (or :class:`~augledger.Variants`) the run trains with.
        provenance: where the spec came from, e.g. ``augledger.registry.resolve_spec(ref).provenance()``.

    Raises:
        BackendError: MLflow is not installed.
        AugLedgerError: no MLflow run is active.
    """
    mlflow = mlflow_module()
    _active_run(mlflow, "augledger.mlflow.log_pipeline")
    mlflow.set_tags(_identity_tags(pipe, provenance))
    mlflow.log_dict(_spec_document(pipe), "augledger/spec.json")


def log_ledger(ledger: str | Path, *, max_bytes: int = 50_000_000) -> str:
    """Upload an online ledger (``OnlineLedger.merge()``'s file, or its folder) to the active run.

    A ledger larger than ``max_bytes`` is summarised instead (``augledger/ledger-summary.json``:
    rows, epochs, keys, per-variant rows, the file's SHA-256 and header); returns the artifact path.
    """
    from augledger.ledger.parquet import read_ledger

    mlflow = mlflow_module()
    _active_run(mlflow, "augledger.mlflow.log_ledger")
    path = Path(ledger)
    path = path / "ledger.parquet" if path.is_dir() else path
    if not path.is_file() and path.parent.is_dir() and any(path.parent.glob("part-*.jsonl")):
        raise AugLedgerError(f"{str(path.parent)!r} holds an online ledger's parts but no merged ledger: call "
                             "ledger.merge() after training, then log_ledger")
    table = read_ledger(path)
    if path.stat().st_size <= max_bytes:
        mlflow.log_artifact(str(path), "augledger")
        return f"augledger/{path.name}"
    rows = table.rows()
    variants: dict[str, int] = {}
    for row in rows:
        if row.get("variant"):
            variants[row["variant"]] = variants.get(row["variant"], 0) + 1
    summary = {"rows": len(rows), "keys": len({r["key"] for r in rows}),
               "epochs": sorted({int(r["epoch"]) for r in rows}), "variants": variants,
               "sha256": sha256_hex(path.read_bytes()), "bytes": path.stat().st_size,
               "header": {k: v for k, v in table.header.items() if k != "resolved_spec"}}
    mlflow.log_dict(summary, "augledger/ledger-summary.json")
    return "augledger/ledger-summary.json"


class MlflowObserver:
    """A run observer that records an offline run (``augledger run --mlflow``) as one MLflow run.

    Args:
        pipeline: the pipeline (or variants) being materialised.
        experiment: the MLflow experiment (created if missing); default ``augledger``.
        provenance: the registry facts of the spec (the REF as given, version, state).
        tracking_uri: default :func:`default_tracking_uri`.
        run_name: default ``<spec name>-<fingerprint[7:15]>``.

    Call :meth:`close` when the run ends without ``on_finish`` (an error or Ctrl-C): the MLflow run
    is then ended as failed or killed rather than left running.
    """

    def __init__(self, pipeline: Augmenter, *, experiment: str | None = None, provenance: Mapping[str, Any] | None = None,
                 tracking_uri: str | None = None, run_name: str | None = None, preview: bool = True) -> None:
        self.mlflow = mlflow_module()
        self.pipeline = pipeline
        self.experiment = experiment or DEFAULT_EXPERIMENT
        self.provenance = dict(provenance) if provenance else None
        self.tracking_uri = tracking_uri or default_tracking_uri()
        self.run_name = run_name
        self.preview = preview
        self.run_id: str | None = None
        #: The MLflow run of the last finished augledger run.
        self.last_run_id: str | None = None
        self._out: Path | None = None
        self._t0 = 0.0
        self._made = 0

    def on_start(self, start: RunStart) -> None:
        mlflow = self.mlflow
        mlflow.set_tracking_uri(self.tracking_uri)
        mlflow.set_experiment(self.experiment)
        self._out = Path(start.out) if start.out else None
        where = f"-{self._out.name}" if self._out is not None else ""
        # A run name always: without one MLflow draws a name from Python's global `random`.
        run = mlflow.start_run(run_name=self.run_name or f"{self.pipeline.name}-{self.pipeline.fingerprint[7:15]}{where}")
        self.run_id = run.info.run_id
        self._t0 = time.perf_counter()
        self._made = 0
        mlflow.set_tags({**_identity_tags(self.pipeline, self.provenance), TAG_PREFIX + "kind": start.kind})
        mlflow.log_params({"augledger.out": str(self._out) if self._out else "", "augledger.total": start.total or 0,
                           "augledger.reused": start.reused})
        mlflow.log_dict(_spec_document(self.pipeline), "augledger/spec.json")
        log.info("MLflow run %s in experiment %r (%s)", self.run_id, self.experiment, self.tracking_uri)

    def on_rows(self, rows: Sequence[LedgerRow]) -> None:
        self._made += len(rows)

    def on_finish(self, summary: Mapping[str, Any]) -> None:
        mlflow = self.mlflow
        if self.run_id is None:
            return
        seconds = max(time.perf_counter() - self._t0, 1e-9)
        counts = summary.get("counts") or {}
        metrics = {f"{TAG_PREFIX}{k}": float(counts[k]) for k in ("outputs", "ok", "quarantined") if k in counts}
        for name, c in (counts.get("variants") or {}).items():
            metrics[f"{TAG_PREFIX}variant.{name}.ok"] = float(c["ok"])
            metrics[f"{TAG_PREFIX}variant.{name}.quarantined"] = float(c["quarantined"])
        if self._made:  # a fully resumed run made nothing: no throughput to report
            metrics[TAG_PREFIX + "outputs_per_second"] = self._made / seconds
        mlflow.log_metrics(metrics)
        options = summary.get("options") or {}
        mlflow.log_params({f"augledger.{k}": v for k, v in sorted(options.items())
                           if k in ("copies", "include_original", "format", "image_format", "export_annotations")})
        if self._out is not None and (self._out / "manifest.json").is_file():
            mlflow.log_artifact(str(self._out / "manifest.json"), "augledger")  # the very bytes, not a re-dump
            self._log_dataset(self._out)
            if self.preview:
                self._log_preview(self._out)
        else:
            mlflow.log_dict(dict(summary), "augledger/manifest.json")
        mlflow.end_run()
        self.last_run_id, self.run_id = self.run_id, None

    def close(self, error: BaseException | None = None) -> None:
        """End a run that did not finish: ``KILLED`` for Ctrl-C/SIGTERM, ``FAILED`` otherwise."""
        if self.run_id is not None:
            status = "KILLED" if isinstance(error, (Interrupted, KeyboardInterrupt)) else "FAILED"
            self.mlflow.end_run(status=status)
            self.run_id = None

    def _log_dataset(self, out: Path) -> None:
        from mlflow.data.dataset_source_registry import resolve_dataset_source
        from mlflow.data.meta_dataset import MetaDataset

        digest = dataset_digest(out)
        with warnings.catch_warnings():  # MLflow: a file:// URI "can be interpreted in multiple ways" (both local)
            warnings.simplefilter("ignore", UserWarning)
            source = resolve_dataset_source(out.resolve().as_uri())
        dataset = MetaDataset(  # type: ignore[abstract]  # concrete at run time (mlflow 3.18 declares profile abstract)
            source, name=f"{self.pipeline.name}-augmented", digest=digest[7:7 + _DIGEST_CHARS])
        self.mlflow.log_input(dataset, context="training",
                              tags={TAG_PREFIX + "fingerprint": self.pipeline.fingerprint})
        self.mlflow.set_tag(TAG_PREFIX + "dataset_digest", digest)

    def _log_preview(self, out: Path) -> None:
        """A contact sheet of the first source image that made an output (skipped, with a log line, if none)."""
        from augledger.io.image import decode_image
        from augledger.ledger.parquet import read_ledger
        from augledger.report.grid import preview_grid
        from augledger.run.manifest import read_run_info

        source = read_run_info(out).get("source")
        rows = [r for r in read_ledger(out).rows() if r["status"] == "ok" and r["epoch"] >= 0]
        if not source or not rows:
            log.info("no preview: no source or no output")
            return
        key = rows[0]["key"]
        try:
            image, _ = decode_image((Path(source) / key).read_bytes())
        except (OSError, AugLedgerError) as exc:
            log.info("no preview: %s cannot be read (%s)", key, exc)
            return
        grid = preview_grid(self.pipeline, {"image": image}, key=key, n=8)  # type: ignore[arg-type]
        self.mlflow.log_image(grid, "augledger/preview.png")


def tag_model_version(name: str, version: str | int, pipe_or_fingerprint: Augmenter | str, *,
                      ref: str | None = None, dataset_digest: str | None = None,
                      provenance: Mapping[str, Any] | None = None) -> dict[str, str]:
    """Tag a registered MLflow model version with the augmentation that trained it; returns the tags set.

    ``pipe_or_fingerprint`` is the :class:`~augledger.Pipeline` / :class:`~augledger.Variants`, or its
    fingerprint. ``ref`` (e.g. ``digits@production``), ``provenance`` (from
    :meth:`augledger.registry.SpecSource.provenance`: REF, version and the state at training time)
    and ``dataset_digest`` (:func:`dataset_digest` of an offline dataset) are recorded when given.
    """
    mlflow = mlflow_module()
    client = mlflow.MlflowClient()
    given = {**(provenance or {}), **({"ref": ref} if ref else {})}
    if isinstance(pipe_or_fingerprint, (Pipeline, Variants)):
        tags = _identity_tags(pipe_or_fingerprint, given or None)
    else:
        if not str(pipe_or_fingerprint).startswith("sha256:"):
            raise AugLedgerError(f"pipe_or_fingerprint must be a Pipeline, Variants or a 'sha256:...' fingerprint; "
                                 f"got {pipe_or_fingerprint!r}")
        tags = {TAG_PREFIX + "fingerprint": str(pipe_or_fingerprint)}
        if ref:
            tags[TAG_PREFIX + "ref"] = ref
    if dataset_digest:
        tags[TAG_PREFIX + "dataset_digest"] = dataset_digest
    for key, value in tags.items():
        client.set_model_version_tag(name, str(version), key, value)
    return tags
