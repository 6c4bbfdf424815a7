"""The image backend: Albumentations 2.0.8, the last MIT release (imported only inside this package).

* :mod:`~augledger.ops.image.allowlist`: the transforms a spec may name, and why others are left out.
* :mod:`~augledger.ops.image.resolve`: validating ops and targets and filling every default
  (:mod:`~augledger.ops.image.aliases`: deprecated names; :mod:`~augledger.ops.image.limits`: hard limits).
* :mod:`~augledger.ops.image.describe`: every op as data (``augledger ops list``), the example sample.
* :mod:`~augledger.ops.image.adopt`: an Albumentations ``Compose`` or ``A.save`` file as a spec.
* :mod:`~augledger.ops.image.runtime`: per-thread Compose, per-sample seeding, JSON records.
* :mod:`~augledger.ops.image.library`: the one place Albumentations is imported, and its versions.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from augledger.ops.image.aliases import DEPRECATED_ALIASES
from augledger.ops.image.allowlist import COMPOSITIONS, IMAGE_OPS, NAMESPACE, REFUSED, canonical_op_name
from augledger.ops.image.describe import describe_ops, example_sample
from augledger.ops.image.library import albumentations, versions
from augledger.ops.image.resolve import Targets, resolve_ops, resolve_targets, storage_problem, targets_schema
from augledger.ops.image.runtime import ImageCompiled, build_compose, jsonable_params
from augledger.spec import OpSpec

__all__ = [
    "BACKEND",
    "COMPOSITIONS",
    "DEPRECATED_ALIASES",
    "IMAGE_OPS",
    "NAMESPACE",
    "REFUSED",
    "ImageBackend",
    "Targets",
    "albumentations",
    "build_compose",
    "canonical_op_name",
    "jsonable_params",
]


class ImageBackend:
    """:class:`~augledger.ops.base.Backend` for ``modality: image``."""

    modality = "image"
    namespace = NAMESPACE

    def op_names(self) -> tuple[str, ...]:
        return (*IMAGE_OPS, *COMPOSITIONS, *DEPRECATED_ALIASES)

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

    def compile(self, ops: Sequence[Mapping[str, Any]], targets: Mapping[str, Any]) -> ImageCompiled:
        compiled = ImageCompiled(ops, targets)
        compiled.new_applier()  # build once now: a spec that resolves but cannot build fails here, not in a worker
        return compiled

    def versions(self) -> dict[str, str]:
        return dict(versions())

    def storage_problem(self, ops: Sequence[Mapping[str, Any]]) -> str | None:
        return storage_problem(ops)


BACKEND = ImageBackend()
