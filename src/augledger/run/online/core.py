"""What every online front end does per sample: the split guard, item conversion, ledger rows, observers.

The output for a sample is ``Pipeline.apply(sample, key=key, epoch=epoch)``: a pure function of
its key (taken from the dataset, never from its position in a shuffled order) and the epoch. Only
the splits the spec lists are augmented; others pass through unchanged.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np
import torch

from augledger.errors import FingerprintConflict, LoaderError, SampleError
from augledger.io.codecs import find_codec
from augledger.ledger.online import OnlineLedger, fill_ops, online_row
from augledger.ledger.row import LedgerRow
from augledger.observe.base import RunObserver, RunStart
from augledger.record import Record
from augledger.run.online.samplers import check_count
from augledger.spec import SPLITS
from augledger.variants import Augmenter

__all__ = ["Core", "DefaultAdapter", "FromSample", "SharedEpoch", "ToSample", "check_split"]

log = logging.getLogger(__name__)

#: ``to_sample(item) -> sample``: turn a dataset item into the dict the pipeline augments.
ToSample = Callable[[Any], Mapping[str, Any]]
#: ``from_sample(sample, item) -> output``: build what the loader yields from the (augmented) sample.
FromSample = Callable[[dict[str, Any], Any], Any]


def check_split(split: object) -> str:
    if split not in SPLITS:
        raise LoaderError(f"split must be one of {list(SPLITS)}; got {split!r}")
    return str(split)


class DefaultAdapter:
    """Items as datasets commonly return them: an array, a dict, or a tuple/list led by either.

    The array (or the dict's pipeline fields) is augmented; everything else (labels, ids, paths)
    passes through unchanged.
    """

    def __init__(self, fields: frozenset[str]) -> None:
        self.fields = fields

    def to_sample(self, item: Any) -> Mapping[str, Any]:
        head = item[0] if isinstance(item, (tuple, list)) and item else item
        if isinstance(head, np.ndarray):
            return {"image": head}
        if isinstance(head, str) and "text" in self.fields:  # a text dataset's (text, label)
            return {"text": head}
        if isinstance(head, Mapping):
            return {k: v for k, v in head.items() if k in self.fields}
        raise SampleError(
            f"cannot find the image in a dataset item of type {type(item).__name__}: expected a numpy "
            "array, a dict with 'image', or a tuple/list led by one of those. Pass "
            "to_sample=lambda item: {'image': np.asarray(item[0])} (and from_sample=) to convert it."
        )

    def from_sample(self, sample: dict[str, Any], item: Any) -> Any:
        if isinstance(item, (tuple, list)) and item:
            head = self._merge(sample, item[0])
            if hasattr(item, "_fields"):  # a namedtuple takes its fields as arguments
                return type(item)(head, *item[1:])
            return type(item)((head, *item[1:]))
        return self._merge(sample, item)

    @staticmethod
    def _merge(sample: dict[str, Any], head: Any) -> Any:
        if isinstance(head, Mapping):
            merged = dict(head)
            merged.update(sample)
            return merged
        if isinstance(head, str) and len(sample) == 1 and "text" in sample:
            return sample["text"]
        return sample["image"] if len(sample) == 1 and "image" in sample else sample


Pending = list[tuple[LedgerRow, Record]]


class Core:
    """Split guard, item conversion, ledger rows and observers: what every front end does per sample."""

    def __init__(
        self,
        pipeline: Augmenter | None,
        *,
        split: str,
        to_sample: ToSample | None,
        from_sample: FromSample | None,
        ledger: OnlineLedger | None,
        observers: Sequence[RunObserver] = (),
        owner: str,
    ) -> None:
        self.pipeline = pipeline
        self.split = split
        self.augments = pipeline is not None and split in pipeline.splits
        # The seed is not part of the fingerprint, and a ledger row is only replayable with both.
        if pipeline is not None and ledger is not None and (ledger.fingerprint, ledger.seed) != (pipeline.fingerprint, pipeline.seed):
            raise FingerprintConflict(
                f"{owner}: the ledger belongs to pipeline {ledger.fingerprint} with seed {ledger.seed}, "
                f"the dataset to {pipeline.fingerprint} with seed {pipeline.seed}; build the "
                "OnlineLedger from the same pipeline"
            )
        self.ledger = ledger if self.augments else None
        self.observers = tuple(observers) if self.augments else ()
        #: Whether rows are built at all (a ledger or an observer wants them).
        self.collects = self.ledger is not None or bool(self.observers)
        codec = find_codec(pipeline.modality) if pipeline is not None else None
        self._stored = codec.stored_fields if codec is not None else frozenset({"image", "mask", "masks"})
        self._digests = ledger.digests if ledger is not None else False
        self._started_pid = -1
        adapter = DefaultAdapter(pipeline.sample_fields if pipeline is not None else frozenset({"image"}))
        self.identity = to_sample is None and from_sample is None
        self.to_sample: ToSample = to_sample if to_sample is not None else adapter.to_sample
        self.from_sample: FromSample = from_sample if from_sample is not None else adapter.from_sample
        if pipeline is not None and split != "train":
            if self.augments:
                log.info("%s augments split %r (the spec lists %s)", owner, split, pipeline.splits)
            else:
                log.debug("%s passes split %r through (spec splits: %s)", owner, split, pipeline.splits)

    def passthrough(self, item: Any) -> Any:
        return item if self.identity else self.from_sample(dict(self.to_sample(item)), item)

    def augment(
        self, item: Any, key: Any, epoch: int, pending: Pending | None, *, sample: Mapping[str, Any] | None = None,
        source_digest: str | None = None,
    ) -> Any:
        """Augment one item; with ``pending``, add its ledger row (when a ledger or an observer wants it)."""
        if type(key) is not str:
            raise SampleError(
                f"the key of a sample must be a str (a stable identity such as a relative path); got "
                f"{key!r} of type {type(key).__name__}. Make the key= callable return str(...)."
            )
        if sample is None:
            sample = self.to_sample(item)
        result = self.pipeline.apply(sample, key=key, epoch=epoch)  # type: ignore[union-attr]
        if pending is not None and (self.observers or self.ledger is None or self.ledger.keeps(result.record.seed)):
            row_and_record = online_row(sample, result, digests=self._digests, source_digest=source_digest,
                                        stored_fields=self._stored)
            row_and_record[0].variant = self.pipeline.variant_of(key)  # type: ignore[union-attr]
            pending.append(row_and_record)
        return self.from_sample(result.sample, item)

    def commit(self, pending: Pending) -> None:
        """Hand a batch's rows to the ledger (its sampled subset) and the observers."""
        if not pending:
            return
        rows = fill_ops(pending)
        if self.ledger is not None:
            kept = rows if self.ledger.sample_rate >= 1.0 else [r for r in rows if self.ledger.keeps(str(r.seed))]
            self.ledger.write(kept)
        if self.observers:
            if self._started_pid != os.getpid():  # once per process: each DataLoader worker has its own copy
                self._started_pid = os.getpid()
                pipe = self.pipeline
                assert pipe is not None
                for observer in self.observers:
                    observer.on_start(RunStart("online", pipe.fingerprint, pipe.name, pipe.seed))
            for observer in self.observers:
                observer.on_rows(rows)

    def close(self) -> None:
        """End of training in this process: observers' ``on_finish``, and the ledger's part file closed."""
        for observer in self.observers:
            observer.on_finish({"kind": "online", "split": self.split})
        if self.ledger is not None:
            self.ledger.close()


class SharedEpoch:
    """An epoch number that the main process sets and every DataLoader worker reads.

    A one-element tensor in shared memory: torch shares it with workers under fork, spawn and
    forkserver, persistent workers included, and a plain ``pickle`` copies its value.
    """

    def __init__(self, epoch: int) -> None:
        cell = torch.full((1,), check_count("epoch", epoch), dtype=torch.int64)
        self._cell = cell.share_memory_()  # type: ignore[no-untyped-call]  # untyped in torch's stubs

    def get(self) -> int:
        return int(self._cell.item())

    def set(self, epoch: int) -> None:
        self._cell.fill_(check_count("epoch", epoch))
