"""A/B and canary variants: route each sample to one of several pipelines by a stable hash of its key.

``Variants({"control": a, "candidate": b}, weights={"control": 0.9, "candidate": 0.1}, salt="exp-42")``
behaves like a :class:`~augledger.Pipeline` (``apply``, ``replay``, ``stream``, ``sample_seed_hex``),
so it works wherever one does: ``augledger run``, ``AugmentedDataset``, the streams. Each sample goes
to one variant, chosen by SHA-256 of (salt, key) alone: the same key lands in the same variant
whatever the worker count, order, engine, process or epoch, and a 10% canary always covers the same
samples. The variants split the unit interval in the order given, so growing the last variant's
weight (a canary going 10% -> 20%) keeps every sample it already had.

Records and ledger rows carry the fingerprint of the variant that made them; a ledger row also
names the variant. The composite ``fingerprint`` covers every variant's fingerprint and seed, the
weights, the order and the salt: another split of the traffic is another version of the experiment.
"""

from __future__ import annotations

import bisect
import hashlib
import math
import re
from collections.abc import Iterable, Iterator, Mapping
from typing import Any

from augledger._canonical import canonical_json, sha256_hex
from augledger.env import EnvStamp
from augledger.errors import ReplayMismatch, SpecError
from augledger.pipeline import Pipeline, compile_spec
from augledger.record import Augmented, Record
from augledger.spec import parse_spec

__all__ = ["ROUTING", "Augmenter", "Variants", "compile_recorded", "route"]

#: How keys are routed (part of the composite fingerprint): ``v1`` is the first 8 bytes of
#: SHA-256 over canonical JSON ``[salt, key]``, as a fraction of 2**64.
ROUTING = "v1"
_NAME = re.compile(r"[A-Za-z][A-Za-z0-9_.-]{0,63}")


def route(key: str, salt: str) -> float:
    """Where ``key`` falls in [0, 1) for this salt: uniform, stable, independent of epoch and process."""
    digest = hashlib.sha256(canonical_json([salt, key])).digest()
    return int.from_bytes(digest[:8], "big") / 2.0**64


class Variants:
    """Several pipelines behind one ``apply``; each key always goes to the same one (module docstring).

    Args:
        pipelines: variant name -> compiled pipeline, in routing order (e.g. control first).
        weights: variant name -> share of the keys, each > 0, summing to 1; default: equal shares.
        salt: mixed into the routing hash; another salt is another, independent assignment.

    Raises:
        SpecError: a bad name or weight, or pipelines that cannot take the same samples (another
            modality, targets or splits).
    """

    def __init__(self, pipelines: Mapping[str, Pipeline], *, weights: Mapping[str, float] | None = None,
                 salt: str = "") -> None:
        if not pipelines:
            raise SpecError("Variants needs at least one pipeline, e.g. {'control': a, 'candidate': b}")
        names = list(pipelines)
        for name in names:
            if not isinstance(name, str) or not _NAME.fullmatch(name):
                raise SpecError(f"variant name {name!r} must start with a letter and hold letters, digits, _ . -")
            if not isinstance(pipelines[name], Pipeline):
                raise SpecError(f"variant {name!r} must be a compiled Pipeline; got {type(pipelines[name]).__name__} "
                                "(compile a spec first: augledger.compile(augledger.load_spec(...)))")
        given = {n: 1.0 / len(names) for n in names} if weights is None else dict(weights)
        if set(given) != set(names):
            raise SpecError(f"weights must name exactly the variants {names}; got {sorted(given)}")
        for name, w in given.items():
            if isinstance(w, bool) or not isinstance(w, (int, float)) or not math.isfinite(w) or not 0 < w <= 1:
                raise SpecError(f"weight of variant {name!r} must be a number in (0, 1]; got {w!r}")
        total = math.fsum(given.values())
        if abs(total - 1.0) > 1e-9:
            raise SpecError(f"variant weights must sum to 1; got {total:g} ({given}); adjust them")
        first = pipelines[names[0]]
        for name in names[1:]:
            other = pipelines[name]
            for what, a, b in (("modality", first.modality, other.modality),
                               ("targets", first.resolved_targets, other.resolved_targets),
                               ("splits", first.splits, other.splits)):
                if a != b:
                    raise SpecError(f"variant {name!r} has other {what} than {names[0]!r} ({b!r} vs {a!r}); every "
                                    "variant must take the same samples")
        if not isinstance(salt, str):
            raise SpecError(f"salt must be text; got {type(salt).__name__}")
        self._pipes = {n: pipelines[n] for n in names}
        self._weights = {n: float(given[n]) for n in names}
        self._salt = salt
        bounds, acc = [], 0.0
        for name in names[:-1]:
            acc += self._weights[name]
            bounds.append(acc)
        self._bounds = bounds  # the last variant takes [bounds[-1], 1)
        self._names = names
        self._fingerprint = sha256_hex(canonical_json({
            "routing": ROUTING, "salt": salt,
            "variants": [{"name": n, "fingerprint": p.fingerprint, "seed": p.seed, "weight": self._weights[n]}
                         for n, p in self._pipes.items()],
        }))

    # -- routing -----------------------------------------------------------------------------------
    def variant_of(self, key: str) -> str:
        """The variant ``key`` is routed to."""
        return self._names[bisect.bisect_right(self._bounds, route(key, self._salt))]

    def arm(self, key: str) -> Pipeline:
        """The pipeline that augments ``key``."""
        return self._pipes[self.variant_of(key)]

    # -- identity ----------------------------------------------------------------------------------
    @property
    def fingerprint(self) -> str:
        """``sha256:<hex>`` of the routing: every variant's fingerprint and seed, weights, order, salt."""
        return self._fingerprint

    @property
    def pipelines(self) -> dict[str, Pipeline]:
        return dict(self._pipes)

    @property
    def weights(self) -> dict[str, float]:
        return dict(self._weights)

    @property
    def salt(self) -> str:
        return self._salt

    @property
    def control(self) -> Pipeline:
        """The first variant."""
        return self._pipes[self._names[0]]

    @property
    def name(self) -> str:
        return self.control.name

    @property
    def seed(self) -> int:
        """The first variant's seed (each variant derives sample seeds from its own)."""
        return self.control.seed

    @property
    def modality(self) -> str:
        return self.control.modality

    @property
    def splits(self) -> tuple[str, ...]:
        return self.control.splits

    @property
    def sample_fields(self) -> frozenset[str]:
        return self.control.sample_fields

    @property
    def resolved_targets(self) -> dict[str, Any]:
        return self.control.resolved_targets

    @property
    def resolved_spec(self) -> dict[str, Any]:
        """The first variant's resolved spec; :meth:`describe` has every variant's."""
        return self.control.resolved_spec

    def storage_problem(self) -> str | None:
        for name, pipe in self._pipes.items():
            problem = pipe.storage_problem()
            if problem:
                return f"variant {name!r}: {problem}"
        return None

    def describe(self) -> dict[str, Any]:
        """What a manifest or ledger header records to rebuild this object (:func:`compile_recorded`)."""
        return {"routing": ROUTING, "salt": self._salt, "fingerprint": self._fingerprint,
                "variants": [{"name": n, "weight": self._weights[n], "fingerprint": p.fingerprint,
                              "resolved_spec": p.resolved_spec} for n, p in self._pipes.items()]}

    @classmethod
    def from_description(cls, data: Mapping[str, Any]) -> Variants:
        """Rebuild from :meth:`describe`; every variant must still compile to its recorded fingerprint.

        Raises:
            SpecError: an unknown routing, or a variant that resolves differently in this environment.
        """
        if data.get("routing") != ROUTING:
            raise SpecError(f"variant routing {data.get('routing')!r} is not known to this augledger (it knows {ROUTING})")
        pipes: dict[str, Pipeline] = {}
        for item in data["variants"]:
            pipe = compile_spec(parse_spec(item["resolved_spec"], source=f"variant {item['name']}"))
            if pipe.fingerprint != item["fingerprint"]:
                raise SpecError(f"variant {item['name']!r} now resolves to {pipe.fingerprint}, not {item['fingerprint']}: "
                                "the backend's defaults differ in this environment")
            pipes[str(item["name"])] = pipe
        return cls(pipes, weights={str(i["name"]): float(i["weight"]) for i in data["variants"]}, salt=str(data["salt"]))

    def sample_seed(self, *, key: str, epoch: int) -> int:
        return self.arm(key).sample_seed(key=key, epoch=epoch)

    def sample_seed_hex(self, *, key: str, epoch: int) -> str:
        return self.arm(key).sample_seed_hex(key=key, epoch=epoch)

    def __repr__(self) -> str:
        arms = ", ".join(f"{n}={self._weights[n]:g}" for n in self._names)
        return f"Variants({arms}, salt={self._salt!r}, fingerprint={self._fingerprint[:19]}...)"

    def counts(self, keys: Iterable[str]) -> dict[str, int]:
        """How many of ``keys`` each variant gets."""
        out = dict.fromkeys(self._names, 0)
        for key in keys:
            out[self.variant_of(key)] += 1
        return out

    # -- applying ----------------------------------------------------------------------------------
    def apply(self, sample: Mapping[str, Any], *, key: str, epoch: int, digests: bool = False) -> Augmented:
        """Augment with the variant ``key`` is routed to; the record carries that variant's fingerprint."""
        return self.arm(key).apply(sample, key=key, epoch=epoch, digests=digests)

    def stream(self, items: Iterable[tuple[str, Mapping[str, Any]]], *, epoch: int,
               digests: bool = False) -> Iterator[Augmented]:
        for key, sample in items:
            yield self.apply(sample, key=key, epoch=epoch, digests=digests)

    def replay(self, sample: Mapping[str, Any], record: Record, *, env: EnvStamp | None = None) -> Augmented:
        """Replay a record of any variant; the key must route to the variant whose fingerprint it carries.

        Raises:
            ReplayMismatch: the record's fingerprint is not the routed variant's, or the re-run differs.
        """
        name = self.variant_of(record.key)
        pipe = self._pipes[name]
        if record.fingerprint != pipe.fingerprint:
            owners = [n for n, p in self._pipes.items() if p.fingerprint == record.fingerprint]
            made_by = f"variant {owners[0]!r}" if owners else "a pipeline that is not among these variants"
            raise ReplayMismatch(
                f"record for {record.key!r} was made by {made_by} ({record.fingerprint}), but this key routes to "
                f"variant {name!r} ({pipe.fingerprint}) under these weights and salt"
            )
        return pipe.replay(sample, record, env=env)


#: What runs, datasets and ledgers accept: one pipeline, or several behind :class:`Variants`.
Augmenter = Pipeline | Variants


def compile_recorded(data: Mapping[str, Any]) -> Pipeline | Variants:
    """The pipeline a manifest or ledger header records: its ``variants`` when it has them, else its ``resolved_spec``."""
    if data.get("variants"):
        return Variants.from_description(data["variants"])
    return compile_spec(parse_spec(data["resolved_spec"]))
