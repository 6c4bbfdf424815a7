"""Per-call overhead of ``Pipeline.apply`` against a raw ``A.Compose`` on the same 8 transforms.

Both sides do the same image work: before each raw call the raw Compose gets the very generators
augledger would derive for that sample (built outside the timed loop), so every sample draws the
same params on both sides and the difference is augledger's own cost (key hashing, generator
construction, applied-param recording, JSON conversion, the record). Rounds alternate raw and
augledger to cancel drift; the median of the per-round ratios is reported.

Run: ``.venv/bin/python benchmarks/overhead.py [--samples 400] [--rounds 7]``. Goal: <= 3% at 256x256.
"""

from __future__ import annotations

import argparse
import os
import statistics
import time

os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")

import albumentations as A
import cv2
import numpy as np

import augledger
from augledger.seeding import generators_for

OPS = [
    {"op": "HorizontalFlip", "p": 0.5},
    {"op": "Affine", "p": 0.5, "params": {"rotate": [-15, 15], "scale": [0.9, 1.1]}},
    {"op": "RandomBrightnessContrast", "p": 0.5},
    {"op": "GaussianBlur", "p": 0.5},
    {"op": "CoarseDropout", "p": 0.5},
    {"op": "RGBShift", "p": 0.5},
    {"op": "ColorJitter", "p": 0.5},
    {"op": "RandomResizedCrop", "p": 1.0, "params": {"size": [0, 0]}},  # size set per resolution
]


def _images(size: int, n: int) -> list[np.ndarray]:
    from skimage import data

    base = cv2.resize(data.astronaut(), (size, size), interpolation=cv2.INTER_AREA)
    # Distinct but realistic inputs: shifted crops of a real photograph.
    return [np.ascontiguousarray(np.roll(base, shift=(7 * i) % size, axis=1)) for i in range(n)]


def run(size: int, samples: int, rounds: int) -> float:
    ops = [dict(o) for o in OPS]
    ops[-1] = {**ops[-1], "params": {"size": [size, size]}}
    pipe = augledger.compile(augledger.parse_spec({"schema": 1, "name": "bench", "seed": 7, "ops": ops}))
    raw = A.Compose(
        [
            A.HorizontalFlip(p=0.5),
            A.Affine(rotate=(-15, 15), scale=(0.9, 1.1), p=0.5),
            A.RandomBrightnessContrast(p=0.5),
            A.GaussianBlur(p=0.5),
            A.CoarseDropout(p=0.5),
            A.RGBShift(p=0.5),
            A.ColorJitter(p=0.5),
            A.RandomResizedCrop(size=(size, size), p=1.0),
        ]
    )
    images = _images(size, samples)
    keys = [f"img/{i:05d}.png" for i in range(samples)]
    gens = [generators_for(pipe.sample_seed(key=k, epoch=0)) for k in keys]

    # The same draws on both sides: a mismatch here would make the comparison meaningless.
    g = generators_for(pipe.sample_seed(key=keys[0], epoch=0))
    raw.set_random_state(*g)
    ours = pipe.apply({"image": images[0]}, key=keys[0], epoch=0).sample["image"]
    assert np.array_equal(raw(image=images[0])["image"], ours), "raw and augledger drew different params"

    ratios = []
    raw_us = []
    aug_us = []
    for _ in range(rounds):
        gens = [generators_for(pipe.sample_seed(key=k, epoch=0)) for k in keys]
        t0 = time.perf_counter()
        for img, (np_rng, py_rng) in zip(images, gens, strict=True):
            raw.set_random_state(np_rng, py_rng)
            raw(image=img)
        t1 = time.perf_counter()
        for img, key in zip(images, keys, strict=True):
            pipe.apply({"image": img}, key=key, epoch=0)
        t2 = time.perf_counter()
        raw_us.append((t1 - t0) / samples * 1e6)
        aug_us.append((t2 - t1) / samples * 1e6)
        ratios.append((t2 - t1) / (t1 - t0))
    ratio = statistics.median(ratios)
    print(
        f"{size}x{size}: raw A.Compose {statistics.median(raw_us):8.1f} us/sample | "
        f"augledger apply {statistics.median(aug_us):8.1f} us/sample | ratio {ratio:.4f} "
        f"(overhead {100 * (ratio - 1):+.2f}%)"
    )
    return ratio


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--samples", type=int, default=400)
    parser.add_argument("--rounds", type=int, default=7)
    args = parser.parse_args()
    cv2.setNumThreads(1)  # the same single-threaded kernels on both sides, as in worker processes
    print(f"augledger {augledger.__version__}, albumentations {A.__version__}, opencv {cv2.__version__}")
    for size in (256, 512):
        run(size, args.samples, args.rounds)


if __name__ == "__main__":
    main()
