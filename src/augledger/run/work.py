"""The work of one source file, shared-nothing: read, decode, attach targets, augment, encode.

:class:`SampleJob` holds everything a worker needs (the pipeline, where the source is, the run's
options) and pickles to worker processes. Its methods are pure functions of their inputs and the
files they read: :meth:`SampleJob.produce` makes every output of one source file (or its
quarantine rows) without writing anything, and :func:`write_outputs` stores the files. Engines
decide where each runs; ``verify`` and ``replay`` call :meth:`SampleJob.prepare` and
:meth:`SampleJob.derive` to re-make one output exactly as the run did.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any, NamedTuple

from augledger._canonical import canonical_json, sha256_hex
from augledger.errors import Quarantined, SampleError, UnsafePath
from augledger.io.codecs import Annotation, Codec, Encoded, get_codec
from augledger.io.store import LocalStore, Store
from augledger.ledger.row import LedgerRow
from augledger.record import Augmented, Record, plain_json, sample_digest
from augledger.run.folder import ORIGINAL_EPOCH, mask_name, output_name
from augledger.run.labels import LabelFindings, index_labels, mask_fills, settle
from augledger.run.options import RunOptions
from augledger.run.rows import RowSource
from augledger.variants import Augmenter, Variants

__all__ = ["Output", "Prepared", "SampleJob", "Task", "finish_rows", "label_fields", "write_outputs"]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Task:
    """One source file and the outputs still to make from it."""

    key: str
    epochs: tuple[int, ...]
    original: bool
    annotation: Annotation | None


class Prepared(NamedTuple):
    """A source file ready for the pipeline: the sample, the conversion note, the mask file's digest,
    the codec's notes for writing it back (:attr:`Decoded.meta`) and the decoded sample before targets."""

    sample: dict[str, Any]
    note: str | None
    mask_source_digest: str | None
    meta: dict[str, Any]
    decoded: dict[str, Any]


@dataclass
class Output:
    """One output: its ledger row, the record whose params the row still needs, and its files.

    ``files[0]`` is the output itself; :func:`write_outputs` sets ``row.output_digest`` from its
    bytes unless the row has it already (an original's digest is its source's), and
    ``row.input_digest`` from ``payload``.
    """

    row: LedgerRow
    record: Record | None = None
    files: list[tuple[str, bytes]] = field(default_factory=list)
    #: The decoded sample (no targets) whose digest becomes ``row.input_digest`` (hashed by :func:`write_outputs`,
    #: which the in-process engine runs on its writer thread, overlapping the next samples' work).
    payload: Any = None


def label_fields(targets: Mapping[str, Any]) -> tuple[str, ...]:
    """The label fields the spec's bbox and keypoint targets declare, in order, without repeats."""
    names = [*(targets.get("bboxes") or {}).get("label_fields", ()), *(targets.get("keypoints") or {}).get("label_fields", ())]
    return tuple(dict.fromkeys(names))


@dataclass(frozen=True)
class SampleJob:
    """What a worker needs to make outputs: pipeline, source, masks folder and options. Picklable.

    ``rows``: a JSON Lines/CSV text source (:mod:`augledger.run.rows`), read through its own store;
    ``source_root`` is then its file.
    """

    pipeline: Augmenter
    source_root: str
    options: RunOptions
    masks_root: str | None = None
    rows: RowSource | None = None

    @cached_property
    def codec(self) -> Codec:
        return get_codec(self.pipeline.modality, max_pixels=self.options.max_pixels, jpeg_quality=self.options.jpeg_quality)

    @cached_property
    def mask_fill(self) -> dict[str, frozenset[int]]:
        """fingerprint -> the values its ops fill masks with (allowed new mask values, :mod:`augledger.run.labels`)."""
        arms = self.pipeline.pipelines.values() if isinstance(self.pipeline, Variants) else [self.pipeline]
        return {arm.fingerprint: mask_fills(arm.resolved_spec) for arm in arms}

    @cached_property
    def source(self) -> Store:
        return self.rows.store if self.rows is not None else LocalStore(self.source_root)

    @cached_property
    def masks(self) -> Store:
        return LocalStore(self.masks_root) if self.masks_root is not None else self.source

    def __getstate__(self) -> dict[str, Any]:
        # The cached stores and codec are rebuilt on the other side.
        return {"pipeline": self.pipeline, "source_root": self.source_root, "options": self.options,
                "masks_root": self.masks_root, "rows": self.rows}

    def __setstate__(self, state: dict[str, Any]) -> None:
        for name, value in state.items():
            object.__setattr__(self, name, value)

    # -- the pieces verify and replay use ----------------------------------------------------------

    def read_source(self, key: str) -> bytes:
        """The source file's bytes. Raises ``OSError``, or :class:`UnsafePath` for a key leaving the source."""
        return self.source.read(key)

    def prepare(self, data: bytes, annotation: Annotation | None) -> Prepared:
        """Decode a source file and attach its targets.

        Returns:
            The pipeline input, the conversion note, and the SHA-256 of the mask file it read (a
            resume and ``verify`` compare it), hashed from the bytes the codec read: no second read.

        Raises:
            Quarantined: the file cannot be decoded, or its annotation does not fit it.
        """
        read: dict[str, bytes] = {}

        def read_mask(path: str) -> bytes:
            read[path] = self.masks.read(path)
            return read[path]

        decoded = self.codec.decode(data if self.rows is None else self.rows.text_of(data))
        payload = dict(decoded.sample)  # attach may add targets to the decoded dict itself
        sample = self.codec.attach(decoded.sample, annotation, self.pipeline.resolved_targets, read_mask)
        mask = annotation.mask if annotation is not None else None
        mask_digest = sha256_hex(read[mask]) if mask is not None and mask in read and "mask" in sample else None
        return Prepared(sample, decoded.note, mask_digest, decoded.meta, payload)

    def derive(
        self, sample: Mapping[str, Any], key: str, epoch: int, meta: Mapping[str, Any] | None = None,
    ) -> tuple[Encoded, Augmented, LabelFindings | None]:
        """Augment and encode one output, and check what happened to its labels (:mod:`augledger.run.labels`).

        Raises:
            SampleError: the pipeline failed on this sample.
            Quarantined: the output cannot be encoded (``unencodable``), or, with ``strict_labels``,
                its labels broke a rule (``label``).
        """
        targets = self.pipeline.resolved_targets
        if not (targets.get("bboxes") or targets.get("keypoints") or targets.get("mask")):
            result = self.pipeline.apply(sample, key=key, epoch=epoch)
            return self.codec.encode(result.sample, self.output_format(key), meta), result, None
        indexed, index = index_labels(sample, targets)
        result = self.pipeline.apply(indexed, key=key, epoch=epoch)
        out, findings = settle(sample, result.sample, index, targets, self.mask_fill[result.record.fingerprint])
        if findings.problems and self.options.strict_labels:
            raise Quarantined("label", "; ".join(findings.problems) + " (--strict-labels)")
        result = Augmented(out, result.record)
        return self.codec.encode(result.sample, self.output_format(key), meta), result, findings

    def output_format(self, key: str) -> str:
        """The format (suffix) of ``key``'s augmented outputs."""
        return self.codec.output_format(key, self.options.image_format or self.codec.formats[0])

    def targets_json(
        self, sample: Mapping[str, Any], annotation: Annotation | None, mask: tuple[str, bytes] | None,
        mask_source_digest: str | None = None, labels: LabelFindings | None = None,
    ) -> str | None:
        """The ledger's ``targets``: label, carried columns, boxes/points/labels of ``sample``, and for
        a mask its stored path (``mask``), the stored file's digest (``mask_digest``, which verify
        checks) and the source mask's digest (``mask_source_digest``, which a resume checks); the
        boxes/points dropped (``dropped``) and label problems found (``label_problems``)."""
        data: dict[str, Any] = {}
        if annotation is not None:
            data.update(annotation.carry)
            if annotation.label is not None:
                data["label"] = annotation.label
        stored = self.codec.stored_fields
        for name, value in sample.items():
            if name not in stored:
                data[name] = plain_json(value)
        if annotation is not None:
            for name, given in annotation.extra.items():
                if name in data:
                    data[name] = _as_given(data[name], given)
        if mask is not None:
            data["mask"] = mask[0]
            data["mask_digest"] = sha256_hex(mask[1])
            if mask_source_digest is not None:
                data["mask_source_digest"] = mask_source_digest
        if labels is not None:
            data.update(labels.to_targets())
        return canonical_json(data).decode() if data else None

    # -- one source file ---------------------------------------------------------------------------

    def produce(self, task: Task) -> list[Output]:
        """Every output of one source file, or its quarantine rows; never raises for a bad sample."""
        key, pipe = task.key, self.pipeline
        fmt = self.output_format(key)
        wanted = [*((ORIGINAL_EPOCH,) if task.original else ()), *task.epochs]

        def seed_hex(epoch: int) -> str | None:
            # Only quarantine rows need it here; an ok row takes the seed from its record.
            return None if epoch == ORIGINAL_EPOCH else pipe.sample_seed_hex(key=key, epoch=epoch)

        # Every augmented row, quarantined ones too, names the pipeline version and variant of its key.
        fingerprint, variant = pipe.arm(key).fingerprint, pipe.variant_of(key)

        def quarantine(epoch: int, reason: str, message: str, source_digest: str | None, payload: Any = None) -> Output:
            row = LedgerRow.quarantined(key, epoch, seed_hex(epoch), reason, message, source_digest=source_digest)
            if epoch != ORIGINAL_EPOCH:
                row.fingerprint, row.variant = fingerprint, variant
            return Output(row, payload=payload)

        def quarantine_all(reason: str, message: str, source_digest: str | None) -> list[Output]:
            log.warning("quarantined %s: %s: %s", key, reason, message)
            return [quarantine(e, reason, message, source_digest) for e in wanted]

        too_long = _name_too_long(output_name(key, 0 if task.epochs else ORIGINAL_EPOCH, fmt))
        if too_long:
            return quarantine_all("name-too-long", too_long, None)
        try:
            data = self.read_source(key)
        except UnsafePath as exc:
            return quarantine_all("unsafe-path", str(exc), None)
        except OSError as exc:  # the reason only: an absolute path would tie the ledger to this machine
            return quarantine_all("unreadable", exc.strerror or type(exc).__name__, None)
        src = sha256_hex(data)
        try:
            sample, note, mask_digest, meta, decoded = self.prepare(data, task.annotation)
        except Quarantined as q:
            return quarantine_all(q.reason, str(q), src)
        # The decoded image, hashed into input_digest where files are written, when the run asks for it.
        payload = decoded if self.options.input_digests else None
        outputs: list[Output] = []
        if task.original:
            rel = output_name(key, ORIGINAL_EPOCH, fmt)
            files = [(rel, data)]
            try:
                side = self.codec.encode_side(sample)  # the original's mask, stored like a copy's
            except Quarantined as q:
                outputs.append(quarantine(ORIGINAL_EPOCH, q.reason, str(q), src, payload))
            else:
                mask = (mask_name(key, ORIGINAL_EPOCH), side["mask.png"]) if "mask.png" in side else None
                files += [mask] if mask else []
                row = LedgerRow(key, ORIGINAL_EPOCH, None, ops="[]",
                                targets=self.targets_json(sample, task.annotation, mask, mask_digest),
                                source_digest=src, output_path=rel, output_digest=src)  # the same bytes: no second hash
                outputs.append(Output(row, None, files, payload))
        for epoch in task.epochs:
            try:
                encoded, result, labels = self.derive(sample, key, epoch, meta)
            except SampleError as exc:
                cause = exc.__cause__
                message = str(cause or exc) if isinstance(cause, (ValueError, TypeError)) else str(exc)
                # Boxes/points the backend rejects are the annotation's fault; anything else (e.g. a crop
                # larger than this image) is the op's failure on this sample.
                annotated = any(_has_items(sample.get(k)) for k in ("bboxes", "keypoints")) or "mask" in sample
                reason = "annotation" if annotated and isinstance(cause, ValueError) else "augment"
                if reason == "annotation" and _has_items(sample.get("bboxes")):
                    h, w = sample["image"].shape[:2]
                    message += f" (boxes as given: {plain_json(sample['bboxes'])}, on a {w}x{h} image)"
                log.warning("quarantined %s copy %d: %s: %s", key, epoch, reason, message)
                outputs.append(quarantine(epoch, reason, message, src, payload))
                continue
            except Quarantined as q:
                outputs.append(quarantine(epoch, q.reason, str(q), src, payload))
                continue
            rel = output_name(key, epoch, fmt)
            files = [(rel, encoded.data)]
            mask = (mask_name(key, epoch), encoded.side["mask.png"]) if "mask.png" in encoded.side else None
            files += [mask] if mask else []
            row = LedgerRow(key, epoch, result.record.seed, note=note,
                            targets=self.targets_json(result.sample, task.annotation, mask, mask_digest, labels),
                            source_digest=src, output_path=rel, fingerprint=fingerprint, variant=variant)
            outputs.append(Output(row, result.record, files, payload))
        return outputs


#: The longest file name this writes, with room for the temporary name's ``.<name>.tmp-<pid>``.
_MAX_NAME_BYTES = 255 - len(".") - len(".tmp-") - 7


def _name_too_long(path: str) -> str | None:
    """Why an output path has a component the file system cannot hold, or ``None`` (checked before any work)."""
    for part in path.split("/"):
        size = len(part.encode("utf-8")) + len(".mask.png")
        if size > _MAX_NAME_BYTES:
            return (f"the output file name {part[:40]!r}... would be {size} bytes, over the file system's limit "
                    f"({_MAX_NAME_BYTES} here); shorten the source file's name")
    return None


def _as_given(values: Any, given: Any) -> Any:
    """Label values as the annotations wrote them: Albumentations hands integer box labels back as
    floats (``3`` -> ``3.0``), which would renumber classes in an export."""
    if (isinstance(values, list) and isinstance(given, list) and given
            and all(isinstance(g, int) and not isinstance(g, bool) for g in given)):
        return [int(v) if isinstance(v, float) and v.is_integer() else v for v in values]
    return values


def _has_items(value: Any) -> bool:
    try:
        return len(value) > 0
    except TypeError:
        return value is not None


def finish_rows(outputs: Sequence[Output]) -> list[LedgerRow]:
    """The outputs' rows with their applied params as JSON.

    Converting the params of a handful of records in one go, after the pixel work, costs much
    less than interleaving each conversion with image processing that has just flushed the caches.
    """
    rows = []
    for output in outputs:
        if output.record is not None:
            output.row.ops = canonical_json(list(output.record.ops)).decode()
        rows.append(output.row)
    return rows


def write_outputs(outputs: Sequence[Output], store: Store) -> None:
    """Write every output's files atomically, and set each row's ``output_digest`` from its bytes
    and ``input_digest`` from its decoded image (hashed once per source file).

    A row whose file could not be written raises here; nothing is journaled for it.
    """
    payload_digests: dict[int, str] = {}
    for output in outputs:
        if output.payload is not None and output.row.input_digest is None:
            digest = payload_digests.get(id(output.payload))
            if digest is None:
                digest = payload_digests[id(output.payload)] = sample_digest(output.payload)
            output.row.input_digest = digest
        for i, (path, data) in enumerate(output.files):
            store.write(path, data)
            if i == 0 and output.row.output_digest is None:
                output.row.output_digest = sha256_hex(data)

