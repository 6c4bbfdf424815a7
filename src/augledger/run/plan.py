"""Planning a run: which outputs a previous run left complete, and the tasks still to do.

An output counts as done only if the journal has its row *and* its source file and stored
output still match the digests in that row; everything else is redone, identically.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field

from augledger._canonical import sha256_hex
from augledger.errors import UnsafePath
from augledger.io.codecs import Annotation
from augledger.io.store import Store
from augledger.ledger.row import LedgerRow
from augledger.run.folder import ORIGINAL_EPOCH, mask_of
from augledger.run.journal import Journal
from augledger.run.stopping import StopSignals
from augledger.run.work import Task

__all__ = ["Plan", "plan_run"]


@dataclass
class Plan:
    """The outputs a run must end with, and which of them are already complete."""

    keys: list[str]
    epochs: tuple[int, ...]
    include_original: bool
    #: (key, epoch) -> journal offset of its row, for every output that is complete and verified.
    done: dict[tuple[str, int], int] = field(default_factory=dict)

    @property
    def wanted_epochs(self) -> tuple[int, ...]:
        return ((ORIGINAL_EPOCH,) if self.include_original else ()) + self.epochs

    @property
    def expected(self) -> int:
        return len(self.keys) * len(self.wanted_epochs)

    def tasks(self, annotations: Mapping[str, Annotation]) -> Iterator[Task]:
        """The tasks still to do, in key order (lazily: ``done`` may grow while they are consumed)."""
        for key in self.keys:
            todo = tuple(e for e in self.epochs if (key, e) not in self.done)
            original = self.include_original and (key, ORIGINAL_EPOCH) not in self.done
            if todo or original:
                yield Task(key, todo, original, annotations.get(key))


def plan_run(
    keys: Sequence[str], *, copies: int, include_original: bool, journal: Journal, source: Store, outputs: Store,
    masks: Store | None = None, annotations: Mapping[str, Annotation] | None = None, stop: StopSignals | None = None,
) -> Plan:
    """Open the journal and keep the rows of outputs that are still complete and verified: source and
    output match their digests, and so does the source mask the row was made with."""
    plan = Plan(list(keys), tuple(range(copies)), include_original)
    key_set, epoch_set = set(keys), set(plan.wanted_epochs)
    digests: dict[str, str | None] = {}
    mask_digests: dict[str, str | None] = {}
    for pair, offset in journal.open().items():
        if stop is not None:
            stop.check("stopped while checking what a previous run left")
        if pair[0] not in key_set or pair[1] not in epoch_set:
            continue  # a source file removed since, or another copy count: not part of this dataset
        row = journal.row(offset)
        if pair[0] not in digests:
            try:
                digests[pair[0]] = sha256_hex(source.read(pair[0]))
            except (OSError, UnsafePath):
                digests[pair[0]] = None
        if row.source_digest is not None and digests[pair[0]] != row.source_digest:
            continue  # the source changed: redo its outputs
        if row.source_digest is None and digests[pair[0]] is not None:
            continue  # it could not be read then, it can now
        if row.ok and not (_output_intact(outputs, row.output_path, row.output_digest) and _mask_present(outputs, row)):
            continue
        if row.ok and not _mask_source_unchanged(row, (annotations or {}).get(pair[0]), masks or source, mask_digests):
            continue
        plan.done[pair] = offset
    return plan


def _output_intact(store: Store, path: str | None, digest: str | None) -> bool:
    if path is None or digest is None:
        return False
    try:
        return sha256_hex(store.read(path)) == digest
    except (OSError, UnsafePath):
        return False


def _mask_present(store: Store, row: LedgerRow) -> bool:
    mask = mask_of(row.targets)
    return mask is None or store.exists(mask)


def _mask_source_unchanged(row: LedgerRow, annotation: Annotation | None, masks: Store, cache: dict[str, str | None]) -> bool:
    """The mask file the row was made from is still the one the annotations name, byte for byte."""
    recorded = json.loads(row.targets).get("mask_source_digest") if row.targets and "mask_source_digest" in row.targets else None
    path = annotation.mask if annotation is not None else None
    if recorded is None or path is None:
        return recorded is None and path is None
    if path not in cache:
        try:
            cache[path] = sha256_hex(masks.read(path))
        except (OSError, UnsafePath):
            cache[path] = None
    return bool(cache[path] == recorded)
