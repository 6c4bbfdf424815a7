"""augledger's audio ``apply`` against the raw audiomentations ``Compose`` call, interleaved in one run.

Both run the same transforms on the same signals (2 s mono 16 kHz clips) with the same draws: before
each raw call the global ``random`` and ``numpy.random`` are seeded with the seeds augledger derives
for that sample (computed outside the timed loop), as a raw user who wants reproducible outputs
must seed them too; the outputs are checked to be equal. augledger adds, per call: the seed
derivation, the sample checks, saving and restoring the caller's RNG states and the lock
(``ops/audio/scope.py``), the call-order hook and the record. Rounds alternate raw and augledger; the ratio printed is the
median over rounds. Goal: within 5%. Also printed: the scope's own cost per call.

    .venv/bin/python benchmarks/audio.py [--clips 32] [--rounds 15] [--seconds 2]
"""

# ruff: noqa: NPY002 - the point is to measure the legacy global-RNG path audiomentations uses
from __future__ import annotations

import argparse
import random
import statistics
import time
import timeit

import numpy as np

import augledger
from augledger.ops.audio import audiomentations, scope

OPS = [
    {"op": "Gain", "p": 1.0, "params": {"min_gain_db": -6, "max_gain_db": 6}},
    {"op": "AddGaussianNoise", "p": 1.0, "params": {"min_amplitude": 0.001, "max_amplitude": 0.01}},
    {"op": "Shift", "p": 1.0, "params": {"min_shift": -0.2, "max_shift": 0.2}},
    {"op": "LowPassFilter", "p": 1.0},
    {"op": "TimeMask", "p": 1.0},
]


def signals(count: int, seconds: float, rate: int = 16_000) -> list[np.ndarray]:
    t = np.arange(int(seconds * rate)) / rate
    return [(0.3 * np.sin(2 * np.pi * (150 + 40 * i) * t) + 0.05 * np.sin(2 * np.pi * 3000 * t)).astype(np.float32)
            for i in range(count)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clips", type=int, default=32)
    parser.add_argument("--rounds", type=int, default=15)
    parser.add_argument("--seconds", type=float, default=2.0)
    args = parser.parse_args()
    pipe = augledger.compile(augledger.PipelineSpec.model_validate(
        {"schema": 1, "name": "bench", "modality": "audio", "ops": OPS}))
    am = audiomentations()
    raw = am.Compose([getattr(am, str(node["op"]).split(".")[1])(p=node["p"], **node["params"])
                      for node in pipe.resolved_spec["ops"]], p=1.0)
    clips = signals(args.clips, args.seconds)
    samples = [{"audio": c, "sample_rate": 16_000} for c in clips]
    keys = [f"clip{i}.wav" for i in range(len(clips))]
    state = random.getstate(), np.random.get_state()

    def raw_seeds(epoch: int) -> list[tuple[int, np.ndarray]]:
        return [scope.derive_seeds(pipe.sample_seed(key=k, epoch=epoch)) for k in keys]

    def run_raw(epoch: int) -> float:
        seeds = raw_seeds(epoch)
        start = time.perf_counter()
        for clip, (py_seed, np_words) in zip(clips, seeds, strict=True):
            random.seed(py_seed)
            np.random.seed(np_words)
            raw(clip, 16_000)
        return time.perf_counter() - start

    py_seed, np_words = raw_seeds(0)[0]
    random.seed(py_seed)
    np.random.seed(np_words)
    same = raw(clips[0], 16_000)
    assert np.array_equal(same, pipe.apply(samples[0], key=keys[0], epoch=0).sample["audio"]), "raw and augledger differ"

    def run_ours(epoch: int) -> float:
        start = time.perf_counter()
        for key, sample in zip(keys, samples, strict=True):
            pipe.apply(sample, key=key, epoch=epoch).record.ops  # noqa: B018 - records are part of the cost
        return time.perf_counter() - start

    run_raw(0), run_ours(0)  # warm up (imports, filter design caches)
    ratios, raw_times, our_times = [], [], []
    for r in range(args.rounds):
        a, b = (run_raw(r), run_ours(r)) if r % 2 == 0 else (run_ours(r), run_raw(r))[::-1]
        raw_times.append(a)
        our_times.append(b)
        ratios.append(b / a)
    random.setstate(state[0])
    np.random.set_state(state[1])
    per = 1e3 / len(clips)
    print(f"{len(clips)} clips of {args.seconds:g} s, {len(OPS)} ops at p=1, {args.rounds} interleaved rounds")
    print(f"raw audiomentations Compose: {statistics.median(raw_times) * per:.3f} ms/clip")
    print(f"augledger Pipeline.apply:    {statistics.median(our_times) * per:.3f} ms/clip")
    print(f"ratio augledger/raw (median of rounds): {statistics.median(ratios):.4f}")
    cost = min(timeit.repeat(lambda: scope.seeded(2**127 + 11, int), number=2000, repeat=5)) / 2000 * 1e6
    np.random.normal()  # a cached normal pending: the exact (get_state/set_state) path
    slow = min(timeit.repeat(lambda: scope.seeded(2**127 + 11, int), number=500, repeat=5)) / 500 * 1e6
    random.setstate(state[0])
    np.random.set_state(state[1])
    print(f"RNG scope: {cost:.1f} µs/call ({slow:.1f} µs/call when the caller has a cached numpy normal pending)")


if __name__ == "__main__":
    main()
