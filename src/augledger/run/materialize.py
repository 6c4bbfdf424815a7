"""Offline materialisation: a source folder in, a versioned, verifiable augmented dataset out.

:func:`materialize` plans (what a previous run left complete, :mod:`~augledger.run.plan`), executes
(the per-sample work of :mod:`~augledger.run.work` on an :mod:`~augledger.run.engines` engine) and
commits (the journal as outputs complete, then the ledger, the shards, ``manifest.json`` and
``run.json``). The folder layout is described in :mod:`augledger.run.folder`.

How the promises are kept:

* **Determinism.** Each output is a pure function of (fingerprint, seed, copy, key) and the source
  bytes. Workers share nothing; results arrive in any order; the ledger is sorted at the end, so
  neither the worker count nor timing changes a byte of outputs, ledger or manifest.
* **Nothing lost, nothing duplicated, nothing stale.** Files are written atomically; a row reaches
  the journal only once its files are complete. On restart, journal rows whose source and output
  still match their digests are kept, everything else is redone (identically), and outputs whose
  source is gone, changed or now quarantined are removed. A killed (or Ctrl-C'd) run restarted with
  the same command ends with the files and ledger of an uninterrupted run.
* **One version per folder.** ``.augledger/identity.json`` names the fingerprint, seed, options and
  annotations digest; a run with anything else refuses (:class:`~augledger.errors.FingerprintConflict`).
* **Bad input is quarantined.** A sample that cannot be read, decoded, annotated or encoded gets a
  ``quarantined`` row with its reason and the run goes on.
"""

from __future__ import annotations

import hashlib
import json
import logging
import shutil
import sys
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from augledger._canonical import canonical_json, sha256_hex
from augledger._version import __version__
from augledger.env import EnvStamp
from augledger.errors import Interrupted, SourceError, SpecError, UnsafePath
from augledger.io.codecs import Annotation, get_codec
from augledger.io.store import LocalStore, check_relative
from augledger.ledger.parquet import LedgerWriter
from augledger.ledger.row import LedgerRow
from augledger.observe.base import RunObserver, RunStart
from augledger.run.engines import Engine, engine_for
from augledger.run.export import ExportEntry, check_export_names, image_size, write_export
from augledger.run.folder import (
    MANIFEST,
    ORIGINAL_EPOCH,
    RUN_INFO,
    STATE_DIR,
    claim_folder,
    clean_temporaries,
    data_files,
    locked,
    mask_of,
)
from augledger.run.journal import Journal
from augledger.run.manifest import MANIFEST_FORMAT, Summary, registry_facts, registry_run_facts, run_info
from augledger.run.options import RunOptions
from augledger.run.plan import plan_run
from augledger.run.policing import police_rows, policy_check
from augledger.run.rows import RowSource, row_source
from augledger.run.shards import ShardPacker
from augledger.run.sources import FolderSource, load_annotations
from augledger.run.splits import SplitSelection
from augledger.run.stopping import StopSignals
from augledger.run.work import SampleJob, label_fields
from augledger.spec import PolicySpec
from augledger.variants import Augmenter, Variants

__all__ = ["EXIT_QUARANTINED", "RunResult", "materialize"]

log = logging.getLogger(__name__)

#: Exit code of ``augledger run`` when the run finished but quarantined at least one sample.
EXIT_QUARANTINED = 3


@dataclass
class RunResult:
    """What a run produced: the manifest written to ``out/manifest.json``, the run's facts, and where."""

    out: Path
    manifest: dict[str, Any]
    run: dict[str, Any] = field(default_factory=dict)
    quarantined: list[dict[str, Any]] = field(default_factory=list)
    #: Outputs a previous, interrupted or finished run had already made and that still verified.
    reused: int = 0
    #: Output files of a previous run whose source is gone, changed or now quarantined: removed.
    removed: int = 0

    @property
    def exit_code(self) -> int:
        return EXIT_QUARANTINED if self.quarantined else 0


def materialize(
    pipeline: Augmenter,
    source: str | Path | RowSource,
    out: str | Path,
    *,
    options: RunOptions | None = None,
    annotations: str | Path | None = None,
    masks: str | Path | None = None,
    key_column: str = "key",
    observers: Sequence[RunObserver] = (),
    engine: Engine | None = None,
    command: Sequence[str] | None = None,
    provenance: Mapping[str, Any] | None = None,
    policies: Sequence[PolicySpec] = (),
    split: SplitSelection | None = None,
) -> RunResult:
    """Materialise ``options.copies`` augmented copies of every image under ``source`` into ``out``.

    Args:
        pipeline: the compiled pipeline.
        source: folder of images (keys are paths relative to it), or a JSON Lines/CSV text source
            (:class:`~augledger.run.rows.RowSource`: keys from its key field, ``augmented.jsonl|csv`` at the end).
        out: output folder: new, empty, or one made earlier by the same pipeline, seed, options and
            annotations (then the run resumes and only redoes what is missing or no longer verifies).
        options: copies, workers, format, ... (:class:`RunOptions`).
        annotations: optional CSV/JSONL file of labels, boxes, keypoints and masks (see :mod:`augledger.run.sources`).
        masks: the folder that annotation ``mask`` paths are relative to (default: ``source``).
        key_column: the annotations column that holds each image's key.
        observers: called as the run starts, as rows are journaled, and when it finishes.
        engine: where the per-sample work runs (default: :func:`~augledger.run.engines.engine_for` ``options.workers``).
        command: the command line to record in ``run.json``.
        provenance: where the spec came from when it was a registry version
            (:meth:`augledger.registry.SpecSource.provenance`): the REF as given, the version, its state
            and fingerprint go into the manifest and the ledger header, the registry's location into ``run.json``.
        policies: intensity policies to enforce besides the spec's own (:mod:`augledger.run.policing`).
        split: only the keys a split file marks ``train`` (``--split-file``); every source key must be in
            it. Its SHA-256 joins the folder's identity and the manifest (``split``).

    Returns:
        :class:`RunResult`; ``exit_code`` is 0, or :data:`EXIT_QUARANTINED` if samples were quarantined.

    Raises:
        FingerprintConflict: ``out`` holds another pipeline version, seed, options or annotations.
        OutputBusy: another run is writing into ``out`` right now.
        SourceError: the source folder or annotations cannot be read as a whole.
        WorkerError: a worker process died; what finished is kept for a rerun to resume.
        Interrupted: SIGINT or SIGTERM; every complete output is journaled for a rerun to resume.
        PolicyViolation: a pipeline breaks a policy (before any work), or a drawn value does (the run stops).
    """
    options = options or RunOptions()
    police = policy_check(pipeline, policies)
    arms = {n: p.fingerprint for n, p in pipeline.pipelines.items()} if isinstance(pipeline, Variants) else {}
    reg_facts = registry_facts(provenance, {"": pipeline.control.fingerprint if isinstance(pipeline, Variants) else
                                            pipeline.fingerprint, **arms})
    problem = pipeline.storage_problem()
    if problem:
        raise SpecError(f"this spec cannot be materialised: {problem}")
    started = datetime.now(timezone.utc)
    t0 = time.perf_counter()
    text_rows = row_source(source, pipeline.modality, options, annotations, masks)
    src_root = source.path if isinstance(source, RowSource) else Path(source).resolve()
    out = Path(out).resolve()
    if out == src_root or src_root in out.parents:
        raise SourceError(f"--out {str(out)!r} is inside --source {str(src_root)!r}: a later run would read the "
                          "outputs as inputs. Choose an --out outside the source folder.")
    if out in src_root.parents:
        raise SourceError(f"--source {str(src_root)!r} is inside --out {str(out)!r}: the run would treat the source as "
                          "its own outputs (and remove what the ledger does not list). Choose an --out outside the source folder.")
    masks_root = Path(masks).resolve() if masks is not None else None
    if masks_root is not None and not masks_root.is_dir():
        raise SourceError(f"--masks {str(masks_root)!r} is not a folder")
    targets = pipeline.resolved_targets
    ann_path = Path(annotations).resolve() if annotations is not None else None
    ann = (text_rows.annotations() if text_rows else  # a row source refuses --annotations
           load_annotations(ann_path, label_fields=label_fields(targets), key_column=key_column) if ann_path else {})
    _check_annotations_fit(ann, targets)
    codec = get_codec(pipeline.modality, max_pixels=options.max_pixels, jpeg_quality=options.jpeg_quality)
    options = options.with_format(codec.formats)
    src = text_rows or FolderSource(src_root, codec.extensions, **_mask_exclusions(ann, src_root, masks_root))
    keys = src.keys()
    if split is not None:  # the other splits' keys are not this dataset's: their annotations go too
        keys, ann = split.select(keys), {k: a for k, a in ann.items() if split.keeps(k)}
    if not keys and not ann:
        raise SourceError(f"no images found under {str(src_root)!r} (extensions: {' '.join(sorted(codec.extensions))})")
    if ann:
        unannotated = [k for k in keys if k not in ann]
        if unannotated:
            shown = ", ".join(unannotated[:5]) + (", ..." if len(unannotated) > 5 else "")
            log.warning("%d of %d source images have no row in the annotations file (%s); they are augmented "
                        "without targets", len(unannotated), len(keys), shown)
    _warn_undeclared(targets, annotated=ann_path is not None)
    ann_digest = _file_digest(ann_path)
    env = EnvStamp.current(pipeline.modality)
    if options.include_original:
        check_export_names(options.export_annotations, str(options.image_format), keys)
    # The environment too: outputs made under other library versions may differ, and one folder
    # never mixes them (a resume after an upgrade is refused, naming the libraries).
    identity = {"fingerprint": pipeline.fingerprint, "seed": pipeline.seed, "options": options.identity(),
                "annotations": ann_digest, "env": env.to_dict(), **({"rows": text_rows.identity()} if text_rows else {})}
    if split is not None:
        identity["split"] = split.identity()
    claim_folder(out, identity)
    with locked(out), StopSignals() as stop:
        claim_folder(out, identity)  # again, under the lock: a run that claimed it at the same time
        # A folder is finished only while it has a manifest: a rerun that is stopped half-way (say,
        # while re-packing shards) must not leave the previous manifest describing a changed folder.
        (out / MANIFEST).unlink(missing_ok=True)
        state = out / STATE_DIR
        write_root = state / "staging" if options.format == "webdataset" else out
        removed_tmp = clean_temporaries(out)
        if removed_tmp:
            log.info("removed %d temporary files left by an interrupted run", removed_tmp)
        outputs = LocalStore(write_root)
        journal = Journal(state / "journal.jsonl")
        try:
            plan = plan_run(keys, copies=options.copies, include_original=options.include_original, journal=journal,
                            source=src.store, outputs=outputs, masks=LocalStore(masks_root or src_root),
                            annotations=ann, stop=stop)
            reused = len(plan.done)
            police_rows(police, (journal.row(i) for i in plan.done.values()))
            missing = sorted(set(ann) - set(keys))
            total = plan.expected + len(missing) * len(plan.wanted_epochs)
            if reused:
                log.info("resuming: %d of %d outputs already complete and verified", reused, total)
            start = RunStart("offline", pipeline.fingerprint, pipeline.name, pipeline.seed, total, reused, str(out))
            for observer in observers:
                observer.on_start(start)
            job = SampleJob(pipeline, str(src_root), options, str(masks_root) if masks_root is not None else None, text_rows)
            engine = engine or engine_for(options.workers, options.chunk_size)
            try:
                for rows in engine.execute(job, plan.tasks(ann), outputs, stop):
                    for row in rows:
                        plan.done[(row.key, row.epoch)] = journal.append(row)
                    journal.flush()
                    police_rows(police, rows)
                    for observer in observers:
                        observer.on_rows(rows)
            except Interrupted as exc:
                raise Interrupted(exc.signum, (
                    f"interrupted by {exc.signal_name}: {len(plan.done)} of {total} outputs are complete and "
                    "journaled; run the same command again to resume"
                )) from None

            # Annotation keys that name no image file: nothing can be made from them, and nothing is dropped silently.
            extra_rows = [
                LedgerRow.quarantined(key, e, None if e == ORIGINAL_EPOCH else pipeline.sample_seed_hex(key=key, epoch=e),
                                      "missing-image", "listed in the annotations but no such file")
                for key in missing for e in plan.wanted_epochs
            ]
            for row in extra_rows:  # like every augmented row, it names its key's pipeline version and variant
                if row.epoch != ORIGINAL_EPOCH:
                    row.fingerprint, row.variant = pipeline.arm(row.key).fingerprint, pipeline.variant_of(row.key)
            for row in extra_rows:
                plan.done[(row.key, row.epoch)] = journal.append(row)
            if extra_rows:
                for observer in observers:
                    observer.on_rows(extra_rows)

            header = {
                "kind": "offline",
                "fingerprint": pipeline.fingerprint,
                "seed": pipeline.seed,
                "resolved_spec": pipeline.resolved_spec,
                "env": env.to_dict(),
                "options": options.identity(),
            }
            if reg_facts:
                header["registry"] = reg_facts
            if isinstance(pipeline, Variants):
                header["variants"] = pipeline.describe()
            summary = Summary(list(pipeline.pipelines) if isinstance(pipeline, Variants) else (),
                              labels=any(targets.get(k) for k in ("bboxes", "keypoints", "mask")))
            referenced: set[str] = set()
            exported: list[ExportEntry] = []
            packer = ShardPacker(write_root, out, options) if options.format == "webdataset" else None
            # Rows stream from the journal in (key, epoch) order into the ledger (and the shards).
            rows_digest = hashlib.sha256()  # the rows alone: the dataset's identity, whatever the header names
            with LedgerWriter(out / "ledger.parquet", header) as ledger:
                for n, pair in enumerate(sorted(plan.done)):
                    if n % 256 == 0:
                        stop.check("every output is complete and journaled; the rerun only writes the ledger")
                    row = journal.row(plan.done[pair])
                    summary.add(row)
                    if row.ok:
                        referenced.update(_paths_of(row))
                    # The ledger points into the shards; the journal keeps the staging paths resume needs.
                    stored = packer.add(row) if packer is not None and row.ok else row
                    ledger.write(stored)
                    rows_digest.update(canonical_json(stored.to_dict()) + b"\n")
                    if options.export_annotations and row.ok:
                        size = image_size(outputs.read(str(row.output_path)))
                        exported.append(ExportEntry(row.key, row.epoch, str(stored.output_path), *size,
                                                    json.loads(stored.targets or "{}")))
            if packer is not None:
                packer.close()
        finally:
            journal.close()
        export = write_export(out, options.export_annotations, exported, targets)
        referenced.update(export.get("per_image", []))
        removed = 0
        if packer is None:
            # Outputs of sources that are gone, changed into a quarantined file, or no longer wanted.
            for stale in sorted(data_files(out) - referenced):
                (out / stale).unlink()
                removed += 1
            if removed:
                log.warning("removed %d output file(s) no longer in the ledger (their source is gone or changed)", removed)
        quarantined, counts = summary.quarantined, summary.counts()
        manifest: dict[str, Any] = {
            "format": MANIFEST_FORMAT,
            "augledger": __version__,
            "fingerprint": pipeline.fingerprint,
            "seed": pipeline.seed,
            "name": pipeline.name,
            "resolved_spec": pipeline.resolved_spec,
            "env": header["env"],
            "options": options.identity(),
            "source": {"images": len(keys), "digest": summary.sources_digest(), "annotations_digest": ann_digest},
            "counts": counts,
            "quarantined": quarantined,
            "ledger": {"path": "ledger.parquet", "rows": counts["outputs"],
                       "sha256": _file_digest(out / "ledger.parquet"), "rows_sha256": "sha256:" + rows_digest.hexdigest()},
            "shards": packer.shards if packer is not None else [],
        }
        manifest.update({"rows": text_rows.finish(out, outputs)} if text_rows else {})  # augmented.jsonl|csv
        if export:
            manifest["export"] = {k: v for k, v in export.items() if k != "per_image"}
        if reg_facts:
            manifest["registry"] = reg_facts
        if isinstance(pipeline, Variants):
            manifest["variants"] = header["variants"]
        if split is not None:
            manifest["split"] = split.identity()
        if police is not None:
            manifest["policy"] = police.summary()
        seconds = time.perf_counter() - t0
        facts = run_info(
            started=started.isoformat(timespec="seconds"), finished=datetime.now(timezone.utc).isoformat(timespec="seconds"),
            seconds=seconds, command=list(command) if command is not None else sys.argv, workers=options.workers,
            out=out, source=src_root, annotations=ann_path, key_column=key_column, masks=masks_root, reused=reused,
            made=counts["outputs"] - reused, removed=removed,
        )
        if provenance:
            facts["registry"] = registry_run_facts(provenance)
        if split is not None:
            facts["split_file"] = str(split.path)
        folder = LocalStore(out)
        folder.write(RUN_INFO, json.dumps(facts, indent=2, sort_keys=True).encode())
        folder.write(MANIFEST, json.dumps(manifest, indent=2, sort_keys=True).encode())
        if options.format == "webdataset" and (state / "staging").exists():
            shutil.rmtree(state / "staging")
            journal.path.unlink()  # the shards are the outputs now; a rerun rebuilds from scratch
    log.info("run done: %d outputs, %d quarantined, %.1fs", counts["ok"], len(quarantined), seconds)
    for observer in observers:
        observer.on_finish(manifest)
    return RunResult(out, manifest, facts, quarantined, reused=reused, removed=removed)


def _paths_of(row: LedgerRow) -> list[str]:
    """The files an ok row stands for: its output and, if any, its mask."""
    mask = mask_of(row.targets)
    return [p for p in (row.output_path, mask) if p]


def _file_digest(path: Path | None) -> str | None:
    return None if path is None else sha256_hex(path.read_bytes())


def _mask_exclusions(ann: Mapping[str, Annotation], src_root: Path, masks_root: Path | None) -> dict[str, Any]:
    """Keys under the source that are masks, not samples: those the annotations name, or all of ``--masks``."""
    if masks_root is None or masks_root == src_root:
        named = set()
        for a in ann.values():
            if a.mask:
                try:
                    named.add(check_relative(a.mask))  # ./masks/a.png is the listed masks/a.png
                except UnsafePath:
                    pass  # refused when the sample is read
        return {"exclude": named}
    if src_root in masks_root.parents:
        return {"exclude_dirs": [masks_root.relative_to(src_root).as_posix()]}
    return {}


def _check_annotations_fit(ann: Mapping[str, Annotation], targets: Mapping[str, Any]) -> None:
    for key, a in ann.items():
        for kind in ("bboxes", "keypoints"):
            if getattr(a, kind) and not targets.get(kind):
                raise SourceError(
                    f"annotations for {key!r} carry {kind}, but the spec declares no targets.{kind}; "
                    f"declare it in the spec (format and label_fields) so they are transformed with the image"
                )
        if a.mask and not targets.get("mask"):
            raise SourceError(f"annotations for {key!r} name a mask, but the spec does not set targets.mask: true")


def _warn_undeclared(targets: Mapping[str, Any], *, annotated: bool) -> None:
    declared = [kind for kind in ("bboxes", "keypoints", "mask") if targets.get(kind)]
    if declared and not annotated:
        log.warning("the spec declares targets %s but the run has no --annotations: every image is augmented "
                    "without them", declared)
