"""MLflow tracking and model lineage for augledger (``pip install 'augledger[mlflow]'``).

Inside your own training run::

    import mlflow, augledger, augledger.mlflow
    pipe = augledger.compile(augledger.load_spec("digits@production"))
    with mlflow.start_run():
        augledger.mlflow.log_pipeline(pipe)              # tags + the resolved spec
        ...                                              # train with AugmentedDataset(..., pipe, ...)
        augledger.mlflow.log_ledger("runs/ledger")       # the online ledger (or its summary)
        mlflow.register_model(...)                       # then:
    augledger.mlflow.tag_model_version("digits-cnn", 3, pipe, ref="digits@production")
    augledger.mlflow.lineage("digits-cnn", 3)            # fingerprint, REF, state, spec, datasets

Offline runs: ``augledger run ... --mlflow [--experiment NAME]``; from a model back to its
augmentation: ``augledger lineage MODEL@VERSION``. Details: :mod:`augledger.track.mlflow`.
"""

from augledger.track.lineage import lineage
from augledger.track.mlflow import (
    DEFAULT_EXPERIMENT,
    TAG_PREFIX,
    MlflowObserver,
    dataset_digest,
    default_tracking_uri,
    log_ledger,
    log_pipeline,
    tag_model_version,
)

__all__ = [
    "DEFAULT_EXPERIMENT",
    "TAG_PREFIX",
    "MlflowObserver",
    "dataset_digest",
    "default_tracking_uri",
    "lineage",
    "log_ledger",
    "log_pipeline",
    "tag_model_version",
]
