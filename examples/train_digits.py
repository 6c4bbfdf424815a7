"""Train a small CNN on scikit-learn's digits with deterministic online augmentation.

The digits (1,797 8x8 grayscale images, values 0..16) ship inside scikit-learn: nothing is
downloaded. Each is scaled to uint8, upscaled to 32x32 and repeated to 3 channels, so every
Albumentations op applies. The training split is wrapped with ``AugmentedDataset``; the validation
split is wrapped too, and passes through unaugmented (the spec augments ``train`` only).

The three lines that differ from a plain PyTorch loop are marked ``# augledger``. A run restarted
with ``--start-epoch 3`` sees exactly the batches epoch 3 of an uninterrupted run sees.

Run: ``.venv/bin/python examples/train_digits.py [--epochs 3] [--workers 2] [--ledger runs/digits-ledger]
[--spec SPEC|REF] [--mlflow MODEL_NAME]`` (a few seconds on a CPU). With ``--mlflow``, the training run
is logged to MLflow (``$MLFLOW_TRACKING_URI``, else ``sqlite:///mlflow.db``) with its augmentation
(``augledger.mlflow.log_pipeline``), the model is registered as a new version of MODEL_NAME and
tagged with the augmentation that trained it, so ``augledger lineage MODEL_NAME@VERSION`` answers
"which augmentation trained this model?".
"""

from __future__ import annotations

import argparse
import os
import time
from collections.abc import Sequence
from typing import Any

os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")

import cv2
import numpy as np
import torch
from sklearn.datasets import load_digits
from torch import nn
from torch.utils.data import DataLoader, Dataset

import augledger
import augledger.registry
from augledger.torch import AugmentedDataset, EpochSampler, OnlineLedger

SPEC: dict[str, Any] = {
    "schema": 1,
    "name": "digits-train",
    "seed": 1234,
    "ops": [
        # No flips: a mirrored 2 is not a 2.
        {"op": "Affine", "p": 0.8, "params": {"rotate": [-12, 12], "scale": [0.9, 1.1], "translate_px": [-2, 2]}},
        {"op": "RandomBrightnessContrast", "p": 0.5},
        {"op": "GaussNoise", "p": 0.2},
    ],
}


class Digits(Dataset[tuple[np.ndarray, int]]):
    """scikit-learn's digits as ``(32x32x3 uint8 image, label)`` items; ``keys[i]`` is item i's identity."""

    def __init__(self, indices: Sequence[int]) -> None:
        data = load_digits()
        self.indices = list(indices)
        self.images = [self._to_uint8_rgb(data.images[i]) for i in self.indices]
        self.labels = [int(data.target[i]) for i in self.indices]
        # The row number in the shipped data set is a stable identity: it never depends on the split
        # or on the order a sampler visits the items in.
        self.keys = [f"digits/{i:04d}" for i in self.indices]

    @staticmethod
    def _to_uint8_rgb(image: np.ndarray) -> np.ndarray:
        gray = np.clip(image * (255.0 / 16.0), 0, 255).astype(np.uint8)
        big = cv2.resize(gray, (32, 32), interpolation=cv2.INTER_LINEAR)
        return np.ascontiguousarray(np.repeat(big[:, :, None], 3, axis=2))

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, i: int) -> tuple[np.ndarray, int]:
        return self.images[i], self.labels[i]


def to_tensor(sample: dict[str, Any], item: tuple[np.ndarray, int]) -> tuple[torch.Tensor, int]:
    """``from_sample`` hook: HxWx3 uint8 -> 3xHxW float in [0, 1], label kept (a module-level function,
    so it pickles for any DataLoader start method)."""
    image = torch.from_numpy(np.ascontiguousarray(sample["image"])).permute(2, 0, 1).float().div_(255.0)
    return image, item[1]


def make_model() -> nn.Module:
    return nn.Sequential(
        nn.Conv2d(3, 16, 3, padding=1),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Conv2d(16, 32, 3, padding=1),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Flatten(),
        nn.Linear(32 * 8 * 8, 64),
        nn.ReLU(),
        nn.Linear(64, 10),
    )


def evaluate(model: nn.Module, loader: DataLoader[Any]) -> float:
    model.eval()
    correct = total = 0
    with torch.no_grad():
        for images, labels in loader:
            correct += int((model(images).argmax(dim=1) == labels).sum())
            total += len(labels)
    return correct / total


def main(argv: Sequence[str] | None = None) -> dict[str, float]:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--start-epoch", type=int, default=0, help="resume here (same batches as an unbroken run)")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--ledger", default=None, help="folder for an online ledger of what each sample got")
    parser.add_argument("--ledger-rate", type=float, default=1.0, help="fraction of (key, epoch) pairs ledgered")
    parser.add_argument("--spec", default=None, help="a spec file or registry REF (default: the SPEC in this file)")
    parser.add_argument("--mlflow", metavar="MODEL_NAME", default=None,
                        help="log the run to MLflow and register the model under this name")
    args = parser.parse_args(argv)

    torch.manual_seed(0)  # model initialisation only; augmentation never reads a global RNG
    # A model this small gains nothing from intra-op threads, and they would compete with the loader's
    # worker processes for the cores (on two cores, 2 threads made an epoch ~10x slower).
    torch.set_num_threads(1)
    cv2.setNumThreads(1)
    if args.spec:  # a file or a REF such as digits@production: the lifecycle rules apply
        source = augledger.registry.resolve_spec(args.spec)
        pipeline, provenance = source.compile(), source.provenance()
    else:
        pipeline, provenance = augledger.compile(augledger.parse_spec(SPEC)), None
    n = len(load_digits().target)
    train_base = Digits([i for i in range(n) if i % 5 != 0])
    val_base = Digits([i for i in range(n) if i % 5 == 0])

    ledger = OnlineLedger(args.ledger, pipeline, sample_rate=args.ledger_rate) if args.ledger else None
    train = AugmentedDataset(
        train_base, pipeline, key=train_base.keys, from_sample=to_tensor, ledger=ledger
    )  # augledger
    val = AugmentedDataset(val_base, pipeline, key=val_base.keys, split="val", from_sample=to_tensor)
    sampler = EpochSampler(train, shuffle=True, seed=0)  # augledger: instead of shuffle=True
    workers = {"num_workers": args.workers, "persistent_workers": args.workers > 0}
    train_loader = DataLoader(train, batch_size=args.batch_size, sampler=sampler, **workers)
    val_loader = DataLoader(val, batch_size=256, num_workers=0)

    run = None
    if args.mlflow:
        import mlflow

        from augledger import mlflow as aml

        mlflow.set_tracking_uri(aml.default_tracking_uri())
        mlflow.set_experiment("digits-training")
        run = mlflow.start_run(run_name=f"digits-{pipeline.fingerprint[7:15]}")
        aml.log_pipeline(pipeline, provenance=provenance)  # augledger: tags + the resolved spec
        mlflow.log_params({"epochs": args.epochs, "batch_size": args.batch_size})

    model = make_model()
    optimizer = torch.optim.Adam(model.parameters(), lr=3e-3)
    loss_fn = nn.CrossEntropyLoss()
    t0 = time.perf_counter()
    accuracy = 0.0
    for epoch in range(args.start_epoch, args.epochs):
        sampler.set_epoch(epoch)  # augledger: the epoch travels with every index, to every worker
        model.train()
        total_loss = 0.0
        for images, labels in train_loader:
            optimizer.zero_grad()
            loss = loss_fn(model(images), labels)
            loss.backward()
            optimizer.step()
            total_loss += loss.item() * len(labels)
        accuracy = evaluate(model, val_loader)
        print(f"epoch {epoch}: train loss {total_loss / len(train):.4f}, val accuracy {accuracy:.3f}")
    seconds = time.perf_counter() - t0
    print(f"{args.epochs - args.start_epoch} epoch(s) in {seconds:.1f} s; pipeline {pipeline.fingerprint[:19]}...")
    if ledger is not None:
        print(f"ledger: {ledger.merge()}")
    if run is not None:
        _register(args.mlflow, run, model, pipeline, accuracy, provenance, ledger)
    return {"val_accuracy": accuracy, "seconds": seconds}


def _register(name: str, run: Any, model: nn.Module, pipeline: Any, accuracy: float, provenance: Any, ledger: Any) -> None:
    """Log the weights and metric, register a model version, and tag it with its augmentation."""
    import tempfile

    import mlflow

    from augledger import mlflow as aml

    mlflow.log_metric("val_accuracy", accuracy)
    with tempfile.TemporaryDirectory() as folder:
        weights = os.path.join(folder, "model.pt")
        torch.save(model.state_dict(), weights)
        mlflow.log_artifact(weights, "model")
    if ledger is not None:
        aml.log_ledger(ledger.directory)
    mlflow.end_run()
    client = mlflow.MlflowClient()
    if not client.search_registered_models(filter_string=f"name = '{name}'"):
        client.create_registered_model(name)
    version = client.create_model_version(name, source=f"{run.info.artifact_uri}/model", run_id=run.info.run_id)
    aml.tag_model_version(name, version.version, pipeline, provenance=provenance)  # augledger: model -> augmentation
    print(f"MLflow run {run.info.run_id}; registered {name} version {version.version}; "
          f"try: augledger lineage {name}@{version.version}")


if __name__ == "__main__":
    main()
