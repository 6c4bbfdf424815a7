"""Experiment tracking: augmentation as run metadata (:mod:`~augledger.track.mlflow`; public as :mod:`augledger.mlflow`)."""
