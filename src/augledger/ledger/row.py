"""One ledger row: the single definition of what a ledger records about one output.

Offline runs (their journal and ``ledger.parquet``), the online ledger's part files and any future
engine all build :class:`LedgerRow` objects; the Parquet schema (:data:`COLUMNS`) is derived from
this class, so a column cannot be added in one place and forgotten in another.

Digest columns, defined once:

* ``source_digest``: SHA-256 of the source **file's bytes** (``sha256:<hex>``). Offline rows and the
  online WebDataset adapter have it; online rows built from arrays have no file, so it is null.
* ``input_digest``: :func:`~augledger.record.sample_digest` of the **decoded payload** (the
  ``image`` array) that entered the pipeline. Offline rows have it when the run asks for it
  (``--input-digests``: it costs about 5% of a run's CPU), online rows when the online ledger keeps
  digests; it is what joins an offline dataset with online training (or an evaluation set) by
  content, whatever file format each stored the image in.
* ``output_digest``: offline, SHA-256 of the stored output file; online, ``sample_digest`` of the
  augmented sample (nothing is stored).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from augledger.errors import LedgerError

__all__ = ["COLUMNS", "OK", "QUARANTINED", "LedgerRow"]

OK = "ok"
QUARANTINED = "quarantined"


@dataclass(slots=True)
class LedgerRow:
    """What one output received, or why it was not made.

    Attributes:
        key: the sample's stable identity (offline: the source path relative to ``--source``).
        epoch: the training epoch online; the copy index offline (``-1`` for an original kept as is).
        seed: the derived 128-bit sample seed as 32 hex digits (``None`` for originals).
        status: ``ok`` or ``quarantined``.
        error: ``"<reason>: <message>"`` when quarantined.
        note: e.g. an input conversion (``converted CMYK->RGB``).
        ops: JSON list of the applied ops and their params.
        targets: JSON of the transformed targets (boxes, keypoints, labels, mask path) and the
            annotation columns carried through, or ``None``.
        source_digest, input_digest, output_digest: see the module docstring.
        output_path: where the output is stored, relative to the output folder (``None`` online).
        fingerprint: the pipeline version that made this row (``None`` for an original kept as is).
            With :class:`~augledger.Variants` each row has its own variant's.
        variant: the variant the key was routed to (``None`` without variants).
        mix: online only, JSON of the batch op (MixUp, CutMix) the sample received after its own
            augmentation: the batch's identity, the sample's position, its partner's key and
            position, lambda, the CutMix box (``None`` without batch mixing; see
            :mod:`augledger.run.batch_mix`). ``ops`` stays the per-sample recipe ``replay`` re-runs.
    """

    key: str
    epoch: int
    seed: str | None = None
    status: str = OK
    error: str | None = None
    note: str | None = None
    ops: str | None = None
    targets: str | None = None
    source_digest: str | None = None
    input_digest: str | None = None
    output_path: str | None = None
    output_digest: str | None = None
    fingerprint: str | None = None
    variant: str | None = None
    mix: str | None = None

    @classmethod
    def quarantined(
        cls, key: str, epoch: int, seed: str | None, reason: str, message: str, *,
        source_digest: str | None = None, input_digest: str | None = None,
    ) -> LedgerRow:
        return cls(key, epoch, seed, status=QUARANTINED, error=f"{reason}: {message}",
                   source_digest=source_digest, input_digest=input_digest)

    @property
    def ok(self) -> bool:
        return self.status == OK

    @property
    def reason(self) -> str | None:
        """The quarantine reason code (``corrupt``, ``alpha``, ...), or ``None`` for an ok row."""
        return None if self.error is None else self.error.split(":", 1)[0]

    def to_dict(self) -> dict[str, Any]:
        return {name: getattr(self, name) for name in COLUMNS}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> LedgerRow:
        """Build a row from a mapping with the ledger's columns (missing optional ones are ``None``).

        Raises:
            LedgerError: an unknown column, or ``key``/``epoch``/``status`` missing.
        """
        unknown = set(data) - _COLUMN_SET
        if unknown:
            raise LedgerError(f"ledger row has unknown column(s) {sorted(unknown)}; columns are {list(COLUMNS)}")
        missing = [name for name in ("key", "epoch", "status") if data.get(name) is None]
        if missing:
            raise LedgerError(f"ledger row lacks {missing}; key, epoch and status are required")
        return cls(**data)


#: Column name -> Arrow type name, in the order of :class:`LedgerRow`. Timing never goes here: it
#: would make ledgers differ run to run.
COLUMNS: dict[str, str] = {
    f.name: ("int64" if f.name == "epoch" else "string") for f in dataclasses.fields(LedgerRow)
}
_COLUMN_SET = frozenset(COLUMNS)
