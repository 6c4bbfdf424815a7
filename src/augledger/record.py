"""What one augmented sample received: the record that ledgers store and replay reads."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Mapping, Sequence
from typing import Any, NamedTuple

import numpy as np

from augledger._canonical import canonical_json

__all__ = ["Augmented", "Record", "plain_json", "same_ops", "sample_digest"]


class _RecordSlots:
    __slots__ = ("_ops", "_seed", "epoch", "fingerprint", "input_digest", "key", "output_digest")

    _ops: Any
    _seed: str | int
    key: str
    epoch: int
    fingerprint: str
    input_digest: str | None
    output_digest: str | None


# Setting the slots through their descriptors skips the immutability guard of Record.__setattr__
# (object.__setattr__ per field made a record cost ~3 µs to build, on every apply).
_slot: dict[str, Any] = dict(vars(_RecordSlots))
_set_key, _set_epoch, _set_fingerprint = _slot["key"].__set__, _slot["epoch"].__set__, _slot["fingerprint"].__set__
_set_seed, _set_ops = _slot["_seed"].__set__, _slot["_ops"].__set__
_set_input, _set_output = _slot["input_digest"].__set__, _slot["output_digest"].__set__


class Record(_RecordSlots):
    """The provenance of one augmented sample. Immutable.

    Attributes:
        key: the sample's stable identity.
        epoch: the epoch (online) or copy index (offline).
        fingerprint: the pipeline version that produced it.
        seed: the derived 128-bit sample seed, as 32 hex digits.
        ops: the applied ops in order, each ``{"op": name, "path": "ops[2].ops[0]", "params": {...}}``
            with JSON-safe params; ``path`` is the op's node in the resolved spec (backends that
            cannot tell may omit it).
        input_digest, output_digest: :func:`sample_digest` of the input and output, when asked for.

    ``ops`` is converted to JSON data the first time it is read: a training loop that never looks
    at records does not pay for the conversion (about 30 µs for eight ops). Likewise ``seed`` may
    be given as the integer and is formatted when read.
    """

    __slots__ = ()

    def __init__(
        self,
        key: str,
        epoch: int,
        fingerprint: str,
        seed: str | int,
        ops: Sequence[Mapping[str, Any]] | None = None,
        input_digest: str | None = None,
        output_digest: str | None = None,
        *,
        applied: Any = None,
        convert: Callable[[Any], tuple[dict[str, Any], ...]] | None = None,
    ) -> None:
        if ops is not None:
            if applied is not None or convert is not None:
                raise TypeError("Record needs either ops, or applied together with convert")
            _set_ops(self, tuple(dict(op) for op in ops))
        elif applied is None or convert is None:
            raise TypeError("Record needs either ops, or applied together with convert")
        else:
            _set_ops(self, _Unconverted(applied, convert))
        _set_key(self, key)
        _set_epoch(self, epoch)
        _set_fingerprint(self, fingerprint)
        _set_seed(self, seed)
        _set_input(self, input_digest)
        _set_output(self, output_digest)

    @property
    def seed(self) -> str:
        seed = self._seed
        return seed if type(seed) is str else f"{seed:032x}"

    @property
    def ops(self) -> tuple[dict[str, Any], ...]:
        ops = self._ops
        if type(ops) is _Unconverted:
            ops = ops.convert(ops.applied)
            _set_ops(self, ops)
        converted: tuple[dict[str, Any], ...] = ops
        return converted

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


def same_ops(recorded: Sequence[Mapping[str, Any]], fresh: Sequence[Mapping[str, Any]]) -> bool:
    """Whether a replay applied the ops a record lists.

    Records written before applied ops carried their node path (ledgers before format 4) are
    compared without it; otherwise the comparison is exact.
    """
    if len(recorded) != len(fresh):
        return False
    for old, new in zip(recorded, fresh, strict=True):
        if "path" not in old and "path" in new:
            new = {k: v for k, v in new.items() if k != "path"}
        if dict(old) != dict(new):
            return False
    return True


class _Unconverted:
    """Applied ops in the backend's form, with the function that makes them JSON data."""

    __slots__ = ("applied", "convert")

    def __init__(self, applied: Any, convert: Callable[[Any], tuple[dict[str, Any], ...]]) -> None:
        self.applied = applied
        self.convert = convert


class Augmented(NamedTuple):
    """The result of ``Pipeline.apply``: the augmented sample dict and its record.

    A named tuple: immutable, and about a microsecond cheaper to build than a frozen dataclass.
    """

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
            h.update(canonical_json(plain_json(value)))
        h.update(b"\0")
    return "sha256:" + h.hexdigest()


def plain_json(value: Any) -> Any:
    """``value`` as JSON data: arrays become lists, NumPy scalars Python scalars, tuples lists."""
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, Mapping):
        return {str(k): plain_json(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [plain_json(v) for v in value]
    return value
