"""Per-call overhead of ``Pipeline.apply`` against a raw ``A.Compose`` on the same 8 transforms.

Both sides do the same image work: before each raw call the raw Compose gets the very generators
augledger would derive for that sample (built outside the timed loop), so every sample draws the
same params on both sides and the difference is augledger's own cost (key hashing, generator
construction, applied-param recording, JSON conversion, the record). Calls alternate raw and
augledger sample by sample (each side first on every other sample) to cancel drift and cache order; the median of the per-round ratios is reported, for
wall time and for CPU time.

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
from _pipeline import photo_variants, plain_compose, spec

import augledger
from augledger.seeding import generators_for


def run(size: int, samples: int, rounds: int) -> float:
    pipe = augledger.compile(augledger.parse_spec(spec(size)))
    raw = plain_compose(size)
    images = photo_variants(size, samples)
    keys = [f"img/{i:05d}.png" for i in range(samples)]
    gens = [generators_for(pipe.sample_seed(key=k, epoch=0)) for k in keys]

    # The same draws on both sides: a mismatch here would make the comparison meaningless.
    g = generators_for(pipe.sample_seed(key=keys[0], epoch=0))
    raw.set_random_state(*g)
    ours = pipe.apply({"image": images[0]}, key=keys[0], epoch=0).sample["image"]
    assert np.array_equal(raw(image=images[0])["image"], ours), "raw and augledger drew different params"

    # Interleaved per sample (raw, then augledger, on the same image), so machine drift hits both
    # sides alike. Wall time and the process's CPU time are both summed; on a shared VM the CPU time
    # is the steadier of the two (time stolen by the hypervisor is not counted).
    ratios, cpu_ratios, raw_us, aug_us = [], [], [], []
    wall, cpu = time.perf_counter_ns, time.process_time_ns
    for _ in range(rounds):
        gens = [generators_for(pipe.sample_seed(key=k, epoch=0)) for k in keys]
        raw_wall = aug_wall = raw_cpu = aug_cpu = 0
        for i, (img, key, (np_rng, py_rng)) in enumerate(zip(images, keys, gens, strict=True)):
            # Alternate which side goes first, so neither always finds the image warm in the cache.
            if i % 2:
                w0, c0 = wall(), cpu()
                pipe.apply({"image": img}, key=key, epoch=0)
                w1, c1 = wall(), cpu()
                raw.set_random_state(np_rng, py_rng)
                raw(image=img)
                w2, c2 = wall(), cpu()
                aug_wall, raw_wall = aug_wall + w1 - w0, raw_wall + w2 - w1
                aug_cpu, raw_cpu = aug_cpu + c1 - c0, raw_cpu + c2 - c1
            else:
                w0, c0 = wall(), cpu()
                raw.set_random_state(np_rng, py_rng)
                raw(image=img)
                w1, c1 = wall(), cpu()
                pipe.apply({"image": img}, key=key, epoch=0)
                w2, c2 = wall(), cpu()
                raw_wall, aug_wall = raw_wall + w1 - w0, aug_wall + w2 - w1
                raw_cpu, aug_cpu = raw_cpu + c1 - c0, aug_cpu + c2 - c1
        raw_us.append(raw_wall / samples / 1e3)
        aug_us.append(aug_wall / samples / 1e3)
        ratios.append(aug_wall / raw_wall)
        cpu_ratios.append(aug_cpu / raw_cpu)
    ratio = statistics.median(ratios)
    cpu_ratio = statistics.median(cpu_ratios)
    print(
        f"{size}x{size}: raw A.Compose {statistics.median(raw_us):8.1f} us/sample | "
        f"augledger apply {statistics.median(aug_us):8.1f} us/sample | ratio {ratio:.4f} "
        f"(overhead {100 * (ratio - 1):+.2f}%; CPU time {100 * (cpu_ratio - 1):+.2f}%)"
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
