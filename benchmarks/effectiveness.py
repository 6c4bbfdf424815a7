"""Does augmentation help? A small CNN on 10% of scikit-learn's digits, with and without augledger.

The digits (1,797 8x8 images, shipped inside scikit-learn) are upscaled to 32x32 RGB as in
``examples/train_digits.py``. Every fifth image is the test set (360); of the rest, a stratified
10% (about 144 images, a different subset per seed) is the training set. Each seed trains three
arms on the same subset, from the same initial weights, with the same batch order:

* ``none``: no augmentation;
* ``mild``: ``examples/specs/digits-mild.yaml`` (small rotations and shifts);
* ``strong``: ``examples/specs/digits-strong.yaml`` (wider affine, elastic warps, blur, noise).

So the arms differ only in augmentation, and the comparisons are paired by seed: for each pair of
arms the script prints the mean and standard deviation of test accuracy, and the mean paired
difference with a 95% confidence interval (Student's t over seeds). Every training run is logged
to MLflow (``$MLFLOW_TRACKING_URI``, else ``sqlite:///<out>/mlflow.db``) with the pipeline's
fingerprint (``augledger.mlflow.log_pipeline``), the arm, the seed and the test accuracy.

Run: ``.venv/bin/python benchmarks/effectiveness.py [--seeds 10] [--epochs 60] [--out bench-out/effectiveness]``
(about 2-4 minutes on 2 CPU cores).
"""

from __future__ import annotations

import argparse
import math
import os
import statistics
import sys
import time
from pathlib import Path
from typing import Any

os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")
os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")

import cv2
import numpy as np
import torch
from scipy import stats
from sklearn.datasets import load_digits
from torch import nn
from torch.utils.data import DataLoader

import augledger
from augledger.torch import AugmentedDataset, EpochSampler

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "examples"))  # the digits data set, model and loop of examples/train_digits.py
from train_digits import Digits, evaluate, make_model, to_tensor  # noqa: E402

ARMS = {"none": None, "mild": ROOT / "examples/specs/digits-mild.yaml",
        "strong": ROOT / "examples/specs/digits-strong.yaml"}
PAIRS = [("mild", "none"), ("strong", "none"), ("strong", "mild")]


def subset(seed: int, fraction: float) -> tuple[list[int], list[int]]:
    """(train indices: a stratified ``fraction`` of the non-test images, test indices: every fifth image)."""
    target = load_digits().target
    pool = [i for i in range(len(target)) if i % 5 != 0]
    rng = np.random.default_rng(seed)
    train: list[int] = []
    for label in range(10):
        members = [i for i in pool if target[i] == label]
        take = max(1, round(fraction * len(members)))
        train += sorted(rng.choice(members, size=take, replace=False).tolist())
    return sorted(train), [i for i in range(len(target)) if i % 5 == 0]


class _ByIndex:
    def __init__(self, items: list[Any]) -> None:
        self.items = items

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, pair: tuple[int, int]) -> Any:
        return self.items[pair[1]]


def train_one(arm: str, pipe: Any, seed: int, train_idx: list[int], test: DataLoader[Any], epochs: int) -> float:
    torch.manual_seed(seed)  # the same initial weights for every arm of a seed
    base = Digits(train_idx)
    if pipe is None:  # the sampler's (epoch, index) pairs, served without augmentation
        plain = [to_tensor({"image": image}, (image, label)) for image, label in base]
        data: Any = _ByIndex(plain)
    else:
        data = AugmentedDataset(base, pipe, key=base.keys, from_sample=to_tensor)
    sampler = EpochSampler(len(base), shuffle=True, seed=seed)  # the same batch order for every arm
    loader = DataLoader(data, batch_size=32, sampler=sampler, num_workers=0)
    model = make_model()
    optimizer = torch.optim.Adam(model.parameters(), lr=2e-3)
    loss_fn = nn.CrossEntropyLoss()
    for epoch in range(epochs):
        sampler.set_epoch(epoch)
        model.train()
        for images, labels in loader:
            optimizer.zero_grad()
            loss_fn(model(images), labels).backward()
            optimizer.step()
    return evaluate(model, test)


def ci95(diffs: list[float]) -> tuple[float, float, float]:
    mean = statistics.fmean(diffs)
    if len(diffs) < 2:
        return mean, math.nan, math.nan
    half = stats.t.ppf(0.975, len(diffs) - 1) * statistics.stdev(diffs) / math.sqrt(len(diffs))
    return mean, mean - half, mean + half


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", type=int, default=10)
    parser.add_argument("--epochs", type=int, default=60)
    parser.add_argument("--fraction", type=float, default=0.10)
    parser.add_argument("--out", type=Path, default=Path("bench-out/effectiveness"))
    parser.add_argument("--no-mlflow", action="store_true", help="do not log the runs to MLflow")
    args = parser.parse_args()
    torch.set_num_threads(1)
    cv2.setNumThreads(1)
    pipes = {arm: None if path is None else augledger.compile(augledger.load_spec(path)) for arm, path in ARMS.items()}
    mlflow: Any = None
    if not args.no_mlflow:
        import mlflow as _mlflow

        import augledger.mlflow as aml

        mlflow = _mlflow
        args.out.mkdir(parents=True, exist_ok=True)
        mlflow.set_tracking_uri(os.environ.get("MLFLOW_TRACKING_URI") or f"sqlite:///{(args.out / 'mlflow.db').resolve()}")
        if mlflow.get_experiment_by_name("augledger-effectiveness") is None:  # artifacts beside the store
            mlflow.create_experiment("augledger-effectiveness",
                                     artifact_location=(args.out / "mlruns").resolve().as_uri())
        mlflow.set_experiment("augledger-effectiveness")
    _, test_idx = subset(0, args.fraction)
    test_base = Digits(test_idx)
    test = DataLoader([to_tensor({"image": im}, (im, lb)) for im, lb in test_base], batch_size=256)
    acc: dict[str, list[float]] = {arm: [] for arm in ARMS}
    t0 = time.perf_counter()
    for seed in range(args.seeds):
        train_idx, _ = subset(seed, args.fraction)
        for arm, pipe in pipes.items():
            a = train_one(arm, pipe, seed, train_idx, test, args.epochs)
            acc[arm].append(a)
            if mlflow is not None:
                with mlflow.start_run(run_name=f"{arm}-seed{seed}"):
                    mlflow.log_params({"arm": arm, "seed": seed, "epochs": args.epochs, "train_images": len(train_idx)})
                    if pipe is not None:
                        aml.log_pipeline(pipe)
                    mlflow.log_metric("test_accuracy", a)
        line = "  ".join(f"{arm} {acc[arm][-1]:.3f}" for arm in ARMS)
        print(f"seed {seed}: {len(train_idx)} training images: {line}  ({time.perf_counter() - t0:.0f}s)", flush=True)
    print(f"\ntest accuracy over {args.seeds} seeds ({len(test_idx)} test images, {args.epochs} epochs):")
    for arm in ARMS:
        fp = f"  {pipes[arm].fingerprint[:19]}..." if pipes[arm] is not None else ""  # type: ignore[union-attr]
        sd = statistics.stdev(acc[arm]) if len(acc[arm]) > 1 else math.nan
        print(f"  {arm:<7} mean {statistics.fmean(acc[arm]):.4f}  sd {sd:.4f}{fp}")
    print("\npaired differences (same subset, initial weights and batch order per seed), 95% CI:")
    for a, b in PAIRS:
        mean, lo, hi = ci95([x - y for x, y in zip(acc[a], acc[b], strict=True)])
        verdict = "helps" if lo > 0 else "hurts" if hi < 0 else "no clear difference"
        print(f"  {a} - {b}: {mean:+.4f}  [{lo:+.4f}, {hi:+.4f}]  -> {verdict}")
    print(f"\n{args.seeds * len(ARMS)} training runs in {time.perf_counter() - t0:.0f}s"
          + ("" if mlflow is None else f"; logged to {mlflow.get_tracking_uri()} (experiment augledger-effectiveness)"))


if __name__ == "__main__":
    main()
