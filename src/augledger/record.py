"""What one augmented sample received: the record that ledgers store and replay reads."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from augledger._canonical import canonical_json

__all__ = ["Augmented", "Record", "sample_digest"]


@dataclass(frozen=True)
class Record:
    """The provenance of one augmented sample.

    Attributes:
        key: the sample's stable identity.
        epoch: the epoch (online) or copy index (offline).
        fingerprint: the pipeline version that produced it.
        seed: the derived 128-bit sample seed, as 32 hex digits.
        ops: the applied ops in order, each ``{"op": name, "params": {...}}`` with JSON-safe params.
        input_digest, output_digest: :func:`sample_digest` of the input and output, when asked for.
    """

    key: str
    epoch: int
    fingerprint: str
    seed: str
    ops: tuple[dict[str, Any], ...]
    input_digest: str | None = None
    output_digest: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "key": self.key,
            "epoch": self.epoch,
            "fingerprint": self.fingerprint,
            "seed": self.seed,
            "ops": list(self.ops),
            "input_digest": self.input_digest,
            "output_digest": self.output_digest,
        }

    def to_json(self) -> str:
        """Canonical JSON: the same record always gives the same bytes."""
        return canonical_json(self.to_dict()).decode("utf-8")

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Record:
        return cls(
            key=str(data["key"]),
            epoch=int(data["epoch"]),
            fingerprint=str(data["fingerprint"]),
            seed=str(data["seed"]),
            ops=tuple(dict(op) for op in data["ops"]),
            input_digest=data.get("input_digest"),
            output_digest=data.get("output_digest"),
        )

    @classmethod
    def from_json(cls, text: str | bytes) -> Record:
        return cls.from_dict(json.loads(text))


@dataclass(frozen=True)
class Augmented:
    """The result of ``Pipeline.apply``: the augmented sample dict and its record."""

    sample: dict[str, Any]
    record: Record


def sample_digest(sample: Mapping[str, Any]) -> str:
    """SHA-256 over a sample's content: each key in order, arrays with dtype and shape.

    Costs about 110 µs for a 256x256 RGB image, which is why ``apply`` computes it only on request.
    """
    h = hashlib.sha256()
    for name in sorted(sample):
        value = sample[name]
        h.update(name.encode("utf-8") + b"\0")
        if isinstance(value, np.ndarray):
            h.update(f"{value.dtype.str}|{value.shape}|".encode())
            h.update(np.ascontiguousarray(value).data)
        elif isinstance(value, (list, tuple)) and any(isinstance(v, np.ndarray) for v in value):
            for v in value:
                arr = np.asarray(v)
                h.update(f"{arr.dtype.str}|{arr.shape}|".encode())
                h.update(np.ascontiguousarray(arr).data)
        else:
            h.update(canonical_json(_plain(value)))
        h.update(b"\0")
    return "sha256:" + h.hexdigest()


def _plain(value: Any) -> Any:
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value
