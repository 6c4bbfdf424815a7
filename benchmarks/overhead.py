"""Per-call overhead of ``Pipeline.apply`` against raw Albumentations, three ways.

1. **Same draws.** A raw ``A.Compose`` of the same 8 transforms is given, before each call, the very
   generators augledger derives for that sample (built outside the timed loop), so both sides draw
   the same params and do the same pixel work; the difference is augledger's own cost, minus the
   raw side's ``set_random_state`` (which augledger avoids by re-seeding installed generators).
2. **As users compare.** A raw ``A.Compose`` with default settings and no seeding at all, the way
   a plain Albumentations user calls it. Draws differ per call, so the pixel work differs sample to
   sample; over 1,000 images it averages out.
3. **Fixed cost.** One ``HorizontalFlip`` at ``p=0`` (nothing to do: all overhead) and at ``p=1`` on a
   1024x1024 image, raw against ``apply``, and where augledger's fixed cost goes: seed derivation,
   re-seeding the two generators, the Compose call, the record.

Calls alternate raw and augledger sample by sample (each side first on every other sample) to
cancel drift and cache order; medians of per-round ratios are reported, for wall and CPU time.

Run: ``.venv/bin/python benchmarks/overhead.py [--samples 1000] [--rounds 5]``. Goal: <= 3% at 256x256.
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
from collections.abc import Callable
from typing import Any

os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")

import albumentations as A
import cv2
import numpy as np
from _pipeline import photo_variants, plain_compose, spec

import augledger
from augledger.seeding import generators_for

WALL, CPU = time.perf_counter_ns, time.process_time_ns


def interleaved(raw: Callable[[int], Any], ours: Callable[[int], Any], n: int, rounds: int) -> tuple[float, float, float, float]:
    """Median per-round (raw us/call, ours us/call, wall ratio, CPU ratio), calls alternating sample by sample."""
    raw_us, our_us, ratios, cpu_ratios = [], [], [], []
    for _ in range(rounds):
        rw = ow = rc = oc = 0
        for i in range(n):
            first, second = (raw, ours) if i % 2 == 0 else (ours, raw)
            w0, c0 = WALL(), CPU()
            first(i)
            w1, c1 = WALL(), CPU()
            second(i)
            w2, c2 = WALL(), CPU()
            if first is raw:
                rw, ow, rc, oc = rw + w1 - w0, ow + w2 - w1, rc + c1 - c0, oc + c2 - c1
            else:
                ow, rw, oc, rc = ow + w1 - w0, rw + w2 - w1, oc + c1 - c0, rc + c2 - c1
        raw_us.append(rw / n / 1e3)
        our_us.append(ow / n / 1e3)
        ratios.append(ow / rw)
        cpu_ratios.append(oc / rc)
    return statistics.median(raw_us), statistics.median(our_us), statistics.median(ratios), statistics.median(cpu_ratios)


def report(label: str, result: tuple[float, float, float, float]) -> None:
    raw_us, our_us, ratio, cpu_ratio = result
    print(f"  {label:34s} raw {raw_us:8.1f} us | augledger {our_us:8.1f} us | ratio {ratio:.4f} "
          f"(overhead {100 * (ratio - 1):+.2f}%; CPU time {100 * (cpu_ratio - 1):+.2f}%)")


def pipeline_overhead(size: int, samples: int, rounds: int) -> None:
    pipe = augledger.compile(augledger.parse_spec(spec(size)))
    images = photo_variants(size, samples)
    keys = [f"img/{i:05d}.png" for i in range(samples)]

    seeded = plain_compose(size)
    g = generators_for(pipe.sample_seed(key=keys[0], epoch=0))
    seeded.set_random_state(*g)
    ours = pipe.apply({"image": images[0]}, key=keys[0], epoch=0).sample["image"]
    # The same draws on both sides: a mismatch here would make the first comparison meaningless.
    assert np.array_equal(seeded(image=images[0])["image"], ours), "raw and augledger drew different params"
    gens = [generators_for(pipe.sample_seed(key=k, epoch=0)) for k in keys]

    def raw_same(i: int) -> None:
        seeded.set_random_state(*gens[i])
        seeded(image=images[i])

    def apply(i: int) -> None:
        pipe.apply({"image": images[i]}, key=keys[i], epoch=0)

    unseeded = plain_compose(size)  # a user's Compose: default settings, never seeded

    def raw_user(i: int) -> None:
        unseeded(image=images[i])

    print(f"{size}x{size}, 8 transforms, {samples} images x {rounds} rounds:")
    report("same draws (raw given our RNGs)", interleaved(raw_same, apply, samples, rounds))
    report("as users compare (raw unseeded)", interleaved(raw_user, apply, samples, rounds))


def fixed_cost(rounds: int, breakdown: bool = True) -> None:
    small = photo_variants(64, 1)[0]
    large = photo_variants(1024, 1)[0]
    print("one HorizontalFlip (fixed cost per call):")
    for p, image, n in ((0.0, small, 20000), (1.0, large, 2000)):
        pipe = augledger.compile(augledger.parse_spec({"schema": 1, "name": "one", "ops": [{"op": "HorizontalFlip", "p": p}]}))
        raw = A.Compose([A.HorizontalFlip(p=p)])
        sample = {"image": image}
        report(f"p={p:g} on {image.shape[0]}x{image.shape[1]}",
               interleaved(lambda i, raw=raw, image=image: raw(image=image),
                           lambda i, pipe=pipe, sample=sample: pipe.apply(sample, key="k", epoch=i), n, rounds))
    if not breakdown:
        return
    # Where the fixed cost goes: the steps of apply, timed one by one at p=0.
    pipe = augledger.compile(augledger.parse_spec({"schema": 1, "name": "one", "ops": [{"op": "HorizontalFlip", "p": 0.0}]}))
    applier = pipe._applier()
    sample = {"image": small}
    seed = pipe.sample_seed(key="k", epoch=0)
    compose, generators = applier._compose, applier._generators
    steps: dict[str, Callable[[], Any]] = {
        "derive the sample seed (BLAKE2b)": lambda: pipe.sample_seed(key="img/00001.png", epoch=3),
        "re-seed PCG64 + random.Random": lambda: generators.reseed(seed),
        "  of which random.Random.seed": lambda: generators.python.seed(seed),
        "Compose call (our settings)": lambda: compose(image=small),
        "raw Compose call (defaults)": lambda: A.Compose([A.HorizontalFlip(p=0.0)])(image=small),
        "whole apply": lambda: pipe.apply(sample, key="k", epoch=0),
    }
    raw_default = A.Compose([A.HorizontalFlip(p=0.0)])
    steps["raw Compose call (defaults)"] = lambda: raw_default(image=small)
    for name, step in steps.items():
        n = 20000
        best = min(_time(step, n) for _ in range(rounds))
        print(f"  {name:34s} {best:6.2f} us")


def _time(step: Callable[[], Any], n: int) -> float:
    t0 = WALL()
    for _ in range(n):
        step()
    return (WALL() - t0) / n / 1e3


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--samples", type=int, default=1000)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--no-breakdown", action="store_true", help="Skip the step timings (they use internals).")
    args = parser.parse_args()
    cv2.setNumThreads(1)  # the same single-threaded kernels on both sides, as in worker processes
    print(f"augledger {augledger.__version__}, albumentations {A.__version__}, opencv {cv2.__version__}")
    for size in (256, 512):
        pipeline_overhead(size, args.samples, args.rounds)
    fixed_cost(args.rounds, breakdown=not args.no_breakdown)


if __name__ == "__main__":
    main()
