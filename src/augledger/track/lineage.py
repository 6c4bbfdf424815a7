"""From a model back to its augmentation: ``augledger lineage MODEL@VERSION`` and :func:`lineage`.

Reads what :mod:`augledger.track.mlflow` wrote (tags on the run and the model version, the run's
``augledger/spec.json`` and dataset inputs) and, when an augledger registry knows the fingerprint,
the version's lifecycle state now and who approved it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from augledger.errors import AugLedgerError
from augledger.track.mlflow import TAG_PREFIX, mlflow_module

__all__ = ["lineage"]


def lineage(model: str | None = None, version: str | int | None = None, *, run_id: str | None = None,
            registry: Any = None, tracking_uri: str | None = None) -> dict[str, Any]:
    """Which augmentation trained a model version (or made a run): fingerprint, REF, state, spec, datasets.

    Args:
        model, version: a registered model and its version number or alias (``champion``).
        run_id: a run instead of (or as well as) a model version.
        registry: an :class:`augledger.registry.Registry` to look the fingerprint up in; by default the
            one at ``$AUGLEDGER_REGISTRY`` / ``.augledger/registry.db`` when it exists.
        tracking_uri: the MLflow store to read (default: MLflow's current one).

    Raises:
        AugLedgerError: neither a model version nor a run is given, or neither carries augledger tags.
    """
    mlflow = mlflow_module()
    if tracking_uri is not None:
        database = tracking_uri[len("sqlite:///"):] if tracking_uri.startswith("sqlite:///") else None
        if database is not None and not Path(database).is_file():
            raise AugLedgerError(f"no MLflow store at {tracking_uri}; set MLFLOW_TRACKING_URI to the store your "
                                 "training runs were logged to")
        mlflow.set_tracking_uri(tracking_uri)
    from mlflow.exceptions import MlflowException

    try:
        return _lineage(mlflow, model, version, run_id, registry)
    except MlflowException as exc:
        raise AugLedgerError(f"MLflow: {exc.message}") from None


def _lineage(mlflow: Any, model: str | None, version: str | int | None, run_id: str | None,
             registry: Any) -> dict[str, Any]:
    client = mlflow.MlflowClient()
    out: dict[str, Any] = {}
    tags: dict[str, str] = {}
    if model is not None:
        if version is None:
            raise AugLedgerError("lineage needs MODEL@VERSION (a version number or an alias)")
        mv = (client.get_model_version(model, str(version)) if str(version).isdigit()
              else client.get_model_version_by_alias(model, str(version)))
        out["model"] = {"name": model, "version": mv.version, "run_id": mv.run_id}
        tags.update({k: v for k, v in (mv.tags or {}).items() if k.startswith(TAG_PREFIX)})
        if run_id is not None and mv.run_id and run_id != mv.run_id:
            raise AugLedgerError(f"run {run_id} is not the run of {model} version {mv.version} ({mv.run_id}); give "
                                 "one of MODEL@VERSION or --run, or both for the same run")
        run_id = run_id or mv.run_id
    if run_id is None and model is None:
        raise AugLedgerError("lineage needs a model version (MODEL@VERSION) or --run RUN_ID")
    spec: Any = None
    if run_id:
        run = client.get_run(run_id)
        out["run_id"] = run_id
        run_tags = {k: v for k, v in run.data.tags.items() if k.startswith(TAG_PREFIX)}
        tags = {**run_tags, **tags}  # the model version's own tags win
        out["datasets"] = [{"name": d.dataset.name, "digest": d.dataset.digest, "source": d.dataset.source,
                            "context": next((t.value for t in d.tags if t.key == "mlflow.data.context"), None)}
                           for d in run.inputs.dataset_inputs]
        try:
            spec = mlflow.artifacts.load_dict(f"runs:/{run_id}/augledger/spec.json")
        except Exception:
            spec = None
    fingerprint = tags.get(TAG_PREFIX + "fingerprint")
    if fingerprint is None:
        where = f"model {model} version {version}" if model else f"run {run_id}"
        raise AugLedgerError(f"{where} carries no augledger tags: tag it with augledger.mlflow.tag_model_version, "
                             "or log the training run with augledger.mlflow.log_pipeline")
    out.update({"fingerprint": fingerprint, "ref": tags.get(TAG_PREFIX + "ref"),
                "dataset_digest": tags.get(TAG_PREFIX + "dataset_digest"),
                "tags": {k[len(TAG_PREFIX):]: v for k, v in sorted(tags.items())}})
    registered = _registered(fingerprint, tags.get(TAG_PREFIX + "spec_fingerprint"), registry)
    out["registry"] = registered
    if spec is None and registered:
        spec = registered[0].get("spec")
    out["spec"] = spec
    return out


def _registered(fingerprint: str, spec_fingerprint: str | None, registry: Any) -> list[dict[str, Any]]:
    """Registry versions with this fingerprint (or the control spec's), with their state; ``[]`` without a registry."""
    from augledger.errors import RegistryNotFound
    from augledger.registry.core import Registry

    try:
        reg = registry if registry is not None else Registry()
    except RegistryNotFound:
        return []
    try:
        found = reg.with_fingerprint(fingerprint) or (reg.with_fingerprint(spec_fingerprint) if spec_fingerprint else [])
        out = []
        for v in found:
            approvals = [h for h in reg.history(v.name, v.version) if h.detail.get("to") == "approved"]
            last = approvals[-1] if approvals else None
            out.append({**v.to_dict(), "spec": v.spec, "approved_by": last.actor if last else None,
                        "approved_at": last.at if last else None, "approval_reason": last.reason if last else None})
        return out
    finally:
        if registry is None:
            reg.close()
