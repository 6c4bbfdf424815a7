"""The audio backend: audiomentations (imported only inside this package).

* :mod:`~augledger.ops.audio.allowlist`: the transforms a spec may name, and why others are left out.
* :mod:`~augledger.ops.audio.resolve`: validating ops strictly and filling every default.
* :mod:`~augledger.ops.audio.describe`: every op as data (``augledger ops list``), the example sample.
* :mod:`~augledger.ops.audio.scope`: the seeded, restoring scope around the global RNGs.
* :mod:`~augledger.ops.audio.runtime`: per-thread Compose, JSON records.
* :mod:`~augledger.ops.audio.library`: the one place audiomentations is imported, and its versions.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from augledger.ops.audio.allowlist import AUDIO_OPS, COMPOSITIONS, NAMESPACE, REFUSED
from augledger.ops.audio.describe import describe_ops, example_sample
from augledger.ops.audio.library import audiomentations, versions
from augledger.ops.audio.resolve import resolve_ops, resolve_targets, targets_schema
from augledger.ops.audio.runtime import AudioCompiled, build_compose, jsonable_params
from augledger.ops.audio.scope import seeded
from augledger.spec import OpSpec

__all__ = [
    "AUDIO_OPS", "BACKEND", "COMPOSITIONS", "NAMESPACE", "REFUSED", "AudioBackend", "audiomentations",
    "build_compose", "jsonable_params", "seeded",
]


class AudioBackend:
    """:class:`~augledger.ops.base.Backend` for ``modality: audio``."""

    modality = "audio"
    namespace = NAMESPACE

    def __init__(self) -> None:
        audiomentations()  # a missing extra fails here, when a spec first names the modality

    def op_names(self) -> tuple[str, ...]:
        return (*AUDIO_OPS, *COMPOSITIONS)

    def describe_ops(self) -> list[dict[str, Any]]:
        return describe_ops()

    def example_sample(self) -> dict[str, Any]:
        return example_sample()

    def resolve_ops(self, ops: Sequence[OpSpec]) -> list[dict[str, Any]]:
        return resolve_ops(ops)

    def resolve_targets(self, targets: Mapping[str, Any]) -> dict[str, Any]:
        return resolve_targets(targets)

    def targets_schema(self) -> dict[str, Any]:
        return targets_schema()

    def compile(self, ops: Sequence[Mapping[str, Any]], targets: Mapping[str, Any]) -> AudioCompiled:
        compiled = AudioCompiled(ops)
        compiled.new_applier()  # build once now: a spec that resolves but cannot build fails here, not in a worker
        return compiled

    def versions(self) -> dict[str, str]:
        return dict(versions())

    def storage_problem(self, ops: Sequence[Mapping[str, Any]]) -> str | None:
        return None  # float32 audio is always storable (PCM outputs are clipped to [-1, 1]; see io/audio.py)


BACKEND = AudioBackend()
