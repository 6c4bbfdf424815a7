"""What a finished output folder says about itself: ``manifest.json`` (identity) and ``run.json`` (facts).

``manifest.json`` is the dataset's identity and is deterministic: fingerprint, resolved spec,
seed, environment stamp, the options that change outputs, the source digest, counts, the
quarantined outputs, the ledger's digest and the shards. Two identical runs, whatever their
worker count, timing or ``--out`` folder, write the same bytes, so a data-versioning tool that
hashes the folder sees no change. ``run.json`` beside it holds what differs from run to run:
times, command line, workers, host, and the absolute paths of the source and annotations (which
``verify`` and ``replay`` read the source from).
"""

from __future__ import annotations

import json
import os
import platform
import socket
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from augledger._version import __version__
from augledger.errors import LedgerError, SpecError
from augledger.ledger.row import LedgerRow
from augledger.run.folder import MANIFEST, RUN_INFO
from augledger.run.sources import SourcesDigest

__all__ = ["MANIFEST_FORMAT", "Summary", "read_manifest", "read_run_info", "registry_facts", "registry_run_facts", "run_info"]

#: 2: run facts moved to run.json; ledger digest; stale outputs removed.
MANIFEST_FORMAT = 2


class Summary:
    """Counts, quarantined outputs and the source digest, gathered from rows in (key, epoch) order."""

    def __init__(self, variants: Sequence[str] = (), *, labels: bool = False) -> None:
        self.outputs = self.ok = 0
        #: Label integrity counts (:mod:`augledger.run.labels`), when the spec declares boxes, points or a mask.
        self.labels: dict[str, int] | None = (
            {"outputs_with_drops": 0, "bboxes_dropped": 0, "keypoints_dropped": 0, "outputs_with_problems": 0,
             "problems": 0, "quarantined": 0} if labels else None)
        self.quarantined: list[dict[str, Any]] = []
        self._sources = SourcesDigest()
        self._key: str | None = None
        self._key_digests: set[str] = set()
        #: variant -> {"outputs", "ok", "quarantined"} (runs with variants only; a variant no key went to shows 0s).
        self.variants: dict[str, dict[str, int]] = {name: {"outputs": 0, "ok": 0, "quarantined": 0} for name in variants}

    def add(self, row: LedgerRow) -> None:
        self.outputs += 1
        if row.variant is not None:
            counts = self.variants.setdefault(row.variant, {"outputs": 0, "ok": 0, "quarantined": 0})
            counts["outputs"] += 1
            counts["ok" if row.ok else "quarantined"] += 1
        if row.ok:
            self.ok += 1
            if self.labels is not None and row.targets and ('"dropped"' in row.targets or '"label_problems"' in row.targets):
                self._count_labels(json.loads(row.targets))
        else:
            self.quarantined.append({"key": row.key, "epoch": row.epoch, "error": row.error})
            if self.labels is not None and (row.error or "").startswith("label:"):
                self.labels["quarantined"] += 1
        if row.key != self._key:
            self._flush_key()
            self._key = row.key
        if row.source_digest:
            self._key_digests.add(row.source_digest)

    def _count_labels(self, targets: Mapping[str, Any]) -> None:
        assert self.labels is not None
        dropped = targets.get("dropped") or {}
        if dropped:
            self.labels["outputs_with_drops"] += 1
        for kind in ("bboxes", "keypoints"):
            n = dropped.get(kind, 0)
            self.labels[f"{kind}_dropped"] += n if isinstance(n, int) else len(n)
        problems = targets.get("label_problems") or []
        if problems:
            self.labels["outputs_with_problems"] += 1
            self.labels["problems"] += len(problems)

    def _flush_key(self) -> None:
        if self._key is not None:
            for digest in sorted(self._key_digests):
                self._sources.add(self._key, digest)
        self._key_digests = set()

    def sources_digest(self) -> str:
        self._flush_key()
        self._key = None
        return self._sources.hexdigest()

    def counts(self) -> dict[str, Any]:
        counts: dict[str, Any] = {
            "outputs": self.outputs,
            "ok": self.ok,
            "quarantined": len(self.quarantined),
            "quarantined_keys": len({q["key"] for q in self.quarantined}),
        }
        if self.variants:
            counts["variants"] = {name: dict(c) for name, c in sorted(self.variants.items())}
        if self.labels is not None:
            counts["labels"] = dict(self.labels)
        return counts


def run_info(
    *, started: str, finished: str, seconds: float, command: list[str], workers: int, out: Path,
    source: Path, annotations: Path | None, key_column: str, masks: Path | None, reused: int, made: int, removed: int,
) -> dict[str, Any]:
    """The facts of one run, for ``run.json``."""
    return {
        "augledger": __version__,
        "started_at": started,
        "finished_at": finished,
        "seconds": round(seconds, 3),
        "command": command,
        "workers": workers,
        "host": socket.gethostname(),
        "python": sys.executable,
        # platform.platform() would run `uname -p` in a subprocess (a fork of a process of several hundred MB).
        "platform": f"{sys.platform}-{platform.machine()}-{os.uname().release}",
        "out": str(out),
        "source": str(source),
        "annotations": str(annotations) if annotations is not None else None,
        "key_column": key_column,
        "masks": str(masks) if masks is not None else None,
        "reused": reused,
        "made": made,
        "removed_stale": removed,
    }


def _read_json(out: Path, name: str, what: str) -> dict[str, Any]:
    path = out / name
    if not path.is_file():
        raise LedgerError(what)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise LedgerError(f"{str(path)!r} cannot be read: {exc}") from None
    if not isinstance(data, Mapping):
        raise LedgerError(f"{str(path)!r} is not a JSON object")
    return dict(data)


def read_manifest(out: str | Path) -> dict[str, Any]:
    """The manifest of a finished run (``out/manifest.json``).

    Raises:
        LedgerError: there is none (the run never finished, or ``out`` is not an output folder).
    """
    return _read_json(
        Path(out), MANIFEST,
        f"{str(out)!r} has no manifest.json: not an augledger output folder, or its run did not finish "
        "(run the same `augledger run` command again to resume it)",
    )


def read_run_info(out: str | Path) -> dict[str, Any]:
    """The facts of the run that made ``out`` (``out/run.json``), or ``{}`` when it is gone (a copied dataset)."""
    try:
        return _read_json(Path(out), RUN_INFO, "")
    except LedgerError:
        return {}


def registry_facts(provenance: Mapping[str, Any] | None, fingerprints: Mapping[str, str]) -> dict[str, Any] | None:
    """The registry facts a manifest and ledger header record: for each spec given as a REF, the REF,
    its version and fingerprint.

    ``provenance`` describes the main spec, and under ``variants`` (name -> provenance) the other
    variants' specs; ``fingerprints`` maps ``""`` (the main spec) and each variant's name to the
    fingerprint it compiled to, which each provenance must name. A spec *file* the run found in a
    registry is left out (``run.json`` records it): whether a registry happens to be found must not
    change the dataset's bytes, which a data-versioning tool hashes.
    """
    if not provenance:
        return None

    def facts(given: Mapping[str, Any], name: str) -> dict[str, Any]:
        fingerprint = fingerprints[name]
        if given.get("fingerprint") not in (None, fingerprint):
            raise SpecError(f"provenance names fingerprint {given.get('fingerprint')}, but the pipeline is {fingerprint}")
        # The lifecycle state is not here: it changes after the run, and the manifest describes the dataset
        # (run.json records the state the version was in when the run used it).
        return {k: given.get(k) for k in ("ref", "name", "version")} | {"fingerprint": fingerprint}

    out = facts(provenance, "") if provenance.get("ref") is not None else {}
    others = {name: facts(p, name) for name, p in (provenance.get("variants") or {}).items() if p and p.get("ref")}
    if others:
        out["variants"] = others
    return out or None


def registry_run_facts(provenance: Mapping[str, Any]) -> dict[str, Any]:
    """What ``run.json`` records of the registry: where it is, each version's state when the run used it,
    and spec files the run found in it (which the manifest leaves out; see :func:`registry_facts`)."""
    keys = ("ref", "name", "version", "state")
    others = [p for p in (provenance.get("variants") or {}).values() if p]
    return {
        "location": provenance.get("registry") or next((p.get("registry") for p in others if p.get("registry")), None),
        **{k: provenance.get(k) for k in keys},
        "variants": {n: {k: p.get(k) for k in keys} for n, p in (provenance.get("variants") or {}).items() if p},
    }
