"""Intensity policies: what a pipeline may do to a sample, checked before a run, while it runs, and after.

A policy (a YAML/JSON file with ``policy: 1``, or the same block under ``policy:`` in a spec;
the model is :class:`augledger.spec.PolicySpec`) says which ops are forbidden or required, the
bounds of params (``Affine.rotate: [-10, 10]``), the most ops one sample may receive and the
splits that may be augmented. Three checks use it:

* :func:`check_spec` on a resolved spec, before any work: every number a param allows (a range's
  ends, a scalar, each axis of ``{x: [...], y: [...]}``) must lie inside its bound; the largest
  number of ops one sample can receive (``OneOf`` counts its largest child, ``SomeOf(n)`` its ``n``
  largest) must not pass ``max_ops_per_sample``.
* :class:`RecordCheck` on applied ops, as records or ledger rows arrive: every value drawn for a
  bounded param that the op records under the same name (``Affine`` records the ``rotate`` and
  ``scale`` it drew) must lie inside, forbidden ops must not appear, and no sample may receive more
  ops than allowed. A bound whose op records no value of that name is checked statically only; the
  count of values checked per bound says which did.
* ``augledger check-policy OUT`` runs both on a finished dataset, from its manifest and ledger alone.

Every finding is a :class:`Violation` that names the op's node path (``ops[2].ops[0]``), the
param, the bound and the value. The module is data only (no backend), so it sits with the spec.
"""

from __future__ import annotations

import json
from collections.abc import Collection, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from augledger._canonical import canonical_json, sha256_hex
from augledger.documents import load_document
from augledger.errors import LedgerError, PolicyViolation, SpecError
from augledger.spec import PolicySpec, validate_model

__all__ = [
    "PolicySpec",
    "RecordCheck",
    "Violation",
    "check_spec",
    "load_policy",
    "max_ops_per_sample",
    "policy_digest",
    "policy_json_schema",
    "policy_ops",
    "raise_violations",
]

#: How many violation lines an error message quotes (all are counted).
SHOWN = 20


@dataclass(frozen=True)
class Violation:
    """One finding: where (``ops[0].params.rotate``, ``splits``, ``cat.png copy 2 ops[0].rotate``) and what."""

    location: str
    message: str

    def __str__(self) -> str:
        return f"{self.location}: {self.message}"


def load_policy(path: str | Path) -> PolicySpec:
    """Load and validate a policy file.

    Raises:
        SpecError: the file is missing, unsafe, malformed, lacks ``policy: 1``, or does not validate
            (each problem named by its location, like a spec's).
    """
    data = load_document(path, what="policy")
    if not isinstance(data, Mapping) or "policy" not in data:
        raise SpecError(
            f"policy file {str(path)!r} must be a mapping that starts with 'policy: 1' (the policy schema "
            f"version); got {type(data).__name__}{' without a policy key' if isinstance(data, Mapping) else ''}",
            location="policy",
        )
    return validate_model(PolicySpec, dict(data), what="policy", source=str(path))


def policy_digest(policy: PolicySpec) -> str:
    """``sha256:`` of the policy's canonical JSON: what manifests record."""
    return sha256_hex(canonical_json(policy.to_dict()))


def policy_json_schema() -> dict[str, Any]:
    """JSON Schema of a policy file, for editors."""
    schema = PolicySpec.model_json_schema(by_alias=True)
    schema["title"] = "augledger intensity policy"
    schema["required"] = sorted({*schema.get("required", []), "policy"})
    return schema


def policy_ops(policy: PolicySpec) -> list[str]:
    """Every op name the policy uses (forbid, require, bounds), as written."""
    return [*policy.forbid, *policy.require, *(_split_bound(k)[0] for k in policy.bounds)]


def raise_violations(violations: Sequence[Violation], what: str) -> None:
    """Raise :class:`PolicyViolation` quoting the first :data:`SHOWN` findings, when there are any."""
    if not violations:
        return
    lines = [str(v) for v in violations]
    more = f"\n  ... and {len(lines) - SHOWN} more" if len(lines) > SHOWN else ""
    raise PolicyViolation(
        f"{what}: {len(lines)} policy violation(s):\n  " + "\n  ".join(lines[:SHOWN]) + more, tuple(lines)
    )


# -- matching op names ------------------------------------------------------------------------------

def _matches(policy_name: str, op: str) -> bool:
    """``HorizontalFlip`` matches ``albumentations.HorizontalFlip``; a namespaced name must match whole."""
    return op == policy_name or ("." not in policy_name and op.rpartition(".")[2] == policy_name)


def _split_bound(key: str) -> tuple[str, str]:
    op, _, param = key.rpartition(".")
    return op, param


# -- the static check --------------------------------------------------------------------------------

def _nodes(ops: Sequence[Mapping[str, Any]], prefix: str = "ops") -> Iterator[tuple[str, Mapping[str, Any]]]:
    for i, node in enumerate(ops):
        path = f"{prefix}[{i}]"
        yield path, node
        if node.get("ops"):
            yield from _nodes(node["ops"], f"{path}.ops")


def _reachable(ops: Sequence[Mapping[str, Any]]) -> Iterator[Mapping[str, Any]]:
    """The nodes that can apply: those with ``p > 0`` under compositions with ``p > 0``."""
    for node in ops:
        if float(node.get("p", 1.0)) > 0.0:
            yield node
            yield from _reachable(node.get("ops") or ())


def max_ops_per_sample(ops: Sequence[Mapping[str, Any]]) -> int:
    """The most leaf ops one sample can receive from these resolved nodes, applied in sequence."""
    return sum(_most(node) for node in ops)


def _most(node: Mapping[str, Any]) -> int:
    if float(node.get("p", 1.0)) == 0.0:
        return 0
    children = node.get("ops")
    if not children:
        return 1
    counts = sorted((_most(c) for c in children), reverse=True)
    bare = str(node["op"]).rpartition(".")[2]
    if bare in ("OneOf", "OneOrOther"):
        return counts[0]
    n = node.get("params", {}).get("n")
    if isinstance(n, int) and not isinstance(n, bool):  # SomeOf, RandomOrder: n children, maybe repeated
        return n * counts[0] if node.get("params", {}).get("replace") else sum(counts[:n])
    return sum(counts)  # Sequential, SelectiveChannelTransform, anything that applies every child


def _numbers_with_paths(value: Any, where: str) -> Iterator[tuple[str, float | str]]:
    """Every number inside ``value`` (booleans are not numbers), with its location.

    A recorded array summary (``{"array": {"shape", "dtype", "sha256"}}``) holds no drawn values and
    yields nothing; a string where a number belongs is yielded as is (the caller reports it).
    """
    if isinstance(value, bool) or value is None:
        return
    if isinstance(value, (int, float)):
        yield where, float(value)
    elif isinstance(value, str):
        yield where, value
    elif isinstance(value, Mapping):
        if set(value) == {"array"}:
            return
        for k, v in value.items():
            yield from _numbers_with_paths(v, f"{where}.{k}")
    elif isinstance(value, (list, tuple)):
        for i, v in enumerate(value):
            yield from _numbers_with_paths(v, f"{where}[{i}]")


def _show(x: float | str) -> str:
    return f"{x:g}" if isinstance(x, float) else repr(x)


def check_spec(
    policy: PolicySpec, resolved: Mapping[str, Any], *, op_names: Collection[str] | None = None,
    aliases: Mapping[str, str] | None = None,
) -> list[Violation]:
    """Every way a resolved spec breaks ``policy``, before any sample is touched.

    Args:
        policy: the policy.
        resolved: the resolved spec (``Pipeline.resolved_spec``, or a manifest's ``resolved_spec``).
        op_names: the bare op names the spec's backend knows; when given, a policy naming an op that
            does not exist is reported (a typo would otherwise forbid nothing).
        aliases: deprecated op names the backend resolves to another op (``ShiftScaleRotate`` ->
            ``Affine``): a policy naming one is reported, since resolved specs never contain it.
    """
    found: list[Violation] = []
    where = f"policy {policy.name!r}"
    named = [*(("forbid", n) for n in policy.forbid), *(("require", n) for n in policy.require),
             *(("bounds", _split_bound(k)[0]) for k in policy.bounds)]
    for section, name in named:  # policy_ops(policy), with the section each name is in
        bare = name.rpartition(".")[2]
        if aliases and bare in aliases:
            found.append(Violation(f"{where} {section}", f"{name!r} is a deprecated name that specs resolve to "
                                   f"{aliases[bare]!r}; name {aliases[bare]!r} in the policy (with its params)"))
        elif op_names is not None and bare not in op_names:
            found.append(Violation(f"{where} {section}", f"{name!r} is not an op of modality "
                                   f"{resolved.get('modality')!r}; check the spelling (`augledger ops list` lists them)"))
    nodes = list(_nodes(resolved["ops"]))
    for path, node in nodes:
        op = str(node["op"])
        for name in policy.forbid:
            if _matches(name, op):
                found.append(Violation(path, f"{op.rpartition('.')[2]} is forbidden by {where}; remove it"))
        for key, (low, high) in policy.bounds.items():
            bound_op, param = _split_bound(key)
            if not _matches(bound_op, op):
                continue
            params = node.get("params", {})
            if param not in params:
                found.append(Violation(f"{path}.params", f"{where} bounds {key}, but {op.rpartition('.')[2]} has no "
                                       f"param {param!r} (it has: {', '.join(sorted(params)) or 'none'})"))
                continue
            for at, value in _numbers_with_paths(params[param], f"{path}.params.{param}"):
                if isinstance(value, str) or not low <= value <= high:
                    found.append(Violation(at, f"{key} must lie in [{_show(low)}, {_show(high)}] ({where}); "
                                           f"the spec allows {_show(value)}"))
    for name in policy.require:  # present, and able to apply: neither it nor a composition above it has p 0
        if not any(_matches(name, str(node["op"])) for node in _reachable(resolved["ops"])):
            found.append(Violation("ops", f"{where} requires {name}; the spec has none that can apply (p > 0)"))
    if policy.max_ops_per_sample is not None:
        most = max_ops_per_sample(resolved["ops"])
        if most > policy.max_ops_per_sample:
            found.append(Violation("ops", f"up to {most} ops can apply to one sample; {where} allows "
                                   f"{policy.max_ops_per_sample} (max_ops_per_sample)"))
    if policy.splits is not None:
        extra = [s for s in resolved.get("splits", ["train"]) if s not in policy.splits]
        if extra:
            found.append(Violation("splits", f"the spec augments {extra}; {where} allows only {list(policy.splits)}"))
    return found


# -- the check of applied ops ---------------------------------------------------------------------------

class RecordCheck:
    """Checks applied ops (records, ledger rows) against policies and counts what it checked.

    Attributes:
        checked: values checked per bound (``{"Affine.rotate": 1200}``); a bound with no count
            was never recorded by its op and is checked statically only.
        violations: every finding so far, in the order seen.
    """

    def __init__(self, policies: Sequence[PolicySpec]) -> None:
        self.policies = tuple(policies)
        self.checked: dict[str, int] = {}
        self.samples = 0
        self.violations: list[Violation] = []
        # (policy name, OP, PARAM, low, high) per bound, and the forbidden names, flattened once.
        self._bounds = [(p.name, k, *_split_bound(k), lo, hi) for p in self.policies for k, (lo, hi) in p.bounds.items()]
        self._forbid = [(p.name, n) for p in self.policies for n in p.forbid]
        limits = [p.max_ops_per_sample for p in self.policies if p.max_ops_per_sample is not None]
        self._max_ops = min(limits) if limits else None

    def check(self, key: str, epoch: int, ops: Sequence[Mapping[str, Any]], variant: str | None = None) -> list[Violation]:
        """Check one sample's applied ops; returns (and keeps) its violations."""
        self.samples += 1
        found: list[Violation] = []
        where = f"{key!r} copy {epoch}" + (f" (variant {variant!r})" if variant else "")
        if self._max_ops is not None and len(ops) > self._max_ops:
            found.append(Violation(where, f"received {len(ops)} ops; the policy allows {self._max_ops} per sample"))
        for i, applied in enumerate(ops):
            op = str(applied.get("op", ""))
            path = str(applied.get("path") or f"applied op {i}")
            for policy_name, name in self._forbid:
                if _matches(name, op):
                    found.append(Violation(f"{where} {path}", f"{op.rpartition('.')[2]} is forbidden by policy {policy_name!r}"))
            params = applied.get("params") or {}
            for policy_name, key_, bound_op, param, low, high in self._bounds:
                if param not in params or not _matches(bound_op, op):
                    continue
                values = list(_numbers_with_paths(params[param], f"{path}.{param}"))
                if values:  # an array summary holds no drawn value: the bound stays static-only
                    self.checked[key_] = self.checked.get(key_, 0) + 1
                for at, value in values:
                    if isinstance(value, str):
                        found.append(Violation(f"{where} {at}", f"recorded {value!r} where {key_} needs a number"))
                    elif not low <= value <= high:
                        found.append(Violation(f"{where} {at}", f"drew {value!r}, outside {key_} [{_show(low)}, "
                                               f"{_show(high)}] of policy {policy_name!r}"))
        self.violations += found
        return found

    def check_rows(self, rows: Iterable[Any]) -> list[Violation]:
        """Check ledger rows (:class:`~augledger.ledger.row.LedgerRow` or mappings); quarantined and original rows are skipped."""
        found: list[Violation] = []
        for row in rows:
            if isinstance(row, Mapping):
                key, epoch, status, seed, ops = (row[f] for f in ("key", "epoch", "status", "seed", "ops"))
                variant = row.get("variant")
            else:
                key, epoch, status, seed, ops, variant = row.key, row.epoch, row.status, row.seed, row.ops, row.variant
            if status == "ok" and ops and seed is not None:
                found += self.check(str(key), int(epoch), _applied_ops(ops, key, epoch), variant)
        return found

    def summary(self) -> dict[str, Any]:
        """What manifests record: the policies (name and digest), values checked per bound, violations."""
        return {
            "policies": [{"name": p.name, "digest": policy_digest(p)} for p in self.policies],
            "samples_checked": self.samples,
            "values_checked": dict(sorted(self.checked.items())),
            "violations": len(self.violations),
        }


def _applied_ops(text: str, key: Any, epoch: Any) -> list[Mapping[str, Any]]:
    """A row's ``ops`` JSON as a list of op dicts, or :class:`LedgerError` naming the row."""
    try:
        ops = json.loads(text)
    except ValueError:
        ops = None
    if not isinstance(ops, list) or not all(isinstance(op, Mapping) for op in ops):
        raise LedgerError(f"the ledger row of {key!r} copy {epoch} has ops that are not a JSON list of ops: "
                          f"{text[:80]!r}; the ledger was damaged or edited")
    return ops
