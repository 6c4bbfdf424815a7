"""Offline throughput: a naive Albumentations loop against ``augledger run`` with 1 and 2 workers.

All three make the same files from the same data: JPEG tiles of real photographs (scikit-image's
sample photos, cut into 384x384 tiles at shifted offsets, so every tile differs), augmented by the
same eight transforms and written as JPEG (quality 95).

* (a) ``naive``: the loop a user writes: ``cv2.imread``, ``A.Compose(...)``, ``cv2.imwrite``, one
  process, no ledger, no manifest, no checks;
* (b) ``run -w1``: ``augledger.run.materialize`` with one worker process (decode with quarantine
  checks, per-sample seeding, atomic writes, journal, source and output digests, Parquet ledger,
  manifest);
* (c) ``run -w2``: the same with two worker processes.

Each measurement runs in a fresh interpreter (so memory is measured per run: the peak RSS of the
main process and of its largest worker) and times the work only, not the interpreter start-up.
Rounds rotate the order of (a), (b) and (c) to cancel drift, and each round uses another seed (the
same for all three), so that no side is favoured by the luck of one seed's draws (which ops fire at
p=0.5 moves the pixel work by a few percent). The report gives the median images/s and the median
of the per-round ratios. Peak RSS is then measured at 1x and 5x the dataset size
with 2 workers: it must stay flat as the dataset grows. Goals: (b)/(a) >= 0.95, (c)/(b) >= 1.75.

Run: ``.venv/bin/python benchmarks/materialize.py [--images 1000] [--rounds 3] [--scale 5]``.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")

from _pipeline import plain_compose, spec

TILE = 384
PHOTOS = ["astronaut", "coffee", "chelsea", "rocket", "immunohistochemistry", "hubble_deep_field", "retina", "colorwheel"]


def make_dataset(root: Path, n: int) -> None:
    """``n`` distinct JPEG tiles of real photos in 10 class folders (kept between runs when complete)."""
    import cv2
    import numpy as np
    from skimage import data

    stamp = root / f".complete-{n}"
    if stamp.is_file():
        return
    shutil.rmtree(root, ignore_errors=True)
    photos = []
    for name in PHOTOS:
        photo = np.asarray(getattr(data, name)())
        if min(photo.shape[:2]) < TILE + 64:  # enlarge small photos so tiles can shift
            scale = (TILE + 64) / min(photo.shape[:2])
            photo = cv2.resize(photo, None, fx=scale, fy=scale, interpolation=cv2.INTER_CUBIC)
        photos.append(cv2.cvtColor(photo, cv2.COLOR_RGB2BGR))
    for i in range(n):
        photo = photos[i % len(photos)]
        h, w = photo.shape[:2]
        step = i // len(photos)
        y = (step * 37) % (h - TILE + 1)
        x = (step * 53) % (w - TILE + 1)
        folder = root / f"class{i % 10}"
        folder.mkdir(parents=True, exist_ok=True)
        cv2.imwrite(str(folder / f"{i:06d}.jpg"), photo[y : y + TILE, x : x + TILE], [cv2.IMWRITE_JPEG_QUALITY, 90])
    stamp.touch()


# -- one measurement, in a fresh interpreter ---------------------------------------------------------


def child_naive(source: Path, out: Path, seed: int) -> dict[str, Any]:
    import cv2

    # OpenCV's default thread pool, as a user's script has it.
    compose = plain_compose(TILE, seed=seed)
    started = time.perf_counter()
    count = 0
    for path in sorted(source.rglob("*.jpg")):
        image = cv2.cvtColor(cv2.imread(str(path)), cv2.COLOR_BGR2RGB)
        augmented = compose(image=image)["image"]
        target = out / path.relative_to(source)
        target.parent.mkdir(parents=True, exist_ok=True)
        cv2.imwrite(str(target), cv2.cvtColor(augmented, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, 95])
        count += 1
    return {"seconds": time.perf_counter() - started, "images": count}


def child_run(source: Path, out: Path, workers: int, seed: int) -> dict[str, Any]:
    import augledger
    from augledger.run.materialize import materialize
    from augledger.run.options import RunOptions

    pipe = augledger.compile(augledger.parse_spec(spec(TILE, name="bench-materialize", seed=seed)))
    started = time.perf_counter()
    result = materialize(pipe, source, out, options=RunOptions(workers=workers, image_format="jpg"))
    seconds = time.perf_counter() - started
    assert result.exit_code == 0, result.manifest["counts"]
    return {"seconds": seconds, "images": result.manifest["counts"]["ok"]}


def child(mode: str, source: Path, out: Path, seed: int) -> None:
    import resource

    shutil.rmtree(out, ignore_errors=True)
    out.mkdir(parents=True)
    def cpu() -> float:
        self, children = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
        return self.ru_utime + self.ru_stime + children.ru_utime + children.ru_stime

    cpu_before = cpu()
    if mode == "naive":
        stats = child_naive(source, out, seed)
    else:
        stats = child_run(source, out, int(mode.removeprefix("w")), seed)
    # All CPU time, workers' and OpenCV threads' included (set-up too: a few percent). Unlike wall
    # time it does not count time the VM's host took the CPU away (steal), so it varies less.
    stats["cpu_ms_per_image"] = 1000 * (cpu() - cpu_before) / stats["images"]
    # ru_maxrss is in KiB on Linux; RUSAGE_CHILDREN is the largest finished worker process.
    stats["rss_main_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    stats["rss_worker_mb"] = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    print(json.dumps(stats))


def measure(mode: str, source: Path, out: Path, seed: int = 11) -> dict[str, Any]:
    proc = subprocess.run(
        [sys.executable, __file__, "--child", mode, "--source", str(source), "--out", str(out), "--seed", str(seed)],
        capture_output=True, text=True, check=False,
    )
    if proc.returncode != 0:
        raise SystemExit(f"{mode} failed:\n{proc.stderr}")
    stats: dict[str, Any] = json.loads(proc.stdout.strip().splitlines()[-1])
    stats["rate"] = stats["images"] / stats["seconds"]
    return stats


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--images", type=int, default=1000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--scale", type=int, default=5, help="RSS check at images x scale (0: skip).")
    parser.add_argument("--work", type=Path, default=Path("bench-out/materialize"))
    parser.add_argument("--child", help=argparse.SUPPRESS)
    parser.add_argument("--source", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--out", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--seed", type=int, default=11, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args.child, args.source, args.out, args.seed)
        return

    source = args.work / f"source-{args.images}"
    make_dataset(source, args.images)
    modes = ["naive", "w1", "w2"]
    results: dict[str, list[dict[str, Any]]] = {m: [] for m in modes}
    print(f"{args.images} JPEG tiles {TILE}x{TILE}, 8 transforms, {os.cpu_count()} CPUs, {args.rounds} rounds")
    for r in range(args.rounds):
        order = modes[r % 3 :] + modes[: r % 3]
        for mode in order:
            stats = measure(mode, source, args.work / f"out-{mode}", seed=11 + r)
            results[mode].append(stats)
        print(f"  round {r}: " + ", ".join(f"{m} {results[m][-1]['rate']:.1f}/s" for m in modes), flush=True)

    def ratio(a: str, b: str) -> float:
        return statistics.median(x["rate"] / y["rate"] for x, y in zip(results[a], results[b], strict=True))

    for mode, label in zip(modes, ["(a) naive loop", "(b) run --workers 1", "(c) run --workers 2"], strict=True):
        rate = statistics.median(s["rate"] for s in results[mode])
        cpu = statistics.median(s["cpu_ms_per_image"] for s in results[mode])
        print(f"{label:22s} {rate:7.1f} images/s   {cpu:5.2f} CPU-ms/image   peak RSS main "
              f"{results[mode][-1]['rss_main_mb']:.0f} MB, worker {results[mode][-1]['rss_worker_mb']:.0f} MB")
    print(f"(b)/(a) = {ratio('w1', 'naive'):.3f}   (goal >= 0.95)")
    print(f"(c)/(b) = {ratio('w2', 'w1'):.3f}   (goal >= 1.75)")

    if args.scale > 1:
        big = args.images * args.scale
        big_source = args.work / f"source-{big}"
        make_dataset(big_source, big)
        small_stats = results["w2"][-1]
        big_stats = measure("w2", big_source, args.work / "out-w2-big")
        print(f"peak RSS with 2 workers: {args.images} images: main {small_stats['rss_main_mb']:.0f} MB, worker "
              f"{small_stats['rss_worker_mb']:.0f} MB; {big} images: main {big_stats['rss_main_mb']:.0f} MB, "
              f"worker {big_stats['rss_worker_mb']:.0f} MB ({big_stats['rate']:.1f} images/s)")


if __name__ == "__main__":
    main()
