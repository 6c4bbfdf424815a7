"""Verify and replay materialised datasets from their source, manifest and ledger."""

from __future__ import annotations

import hashlib
import json
import tarfile
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import augledger
from augledger.env import EnvStamp
from augledger.errors import LedgerError, SampleError
from augledger.ledger import Ledger, in_ledger_sample, read_ledger
from augledger.pipeline import Pipeline
from augledger.run.imageio import Quarantined, decode_image
from augledger.run.materialize import (
    ORIGINAL_EPOCH,
    RunOptions,
    _Job,
    augment_one,
    build_sample,
    label_fields,
    read_manifest,
)
from augledger.run.sources import Annotation, file_digest, load_annotations
from augledger.seeding import seed_for

__all__ = ["Problem", "VerifyReport", "replay_output", "verify", "verify_online_ledger"]


@dataclass(frozen=True)
class Problem:
    key: str
    epoch: int
    message: str


@dataclass
class VerifyReport:
    """Outcome of :func:`verify`. ``ok`` is true only when every checked output matched."""

    checked: int = 0
    problems: list[Problem] = field(default_factory=list)
    env_differences: str = ""
    fingerprint: str = ""

    @property
    def ok(self) -> bool:
        return not self.problems


class _OpenShard:
    """An open tar shard and its member headers (the data is read member by member, on demand)."""

    def __init__(self, name: str, tar: tarfile.TarFile) -> None:
        self.name, self.tar = name, tar
        self._members = {info.name: info for info in tar.getmembers()}

    def get(self, member: str) -> tarfile.TarInfo | None:
        return self._members.get(member)

    def extractfile(self, info: tarfile.TarInfo) -> Any:
        return self.tar.extractfile(info)


class _Dataset:
    """An output folder opened for reading: manifest, ledger, pipeline, source and outputs."""

    def __init__(self, out: str | Path, source: str | Path | None = None, annotations: str | Path | None = None):
        self.out = Path(out)
        self.manifest = read_manifest(self.out)
        self.ledger = read_ledger(self.out)
        if self.ledger.fingerprint != self.manifest["fingerprint"]:
            raise LedgerError(
                f"ledger fingerprint {self.ledger.fingerprint} does not match the manifest's "
                f"{self.manifest['fingerprint']}: the folder was modified by hand"
            )
        self.pipeline: Pipeline = augledger.compile(augledger.parse_spec(self.manifest["resolved_spec"]))
        self.options = RunOptions(**self.manifest["options"])
        self.source_root = Path(source or self.manifest["source"]["root"])
        ann_path = annotations or self.manifest["source"].get("annotations")
        fields = label_fields(self.pipeline.resolved_targets)
        self.annotations: dict[str, Annotation] = load_annotations(Path(ann_path), label_fields=fields) if ann_path else {}
        self._open: _OpenShard | None = None
        self.job = _Job(self.pipeline, str(self.source_root), str(self.out), self.options)

    def stored_output(self, row: Mapping[str, Any]) -> bytes | None:
        """The output's bytes as stored: a file, or a member of a shard (``shards/x.tar#member``)."""
        if self.options.format == "folder":
            path = self.out / row["output_path"]
            return path.read_bytes() if path.is_file() else None
        shard_name, _, member = str(row["output_path"]).partition("#")
        shard = self._shard(shard_name)
        info = shard.get(member) if shard is not None else None
        if shard is None or info is None:
            return None
        f = shard.extractfile(info)
        return f.read() if f is not None else None

    def _shard(self, name: str) -> _OpenShard | None:
        """The shard ``name``, opened once; rows come in key order, so only the latest stays open."""
        if self._open is not None and self._open.name == name:
            return self._open
        self.close()
        path = self.out / name
        if not path.is_file():
            return None
        self._open = _OpenShard(name, tarfile.open(path))
        return self._open

    def close(self) -> None:
        if self._open is not None:
            self._open.tar.close()
            self._open = None

    def rederive(self, key: str, epoch: int) -> tuple[bytes, Any]:
        """Re-make one output from the source: ``(encoded bytes, result or None for originals)``."""
        data = (self.source_root / key).read_bytes()
        if epoch == ORIGINAL_EPOCH:
            return data, None
        decoded = decode_image(data, max_pixels=self.options.max_pixels)
        sample = build_sample(decoded.image, self.annotations.get(key), self.pipeline.resolved_targets, str(self.source_root))
        encoded, result, _mask = augment_one(self.job, sample, key, epoch)
        return encoded, result


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
    belongs to the sampled subset; and no (key, epoch) appears twice.
    """
    header = ledger.header
    report = VerifyReport(fingerprint=str(header.get("fingerprint", "")))
    if "env" in header:
        report.env_differences = EnvStamp.from_dict(header["env"]).describe_differences(EnvStamp.current())
    pipeline = augledger.compile(augledger.parse_spec(header["resolved_spec"]))
    if pipeline.fingerprint != report.fingerprint:
        report.problems.append(Problem("*", 0, (
            f"the recorded spec now resolves to {pipeline.fingerprint}, not {report.fingerprint}: "
            "the backend's defaults differ in this environment"
        )))
        return report
    seed, rate = int(header["seed"]), float(header.get("sample_rate", 1.0))
    rows = ledger.rows()
    seen: set[tuple[str, int]] = set()
    for row in rows:
        ident = (row["key"], row["epoch"])
        if ident in seen:
            report.problems.append(Problem(row["key"], row["epoch"], "appears more than once in the ledger"))
        seen.add(ident)
    for row in _pick(rows, sample):
        key, epoch = row["key"], row["epoch"]
        report.checked += 1
        expected = f"{seed_for(report.fingerprint, seed=seed, epoch=epoch, key=key):032x}"
        if row["seed"] != expected:
            report.problems.append(Problem(key, epoch, (
                f"seed {row['seed']} is not the one derived for this key and epoch ({expected}): "
                "the row was edited or belongs to another pipeline"
            )))
        elif not in_ledger_sample(expected, rate):
            report.problems.append(Problem(key, epoch, f"is outside the ledger's sampled subset at rate {rate}"))
    return report


def _pick(rows: list[dict[str, Any]], n: int | None) -> list[dict[str, Any]]:
    if n is None or n >= len(rows):
        return rows
    # A deterministic sample spread over the whole dataset: order rows by a hash of their identity.
    ranked = sorted(rows, key=lambda r: hashlib.sha256(f"{r['key']}\0{r['epoch']}".encode()).digest())
    return sorted(ranked[:n], key=lambda r: (r["key"], r["epoch"]))


def verify(
    out: str | Path, *, sample: int | None = None, source: str | Path | None = None, annotations: str | Path | None = None
) -> VerifyReport:
    """Check a materialised dataset against its ledger and re-derive outputs from the source.

    For each checked output: the stored file must match the ledger digest (catches tampering and
    missing files), the source must match its recorded digest, and re-running the pipeline must
    produce the same bytes.

    Args:
        out: the output folder of ``augledger run``.
        sample: check only this many outputs (a deterministic spread); all by default.
        source: the source folder, if it moved since the run.
        annotations: the annotations file, if it moved since the run.
    """
    online = _online_ledger(Path(out))
    if online is not None:
        return verify_online_ledger(online, sample=sample)
    ds = _Dataset(out, source, annotations)
    report = VerifyReport(fingerprint=ds.manifest["fingerprint"])
    recorded_env = EnvStamp.from_dict(ds.manifest["env"])
    report.env_differences = recorded_env.describe_differences(EnvStamp.current())
    if ds.pipeline.fingerprint != ds.manifest["fingerprint"]:
        report.problems.append(Problem("*", 0, (
            f"the recorded spec now resolves to {ds.pipeline.fingerprint}, not {ds.manifest['fingerprint']}: "
            "the backend's defaults differ in this environment"
        )))
        return report
    rows = [r for r in ds.ledger.rows() if r["status"] == "ok"]
    try:
        # In (key, epoch) order, as stored: each shard is opened once.
        _check_rows(ds, sorted(_pick(rows, sample), key=lambda r: (r["key"], r["epoch"])), report)
    finally:
        ds.close()
    return report


def _check_rows(ds: _Dataset, rows: Iterable[Mapping[str, Any]], report: VerifyReport) -> None:
    for row in rows:
        key, epoch = row["key"], row["epoch"]
        report.checked += 1
        stored = ds.stored_output(row)
        if stored is None:
            report.problems.append(Problem(key, epoch, f"output {row['output_path']} is missing"))
            continue
        if file_digest(stored) != row["output_digest"]:
            report.problems.append(Problem(key, epoch, f"output {row['output_path']} was modified since the run "
                                                      f"(digest {file_digest(stored)[:19]}…, ledger {row['output_digest'][:19]}…)"))
            continue
        try:
            source_bytes = (ds.source_root / key).read_bytes()
        except OSError as exc:
            report.problems.append(Problem(key, epoch, f"source cannot be read: {exc}"))
            continue
        if file_digest(source_bytes) != row["source_digest"]:
            report.problems.append(Problem(key, epoch, "source file changed since the run"))
            continue
        try:
            encoded, _ = ds.rederive(key, epoch)
        except (Quarantined, SampleError) as exc:
            report.problems.append(Problem(key, epoch, f"re-deriving failed: {exc}"))
            continue
        if file_digest(encoded) != row["output_digest"]:
            report.problems.append(Problem(key, epoch, "re-derived output differs from the recorded one"))


def replay_output(
    out: str | Path,
    key: str,
    epoch: int = 0,
    *,
    source: str | Path | None = None,
    annotations: str | Path | None = None,
) -> tuple[bytes, dict[str, Any], list[dict[str, Any]]]:
    """Reproduce one output: ``(encoded bytes, its ledger row, the params applied)``.

    Raises:
        LedgerError: the ledger has no such output, or the reproduction does not match it.
    """
    ds = _Dataset(out, source, annotations)
    rows = ds.ledger.find(key, epoch)
    if not rows:
        epochs = sorted(r["epoch"] for r in ds.ledger.find(key))
        hint = f"it has copies {epochs}" if epochs else "no such key in the ledger"
        raise LedgerError(f"no output for key {key!r} copy {epoch} in {str(out)!r}; {hint}")
    row = rows[0]
    if row["status"] != "ok":
        raise LedgerError(f"{key!r} copy {epoch} was quarantined: {row['error']}")
    encoded, result = ds.rederive(key, epoch)
    if file_digest(encoded) != row["output_digest"]:
        raise LedgerError(f"reproducing {key!r} copy {epoch} gave other bytes than the ledger records")
    ops = list(result.record.ops) if result is not None else []
    if result is not None and json.loads(row["ops"]) != ops:
        raise LedgerError(f"reproducing {key!r} copy {epoch} applied other params than the ledger records")
    return encoded, row, ops
