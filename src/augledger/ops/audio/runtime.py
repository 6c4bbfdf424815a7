"""Running resolved audio ops: one audiomentations ``Compose`` per thread, seeded per sample, JSON records.

* **Randomness.** Every call runs inside :func:`~augledger.ops.audio.scope.seeded`: the global
  ``random`` and ``numpy.random`` are seeded from the sample's seed, the ``Compose`` draws and
  applies, and the caller's states are put back. Audio applies are serialised by a process-wide
  lock (the global RNGs are shared by every thread).
* **Records.** Each leaf transform's ``randomize_parameters`` is wrapped on the instance (the class
  and audiomentations' serialisation registry are untouched) to note the transform and its node
  path (``ops[1].ops[0]``) in call order, so ``Compose(shuffle=true)`` and ``SomeOf`` record what
  ran, in the order it ran. After the call, the transforms whose ``should_apply`` came out true
  give ``(name, parameters, path)``; ``SevenBandParametricEQ`` adds its seven bands.
"""

from __future__ import annotations

import hashlib
import math
import types
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from augledger.errors import SampleError
from augledger.ops.audio.allowlist import COMPOSITIONS, NAMESPACE
from augledger.ops.audio.library import audiomentations
from augledger.ops.audio.scope import seeded

__all__ = ["AudioApplier", "AudioCompiled", "build_compose", "jsonable_params"]

SAMPLE_FIELDS = frozenset({"audio", "sample_rate"})


def _build_node(am: Any, node: Mapping[str, Any], path: str, calls: list[tuple[Any, str]]) -> Any:
    bare = str(node["op"]).removeprefix(f"{NAMESPACE}.")
    params = node["params"]
    if bare in COMPOSITIONS:
        children = [_build_node(am, child, f"{path}.ops[{i}]", calls) for i, child in enumerate(node["ops"])]
        if bare == "Compose":
            return am.Compose(children, p=node["p"], shuffle=params["shuffle"])
        if bare == "OneOf":
            return am.OneOf(children, p=node["p"], weights=params["weights"])
        n = params["num_transforms"]
        return am.SomeOf(tuple(n) if isinstance(n, list) else n, children, p=node["p"])
    transform = getattr(am, bare)(p=node["p"], **params)
    draw = transform.randomize_parameters  # the class's method, bound to this instance

    def randomize_parameters(self: Any, samples: Any, sample_rate: int) -> None:
        calls.append((self, path))
        draw(samples, sample_rate)

    # An instance attribute shadows the class's method for this transform only.
    transform.randomize_parameters = types.MethodType(randomize_parameters, transform)
    return transform


def build_compose(ops: Sequence[Mapping[str, Any]], calls: list[tuple[Any, str]] | None = None) -> Any:
    """A fresh top-level ``Compose(p=1)`` of resolved op nodes; leaf calls are noted in ``calls``."""
    am = audiomentations()
    return am.Compose([_build_node(am, node, f"ops[{i}]", [] if calls is None else calls)
                       for i, node in enumerate(ops)], p=1.0)


class AudioCompiled:
    """Resolved audio ops, ready to hand out one :class:`AudioApplier` per thread."""

    sample_fields = SAMPLE_FIELDS

    def __init__(self, ops: Sequence[Mapping[str, Any]]) -> None:
        self.ops = [dict(op) for op in ops]

    def new_applier(self) -> AudioApplier:
        return AudioApplier(self.ops)

    def record_ops(self, applied: list[tuple[str, dict[str, Any], str]]) -> tuple[dict[str, Any], ...]:
        return tuple({"op": f"{NAMESPACE}.{name}", "path": path, "params": jsonable_params(params)}
                     for name, params, path in applied)


class AudioApplier:
    """One thread's Compose. Not thread-safe (every call mutates it); the draws are serialised anyway."""

    __slots__ = ("_calls", "_compose")

    def __init__(self, ops: Sequence[Mapping[str, Any]]) -> None:
        self._calls: list[tuple[Any, str]] = []
        self._compose = build_compose(ops, self._calls)

    def __call__(self, sample: Mapping[str, Any], *, key: str, seed: int) -> tuple[dict[str, Any], Any]:
        audio, rate = _check(sample, key)
        calls = self._calls
        calls.clear()
        out = seeded(seed, self._compose, audio, rate)
        applied = [(type(t).__name__, _params(t), path) for t, path in calls if t.parameters.get("should_apply")]
        calls.clear()
        if out is audio:  # nothing applied: a copy, so the output never aliases the caller's array
            out = audio.copy()
        return {"audio": np.ascontiguousarray(out, dtype=np.float32), "sample_rate": rate}, applied


def _params(transform: Any) -> dict[str, Any]:
    params = {k: v for k, v in transform.parameters.items() if k != "should_apply"}
    if type(transform).__name__ == "SevenBandParametricEQ":
        bands = [transform.low_shelf_filter, *transform.peaking_filters, transform.high_shelf_filter]
        params["bands"] = [{k: v for k, v in band.parameters.items() if k != "should_apply"} for band in bands]
    return params


def _check(sample: Mapping[str, Any], key: str) -> tuple[np.ndarray[Any, Any], int]:
    if not isinstance(sample, Mapping) or "audio" not in sample or "sample_rate" not in sample:
        raise SampleError(
            f"sample {key!r} must be a dict with 'audio' (a float32 array) and 'sample_rate' (an int), "
            f"e.g. {{'audio': array, 'sample_rate': 16000}}; got {type(sample).__name__}"
            + (f" with keys {sorted(sample)}" if isinstance(sample, Mapping) else "")
        )
    if not SAMPLE_FIELDS.issuperset(sample):
        raise SampleError(f"sample {key!r} carries {sorted(set(sample) - SAMPLE_FIELDS)}; an audio sample holds "
                          "only 'audio' and 'sample_rate' (keep labels beside it)")
    audio, rate = sample["audio"], sample["sample_rate"]
    if not isinstance(audio, np.ndarray) or audio.ndim not in (1, 2) or audio.dtype != np.float32:
        raise SampleError(
            f"sample {key!r}: 'audio' must be a float32 array, 1-D (mono) or (channels, frames); got "
            f"{type(audio).__name__}{getattr(audio, 'shape', '')} {getattr(audio, 'dtype', '')}"
            " (convert with audio.astype(np.float32); transpose (frames, channels) arrays)"
        )
    if isinstance(rate, np.integer):
        rate = int(rate)
    if isinstance(rate, bool) or not isinstance(rate, int) or rate < 1:
        raise SampleError(f"sample {key!r}: 'sample_rate' must be a positive int (Hz); got {rate!r}")
    return audio, rate


def jsonable_params(params: Mapping[str, Any]) -> dict[str, Any]:
    """One transform's applied params as JSON data: NumPy scalars as Python numbers, non-finite floats
    as strings, arrays as ``{"array": {"shape", "dtype", "sha256"}}``."""
    return {str(k): _jsonable(v) for k, v in params.items()}


def _jsonable(value: Any) -> Any:
    if isinstance(value, float):
        return value if math.isfinite(value) else repr(value)
    if value is None or isinstance(value, (bool, int, str)):
        return value
    if isinstance(value, np.generic):
        return _jsonable(value.item())
    if isinstance(value, np.ndarray):
        return {"array": {"shape": list(value.shape), "dtype": value.dtype.name,
                          "sha256": hashlib.sha256(np.ascontiguousarray(value).data).hexdigest()}}
    if isinstance(value, Mapping):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    return repr(value)
