"""Every audio op a spec may name, described as data, and the example sample its examples run on."""

from __future__ import annotations

import inspect
from typing import Any

import numpy as np

from augledger.ops.audio.allowlist import AUDIO_OPS, COMPOSITIONS
from augledger.ops.audio.library import audiomentations
from augledger.ops.audio.resolve import param_rules

__all__ = ["EXAMPLES", "describe_ops", "example_sample"]

#: Params that make each op do something on :func:`example_sample` (0.5 s): durations that fit
#: in it, and the one op whose defaults do nothing (``AdjustDuration`` needs a target length).
EXAMPLES: dict[str, dict[str, Any]] = {
    "AdjustDuration": {"duration_seconds": 0.4},
    "GainTransition": {"min_duration": 0.05, "max_duration": 0.3},
    "RepeatPart": {"min_part_duration": 0.05, "max_part_duration": 0.15},
    "TimeStretch": {"leave_length_unchanged": False},
}

#: The sample rate and length of :func:`example_sample`.
EXAMPLE_RATE, EXAMPLE_SECONDS = 16_000, 0.5


def example_sample() -> dict[str, Any]:
    """0.5 s of mono 16 kHz float32 audio with structure: a rising chirp (200 Hz to 2 kHz) with two
    harmonics under an envelope, a 440 Hz tone burst, and 40 ms of silence at each end (so ``Trim``
    has something to trim). Built with NumPy only: the same bytes everywhere."""
    n = int(EXAMPLE_RATE * EXAMPLE_SECONDS)
    t = np.arange(n, dtype=np.float64) / EXAMPLE_RATE
    phase = 2 * np.pi * (200.0 * t + 1800.0 * t**2 / (2 * EXAMPLE_SECONDS))
    chirp = 0.4 * np.sin(phase) + 0.15 * np.sin(2 * phase) + 0.08 * np.sin(3 * phase)
    envelope = np.sin(np.pi * t / EXAMPLE_SECONDS) ** 0.5
    burst = 0.2 * np.sin(2 * np.pi * 440.0 * t) * ((t > 0.2) & (t < 0.3))
    audio = (chirp * envelope + burst).astype(np.float32)
    edge = int(0.04 * EXAMPLE_RATE)
    audio[:edge] = 0.0
    audio[-edge:] = 0.0
    return {"audio": audio, "sample_rate": EXAMPLE_RATE}


def _describe(am: Any, name: str) -> dict[str, Any]:
    cls = getattr(am, name)
    doc = (inspect.getdoc(cls) or "").strip().splitlines()
    entry: dict[str, Any] = {
        "op": name, "modality": "audio", "p": float(inspect.signature(cls).parameters["p"].default),
        "params": {k: default for k, (default, _) in param_rules(name).items()}, "required": [],
        "example": dict(EXAMPLES.get(name, {})),
    }
    if doc:
        entry["doc"] = doc[0]
    return entry


def describe_ops() -> list[dict[str, Any]]:
    """Every op a spec may name, sorted by name: ``op``, ``modality``, ``p`` (its default), ``params``
    (name -> default), ``required``, ``example`` (params that work on :func:`example_sample`),
    ``doc``; compositions have ``"composition": true`` (their children go under ``ops``)."""
    am = audiomentations()
    entries = [_describe(am, name) for name in AUDIO_OPS]
    defaults: dict[str, dict[str, Any]] = {"Compose": {"shuffle": False}, "OneOf": {"weights": None}, "SomeOf": {}}
    for name in COMPOSITIONS:
        doc = (inspect.getdoc(getattr(am, name)) or "").strip().splitlines()
        entries.append({"op": name, "modality": "audio", "p": 1.0, "params": defaults[name],
                        "required": ["num_transforms"] if name == "SomeOf" else [],
                        "example": {"num_transforms": 1} if name == "SomeOf" else {},
                        "composition": True, **({"doc": doc[0]} if doc else {})})
    return sorted(entries, key=lambda e: str(e["op"]))
