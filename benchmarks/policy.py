"""The cost of enforcing an intensity policy: a run with ``--policy`` against the same run without.

Both runs make the same files from the same data (JPEG tiles of real photos, the eight-transform
pipeline of ``_pipeline.py`` at 256x256, written as PNG) in this process (``workers=0``), so the
difference is the policy's: the static check before the run and the check of every row's drawn
values as it is journaled. Rounds alternate the order of the two runs; the report gives the median
seconds of each and the median of the per-round ratios (goal: <= 1.02), plus the check's own cost
per row measured on the finished ledger (``RecordCheck.check_rows``).

Run: ``.venv/bin/python benchmarks/policy.py [--images 300] [--rounds 5]``.
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

from _pipeline import spec
from materialize import make_dataset

import augledger
from augledger.ledger.parquet import read_ledger
from augledger.policy import RecordCheck
from augledger.run.materialize import materialize
from augledger.run.options import RunOptions
from augledger.spec import PolicySpec

POLICY = PolicySpec.model_validate({
    "policy": 1, "name": "bench", "forbid": ["VerticalFlip", "Transpose"],
    "bounds": {"Affine.rotate": [-20, 20], "Affine.scale": [0.8, 1.2], "RandomResizedCrop.scale": [0.05, 1.0]},
    "max_ops_per_sample": 8,
})


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=300)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    root = Path(tempfile.gettempdir()) / "augledger-bench"
    source = root / f"source-{args.images}"
    make_dataset(source, args.images)
    pipe = augledger.compile(augledger.parse_spec(spec(256)))
    options = RunOptions(workers=0, copies=1)
    times: dict[str, list[float]] = {"plain": [], "policy": []}
    ratios = []
    for r in range(args.rounds):
        order = ["plain", "policy"] if r % 2 == 0 else ["policy", "plain"]
        took = {}
        for name in order:
            out = root / f"out-policy-{name}"
            shutil.rmtree(out, ignore_errors=True)
            t0 = time.perf_counter()
            result = materialize(pipe, source, out, options=options, policies=[POLICY] if name == "policy" else ())
            took[name] = time.perf_counter() - t0
            times[name].append(took[name])
            if name == "policy":
                checked = result.manifest["policy"]["values_checked"]
        ratios.append(took["policy"] / took["plain"])
        print(f"round {r + 1}: plain {took['plain']:.2f}s, policy {took['policy']:.2f}s, ratio {ratios[-1]:.3f}", file=sys.stderr)
    rows = read_ledger(root / "out-policy-policy").rows()
    check = RecordCheck([POLICY])
    t0 = time.perf_counter()
    for _ in range(5):
        check.check_rows(rows)
    per_row = (time.perf_counter() - t0) / (5 * len(rows))
    plain = statistics.median(times["plain"])
    print(f"images: {args.images} (256x256 outputs), rounds: {args.rounds}, values checked per run: {checked}")
    print(f"run without policy: {plain:.2f}s ({plain / args.images * 1e3:.2f} ms/sample)")
    print(f"run with policy:    {statistics.median(times['policy']):.2f}s")
    print(f"ratio policy/plain (median of rounds): {statistics.median(ratios):.3f}  (goal <= 1.02)")
    print(f"RecordCheck.check_rows: {per_row * 1e6:.1f} us per row "
          f"({per_row / (plain / args.images) * 100:.2f}% of a sample's run time)")


if __name__ == "__main__":
    main()
