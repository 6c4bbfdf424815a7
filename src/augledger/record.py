"""What one augmented sample received: the record that ledgers store and replay reads."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from augledger._canonical import canonical_json

__all__ = ["Augmented", "Record", "sample_digest"]


class Record:
    """The provenance of one augmented sample. Immutable.

    Attributes:
        key: the sample's stable identity.
        epoch: the epoch (online) or copy index (offline).
        fingerprint: the pipeline version that produced it.
        seed: the derived 128-bit sample seed, as 32 hex digits.
        ops: the applied ops in order, each ``{"op": name, "params": {...}}`` with JSON-safe params.
        input_digest, output_digest: :func:`sample_digest` of the input and output, when asked for.

    ``ops`` is converted to JSON data the first time it is read: a training loop that never looks
    at records does not pay for the conversion (about 30 µs for eight ops).
    """

    __slots__ = ("_applied", "_convert", "_ops", "epoch", "fingerprint", "input_digest", "key", "output_digest", "seed")

    key: str
    epoch: int
    fingerprint: str
    seed: str
    input_digest: str | None
    output_digest: str | None
    _ops: tuple[dict[str, Any], ...] | None
    _applied: Any
    _convert: Callable[[Any], tuple[dict[str, Any], ...]] | None

    def __init__(
        self,
        key: str,
        epoch: int,
        fingerprint: str,
        seed: str,
        ops: Sequence[Mapping[str, Any]] | None = None,
        input_digest: str | None = None,
        output_digest: str | None = None,
        *,
        applied: Any = None,
        convert: Callable[[Any], tuple[dict[str, Any], ...]] | None = None,
    ) -> None:
        if (ops is None) == (applied is None or convert is None):
            raise TypeError("Record needs either ops, or applied together with convert")
        init = object.__setattr__
        init(self, "key", key)
        init(self, "epoch", epoch)
        init(self, "fingerprint", fingerprint)
        init(self, "seed", seed)
        init(self, "input_digest", input_digest)
        init(self, "output_digest", output_digest)
        init(self, "_ops", None if ops is None else tuple(dict(op) for op in ops))
        init(self, "_applied", applied)
        init(self, "_convert", convert)

    @property
    def ops(self) -> tuple[dict[str, Any], ...]:
        ops: tuple[dict[str, Any], ...] | None = self._ops
        if ops is None:
            assert self._convert is not None  # set together with _applied in __init__
            ops = self._convert(self._applied)
            object.__setattr__(self, "_ops", ops)
            object.__setattr__(self, "_applied", None)
            object.__setattr__(self, "_convert", None)
        return ops

    def __setattr__(self, name: str, value: object) -> None:
        raise AttributeError(f"Record is immutable; cannot set {name!r}")

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Record):
            return NotImplemented
        return self.to_dict() == other.to_dict()

    def __hash__(self) -> int:
        return hash(self.to_json())

    def __repr__(self) -> str:
        return f"Record(key={self.key!r}, epoch={self.epoch}, seed={self.seed}, ops={[o['op'] for o in self.ops]})"

    def __reduce__(self) -> tuple[Any, ...]:
        return (Record.from_dict, (self.to_dict(),))

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
            ops=[dict(op) for op in data["ops"]],
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
