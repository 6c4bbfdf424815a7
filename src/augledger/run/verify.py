"""Verify and replay materialised datasets from their source, manifest and ledger.

``verify`` checks, for an output folder: that the manifest's ledger digest matches the ledger and
every shard its recorded digest; that every data file in the folder is listed in the ledger (an
unlisted file would be trained on without provenance); and, for each checked output, that the
stored bytes match the ledger, the source still matches its recorded digest, and re-deriving the
output from the source gives the same bytes. For an online ledger it checks what can be checked
without the training data (see :func:`verify_online_ledger`).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from augledger._canonical import sha256_hex
from augledger.env import EnvStamp
from augledger.errors import LedgerError, Quarantined, SampleError, UnsafePath
from augledger.ledger.online import in_ledger_sample
from augledger.ledger.parquet import Ledger, read_ledger
from augledger.record import same_ops
from augledger.run.batch_mix import check_mix_rows
from augledger.run.export import ExportEntry, box_args, export_files, image_size, per_image_path
from augledger.run.findings import Problem, VerifyReport
from augledger.run.folder import ORIGINAL_EPOCH, data_files, mask_of
from augledger.run.manifest import read_manifest
from augledger.run.output import OutputFolder, comparable_targets
from augledger.run.rows import export_problems
from augledger.variants import Augmenter, compile_recorded

__all__ = ["Problem", "Replayed", "VerifyReport", "replay_output", "verify", "verify_online_ledger"]


def _online_ledger(path: Path) -> Ledger | None:
    """The ledger at ``path`` when it is an online (training) ledger rather than a run's output folder."""
    candidate = path if path.is_file() else path / "ledger.parquet"
    if path.is_dir() and (path / "manifest.json").is_file():
        return None
    if not candidate.is_file():
        return None
    ledger = read_ledger(candidate)
    return ledger if ledger.header.get("kind") == "online" else None


def verify_online_ledger(ledger: Ledger, *, sample: int | None = None) -> VerifyReport:
    """Check an online (training) ledger for consistency with the pipeline it records.

    Online inputs live in the user's dataset, which the ledger does not point to, so outputs cannot
    be re-derived here (replay a row with ``Pipeline.replay``). What is checked: the recorded
    resolved spec still compiles to the recorded fingerprint in this environment; every row's seed
    is the one derived from (fingerprint, seed, epoch, key), which catches rows edited, moved to
    another key or epoch, or taken from another pipeline; with a sampling rate below 1, every row
    belongs to the sampled subset; no (key, epoch) appears twice; and each batch-mixing record
    (``mix``: partner, lambda, CutMix box) is the one its batch derives (:func:`~augledger.run.batch_mix.check_mix_rows`).
    """
    header = ledger.header
    report = VerifyReport(fingerprint=str(header.get("fingerprint", "")))
    pipeline = compile_recorded(header)
    if "env" in header:
        report.env_differences = EnvStamp.from_dict(header["env"]).describe_differences(EnvStamp.current(pipeline.modality))
    if pipeline.fingerprint != report.fingerprint:
        report.problems.append(Problem("*", 0, (
            f"the recorded spec now resolves to {pipeline.fingerprint}, not {report.fingerprint}: "
            "the backend's defaults differ in this environment"
        )))
        return report
    rate = float(header.get("sample_rate", 1.0))
    rows = ledger.rows()
    seen: set[tuple[str, int]] = set()
    for row in rows:
        ident = (row["key"], row["epoch"])
        if ident in seen:
            report.problems.append(Problem(row["key"], row["epoch"], "appears more than once in the ledger"))
        seen.add(ident)
    picked = _pick(rows, sample)
    for row in picked:
        key, epoch = row["key"], row["epoch"]
        report.checked += 1
        expected = pipeline.sample_seed_hex(key=key, epoch=epoch)
        routing = _routing_problem(pipeline, row, int(header.get("format", 0)))
        if routing:
            report.problems.append(Problem(key, epoch, routing))
        elif row["seed"] != expected:
            report.problems.append(Problem(key, epoch, (
                f"seed {row['seed']} is not the one derived for this key and epoch ({expected}): "
                "the row was edited or belongs to another pipeline"
            )))
        elif not in_ledger_sample(expected, rate):
            report.problems.append(Problem(key, epoch, f"is outside the ledger's sampled subset at rate {rate}"))
    for key, epoch, message in check_mix_rows(rows, picked, fingerprint=pipeline.fingerprint, seed=pipeline.seed):
        report.problems.append(Problem(key, epoch, message))
    return report


def _pick(rows: list[dict[str, Any]], n: int | None) -> list[dict[str, Any]]:
    if n is None or n >= len(rows):
        return rows
    # A deterministic sample spread over the whole dataset: order rows by a hash of their identity.
    ranked = sorted(rows, key=lambda r: hashlib.sha256(f"{r['key']}\0{r['epoch']}".encode()).digest())
    return sorted(ranked[:n], key=lambda r: (r["key"], r["epoch"]))


def verify(
    out: str | Path, *, sample: int | None = None, source: str | Path | None = None,
    annotations: str | Path | None = None, masks: str | Path | None = None,
) -> VerifyReport:
    """Check a materialised dataset against its ledger and re-derive outputs from the source.

    Args:
        out: the output folder of ``augledger run`` (or an online ledger folder or file).
        sample: re-derive only this many outputs (a deterministic spread); all by default. The
            folder-level checks (ledger digest, shards, unlisted files) always run in full.
        source, annotations, masks: where those are now, if they moved since the run.

    Raises:
        LedgerError: the folder cannot be read as an output folder (naming why and the fix).
    """
    online = _online_ledger(Path(out))
    if online is not None:
        return verify_online_ledger(online, sample=sample)
    if (Path(out) / "manifest.json").is_file() and read_manifest(out).get("modality") == "tabular":
        from augledger.run.table_verify import verify_table  # a table: recomputed cell by cell

        return verify_table(out, source=source)
    ds = OutputFolder(out, source, annotations, masks)
    report = VerifyReport(fingerprint=ds.manifest["fingerprint"])
    report.env_differences = ds.env.describe_differences(EnvStamp.current(ds.pipeline.modality))
    if ds.pipeline.fingerprint != ds.manifest["fingerprint"]:
        report.problems.append(Problem("*", 0, (
            f"the recorded spec now resolves to {ds.pipeline.fingerprint}, not {ds.manifest['fingerprint']}: "
            "the backend's defaults differ in this environment"
        )))
        return report
    _check_folder(ds, report)
    rows = [r for r in ds.ledger.rows() if r["status"] == "ok"]
    try:
        # In (key, epoch) order, as stored: each shard is opened once.
        _check_rows(ds, sorted(_pick(rows, sample), key=lambda r: (r["key"], r["epoch"])), report)
    finally:
        ds.close()
    return report


def _check_folder(ds: OutputFolder, report: VerifyReport) -> None:
    """Folder-level checks: the ledger is the manifest's, shards are intact, no data file is unlisted,
    and the annotations are the file the run used."""
    if ds.annotations_digest != ds.manifest["source"].get("annotations_digest"):
        report.problems.append(Problem("*", 0, (
            f"the annotations file ({ds.annotations_path or 'none'}) is not the one the run used "
            f"(digest {str(ds.annotations_digest)[:19]}…, run {str(ds.manifest['source'].get('annotations_digest'))[:19]}…)"
        )))
    recorded = ds.manifest.get("ledger")
    if isinstance(recorded, Mapping) and recorded.get("sha256"):
        actual = sha256_hex((ds.out / "ledger.parquet").read_bytes())
        if actual != recorded["sha256"]:
            report.problems.append(Problem("*", 0, "ledger.parquet was changed since the run (its digest is not the manifest's)"))
    for shard in ds.manifest.get("shards", []):
        path = ds.out / shard["name"]
        if not path.is_file():
            report.problems.append(Problem("*", 0, f"shard {shard['name']} is missing"))
        elif sha256_hex(path.read_bytes()) != shard["sha256"]:
            report.problems.append(Problem("*", 0, f"shard {shard['name']} was modified since the run"))
    listed: set[str] = {s["name"] for s in ds.manifest.get("shards", [])}
    export = ds.manifest.get("export") or {}
    entries: list[ExportEntry] = []
    for row in ds.ledger.rows():
        if row["status"] != "ok" or not row["output_path"]:
            continue
        targets = json.loads(row["targets"] or "null")
        if "#" not in row["output_path"]:
            listed.add(row["output_path"])
            per_image = per_image_path(export.get("format", ""), row["output_path"])
            if per_image:
                listed.add(per_image)
            mask = mask_of(row["targets"])
            if mask:
                listed.add(mask)
        if export:
            stored = ds.stored_output(row["output_path"])
            try:
                size = image_size(stored) if stored is not None else None
            except Exception:  # a damaged output: reported by the row checks; the export cannot be re-made
                size = None
            if size is None:
                report.problems.append(Problem(row["key"], row["epoch"], "the export cannot be checked: the output cannot be read"))
                continue
            entries.append(ExportEntry(row["key"], row["epoch"], row["output_path"], *size, targets or {}))
    if export:
        _check_export(ds, export, entries, report)
    rows = ds.manifest.get("rows")
    if isinstance(rows, Mapping):  # a JSON Lines/CSV text source: augmented.jsonl|csv re-made from ledger and outputs
        stored = ds.stored_output(str(rows["path"]))
        for key, epoch, message in export_problems(rows, ds.ledger.rows(), ds.stored_output, stored):
            report.problems.append(Problem(key, epoch, message))
    unlisted = sorted(data_files(ds.out) - listed)
    for path in unlisted[:20]:
        report.problems.append(Problem("*", 0, f"{path} is not in the ledger: a file no run recorded (remove it, or rerun)"))
    if len(unlisted) > 20:
        report.problems.append(Problem("*", 0, f"... and {len(unlisted) - 20} more files not in the ledger"))


def _check_export(ds: OutputFolder, export: Mapping[str, Any], entries: list[ExportEntry], report: VerifyReport) -> None:
    """Re-make the annotations export from the ledger and compare it file by file."""
    expected = export_files(str(export["format"]), entries, **box_args(ds.pipeline.resolved_targets))
    for path, data in sorted(expected.items()):
        stored = ds.stored_output(path)
        if stored is None:
            report.problems.append(Problem("*", 0, f"{export['format']} export file {path} is missing"))
        elif stored != data:
            report.problems.append(Problem("*", 0, f"{export['format']} export file {path} does not match the ledger"))


def _routing_problem(pipeline: Augmenter, row: Mapping[str, Any], ledger_format: int) -> str | None:
    """Why a row's fingerprint or variant is not the one its key routes to (``None`` when it is).

    Rows of ledgers before format 3 have no fingerprint column to check.
    """
    if row["epoch"] == ORIGINAL_EPOCH:
        return None
    arm, variant = pipeline.arm(row["key"]).fingerprint, pipeline.variant_of(row["key"])
    recorded = row.get("fingerprint")
    if (recorded == arm or (recorded is None and ledger_format < 3)) and row.get("variant") == variant:
        return None
    return (f"is recorded as made by {row.get('variant') or 'pipeline'} {row.get('fingerprint')}, but the key routes "
            f"to {variant or 'pipeline'} {arm}: the row was edited or belongs to another experiment")


def _check_rows(ds: OutputFolder, rows: Iterable[Mapping[str, Any]], report: VerifyReport) -> None:
    for row in rows:
        key, epoch = row["key"], row["epoch"]
        report.checked += 1
        routing = _routing_problem(ds.pipeline, row, int(ds.ledger.header.get("format", 0)))
        if routing:
            report.problems.append(Problem(key, epoch, routing))
            continue
        stored = ds.stored_output(row["output_path"])
        if stored is None:
            report.problems.append(Problem(key, epoch, f"output {row['output_path']} is missing"))
            continue
        if sha256_hex(stored) != row["output_digest"]:
            report.problems.append(Problem(key, epoch, f"output {row['output_path']} was modified since the run "
                                                      f"(digest {sha256_hex(stored)[:19]}…, ledger {row['output_digest'][:19]}…)"))
            continue
        try:
            source_bytes = ds.job.read_source(key)
        except (OSError, UnsafePath) as exc:
            report.problems.append(Problem(key, epoch, f"source cannot be read: {exc}"))
            continue
        if sha256_hex(source_bytes) != row["source_digest"]:
            report.problems.append(Problem(key, epoch, "source file changed since the run"))
            continue
        recorded = json.loads(row["targets"] or "null") or {}
        mask_path = recorded.get("mask")
        if isinstance(mask_path, str):
            stored_mask = ds.stored_output(mask_path)
            if stored_mask is None:
                report.problems.append(Problem(key, epoch, f"mask {mask_path} is missing"))
                continue
            if sha256_hex(stored_mask) != recorded.get("mask_digest"):
                report.problems.append(Problem(key, epoch, f"mask {mask_path} was modified since the run"))
                continue
        try:
            again = ds.rederive(key, epoch, source_bytes)
        except (Quarantined, SampleError) as exc:
            report.problems.append(Problem(key, epoch, f"re-deriving failed: {exc}"))
            continue
        again_targets = comparable_targets(again.targets) or {}
        if "mask_source_digest" in recorded and again_targets.get("mask_source_digest") != recorded["mask_source_digest"]:
            report.problems.append(Problem(key, epoch, "source mask changed since the run"))
        elif sha256_hex(again.data) != row["output_digest"]:
            report.problems.append(Problem(key, epoch, "re-derived output differs from the recorded one"))
        elif again_targets != (comparable_targets(row["targets"]) or {}):
            report.problems.append(Problem(key, epoch, (
                "re-derived targets (boxes, labels, mask) differ from the recorded ones: the annotations "
                "are not those the run used"
            )))


@dataclass(frozen=True)
class Replayed:
    """One output reproduced: its bytes (and its mask's), its ledger row, the params applied, the
    environment differences, and whether the file stored in the folder still matches the ledger."""

    data: bytes
    row: dict[str, Any]
    ops: list[dict[str, Any]]
    env_differences: str
    mask: bytes | None = None
    stored_matches: bool = True


def replay_output(
    out: str | Path, key: str, epoch: int = 0, *, source: str | Path | None = None,
    annotations: str | Path | None = None, masks: str | Path | None = None,
) -> Replayed:
    """Reproduce one output byte for byte and check it against the ledger.

    Raises:
        LedgerError: the ledger has no such output, or the reproduction does not match it (the
            message names the environment differences when there are any).
    """
    ds = OutputFolder(out, source, annotations, masks)
    env_differences = ds.env.describe_differences(EnvStamp.current(ds.pipeline.modality))
    rows = ds.ledger.find(key, epoch)
    if not rows:
        epochs = sorted(r["epoch"] for r in ds.ledger.find(key))
        hint = f"it has copies {epochs}" if epochs else "no such key in the ledger"
        raise LedgerError(f"no output for key {key!r} copy {epoch} in {str(out)!r}; {hint}")
    row = rows[0]
    if row["status"] != "ok":
        raise LedgerError(f"{key!r} copy {epoch} was quarantined: {row['error']}")
    try:
        again = ds.rederive(key, epoch)
    except (OSError, UnsafePath) as exc:
        raise LedgerError(f"the source of {key!r} cannot be read: {exc}; pass --source if it moved") from None
    except (Quarantined, SampleError) as exc:
        raise LedgerError(f"reproducing {key!r} copy {epoch} failed: {exc}") from None
    finally:
        ds.close()
    because = f" (the environment differs from the run's: {env_differences})" if env_differences else ""
    if sha256_hex(again.data) != row["output_digest"]:
        raise LedgerError(f"reproducing {key!r} copy {epoch} gave other bytes than the ledger records{because}")
    result = again.result
    ops = list(result.record.ops) if result is not None else []
    if result is not None and not same_ops(json.loads(row["ops"]), ops):
        raise LedgerError(f"reproducing {key!r} copy {epoch} applied other params than the ledger records{because}")
    if comparable_targets(again.targets) != comparable_targets(row["targets"]):
        raise LedgerError(f"reproducing {key!r} copy {epoch} gave other targets (boxes, labels, mask) than the "
                          "ledger records: the annotations are not those the run used")
    stored = ds.stored_output(row["output_path"])
    ds.close()
    return Replayed(again.data, row, ops, env_differences, again.mask,
                    stored_matches=stored is not None and sha256_hex(stored) == row["output_digest"])
