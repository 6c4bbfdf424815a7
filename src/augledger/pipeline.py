"""Compile a spec into an immutable, fingerprinted pipeline, and apply or replay it per sample.

The output for one sample is a pure function of (fingerprint, seed, epoch, key) and the input:
before every call the pipeline installs generators derived by :func:`augledger.seeding.seed_for`,
so neither the worker count, nor the order of samples, nor the process matters.
"""

from __future__ import annotations

import logging
import threading
import warnings
from collections.abc import Iterable, Iterator, Mapping
from typing import Any

from augledger.env import EnvStamp
from augledger.errors import EnvironmentMismatchWarning, ReplayMismatch, SampleError
from augledger.ops.base import Applier
from augledger.ops.registry import get_backend, policy_vocabulary
from augledger.policy import check_spec, policy_ops, raise_violations
from augledger.record import Augmented, Record, same_ops, sample_digest
from augledger.seeding import SeedDeriver
from augledger.spec import PipelineSpec, PolicySpec, fingerprint_of

__all__ = ["Pipeline", "compile_spec"]

log = logging.getLogger(__name__)


def compile_spec(spec: PipelineSpec) -> Pipeline:
    """Resolve a spec (every default filled in), fingerprint it, and build its pipeline.

    The spec's ``modality`` picks the op backend (:mod:`augledger.ops.registry`), which resolves
    the ops and targets.

    Raises:
        SpecError: an unknown modality (location ``modality``).
        UnknownOpError, ParamError: an op or param is not allowed; the message names its location.
        BackendError: the modality's optional dependencies are not installed.
        PolicyViolation: the spec breaks the intensity policy under its own ``policy:`` key.
    """
    backend = get_backend(spec.modality)
    resolved: dict[str, Any] = {
        "schema": spec.schema_version,
        "seeding": spec.seeding,
        "name": spec.name,
        "description": spec.description,
        "seed": spec.seed,
        "modality": spec.modality,
        "splits": list(spec.splits),
        "targets": backend.resolve_targets(spec.targets),
        "ops": backend.resolve_ops(spec.ops),
    }
    if spec.policy is not None:
        names, aliases = policy_vocabulary(spec.modality, policy_ops(spec.policy))
        raise_violations(check_spec(spec.policy, resolved, op_names=names, aliases=aliases), f"spec {spec.name!r}")
    return Pipeline(resolved, policy=spec.policy)


class Pipeline:
    """An immutable augmentation pipeline built from a resolved spec.

    ``apply`` keeps no per-call state that another thread could see: each thread gets its own
    backend applier on first use, and results carry their own record. Pipelines pickle (the
    backend objects are rebuilt in the receiving process).

    Example:
        >>> import augledger, numpy as np
        >>> spec = augledger.parse_spec({"schema": 1, "name": "demo", "ops": [{"op": "HorizontalFlip"}]})
        >>> pipe = augledger.compile_spec(spec)
        >>> image = np.arange(12, dtype=np.uint8).reshape(2, 2, 3)
        >>> a = pipe.apply({"image": image}, key="img/0.png", epoch=0)
        >>> b = pipe.replay({"image": image}, a.record)
        >>> bool((a.sample["image"] == b.sample["image"]).all())
        True
    """

    def __init__(self, resolved: Mapping[str, Any], *, policy: PolicySpec | None = None) -> None:
        self._resolved = dict(resolved)
        #: The intensity policy of the spec's ``policy:`` key (kept by the spec, not fingerprinted),
        #: which runs enforce on what is drawn; ``None`` when the spec has none.
        self.policy = policy
        self._fingerprint = fingerprint_of(self._resolved)
        self._derive_seed = SeedDeriver(self._fingerprint, self._resolved["seed"])
        backend = self._backend = get_backend(self._resolved["modality"])
        # Building the first applier here makes a spec that resolves but cannot build fail now, not in a worker.
        self._compiled = backend.compile(self._resolved["ops"], self._resolved["targets"])
        self._record_ops = self._compiled.record_ops
        self._local = threading.local()

    # -- identity --------------------------------------------------------------------------------
    @property
    def fingerprint(self) -> str:
        """``sha256:<hex>`` of the resolved spec: the pipeline's version."""
        return self._fingerprint

    @property
    def seed(self) -> int:
        return int(self._resolved["seed"])

    @property
    def name(self) -> str:
        return str(self._resolved["name"])

    @property
    def splits(self) -> tuple[str, ...]:
        """The splits this pipeline augments (``("train",)`` unless the spec says otherwise)."""
        return tuple(self._resolved["splits"])

    @property
    def modality(self) -> str:
        return str(self._resolved["modality"])

    def storage_problem(self) -> str | None:
        """Why this pipeline's outputs cannot be stored as files (e.g. float images), or ``None``."""
        return self._backend.storage_problem(self._resolved["ops"])

    @property
    def sample_fields(self) -> frozenset[str]:
        """The sample dict keys ``apply`` accepts (for images: ``image`` plus the declared targets)."""
        return self._compiled.sample_fields

    @property
    def resolved_targets(self) -> dict[str, Any]:
        """The resolved ``targets`` section (read-only view; do not modify)."""
        targets: dict[str, Any] = self._resolved["targets"]
        return targets

    @property
    def resolved_spec(self) -> dict[str, Any]:
        """A copy of the resolved spec (JSON data); ``parse_spec`` accepts it unchanged."""
        import copy

        return copy.deepcopy(self._resolved)

    def sample_seed(self, *, key: str, epoch: int) -> int:
        """The 128-bit seed of (key, epoch) under this pipeline and its spec seed."""
        return self._derive_seed(epoch=epoch, key=key)

    def sample_seed_hex(self, *, key: str, epoch: int) -> str:
        """:meth:`sample_seed` as the 32 hex digits records and ledgers store."""
        return f"{self._derive_seed(epoch=epoch, key=key):032x}"

    def variant_of(self, key: str) -> str | None:
        """``None``: one pipeline has no variants (:class:`augledger.Variants` routes keys to several)."""
        return None

    def arm(self, key: str) -> Pipeline:
        """The pipeline that augments ``key``: this one (see :class:`augledger.Variants`)."""
        return self

    def __repr__(self) -> str:
        n_ops = len(self._resolved["ops"])
        return f"Pipeline(name={self.name!r}, fingerprint={self._fingerprint[:19]}..., ops={n_ops})"

    # -- pickling: ship the resolved spec, rebuild backend objects on the other side ---------------
    def __getstate__(self) -> dict[str, Any]:
        return {"resolved": self._resolved, "policy": self.policy}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__init__(state["resolved"], policy=state.get("policy"))  # type: ignore[misc]

    def _applier(self) -> Applier:
        applier: Applier | None = getattr(self._local, "applier", None)
        if applier is None:  # one per thread: appliers hold library objects that every call mutates
            applier = self._local.applier = self._compiled.new_applier()
        return applier

    # -- applying ----------------------------------------------------------------------------------
    def apply(self, sample: Mapping[str, Any], *, key: str, epoch: int, digests: bool = False) -> Augmented:
        """Augment one sample deterministically.

        Args:
            sample: Albumentations-style dict: ``image`` (HxW or HxWxC array) plus the targets the
                spec declares (``mask``/``masks``, ``bboxes``, ``keypoints`` and their label fields).
            key: the sample's stable identity (e.g. its path relative to the dataset root).
            epoch: the epoch online, the copy index offline.
            digests: also record SHA-256 digests of the input and output (about 110 µs each at
                256x256 RGB, so off by default).

        Returns:
            :class:`Augmented` with the new sample dict and its :class:`Record`. The input is not
            modified.

        Raises:
            SampleError: the sample lacks an image, carries a target the spec does not declare, or
                the backend fails on it (an annotation out of bounds, a crop larger than the image);
                the backend's exception is the ``__cause__``.
        """
        sample_seed = self._derive_seed(epoch=epoch, key=key)
        applier = self._applier()
        try:
            out, applied = applier(sample, key=key, seed=sample_seed)
        except SampleError:
            raise
        except Exception as exc:  # any backend failure on this sample (e.g. a crop larger than the image)
            detail = str(exc) if isinstance(exc, (ValueError, TypeError, KeyError, IndexError)) else f"{type(exc).__name__}: {exc}"
            raise SampleError(f"sample {key!r} (epoch {epoch}) could not be augmented: {detail}") from exc
        record = Record(
            key,
            epoch,
            self._fingerprint,
            sample_seed,
            applied=applied,
            convert=self._record_ops,
            input_digest=sample_digest(sample) if digests else None,
            output_digest=sample_digest(out) if digests else None,
        )
        return Augmented(out, record)

    def stream(
        self, items: Iterable[tuple[str, Mapping[str, Any]]], *, epoch: int, digests: bool = False
    ) -> Iterator[Augmented]:
        """Augment a stream of ``(key, sample)`` pairs lazily, with the same guarantees as ``apply``.

        Each output depends only on its own key and the epoch, never on its position in the stream.
        """
        for key, sample in items:
            yield self.apply(sample, key=key, epoch=epoch, digests=digests)

    def replay(
        self, sample: Mapping[str, Any], record: Record, *, env: EnvStamp | None = None
    ) -> Augmented:
        """Re-run the augmentation a record describes and check that it matches.

        Args:
            sample: the original (un-augmented) input.
            record: a record made by this pipeline version.
            env: the environment stamp the record was made under; a difference from this process
                warns with :class:`EnvironmentMismatchWarning` (bytes may then differ).

        Raises:
            ReplayMismatch: another fingerprint, or the re-run drew other params, or the input or
                output digest recorded differs.
        """
        if record.fingerprint != self._fingerprint:
            raise ReplayMismatch(
                f"record for {record.key!r} was made by pipeline {record.fingerprint}, but this pipeline "
                f"is {self._fingerprint}; compile the spec that produced the record"
            )
        if env is not None:
            diff = env.describe_differences(EnvStamp.current(self.modality))
            if diff:
                warnings.warn(
                    EnvironmentMismatchWarning(
                        f"replaying {record.key!r} under other library versions ({diff}); "
                        "outputs are byte-identical only for the same environment stamp"
                    ),
                    stacklevel=2,
                )
        digests = record.input_digest is not None or record.output_digest is not None
        result = self.apply(sample, key=record.key, epoch=record.epoch, digests=digests)
        if record.input_digest is not None and result.record.input_digest != record.input_digest:
            raise ReplayMismatch(
                f"input for {record.key!r} differs from the recorded one "
                f"({result.record.input_digest} != {record.input_digest}); replay needs the original sample"
            )
        if result.record.seed != record.seed:
            raise ReplayMismatch(f"seed for {record.key!r} re-derived as {result.record.seed}, recorded {record.seed}")
        if not same_ops(record.ops, result.record.ops):
            raise ReplayMismatch(_ops_difference(record, result.record))
        if record.output_digest is not None and result.record.output_digest != record.output_digest:
            raise ReplayMismatch(
                f"output for {record.key!r} (epoch {record.epoch}) differs from the recorded digest "
                f"({result.record.output_digest} != {record.output_digest})"
            )
        return result


def _ops_difference(recorded: Record, replayed: Record) -> str:
    for i, (a, b) in enumerate(zip(recorded.ops, replayed.ops, strict=False)):
        if a != b:
            return f"replay of {recorded.key!r} diverged at applied op {i}: recorded {a}, replayed {b}"
    return (
        f"replay of {recorded.key!r} applied {len(replayed.ops)} ops, the record lists {len(recorded.ops)}"
    )
