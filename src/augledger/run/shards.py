"""WebDataset output: pack finished outputs into tar shards with stable bytes.

Outputs are first written to ``.augledger/staging`` like a folder run (so a killed run resumes
the same way), then packed at the end in (key, epoch) order. Each sample is a ``<__key__>.<ext>``
image, a ``<__key__>.json`` member (key, copy, seed, targets) and, with masks, a
``<__key__>.mask.png``; member metadata (mtime, owner, mode) is fixed so identical runs give
identical shards.
"""

from __future__ import annotations

import dataclasses
import io
import json
import os
import shutil
import tarfile
from pathlib import Path, PurePosixPath
from typing import Any

from augledger._canonical import canonical_json, sha256_hex
from augledger.ledger.row import LedgerRow
from augledger.run.folder import ORIGINAL_EPOCH, wds_key
from augledger.run.options import RunOptions

__all__ = ["ShardPacker"]


class ShardPacker:
    """Write ok outputs into tar shards in (key, epoch) order, with fixed metadata so bytes are stable."""

    def __init__(self, staging: Path, out: Path, options: RunOptions) -> None:
        self.staging, self.options = staging, options
        self.dir = out / "shards"
        if self.dir.exists():
            shutil.rmtree(self.dir)
        self.dir.mkdir(parents=True)
        self.shards: list[dict[str, Any]] = []
        self._tar: tarfile.TarFile | None = None
        self._tmp: Path | None = None
        self._count = self._size = 0

    def add(self, row: LedgerRow) -> LedgerRow:
        """Pack one ok output; return its row as the ledger keeps it, pointing into the shard."""
        options = self.options
        if self._tar is None or self._count >= options.shard_max_count or self._size >= options.shard_max_bytes:
            self.close()
            self._tmp = self.dir / f".shard-{len(self.shards):06d}.tar.tmp"
            self._tar = tarfile.open(self._tmp, "w", format=tarfile.PAX_FORMAT)
            self._count = self._size = 0
        key, epoch = row.key, row.epoch
        base = wds_key(key, epoch)
        where = f"shards/shard-{len(self.shards):06d}.tar#"
        image = (self.staging / str(row.output_path)).read_bytes()
        ext = (Path(key).suffix.lower().lstrip(".").replace("jpeg", "jpg") if epoch == ORIGINAL_EPOCH
               else PurePosixPath(str(row.output_path)).suffix.lstrip("."))  # the codec chose it per key
        targets = json.loads(row.targets or "null")
        mask = targets.get("mask") if targets else None
        # The sample's JSON member names its mask by member name, the ledger by shard and member.
        meta = {"key": key, "epoch": epoch, "seed": row.seed,
                "targets": {**targets, "mask": f"{base}.mask.png"} if mask else targets}
        self._add(f"{base}.{ext}", image)
        self._add(f"{base}.json", canonical_json(meta))
        if mask:
            self._add(f"{base}.mask.png", (self.staging / mask).read_bytes())
            targets = {**targets, "mask": f"{where}{base}.mask.png"}
        self._size += len(image)
        self._count += 1
        return dataclasses.replace(
            row,
            output_path=f"{where}{base}.{ext}",
            targets=canonical_json(targets).decode() if targets is not None else None,
        )

    def _add(self, name: str, data: bytes) -> None:
        assert self._tar is not None
        info = tarfile.TarInfo(name)
        info.size, info.mtime, info.mode, info.uid, info.gid, info.uname, info.gname = len(data), 0, 0o644, 0, 0, "", ""
        self._tar.addfile(info, io.BytesIO(data))

    def close(self) -> None:
        if self._tar is None or self._tmp is None:
            return
        self._tar.close()
        final = self.dir / self._tmp.name.removeprefix(".").removesuffix(".tmp")
        os.replace(self._tmp, final)
        self.shards.append({"name": f"shards/{final.name}", "samples": self._count, "bytes": final.stat().st_size,
                            "sha256": sha256_hex(final.read_bytes())})
        self._tar = self._tmp = None
