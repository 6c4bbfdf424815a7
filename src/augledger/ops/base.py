"""The op backend interface: what one modality's backend implements, and nothing more.

A backend owns everything that depends on the augmentation library behind a modality:

* **resolve**: turn a spec's ``ops`` and ``targets`` into their resolved form (JSON data, every
  default filled in, names canonical), raising :class:`~augledger.errors.SpecError` subclasses
  that name the location. The resolved form is what the fingerprint hashes.
* **compile**: build a :class:`Compiled` from the resolved form; the pipeline asks it for one
  :class:`Applier` per thread (appliers hold mutable library objects and are never shared).
* **versions**: the libraries whose versions the outputs depend on (for the environment stamp).

Randomness is not the backend's to invent: an applier receives the sample's 128-bit seed, derived
by :mod:`augledger.seeding`, and must draw only from generators seeded with it.

The registry (:mod:`augledger.ops.registry`) finds a backend by modality and imports it only
when a spec names that modality. Adding a modality is one module that defines a ``Backend``
plus one registry entry.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any, Protocol

from augledger.errors import ParamError, SpecError, UnknownOpError
from augledger.spec import OpSpec

__all__ = ["Applier", "Backend", "Compiled", "resolve_each"]


def resolve_each(ops: Sequence[OpSpec], resolve_one: Callable[[OpSpec, int], dict[str, Any]]) -> list[dict[str, Any]]:
    """``resolve_one(op, index)`` for every top-level op, reporting every bad op at once (not one per
    edit-and-retry cycle): one error is raised as is; several become one :class:`UnknownOpError`
    (all unknown) or :class:`ParamError`, one line each, located at the first."""
    resolved: list[dict[str, Any]] = []
    errors: list[SpecError] = []
    for i, op in enumerate(ops):
        try:
            resolved.append(resolve_one(op, i))
        except SpecError as exc:
            errors.append(exc)
    if len(errors) == 1:
        raise errors[0]
    if errors:
        cls = UnknownOpError if all(isinstance(e, UnknownOpError) for e in errors) else ParamError
        combined = cls(f"{len(errors)} problems:\n  " + "\n  ".join(str(e) for e in errors))
        combined.location = errors[0].location
        raise combined
    return resolved


class Applier(Protocol):
    """Augments one sample at a time. Not thread-safe: each thread gets its own."""

    def __call__(self, sample: Mapping[str, Any], *, key: str, seed: int) -> tuple[dict[str, Any], Any]:
        """Augment ``sample`` with draws seeded by ``seed``.

        Returns:
            The new sample dict (the input is not modified) and the applied ops in the backend's
            own form, which :meth:`Compiled.record_ops` turns into JSON when a record is read.

        Raises:
            SampleError: the sample does not fit the spec (missing field, undeclared target),
                naming ``key``. Any other exception means the library failed on this sample.
        """
        ...


class Compiled(Protocol):
    """A resolved spec compiled by its backend: a factory of appliers and a record converter."""

    #: The sample dict keys an applier accepts.
    sample_fields: frozenset[str]

    def new_applier(self) -> Applier:
        """A fresh applier for the calling thread."""
        ...

    def record_ops(self, applied: Any) -> tuple[dict[str, Any], ...]:
        """Applied ops as JSON data: ``({"op": name, "path": "ops[2].ops[0]", "params": {...}}, ...)`` in
        the order applied. ``path`` is the op's node in the resolved spec; intensity policies and
        monitoring tell two uses of one op apart by it (a backend that cannot tell may omit it)."""
        ...


class Backend(Protocol):
    """One modality's ops: resolution, compilation, versions and the op names a spec may use."""

    #: The ``modality`` a spec names to use this backend (``image``).
    modality: str
    #: The prefix of canonical op names (``albumentations`` in ``albumentations.HorizontalFlip``).
    namespace: str

    def op_names(self) -> tuple[str, ...]:
        """Every op name a spec may use (bare, without the namespace), compositions included."""
        ...

    def describe_ops(self) -> list[dict[str, Any]]:
        """Every op a spec may name, as JSON data (``augledger ops list --json``), one dict per op:

        * ``op``: the bare name a spec uses; ``modality``: this backend's modality;
        * ``params``: ``{name: default}`` for every param that has one (JSON values);
        * ``required``: names of params without a default (a spec must give them);
        * ``example``: params that work on :meth:`example_sample` (the required ones included);
        * optional: ``example_targets`` (the spec's ``targets`` section :meth:`example_sample`
          needs, when the sample carries targets), ``p`` (the default probability), ``doc`` (the
          first line of the docstring),
          ``composition: true`` (takes child ``ops``), ``alias_of`` (a deprecated name and the op it
          resolves to).

        ``tests/ops/test_contract.py`` generates the contract suite from this list: every op that is
        not a composition, at ``p=1`` with its ``example``, on :meth:`example_sample`.
        """
        ...

    def example_sample(self) -> dict[str, Any]:
        """A small deterministic sample of the modality (the same bytes in every process and on every
        machine; e.g. a 64x64 RGB image), on which every op's ``example`` runs. A fresh copy each call."""
        ...

    def resolve_ops(self, ops: Sequence[OpSpec]) -> list[dict[str, Any]]:
        """The resolved op nodes: ``{"op": canonical name, "p": float, "params": {...}[, "ops": [...]]}``."""
        ...

    def resolve_targets(self, targets: Mapping[str, Any]) -> dict[str, Any]:
        """The resolved ``targets`` section (every default filled in), validated strictly."""
        ...

    def targets_schema(self) -> dict[str, Any]:
        """JSON Schema of the ``targets`` section, for editors."""
        ...

    def compile(self, ops: Sequence[Mapping[str, Any]], targets: Mapping[str, Any]) -> Compiled:
        """Build from resolved ops and targets. Raises :class:`SpecError` if they cannot be built."""
        ...

    def versions(self) -> dict[str, str]:
        """``{library: version}`` of every library the outputs depend on."""
        ...

    def storage_problem(self, ops: Sequence[Mapping[str, Any]]) -> str | None:
        """Why outputs of these resolved ops cannot be stored by the modality's codec (e.g. float
        images after ``Normalize``), or ``None``. Offline runs refuse such a spec before any work."""
        ...
