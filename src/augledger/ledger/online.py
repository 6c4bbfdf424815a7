"""The online ledger: what each sample received during training, from every DataLoader worker.

Each process writes its rows to its own part file (:class:`~augledger.ledger.parts.PartFiles`);
:meth:`OnlineLedger.merge` sorts them into one Parquet ledger with the same columns as an offline
run's, so ``augledger ledger show`` and ``augledger verify`` read both. A sampling rate keeps a
subset that is a function of each sample's seed, so every worker layout keeps the same subset.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from augledger._canonical import canonical_json
from augledger.env import EnvStamp
from augledger.errors import FingerprintConflict, LoaderError
from augledger.ledger.parts import PartFiles, host_name
from augledger.ledger.row import LedgerRow
from augledger.record import Augmented, Record, plain_json, sample_digest
from augledger.variants import Augmenter, Variants

__all__ = ["OnlineLedger", "fill_ops", "in_ledger_sample", "online_row"]

log = logging.getLogger(__name__)

_HEADER_FILE = "header.json"
_LEDGER_SAMPLE_DOMAIN = b"augledger/ledger-sample/v1\0"


def in_ledger_sample(seed_hex: str, rate: float) -> bool:
    """Whether a sample with this derived seed (hex) is kept by a ledger sampling ``rate`` in [0, 1].

    A pure function of the seed, hashed again under its own domain so the kept subset is unrelated
    to the draws the seed feeds: every worker layout, rank count and rerun keeps the same subset.
    """
    if rate >= 1.0:
        return True
    if rate <= 0.0:
        return False
    digest = hashlib.blake2b(_LEDGER_SAMPLE_DOMAIN + seed_hex.encode("ascii"), digest_size=8).digest()
    return int.from_bytes(digest, "little") < rate * 2.0**64


def online_row(
    source: Mapping[str, Any], result: Augmented, *, digests: bool = False, source_digest: str | None = None,
    stored_fields: frozenset[str] = frozenset({"image", "mask", "masks"}),
) -> tuple[LedgerRow, Record]:
    """The row of one online sample, with ``ops`` still to fill from the record (see :func:`fill_ops`).

    Targets and digests are taken now, before the caller's ``from_sample`` can touch the arrays.
    ``source_digest`` is the SHA-256 of the file the sample was decoded from, if there was one.
    """
    record = result.record
    rest = {k: v for k, v in result.sample.items() if k not in stored_fields}
    row = LedgerRow(
        record.key,
        record.epoch,
        record.seed,
        targets=canonical_json(plain_json(rest)).decode() if rest else None,
        source_digest=source_digest,
        input_digest=sample_digest({"image": source["image"]}) if digests and "image" in source else None,
        output_digest=sample_digest(result.sample) if digests else None,
        fingerprint=record.fingerprint,
    )
    return row, record


def fill_ops(pending: Sequence[tuple[LedgerRow, Record]]) -> list[LedgerRow]:
    """Fill each row's ``ops`` from its record, for a batch at once.

    The params of 64 records converted in one go, after the batch's pixel work, cost a fraction of
    64 conversions interleaved with it.
    """
    rows = []
    for row, record in pending:
        row.ops = canonical_json(list(record.ops)).decode()
        rows.append(row)
    return rows


class OnlineLedger:
    """A ledger of online augmentation: per-process part files, merged into one Parquet file.

    Args:
        directory: folder of the part files. It records the pipeline it belongs to in
            ``header.json``; reusing it for the same pipeline appends (a resumed run), for another
            pipeline it is an error.
        pipeline: the pipeline whose outputs are ledgered.
        sample_rate: fraction of (key, epoch) pairs to keep, chosen from each sample's seed, so the
            subset is the same in every run and layout.
        digests: also store ``input_digest`` and ``output_digest`` (:func:`~augledger.record.sample_digest`
            of the decoded input image and the augmented sample, about 110 µs each at 256x256 RGB).

    Raises:
        FingerprintConflict: ``directory`` already holds parts of another pipeline, seed or rate.

    Example:
        >>> ledger = OnlineLedger("runs/42/ledger", pipeline, sample_rate=0.05)  # doctest: +SKIP
        >>> train = AugmentedDataset(train, pipeline, key=paths, ledger=ledger)  # doctest: +SKIP
        >>> ledger.merge()  # after training: runs/42/ledger/ledger.parquet      # doctest: +SKIP
    """

    def __init__(
        self, directory: str | Path, pipeline: Augmenter, *, sample_rate: float = 1.0, digests: bool = False
    ) -> None:
        numeric = isinstance(sample_rate, (int, float)) and not isinstance(sample_rate, bool)
        if not numeric or not 0.0 <= sample_rate <= 1.0:
            raise LoaderError(f"sample_rate must be a number in [0, 1]; got {sample_rate!r}")
        self.directory = Path(directory)
        self.sample_rate = float(sample_rate)
        self.digests = bool(digests)
        self.fingerprint = pipeline.fingerprint
        self.seed = pipeline.seed
        self._modality = pipeline.modality
        self._resolved_spec = pipeline.resolved_spec
        self._variants = pipeline.describe() if isinstance(pipeline, Variants) else None
        self._seed_of = pipeline.sample_seed
        self._parts = PartFiles(self.directory)
        self._claim_directory()

    def _identity(self) -> dict[str, Any]:
        return {
            "fingerprint": self.fingerprint,
            "seed": self.seed,
            "sample_rate": self.sample_rate,
            "digests": self.digests,
        }

    def _claim_directory(self) -> None:
        self.directory.mkdir(parents=True, exist_ok=True)
        path = self.directory / _HEADER_FILE
        mine = self._identity()
        if path.is_file():
            theirs = json.loads(path.read_text(encoding="utf-8"))
            if theirs != mine:
                raise FingerprintConflict(
                    f"ledger folder {str(self.directory)!r} holds parts of another run ({theirs}); "
                    f"this one is {mine}. Use a new folder, or delete the old one to start over."
                )
            log.info("appending to the online ledger in %s (same pipeline: a resumed run)", self.directory)
            return
        # Several ranks may create the folder at once: write to a private name, then rename atomically.
        tmp = self.directory / f".{_HEADER_FILE}.{host_name()}.{os.getpid()}"
        tmp.write_text(json.dumps(mine, sort_keys=True), encoding="utf-8")
        os.replace(tmp, path)

    def selected(self, *, key: str, epoch: int) -> bool:
        """Whether ``(key, epoch)`` is in the ledgered subset (always true at ``sample_rate=1``)."""
        return in_ledger_sample(f"{self._seed_of(key=key, epoch=epoch):032x}", self.sample_rate)

    def keeps(self, seed_hex: str) -> bool:
        """Whether the row of a sample with this derived seed belongs in the ledger (sampling)."""
        return in_ledger_sample(seed_hex, self.sample_rate)

    def write(self, rows: Sequence[LedgerRow]) -> None:
        """Append finished rows (``ops`` filled) to this process's part file and flush them."""
        self._parts.append(rows)

    def close(self) -> None:
        """Close this process's part file (rows are already flushed; this releases the handle)."""
        self._parts.close()

    def parts(self) -> list[Path]:
        return self._parts.parts()

    def merge(self, path: str | Path | None = None) -> Path:
        """Merge every part into one Parquet ledger (default ``<directory>/ledger.parquet``).

        Call it once, from one process, after the last batch (with several ranks: after a barrier,
        on rank 0). A line cut short by a killed process is skipped with a warning.

        Returns:
            The ledger's path; read it with :func:`augledger.ledger.read_ledger`.
        """
        header = {
            "kind": "online",
            **self._identity(),
            "resolved_spec": self._resolved_spec,
            "env": EnvStamp.current(self._modality).to_dict(),
        }
        if self._variants is not None:
            header["variants"] = self._variants
        return self._parts.merge(self.directory / "ledger.parquet" if path is None else path, header)
