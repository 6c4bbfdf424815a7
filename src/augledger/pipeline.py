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

import numpy as np

from augledger.env import EnvStamp
from augledger.errors import EnvironmentMismatchWarning, ReplayMismatch, SampleError
from augledger.record import Augmented, Record, sample_digest
from augledger.seeding import SampleGenerators, SeedDeriver
from augledger.spec import PipelineSpec, fingerprint_of

__all__ = ["Pipeline", "compile_spec"]

log = logging.getLogger(__name__)


def compile_spec(spec: PipelineSpec) -> Pipeline:
    """Resolve a spec (every default filled in), fingerprint it, and build its pipeline.

    Raises:
        UnknownOpError, ParamError: an op or param is not allowed; the message names its location.
    """
    from augledger.ops import image

    resolved: dict[str, Any] = {
        "schema": spec.schema_version,
        "seeding": spec.seeding,
        "name": spec.name,
        "description": spec.description,
        "seed": spec.seed,
        "modality": spec.modality,
        "splits": list(spec.splits),
        "targets": image.resolve_targets(spec.targets),
        "ops": image.resolve_ops(spec.ops),
    }
    return Pipeline(resolved)


class Pipeline:
    """An immutable augmentation pipeline built from a resolved spec.

    ``apply`` keeps no per-call state that another thread could see: each thread builds its own
    backend objects on first use, and results carry their own record. Pipelines pickle (the
    backend objects are rebuilt in the receiving process).

    Example:
        >>> import augledger, numpy as np
        >>> spec = augledger.parse_spec({"schema": 1, "name": "demo", "ops": [{"op": "HorizontalFlip"}]})
        >>> pipe = augledger.compile(spec)
        >>> image = np.arange(12, dtype=np.uint8).reshape(2, 2, 3)
        >>> a = pipe.apply({"image": image}, key="img/0.png", epoch=0)
        >>> b = pipe.replay({"image": image}, a.record)
        >>> bool((a.sample["image"] == b.sample["image"]).all())
        True
    """

    def __init__(self, resolved: Mapping[str, Any]) -> None:
        self._resolved = dict(resolved)
        self._fingerprint = fingerprint_of(self._resolved)
        self._derive_seed = SeedDeriver(self._fingerprint, self._resolved["seed"])
        targets = self._resolved["targets"]
        allowed = {"image"}
        if targets.get("mask"):
            allowed |= {"mask", "masks"}
        declared: list[tuple[str, tuple[str, ...]]] = []
        for kind in ("bboxes", "keypoints"):
            if targets.get(kind):
                allowed |= {kind, *targets[kind]["label_fields"]}
                declared.append((kind, tuple(targets[kind]["label_fields"])))
        self._allowed_keys = frozenset(allowed)
        # Declared box/point targets a sample may omit (an unannotated image): filled with empty lists.
        self._optional_targets = tuple(declared)
        self._local = threading.local()
        # Build once now so a spec that resolves but cannot build fails at compile time, not in a worker.
        self._compose()

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
    def sample_fields(self) -> frozenset[str]:
        """The sample dict keys ``apply`` accepts: ``image`` plus the targets the spec declares."""
        return self._allowed_keys

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

    def __repr__(self) -> str:
        n_ops = len(self._resolved["ops"])
        return f"Pipeline(name={self.name!r}, fingerprint={self._fingerprint[:19]}..., ops={n_ops})"

    # -- pickling: ship the resolved spec, rebuild backend objects on the other side ---------------
    def __getstate__(self) -> dict[str, Any]:
        return {"resolved": self._resolved}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__init__(state["resolved"])  # type: ignore[misc]

    def _compose(self) -> Any:
        return self._thread_state()[0]

    def _thread_state(self) -> tuple[Any, SampleGenerators]:
        # One backend Compose and one pair of generators per thread: both are mutated by every call.
        state: tuple[Any, SampleGenerators] | None = getattr(self._local, "state", None)
        if state is None:
            from augledger.ops.image import build_compose

            compose, generators = build_compose(self._resolved["ops"], self._resolved["targets"]), SampleGenerators()
            # Installed once: every transform keeps references to these two generator objects, and
            # apply() re-seeds them in place before each call (propagating them again would cost
            # ~15 µs per call for nothing).
            compose.set_random_state(generators.numpy, generators.python)
            state = (compose, generators)
            self._local.state = state
        return state

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
        self._check_sample(sample, key)
        filled = self._fill_optional_targets(sample, key) if self._optional_targets else ()
        sample_seed = self._derive_seed(epoch=epoch, key=key)
        compose, generators = self._thread_state()
        generators.reseed(sample_seed)
        try:
            out = compose(**({**sample, **dict.fromkeys(filled, ())} if filled else sample))
        except Exception as exc:  # any backend failure on this sample (e.g. a crop larger than the image)
            detail = str(exc) if isinstance(exc, (ValueError, TypeError, KeyError, IndexError)) else f"{type(exc).__name__}: {exc}"
            raise SampleError(f"sample {key!r} (epoch {epoch}) could not be augmented: {detail}") from exc
        for name in filled:
            out.pop(name, None)
        record = Record(
            key=key,
            epoch=epoch,
            fingerprint=self._fingerprint,
            seed=f"{sample_seed:032x}",
            applied=out.pop("applied_transforms"),
            convert=_applied_ops,
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

    def _fill_optional_targets(self, sample: Mapping[str, Any], key: str) -> tuple[str, ...]:
        """Names of declared box/point fields the sample omits (augmented as empty, then dropped)."""
        filled: list[str] = []
        for kind, fields in self._optional_targets:
            if kind in sample:
                missing = [f for f in fields if f not in sample]
                if missing:
                    raise SampleError(
                        f"sample {key!r} has {kind} but not their label field(s) {missing} that the spec's "
                        f"targets.{kind}.label_fields declares; pass one label per box, e.g. {missing[0]}=[...]"
                    )
            else:
                stray = [f for f in fields if f in sample]
                if stray:
                    raise SampleError(
                        f"sample {key!r} has label field(s) {stray} but no {kind!r}; pass both, or neither "
                        "for a sample without annotations"
                    )
                filled += [kind, *fields]
        return tuple(filled)

    def _check_sample(self, sample: Mapping[str, Any], key: str) -> None:
        if not isinstance(sample, Mapping) or "image" not in sample:
            raise SampleError(
                f"sample {key!r} must be a dict with an 'image' array (Albumentations' convention), "
                f"e.g. {{'image': array}}; got {type(sample).__name__}"
                + (f" with keys {sorted(sample)}" if isinstance(sample, Mapping) else "")
            )
        if not self._allowed_keys.issuperset(sample):
            extra = set(sample) - self._allowed_keys
            raise SampleError(
                f"sample {key!r} carries {sorted(extra)}, which the spec does not declare; "
                f"declare them under 'targets' in the spec (accepted now: {sorted(self._allowed_keys)})"
            )
        image = sample["image"]
        if not isinstance(image, np.ndarray) or image.ndim not in (2, 3):
            raise SampleError(
                f"sample {key!r}: 'image' must be a HxW or HxWxC numpy array; got "
                f"{type(image).__name__}{getattr(image, 'shape', '')}"
            )

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
            diff = env.describe_differences(EnvStamp.current())
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
        if result.record.ops != tuple(record.ops):
            raise ReplayMismatch(_ops_difference(record, result.record))
        if record.output_digest is not None and result.record.output_digest != record.output_digest:
            raise ReplayMismatch(
                f"output for {record.key!r} (epoch {record.epoch}) differs from the recorded digest "
                f"({result.record.output_digest} != {record.output_digest})"
            )
        return result


def _applied_ops(applied: list[tuple[str, dict[str, Any]]]) -> tuple[dict[str, Any], ...]:
    from augledger.ops.image import NAMESPACE, jsonable_params

    return tuple({"op": f"{NAMESPACE}.{name}", "params": jsonable_params(params)} for name, params in applied)


def _ops_difference(recorded: Record, replayed: Record) -> str:
    for i, (a, b) in enumerate(zip(recorded.ops, replayed.ops, strict=False)):
        if a != b:
            return f"replay of {recorded.key!r} diverged at applied op {i}: recorded {a}, replayed {b}"
    return (
        f"replay of {recorded.key!r} applied {len(replayed.ops)} ops, the record lists {len(recorded.ops)}"
    )
