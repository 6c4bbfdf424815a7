"""DataLoader throughput: a plain Albumentations Dataset against ``augledger.torch.AugmentedDataset``.

Same images, same eight transforms, ``num_workers=2``, batch size 64, shuffled. Three loaders are
built once with persistent workers (so worker start-up is not timed) and warmed up for one epoch:

* ``plain``: a Dataset calling ``A.Compose(...)(image=...)`` with a ``RandomSampler``;
* ``wrapped``: ``AugmentedDataset`` + ``EpochSampler``, ledger off;
* ``wrapped+ledger``: the same with an :class:`OnlineLedger` (every row, digests off).

Each round times one epoch of each loader, in a rotating order to cancel drift; the report gives
the median samples/s per loader and the median of the per-round ratios wrapped/plain (the goal:
>= 0.97 with the ledger off, >= 0.93 with it on). On a shared machine wall-clock time also measures
whatever else runs, so the report adds the CPU time each epoch cost (the loader's worker processes,
read from ``/proc``, plus the main process) and its ratio, which other load disturbs far less.

Run: ``.venv/bin/python benchmarks/dataloader.py [--samples 768] [--size 256] [--rounds 7]``.
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")

import albumentations as A
import cv2
import numpy as np
import torch
from _pipeline import photo_variants, plain_compose, spec
from torch.utils.data import DataLoader, Dataset, RandomSampler

import augledger
from augledger.ledger import read_ledger
from augledger.torch import AugmentedDataset, EpochSampler, OnlineLedger


class Images(Dataset[tuple[np.ndarray, int]]):
    """In-memory images (shifted crops of a real photograph) with labels; loading costs nothing."""

    def __init__(self, size: int, n: int) -> None:
        self.images = photo_variants(size, n)

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, i: int) -> tuple[np.ndarray, int]:
        return self.images[i], i % 10


class PlainAugmented(Dataset[tuple[np.ndarray, int]]):
    """The baseline: what an Albumentations user writes without augledger."""

    def __init__(self, base: Images, transform: A.Compose) -> None:
        self.base = base
        self.transform = transform

    def __len__(self) -> int:
        return len(self.base)

    def __getitem__(self, i: int) -> tuple[np.ndarray, int]:
        image, label = self.base[i]
        return self.transform(image=image)["image"], label


def _child_pids() -> set[int]:
    pids: set[int] = set()
    for task in Path("/proc/self/task").iterdir():
        try:
            pids.update(int(pid) for pid in (task / "children").read_text().split())
        except OSError:
            pass
    return pids


def _cpu_seconds(pids: set[int]) -> float:
    """User + system CPU time of ``pids`` (Linux ``/proc/<pid>/stat`` fields 14 and 15)."""
    ticks = 0
    for pid in pids:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        ticks += int(fields[11]) + int(fields[12])
    return ticks / os.sysconf("SC_CLK_TCK")


def run_epoch(loader: DataLoader[Any], sampler: Any, epoch: int, workers: set[int]) -> tuple[float, float]:
    """One epoch: (wall seconds, CPU seconds of the workers and the main process)."""
    if hasattr(sampler, "set_epoch"):
        sampler.set_epoch(epoch)
    cpu0 = _cpu_seconds(workers) + time.process_time()
    t0 = time.perf_counter()
    n = 0
    for images, _ in loader:
        n += len(images)
    elapsed = time.perf_counter() - t0
    cpu = _cpu_seconds(workers) + time.process_time() - cpu0
    assert n == len(sampler)
    return elapsed, cpu


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--samples", type=int, default=768)
    parser.add_argument("--size", type=int, default=256)
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args()
    # One OpenCV thread per worker on both sides (inherited by the forked workers): with two cores and
    # two workers, OpenCV's own thread pool would only add contention noise.
    cv2.setNumThreads(1)

    pipe = augledger.compile(augledger.parse_spec(spec(args.size)))
    base = Images(args.size, args.samples)

    common = {"batch_size": args.batch_size, "num_workers": args.workers, "persistent_workers": True}
    plain_sampler = RandomSampler(base, generator=torch.Generator().manual_seed(0))
    with tempfile.TemporaryDirectory() as tmp:
        ledger = OnlineLedger(tmp, pipe)
        wrapped = AugmentedDataset(base, pipe, key=lambda i: f"img/{i:05d}.png")
        ledgered = AugmentedDataset(base, pipe, key=lambda i: f"img/{i:05d}.png", ledger=ledger)
        loaders: dict[str, tuple[DataLoader[Any], Any]] = {}
        loaders["plain"] = (
            DataLoader(PlainAugmented(base, plain_compose(args.size)), sampler=plain_sampler, **common),
            plain_sampler,
        )
        for name, ds in (("wrapped", wrapped), ("wrapped+ledger", ledgered)):
            sampler = EpochSampler(ds, shuffle=True)
            loaders[name] = (DataLoader(ds, sampler=sampler, **common), sampler)

        workers: dict[str, set[int]] = {}
        for name, (loader, sampler) in loaders.items():  # warm-up: start the workers, fill caches
            before = _child_pids()
            run_epoch(loader, sampler, 0, set())
            workers[name] = _child_pids() - before
            assert len(workers[name]) == args.workers, workers
        names = list(loaders)
        seconds: dict[str, list[float]] = {name: [] for name in names}
        cpu: dict[str, list[float]] = {name: [] for name in names}
        for r in range(args.rounds):
            for name in names[r % len(names) :] + names[: r % len(names)]:
                loader, sampler = loaders[name]
                wall, used = run_epoch(loader, sampler, r + 1, workers[name])
                seconds[name].append(wall)
                cpu[name].append(used)
        rows = ledger.merge()
        n_rows = len(read_ledger(rows))

    print(
        f"augledger {augledger.__version__}, torch {torch.__version__}, albumentations {A.__version__}, "
        f"opencv {cv2.__version__}; {args.samples} images {args.size}x{args.size}, batch {args.batch_size}, "
        f"num_workers={args.workers}, {args.rounds} rounds, {os.cpu_count()} CPUs"
    )
    for name in names:
        rates = [args.samples / s for s in seconds[name]]
        cpu_us = statistics.median(cpu[name]) / args.samples * 1e6
        print(
            f"  {name:<15} {statistics.median(rates):8.1f} samples/s  (min {min(rates):.1f}, max {max(rates):.1f})"
            f"  CPU {cpu_us:7.1f} us/sample"
        )
    for name, goal in (("wrapped", 0.97), ("wrapped+ledger", 0.93)):
        ratio = statistics.median(p / w for p, w in zip(seconds["plain"], seconds[name], strict=True))
        cpu_ratio = statistics.median(p / w for p, w in zip(cpu["plain"], cpu[name], strict=True))
        verdict = "met" if ratio >= goal else "MISSED"
        print(
            f"  {name}/plain throughput ratio: {ratio:.3f} (goal >= {goal}: {verdict}); CPU-time ratio {cpu_ratio:.3f}"
        )
    print(f"  ledger rows merged: {n_rows} ({args.rounds + 1} epochs x {args.samples} samples)")


if __name__ == "__main__":
    main()
