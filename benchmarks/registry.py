"""Registry commands on a registry of 1,000 versions: each must answer in under 0.5 s.

Builds a SQLite registry of ``--versions`` versions (10 spec names x 100 versions, every one with a
history row; 40% approved by a second user; two aliases per name, moved a few times), then
times, interleaved over ``--rounds`` rounds:

* the **commands as a user runs them** (a fresh ``augledger`` process each): ``registry list``,
  ``registry show NAME@ALIAS``, ``registry audit``, against the command's bare start-up
  (``augledger --help``) in the same rounds, so the registry's own share is visible; and
  ``spec hash NAME@VERSION``, which is not a registry command: it compiles the spec through the
  image backend (importing Albumentations), which is most of its time;
* the **API calls** ``Registry.get(REF)`` and ``Registry.versions()`` against the raw ``sqlite3``
  query that reads the same rows (the floor any registry pays), as a ratio.

Run: ``.venv/bin/python benchmarks/registry.py [--versions 1000] [--rounds 5]``.
"""

from __future__ import annotations

import argparse
import copy
import os
import shutil
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")

from augledger.registry import Registry

CALLS = 50  # API calls per timing
SCRIPT = shutil.which("augledger", path=os.path.dirname(sys.executable)) or "augledger"
BASE: dict[str, Any] = {
    "schema": 1, "name": "bench", "seed": 1,
    "ops": [{"op": "HorizontalFlip", "p": 0.5},
            {"op": "Affine", "p": 0.7, "params": {"rotate": [-15, 15], "scale": [0.9, 1.1]}},
            {"op": "RandomBrightnessContrast", "p": 0.5}],
}


def build(path: Path, versions: int) -> None:
    names = 10
    with Registry(path, create=True) as reg:
        for i in range(versions):
            spec = copy.deepcopy(BASE)
            spec["name"] = f"team-{i % names}"
            spec["ops"][1]["params"]["rotate"] = [-(1 + i // names), 1 + i // names]
            ref = reg.add(spec, actor="alice").version.ref
            if i // names < 4 or (i // names) % 10 == 0:  # versions 1-4 of every name and every tenth: approved
                reg.promote(ref, reason="reviewed", actor="bob")
        for n in range(names):
            for v in (1, 2, 3):
                reg.set_alias(f"team-{n}", "production", v, actor="bob")
            reg.set_alias(f"team-{n}", "staging", 4, actor="bob")


def timed(fn: Any) -> float:
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--versions", type=int, default=1000)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    folder = Path(tempfile.mkdtemp(prefix="augledger-registry-bench-"))
    path = folder / "registry.db"
    t0 = time.perf_counter()
    build(path, args.versions)
    print(f"built a registry of {args.versions} versions in {time.perf_counter() - t0:.1f}s "
          f"({path.stat().st_size / 1e6:.1f} MB)")
    env = {**os.environ, "AUGLEDGER_REGISTRY": str(path)}

    def cli(*argv: str) -> Any:
        return lambda: subprocess.run([SCRIPT, *argv], env=env, capture_output=True, check=True)

    commands = {
        "augledger --help (start-up)": cli("--help"),
        "registry list": cli("registry", "list"),
        "registry list --json": cli("registry", "list", "--json"),
        "registry show team-3@production": cli("registry", "show", "team-3@production"),
        "registry audit": cli("registry", "audit"),
        "spec hash team-7@42 (not a registry command)": cli("spec", "hash", "team-7@42"),
    }
    reg = Registry(path)
    raw = sqlite3.connect(path)

    def raw_get() -> None:
        raw.execute("SELECT version FROM augledger_aliases WHERE name=? AND alias=?", ("team-3", "production")).fetchone()
        raw.execute("SELECT * FROM augledger_versions WHERE name=? AND version=?", ("team-3", 21)).fetchone()

    def raw_all() -> None:
        raw.execute("SELECT * FROM augledger_versions ORDER BY name, version").fetchall()

    api = {"Registry.get(team-3@production)": (lambda: reg.get("team-3@production"), raw_get),
           "Registry.versions() (all)": (reg.versions, raw_all)}
    for fn in [*commands.values(), *(f for pair in api.values() for f in pair)]:
        fn()  # warm the page cache and imports
    wall: dict[str, list[float]] = {name: [] for name in commands}
    ratios: dict[str, list[float]] = {name: [] for name in api}
    per_call: dict[str, list[float]] = {name: [] for name in api}
    for _ in range(args.rounds):
        for name, fn in commands.items():
            wall[name].append(timed(fn))

        for name, (ours, floor) in api.items():
            a = timed(lambda ours=ours: [ours() for _ in range(CALLS)]) / CALLS
            b = timed(lambda floor=floor: [floor() for _ in range(CALLS)]) / CALLS
            per_call[name].append(a)
            ratios[name].append(a / b)
    startup = statistics.median(wall["augledger --help (start-up)"])
    print(f"\ncommands on {args.versions} versions (median of {args.rounds}, a fresh process each; goal < 0.5 s):")
    worst = 0.0
    for name, times in wall.items():
        med = statistics.median(times)
        extra = "" if "start-up" in name else f"   (start-up + {med - startup:.3f}s)"
        worst = max(worst, med) if name.startswith("registry") else worst
        print(f"  {name:<36} {med:.3f}s{extra}")
    print(f"  slowest registry command: {worst:.3f}s -> {'meets' if worst < 0.5 else 'MISSES'} the 0.5 s goal")
    t0 = time.perf_counter()
    subprocess.run([sys.executable, "-c", "import sqlalchemy"], check=True)
    t1 = time.perf_counter()
    subprocess.run([sys.executable, "-c", "pass"], check=True)
    print(f"  (importing SQLAlchemy alone: {(t1 - t0) - (time.perf_counter() - t1):.3f}s of each)")
    print("\nAPI against the raw sqlite3 query of the same rows (median per call; ratio = augledger / raw):")
    for name in api:
        print(f"  {name:<36} {statistics.median(per_call[name]) * 1e3:7.2f} ms   x{statistics.median(ratios[name]):.1f}")
    reg.close()
    raw.close()
    shutil.rmtree(folder)


if __name__ == "__main__":
    main()
