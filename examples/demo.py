"""`make demo`: the main job, end to end, on real photos that ship inside scikit-image.

1. Builds a small source dataset (nothing is downloaded): photos from ``skimage.data`` and tiles cut
   from them, in class folders, as PNG and JPEG, with a JSON Lines annotations file (a label per
   image, a box around the astronaut's head) and one deliberately truncated JPEG.
2. Runs the same commands a user types, printing each one first:
   ``augledger spec validate`` / ``spec hash``, ``augledger run`` (2 workers, 3 copies),
   ``augledger verify``, ``augledger preview`` and ``augledger ledger show``.
3. Prints a short summary: outputs, the quarantined file and why, where everything is.

The truncated JPEG is quarantined on purpose, so ``augledger run`` exits with 3 ("finished, some
samples quarantined"); the demo expects exactly that and fails on any other outcome.

Run: ``make demo`` (or ``.venv/bin/python examples/demo.py --out demo-out``).
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")

import numpy as np
from PIL import Image
from skimage import data as skdata

HERE = Path(__file__).resolve().parent
SPEC = HERE / "specs" / "photos.yaml"
EXIT_QUARANTINED = 3

# (class folder, skimage.data function): colour photos, and grayscale ones (converted to RGB by the run).
PHOTOS = [
    ("people", "astronaut"),
    ("food", "coffee"),
    ("animals", "chelsea"),
    ("animals", "cat"),
    ("space", "rocket"),
    ("space", "hubble_deep_field"),
    ("science", "immunohistochemistry"),
    ("science", "coins"),
    ("people", "camera"),
    ("texture", "brick"),
    ("texture", "grass"),
    ("texture", "gravel"),
]
TILE = 160
# The astronaut's head in the 512x512 photo, pascal_voc (x_min, y_min, x_max, y_max).
HEAD_BOX = [150, 20, 300, 200]


def build_source(root: Path) -> tuple[int, Path]:
    """Write the source images and the annotations file; return (image count, annotations path)."""
    rows: list[dict[str, Any]] = []
    count = 0
    for cls, name in PHOTOS:
        photo = np.asarray(getattr(skdata, name)())
        folder = root / cls
        folder.mkdir(parents=True, exist_ok=True)
        # The whole photo as PNG (lossless), plus up to four tiles as JPEG (what camera folders hold).
        Image.fromarray(photo).save(folder / f"{name}.png")
        row: dict[str, Any] = {"key": f"{cls}/{name}.png", "label": cls}
        if name == "astronaut":
            row.update(bboxes=[HEAD_BOX], labels=["head"])
        rows.append(row)
        count += 1
        h, w = photo.shape[:2]
        for i, (y, x) in enumerate([(0, 0), (0, w - TILE), (h - TILE, 0), (h - TILE, w - TILE)]):
            tile = np.ascontiguousarray(photo[y : y + TILE, x : x + TILE])
            Image.fromarray(tile).save(folder / f"{name}_tile{i}.jpg", quality=92)
            rows.append({"key": f"{cls}/{name}_tile{i}.jpg", "label": cls})
            count += 1
    # A camera card pulled out mid-write: half a JPEG. The run must quarantine it and go on.
    broken = root / "broken"
    broken.mkdir(exist_ok=True)
    whole = (root / "food" / "coffee_tile0.jpg").read_bytes()
    (broken / "truncated.jpg").write_bytes(whole[: len(whole) // 2])
    rows.append({"key": "broken/truncated.jpg", "label": "food"})
    count += 1
    annotations = root.parent / "annotations.jsonl"
    annotations.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return count, annotations


def augledger(*args: str, expect: tuple[int, ...] = (0,)) -> subprocess.CompletedProcess[str]:
    """Run one CLI command as a user would, echo it and its output, and check its exit code."""
    print(f"\n$ augledger {shlex.join(args)}", flush=True)
    started = time.perf_counter()
    proc = subprocess.run([sys.executable, "-m", "augledger", *args], text=True, capture_output=True)
    sys.stdout.write(proc.stderr)  # progress and warnings come first, as in a terminal
    sys.stdout.write(proc.stdout)
    if proc.returncode not in expect:
        raise SystemExit(f"demo failed: `augledger {shlex.join(args)}` exited {proc.returncode}, expected {expect}")
    print(f"  (exit {proc.returncode}, {time.perf_counter() - started:.1f}s)", flush=True)
    return proc


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--out", type=Path, default=Path("demo-out"), help="Folder for everything the demo makes.")
    parser.add_argument("--copies", type=int, default=3, help="Augmented copies per image.")
    parser.add_argument("--workers", type=int, default=2, help="Worker processes.")
    args = parser.parse_args(argv)

    out: Path = args.out
    if out.exists():
        shutil.rmtree(out)  # the demo starts clean; `augledger run` itself would resume instead
    source = out / "source"
    images, annotations = build_source(source)
    print(f"source: {images} images in {source} (scikit-image sample photos and tiles of them), "
          f"annotations in {annotations}")

    augledger("spec", "validate", str(SPEC))
    fingerprint = augledger("spec", "hash", str(SPEC)).stdout.strip()
    dataset = out / "augmented"
    augledger(
        "run", str(SPEC), "--source", str(source), "--out", str(dataset), "--annotations", str(annotations),
        "--copies", str(args.copies), "--workers", str(args.workers), "--include-original",
        expect=(EXIT_QUARANTINED,),  # the truncated JPEG
    )
    augledger("verify", str(dataset))
    preview = out / "preview.png"
    augledger("preview", str(SPEC), str(source / "people" / "astronaut.png"), "-n", "15", "-o", str(preview))
    augledger("ledger", "show", str(dataset), "people/astronaut.png")

    manifest = json.loads((dataset / "manifest.json").read_text(encoding="utf-8"))
    counts = manifest["counts"]
    files = [p for p in (dataset / "augmented").rglob("*") if p.is_file()]
    size_mb = sum(p.stat().st_size for p in files) / 1e6
    print("\nsummary")
    print(f"  pipeline     {fingerprint} (seed {manifest['seed']})")
    print(f"  outputs      {counts['ok']} files ({len(files)} augmented, {size_mb:.1f} MB) from {images} source images")
    reasons = {q["key"]: q["error"] for q in manifest["quarantined"]}  # one row per copy; one line per file
    for key, reason in reasons.items():
        print(f"  quarantined  {key}: {reason} (deliberately broken: the run went on without it)")
    print("  verified     every output re-derived from the source and the ledger, byte for byte")
    print(f"  dataset      {dataset}/ (manifest.json, ledger.parquet, augmented/, original/)")
    print(f"  preview      {preview}")
    print(f"  replay one   augledger replay {dataset} people/astronaut.png --copy 1 -o astronaut.c1.png")
    return 0


if __name__ == "__main__":
    sys.exit(main())
