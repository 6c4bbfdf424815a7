"""A finished output folder opened for reading: manifest, run facts, ledger, source and stored outputs.

:class:`OutputFolder` is what ``verify`` and ``replay`` work on: it finds the source (and
annotations, masks) where ``run.json`` says the run found them, or where the caller says they
moved, reads stored outputs from files or shard members, and re-makes one output exactly as the
run did (:meth:`OutputFolder.rederive`).
"""

from __future__ import annotations

import json
import tarfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from augledger._canonical import sha256_hex
from augledger.env import EnvStamp
from augledger.errors import LedgerError
from augledger.io.codecs import Annotation
from augledger.ledger.parquet import read_ledger
from augledger.run.folder import ORIGINAL_EPOCH, mask_name
from augledger.run.manifest import read_manifest, read_run_info
from augledger.run.options import RunOptions
from augledger.run.rows import RowSource
from augledger.run.sources import load_annotations
from augledger.run.work import SampleJob, label_fields
from augledger.variants import Augmenter, compile_recorded

__all__ = ["OutputFolder", "Rederived", "comparable_targets"]


class OutputFolder:
    """An output folder opened for reading: manifest, ledger, pipeline, source and stored outputs.

    Args:
        out: the output folder of ``augledger run``.
        source, annotations, masks: where those are now, if they moved since the run (by default,
            where ``run.json`` says the run found them).

    Raises:
        LedgerError: no manifest, a ledger that is not the manifest's, or no record of the source.
    """

    def __init__(
        self, out: str | Path, source: str | Path | None = None, annotations: str | Path | None = None,
        masks: str | Path | None = None,
    ) -> None:
        self.out = Path(out)
        self.manifest = read_manifest(self.out)
        self.run = read_run_info(self.out)
        self.ledger = read_ledger(self.out)
        if self.ledger.fingerprint != self.manifest["fingerprint"]:
            raise LedgerError(
                f"ledger fingerprint {self.ledger.fingerprint} does not match the manifest's "
                f"{self.manifest['fingerprint']}: the folder was modified by hand"
            )
        self.pipeline: Augmenter = compile_recorded(self.manifest)
        self.options = RunOptions(**self.manifest["options"])
        recorded = self.run.get("source")
        if source is None and recorded is None:
            raise LedgerError(f"{str(self.out)!r} has no run.json to say where its source is; pass --source")
        self.source_root = Path(source if source is not None else str(recorded))
        rows = self.manifest.get("rows")  # a JSON Lines/CSV text source: a file, rebuilt as rows
        self.rows = RowSource.reopen(self.source_root, rows) if isinstance(rows, dict) else None
        if self.rows is None and not self.source_root.is_dir():
            raise LedgerError(
                f"the source folder {str(self.source_root)!r} does not exist (moved or deleted since the run?); "
                "pass --source with its new place"
            )
        ann_path = annotations if annotations is not None else self.run.get("annotations")
        if ann_path is not None and not Path(ann_path).is_file():
            raise LedgerError(
                f"the annotations file {str(ann_path)!r} does not exist (moved or deleted since the run?); "
                "pass --annotations with its new place"
            )
        self.annotations_path = str(ann_path) if ann_path is not None else None
        self.annotations_digest = sha256_hex(Path(ann_path).read_bytes()) if ann_path is not None else None
        fields = label_fields(self.pipeline.resolved_targets)
        key_column = str(self.run.get("key_column") or "key")
        self.annotations: dict[str, Annotation] = (
            load_annotations(Path(ann_path), label_fields=fields, key_column=key_column) if ann_path
            else self.rows.annotations() if self.rows is not None else {}
        )
        masks_root = masks if masks is not None else self.run.get("masks")
        self.job = SampleJob(self.pipeline, str(self.source_root), self.options,
                             str(masks_root) if masks_root is not None else None, self.rows)
        self._open: tuple[str, tarfile.TarFile, dict[str, tarfile.TarInfo]] | None = None

    @property
    def env(self) -> EnvStamp:
        return EnvStamp.from_dict(self.manifest["env"])

    def stored_output(self, path: str) -> bytes | None:
        """A stored file's bytes: a file in the folder, or a member of a shard (``shards/x.tar#member``)."""
        if "#" not in path:
            full = self.out / path
            return full.read_bytes() if full.is_file() else None
        shard_name, _, member = path.partition("#")
        shard = self._shard(shard_name)
        info = shard[2].get(member) if shard is not None else None
        if shard is None or info is None:
            return None
        f = shard[1].extractfile(info)
        return f.read() if f is not None else None

    def _shard(self, name: str) -> tuple[str, tarfile.TarFile, dict[str, tarfile.TarInfo]] | None:
        """The shard ``name``, opened once; rows come in key order, so only the latest stays open.

        A missing or unreadable (damaged) shard gives ``None``: its outputs are reported missing.
        """
        if self._open is not None and self._open[0] == name:
            return self._open
        self.close()
        path = self.out / name
        if not path.is_file():
            return None
        try:
            tar = tarfile.open(path)
            self._open = (name, tar, {info.name: info for info in tar.getmembers()})
        except (tarfile.TarError, OSError):
            return None
        return self._open

    def close(self) -> None:
        if self._open is not None:
            self._open[1].close()
            self._open = None

    def rederive(self, key: str, epoch: int, source_bytes: bytes | None = None) -> Rederived:
        """Re-make one output from the source (and its annotation), as the run made it.

        Raises:
            OSError, UnsafePath: the source file cannot be read.
            Quarantined, SampleError: it can no longer be decoded or augmented.
        """
        data = self.job.read_source(key) if source_bytes is None else source_bytes
        annotation = self.annotations.get(key)
        sample, _note, mask_source, meta, _decoded = self.job.prepare(data, annotation)
        labels = None
        if epoch == ORIGINAL_EPOCH:
            main, side, result, out = data, self.job.codec.encode_side(sample), None, sample
        else:
            encoded, result, labels = self.job.derive(sample, key, epoch, meta)
            main, side, out = encoded.data, encoded.side, result.sample
        mask = (mask_name(key, epoch), side["mask.png"]) if "mask.png" in side else None
        targets = self.job.targets_json(out, annotation, mask, mask_source, labels)
        return Rederived(main, mask[1] if mask else None, targets, result)


@dataclass(frozen=True)
class Rederived:
    """One output re-made: its bytes, its mask's bytes, its ledger ``targets`` and the pipeline's result."""

    data: bytes
    mask: bytes | None
    targets: str | None
    result: Any


def comparable_targets(targets: str | None) -> dict[str, Any] | None:
    """``targets`` without the mask's stored path (a staging path in the journal, a shard member in the ledger)."""
    if targets is None:
        return None
    data = json.loads(targets)
    data.pop("mask", None)
    return dict(data)
