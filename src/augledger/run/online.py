"""Online augmentation inside PyTorch data loading: deterministic, train split only, optionally ledgered.

Guarantees, and how this module keeps each:

* **The same batches whatever the layout.** A sample's output is ``Pipeline.apply(sample, key=key,
  epoch=epoch)``: a pure function of its key (taken from the dataset, never from its position in a
  shuffled order) and the epoch. The worker count, persistent workers, the world size and the
  order in which workers load samples do not enter it.
* **The epoch travels with the index.** ``set_epoch`` on a Dataset does not reach persistent
  DataLoader workers: each one holds the copy of the dataset it was started with.
  :class:`EpochSampler` (and :class:`DistributedEpochSampler`) run in the main process and yield
  ``(epoch, index)`` pairs, which reach whichever worker loads them. Streams have no sampler, so
  :class:`AugmentedIterableDataset` and :class:`WdsMapper` keep their epoch in a one-element
  shared-memory tensor that every worker reads.
* **Only the splits the spec allows.** A dataset wrapped with ``split="val"``, ``"test"`` or
  ``"predict"`` passes samples through unchanged, unless the spec lists that split under ``splits``
  (test-time augmentation). :meth:`AugmentedDataset.for_serving` never augments.
* **A ledger whose content does not depend on the layout.** :class:`OnlineLedger` appends JSON
  lines to one part file per process and flushes after every batch (DataLoader workers leave
  through ``os._exit``, so nothing may wait for interpreter shutdown). :meth:`OnlineLedger.merge`
  sorts the rows by ``(key, epoch)`` into one Parquet ledger. A sampling rate keeps a subset that
  is a function of each sample's seed, so every layout keeps the same subset.

The change to an existing training loop is three lines::

    train = AugmentedDataset(train, pipeline, key=lambda i: paths[i])        # 1. wrap, with the key
    sampler = EpochSampler(train, shuffle=True)                              # 2. instead of shuffle=True
    loader = DataLoader(train, batch_size=64, sampler=sampler, num_workers=4, persistent_workers=True)
    for epoch in range(start_epoch, epochs):
        sampler.set_epoch(epoch)                                             # 3. every epoch
        for images, labels in loader:
            ...

This module imports torch; ``import augledger`` never imports it.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import logging
import math
import operator
import os
import re
import socket
import threading
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence, Sized
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import torch
from torch.utils.data import Dataset, IterableDataset, Sampler

from augledger._canonical import canonical_json
from augledger.env import EnvStamp
from augledger.errors import AugLedgerError, FingerprintConflict, SampleError
from augledger.ledger import in_ledger_sample as _selected
from augledger.ledger import write_ledger
from augledger.pipeline import Pipeline
from augledger.record import Augmented, Record, _plain, sample_digest
from augledger.seeding import seed_for
from augledger.spec import SPLITS

__all__ = [
    "AugmentedDataset",
    "AugmentedIterableDataset",
    "DistributedEpochSampler",
    "EpochSampler",
    "LoaderError",
    "OnlineLedger",
    "WdsMapper",
    "wds_mapper",
]

log = logging.getLogger(__name__)

#: ``to_sample(item) -> sample``: turn a dataset item into the dict the pipeline augments.
ToSample = Callable[[Any], Mapping[str, Any]]
#: ``from_sample(sample, item) -> output``: build what the loader yields from the (augmented) sample.
FromSample = Callable[[dict[str, Any], Any], Any]

_ORDER_DOMAIN = "augledger/order/v1"
_PART_GLOB = "part-*.jsonl"
_HEADER_FILE = "header.json"


class LoaderError(AugLedgerError, ValueError):
    """The data-loading setup cannot give deterministic augmentation (e.g. an index without its epoch)."""


# -- samplers: the epoch travels with the index ------------------------------------------------------


def _check_count(name: str, value: object, *, minimum: int = 0) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or int(value) < minimum:
        raise LoaderError(f"{name} must be an int >= {minimum}; got {value!r}")
    return int(value)


def _order(n: int, *, seed: int, epoch: int, shuffle: bool) -> list[int]:
    """The visiting order of one epoch: a function of (seed, epoch) alone, identical on every rank."""
    if not shuffle:
        return list(range(n))
    # A JSON payload keeps (seed=0, epoch=1) and (seed=1, epoch=0) apart; DistributedSampler's
    # ``seed + epoch`` would give them one order.
    payload = json.dumps([_ORDER_DOMAIN, seed, epoch]).encode("utf-8")
    entropy = int.from_bytes(hashlib.blake2b(payload, digest_size=16).digest(), "little")
    order: list[int] = np.random.Generator(np.random.PCG64(entropy)).permutation(n).tolist()
    return order


class EpochSampler(Sampler[tuple[int, int]]):
    """Yield ``(epoch, index)`` pairs, so the epoch reaches persistent workers with every index.

    The shuffled order depends on ``(seed, epoch)`` only, so a run restarted at epoch 3 visits the
    samples in the order an uninterrupted run does.

    Args:
        data_source: the dataset (anything with ``len``) or its length.
        shuffle: visit the indices in a per-epoch random order instead of ``0..n-1``.
        seed: seed of the order (not of the augmentation, which the spec's seed governs).
        epoch: the epoch to start at; change it with :meth:`set_epoch`.

    Example:
        >>> sampler = EpochSampler(4, shuffle=False, epoch=2)
        >>> list(sampler)
        [(2, 0), (2, 1), (2, 2), (2, 3)]
    """

    def __init__(self, data_source: Sized | int, *, shuffle: bool = True, seed: int = 0, epoch: int = 0) -> None:
        if not isinstance(data_source, int) and not isinstance(data_source, Sized):
            raise LoaderError(
                f"data_source must be a dataset with len() or an int length; got {type(data_source).__name__}"
            )
        self.data_source = data_source
        self.shuffle = bool(shuffle)
        self.seed = _check_count("seed", seed)
        self.epoch = _check_count("epoch", epoch)

    def set_epoch(self, epoch: int) -> None:
        """Set the epoch of the next iteration (call it before every epoch, as with DistributedSampler)."""
        self.epoch = _check_count("epoch", epoch)

    def _size(self) -> int:
        return self.data_source if isinstance(self.data_source, int) else len(self.data_source)

    def _indices(self, epoch: int) -> list[int]:
        return _order(self._size(), seed=self.seed, epoch=epoch, shuffle=self.shuffle)

    def __iter__(self) -> Iterator[tuple[int, int]]:
        epoch = self.epoch  # read once: a set_epoch during iteration must not split an epoch in two
        return zip(itertools.repeat(epoch), self._indices(epoch))

    def __len__(self) -> int:
        return self._size()


class DistributedEpochSampler(EpochSampler):
    """:class:`EpochSampler` for data-parallel training: each rank takes every ``num_replicas``-th index.

    Like ``DistributedSampler``: every rank computes the same epoch order, pads it by repeating its
    start until it divides evenly (or drops the tail with ``drop_last``), and takes
    ``order[rank::num_replicas]``. A padded sample is augmented identically on both ranks that load it.

    Args:
        data_source: the dataset or its length.
        num_replicas: world size; read from ``torch.distributed`` when omitted.
        rank: this process's rank; read from ``torch.distributed`` when omitted.
        shuffle, seed, epoch: as for :class:`EpochSampler`.
        drop_last: drop the tail instead of padding.

    Raises:
        LoaderError: ``num_replicas``/``rank`` are missing and no process group is initialised, or
            ``rank`` is outside ``[0, num_replicas)``.
    """

    def __init__(
        self,
        data_source: Sized | int,
        *,
        num_replicas: int | None = None,
        rank: int | None = None,
        shuffle: bool = True,
        seed: int = 0,
        epoch: int = 0,
        drop_last: bool = False,
    ) -> None:
        super().__init__(data_source, shuffle=shuffle, seed=seed, epoch=epoch)
        if num_replicas is None or rank is None:
            import torch.distributed as dist

            if not (dist.is_available() and dist.is_initialized()):
                raise LoaderError(
                    "DistributedEpochSampler needs num_replicas= and rank=, or an initialised "
                    "torch.distributed process group to read them from; got "
                    f"num_replicas={num_replicas!r}, rank={rank!r}. Call "
                    "torch.distributed.init_process_group() first, or pass both."
                )
            num_replicas = dist.get_world_size() if num_replicas is None else num_replicas
            rank = dist.get_rank() if rank is None else rank
        self.num_replicas = _check_count("num_replicas", num_replicas, minimum=1)
        self.rank = _check_count("rank", rank)
        if self.rank >= self.num_replicas:
            raise LoaderError(f"rank must be in [0, num_replicas={self.num_replicas}); got rank={self.rank}")
        self.drop_last = bool(drop_last)

    def _total(self) -> int:
        n, w = self._size(), self.num_replicas
        return (n // w) * w if self.drop_last else math.ceil(n / w) * w

    def _indices(self, epoch: int) -> list[int]:
        order = super()._indices(epoch)
        total = self._total()
        if total > len(order) and order:
            order = (order * math.ceil(total / len(order)))[:total]
        return order[self.rank : total : self.num_replicas]

    def __len__(self) -> int:
        return self._total() // self.num_replicas


# -- the online ledger ---------------------------------------------------------------------------------


def _record_ops(value: Any) -> Any:
    """``json.dumps`` hook: a :class:`Record` in a row stands for its applied ops."""
    if isinstance(value, Record):
        return value.ops
    raise TypeError(f"a ledger row holds a {type(value).__name__}, which is not JSON data")


_PIXEL_FIELDS = frozenset({"image", "mask", "masks"})


def _targets(sample: Mapping[str, Any]) -> dict[str, Any] | None:
    """The transformed bboxes/keypoints/labels of an output, as JSON data (``None`` for image-only)."""
    rest = {k: v for k, v in sample.items() if k not in _PIXEL_FIELDS}
    return _plain(rest) if rest else None


def _safe_name(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]", "_", text) or "host"


class OnlineLedger:
    """A ledger of online augmentation: per-process JSON-lines parts, merged into one Parquet file.

    Each process (the main one, every DataLoader worker, every rank on a shared file system) appends
    to its own ``part-<host>-<pid>.jsonl`` and flushes after each batch, so rows survive workers
    that exit through ``os._exit`` and persistent workers that are killed at shutdown.
    :meth:`merge` sorts and de-duplicates by ``(key, epoch)``: the merged content does not depend on
    the worker count, the world size or the order of loading.

    Args:
        directory: folder of the part files. It records the pipeline it belongs to in
            ``header.json``; reusing it for the same pipeline appends (a resumed run), for another
            pipeline it is an error.
        pipeline: the pipeline whose outputs are ledgered.
        sample_rate: fraction of (key, epoch) pairs to keep, chosen from each sample's seed, so the
            subset is the same in every run and layout.
        digests: also store ``sample_digest`` of each input and output (about 110 µs each at
            256x256 RGB).

    Raises:
        FingerprintConflict: ``directory`` already holds parts of another pipeline, seed or rate.

    Example:
        >>> ledger = OnlineLedger("runs/42/ledger", pipeline, sample_rate=0.05)  # doctest: +SKIP
        >>> train = AugmentedDataset(train, pipeline, key=paths, ledger=ledger)  # doctest: +SKIP
        >>> ledger.merge()  # after training: runs/42/ledger/ledger.parquet      # doctest: +SKIP
    """

    def __init__(
        self, directory: str | Path, pipeline: Pipeline, *, sample_rate: float = 1.0, digests: bool = False
    ) -> None:
        numeric = isinstance(sample_rate, (int, float)) and not isinstance(sample_rate, bool)
        if not numeric or not 0.0 <= sample_rate <= 1.0:
            raise LoaderError(f"sample_rate must be a number in [0, 1]; got {sample_rate!r}")
        self.directory = Path(directory)
        self.sample_rate = float(sample_rate)
        self.digests = bool(digests)
        self.fingerprint = pipeline.fingerprint
        self.seed = pipeline.seed
        self._resolved_spec = pipeline.resolved_spec
        self._fh: Any = None
        self._pid = -1
        self._lock = threading.Lock()
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
        tmp = self.directory / f".{_HEADER_FILE}.{_safe_name(socket.gethostname())}.{os.getpid()}"
        tmp.write_text(json.dumps(mine, sort_keys=True), encoding="utf-8")
        os.replace(tmp, path)

    def __getstate__(self) -> dict[str, Any]:
        state = dict(self.__dict__)
        state.update(_fh=None, _pid=-1, _lock=None)
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self._lock = threading.Lock()

    def selected(self, *, key: str, epoch: int) -> bool:
        """Whether ``(key, epoch)`` is in the ledgered subset (always true at ``sample_rate=1``)."""
        sample_seed = seed_for(self.fingerprint, seed=self.seed, epoch=epoch, key=key)
        return _selected(f"{sample_seed:032x}", self.sample_rate)

    def row(self, source: Mapping[str, Any], result: Augmented) -> dict[str, Any] | None:
        """The part-file row for one augmented sample, or ``None`` when sampling leaves it out."""
        row = self._deferred_row(source, result)
        if row is not None:
            row["ops"] = row["ops"].ops
        return row

    def _deferred_row(self, source: Mapping[str, Any], result: Augmented) -> dict[str, Any] | None:
        """:meth:`row`, with ``ops`` left as the :class:`Record` until :meth:`write` encodes it.

        The data loaders collect a batch of these and write them together: the params of 64
        records converted in one go cost a fraction of 64 conversions interleaved with pixel work.
        Targets and digests are taken now, before ``from_sample`` can touch the arrays.
        """
        record = result.record
        if not _selected(record.seed, self.sample_rate):
            return None
        return {
            "key": record.key,
            "epoch": record.epoch,
            "seed": record.seed,
            "ops": record,
            "targets": _targets(result.sample),
            "source_digest": sample_digest(source) if self.digests else None,
            "output_digest": sample_digest(result.sample) if self.digests else None,
        }

    def write(self, rows: Sequence[Mapping[str, Any]]) -> None:
        """Append rows to this process's part file and flush them to the OS at once."""
        if not rows:
            return
        text = "".join(json.dumps(row, separators=(",", ":"), default=_record_ops) + "\n" for row in rows)
        with self._lock:
            if self._pid != os.getpid():
                # A forked worker inherits the parent's handle: never share it, open this process's own.
                name = f"part-{_safe_name(socket.gethostname())}-{os.getpid()}.jsonl"
                self._fh = (self.directory / name).open("a", encoding="utf-8")
                self._pid = os.getpid()
            self._fh.write(text)
            self._fh.flush()

    def close(self) -> None:
        """Close this process's part file (rows are already flushed; this releases the handle)."""
        with self._lock:
            if self._fh is not None and self._pid == os.getpid():
                self._fh.close()
            self._fh, self._pid = None, -1

    def parts(self) -> list[Path]:
        return sorted(self.directory.glob(_PART_GLOB))

    def merge(self, path: str | Path | None = None) -> Path:
        """Merge every part into one Parquet ledger (default ``<directory>/ledger.parquet``).

        Call it once, from one process, after the last batch (with several ranks: after a barrier,
        on rank 0). A line cut short by a killed process is skipped with a warning.

        Returns:
            The ledger's path; read it with :func:`augledger.ledger.read_ledger`.
        """
        self.close()
        rows: list[dict[str, Any]] = []
        for part in self.parts():
            with part.open(encoding="utf-8") as fh:
                for number, line in enumerate(fh, 1):
                    if not line.endswith("\n"):
                        log.warning("skipping the unfinished last line %d of ledger part %s", number, part)
                        continue
                    data = json.loads(line)
                    rows.append(
                        {
                            "key": data["key"],
                            "epoch": data["epoch"],
                            "seed": data["seed"],
                            "status": "ok",
                            "error": None,
                            "ops": canonical_json(data["ops"]).decode("utf-8"),
                            "targets": None
                            if data["targets"] is None
                            else canonical_json(data["targets"]).decode("utf-8"),
                            "source_digest": data["source_digest"],
                            "output_path": None,
                            "output_digest": data["output_digest"],
                        }
                    )
        header = {
            "kind": "online",
            **self._identity(),
            "resolved_spec": self._resolved_spec,
            "env": EnvStamp.current().to_dict(),
        }
        out = write_ledger(rows, self.directory / "ledger.parquet" if path is None else path, header)
        log.info("merged %d online ledger rows from %d part(s) into %s", len(rows), len(self.parts()), out)
        return out


# -- the shared core of the three front ends --------------------------------------------------------


def _check_split(split: object) -> str:
    if split not in SPLITS:
        raise LoaderError(f"split must be one of {list(SPLITS)}; got {split!r}")
    return str(split)


class _DefaultAdapter:
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
        return sample["image"] if len(sample) == 1 and "image" in sample else sample


class _Core:
    """Split guard, item conversion, ledger rows: what every front end does per sample."""

    def __init__(
        self,
        pipeline: Pipeline | None,
        *,
        split: str,
        to_sample: ToSample | None,
        from_sample: FromSample | None,
        ledger: OnlineLedger | None,
        owner: str,
    ) -> None:
        self.pipeline = pipeline
        self.split = split
        self.augments = pipeline is not None and split in pipeline.splits
        # The seed is not part of the fingerprint, and a ledger row is only replayable with both.
        if (
            pipeline is not None
            and ledger is not None
            and (ledger.fingerprint, ledger.seed)
            != (
                pipeline.fingerprint,
                pipeline.seed,
            )
        ):
            raise FingerprintConflict(
                f"{owner}: the ledger belongs to pipeline {ledger.fingerprint} with seed {ledger.seed}, "
                f"the dataset to {pipeline.fingerprint} with seed {pipeline.seed}; build the "
                "OnlineLedger from the same pipeline"
            )
        self.ledger = ledger if self.augments else None
        adapter = _DefaultAdapter(pipeline.sample_fields if pipeline is not None else frozenset({"image"}))
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

    def augment(self, item: Any, key: Any, epoch: int, rows: list[dict[str, Any]] | None) -> Any:
        if type(key) is not str:
            raise SampleError(
                f"the key of a sample must be a str (a stable identity such as a relative path); got "
                f"{key!r} of type {type(key).__name__}. Make the key= callable return str(...)."
            )
        sample = self.to_sample(item)
        result = self.pipeline.apply(sample, key=key, epoch=epoch)  # type: ignore[union-attr]
        if rows is not None:
            row = self.ledger._deferred_row(sample, result)  # type: ignore[union-attr]
            if row is not None:
                rows.append(row)
        return self.from_sample(result.sample, item)


class _SharedEpoch:
    """An epoch number that the main process sets and every DataLoader worker reads.

    A one-element tensor in shared memory: torch shares it with workers under fork, spawn and
    forkserver, persistent workers included, and a plain ``pickle`` copies its value.
    """

    def __init__(self, epoch: int) -> None:
        cell = torch.full((1,), _check_count("epoch", epoch), dtype=torch.int64)
        self._cell = cell.share_memory_()  # type: ignore[no-untyped-call]  # untyped in torch's stubs

    def get(self) -> int:
        return int(self._cell.item())

    def set(self, epoch: int) -> None:
        self._cell.fill_(_check_count("epoch", epoch))


# -- map-style ---------------------------------------------------------------------------------------

KeySpec = Callable[[int], str] | Sequence[str] | str


class AugmentedDataset(Dataset[Any]):
    """Wrap a map-style dataset so that each sample is augmented by its key and the epoch.

    Index it with ``(epoch, index)`` pairs from :class:`EpochSampler`; the result does not depend on
    the worker that loads it, on the order, or on the world size. Splits the spec does not augment
    accept plain indices too (an ordinary validation DataLoader works unchanged).

    Args:
        dataset: any map-style dataset. By default its items are an HxW(xC) uint8 array, a dict with
            ``image`` (plus the targets the spec declares; other keys pass through), or a tuple/list
            led by one of these (e.g. ``(image, label)``).
        pipeline: the compiled pipeline.
        key: each sample's stable identity: a callable ``index -> str``, a sequence of keys (one per
            index), or the name of a field of dict items (e.g. ``"path"``). Never the position in a
            shuffled order.
        split: ``train``, ``val``, ``test`` or ``predict``. Only the splits in ``pipeline.splits``
            (default ``("train",)``) are augmented; the others pass through unchanged.
        to_sample: convert an item into the pipeline's sample dict (e.g. a PIL image to an array).
        from_sample: build the output from the (augmented) sample dict and the original item. It
            also runs on passed-through splits, so every split yields the same types.
        ledger: record what each sample received (see :class:`OnlineLedger`).

    Raises:
        LoaderError: ``split`` is not a split name, or ``key`` has another length than the dataset.

    Example:
        >>> train = AugmentedDataset(train, pipeline, key=lambda i: paths[i])           # doctest: +SKIP
        >>> sampler = EpochSampler(train, shuffle=True)                                  # doctest: +SKIP
        >>> loader = DataLoader(train, batch_size=64, sampler=sampler, num_workers=4)   # doctest: +SKIP
    """

    def __init__(
        self,
        dataset: Dataset[Any] | Sequence[Any],
        pipeline: Pipeline,
        *,
        key: KeySpec,
        split: str = "train",
        to_sample: ToSample | None = None,
        from_sample: FromSample | None = None,
        ledger: OnlineLedger | None = None,
    ) -> None:
        if not isinstance(pipeline, Pipeline):
            raise LoaderError(
                "pipeline must be an augledger Pipeline (build it with augledger.compile(spec)); "
                f"got {type(pipeline).__name__}"
            )
        self._setup(dataset, pipeline, key, _check_split(split), to_sample, from_sample, ledger)

    @classmethod
    def for_serving(
        cls,
        dataset: Dataset[Any] | Sequence[Any],
        *,
        to_sample: ToSample | None = None,
        from_sample: FromSample | None = None,
    ) -> AugmentedDataset:
        """A dataset for model serving: the same conversions, and never any augmentation.

        It takes no pipeline, so no spec (not even one listing ``predict``) can make it augment.
        """
        self = cls.__new__(cls)
        self._setup(dataset, None, None, "predict", to_sample, from_sample, None)
        return self

    def _setup(
        self,
        dataset: Dataset[Any] | Sequence[Any],
        pipeline: Pipeline | None,
        key: KeySpec | None,
        split: str,
        to_sample: ToSample | None,
        from_sample: FromSample | None,
        ledger: OnlineLedger | None,
    ) -> None:
        self.dataset = dataset
        self._core = _Core(
            pipeline,
            split=split,
            to_sample=to_sample,
            from_sample=from_sample,
            ledger=ledger,
            owner="AugmentedDataset",
        )
        self._key_field: str | None = None
        self._key_fn: Callable[[int], Any] | None = None
        if isinstance(key, str):
            self._key_field = key
        elif callable(key):
            self._key_fn = key
        elif isinstance(key, Sequence):
            if isinstance(dataset, Sized) and len(key) != len(dataset):
                raise LoaderError(
                    f"key has {len(key)} entries but the dataset has {len(dataset)} samples; pass one key per index"
                )
            self._key_fn = key.__getitem__
        elif pipeline is not None:
            raise LoaderError(
                "key must be a callable index -> str, a sequence of str (one per index) or the name of "
                f"a field of dict items; got {type(key).__name__}"
            )

    @property
    def pipeline(self) -> Pipeline | None:
        return self._core.pipeline

    @property
    def split(self) -> str:
        return self._core.split

    @property
    def augments(self) -> bool:
        """Whether this dataset augments (its split is in ``pipeline.splits``)."""
        return self._core.augments

    @property
    def ledger(self) -> OnlineLedger | None:
        return self._core.ledger

    def __len__(self) -> int:
        return len(self.dataset)  # type: ignore[arg-type]

    def key_of(self, index: int, item: Any = None) -> Any:
        """The key of the sample at ``index`` (``item`` is needed only for a key field)."""
        if self._key_fn is not None:
            return self._key_fn(index)
        if self._key_field is None:
            raise LoaderError("this dataset has no key (it was made for serving and never augments)")
        head = item[0] if isinstance(item, (tuple, list)) and item else item
        if not isinstance(head, Mapping) or self._key_field not in head:
            raise SampleError(
                f"key={self._key_field!r} names a field of dict items, but item {index} is "
                f"{type(item).__name__} without it; pass key= as a callable index -> str instead"
            )
        return head[self._key_field]

    def _unpack(self, index: Any) -> tuple[int, int]:
        if type(index) is tuple and len(index) == 2:
            return operator.index(index[0]), operator.index(index[1])
        raise LoaderError(
            f"split {self.split!r} augments, so each index must be an (epoch, index) pair; got {index!r}. "
            "Pass sampler=EpochSampler(dataset) (or DistributedEpochSampler) to the DataLoader and call "
            "sampler.set_epoch(epoch) every epoch; a plain index carries no epoch."
        )

    def __getitem__(self, index: Any) -> Any:
        return self.__getitems__([index])[0]

    def __getitems__(self, indices: Sequence[Any]) -> list[Any]:
        """Load a batch; the DataLoader calls this once per batch, and the ledger flushes once per batch."""
        core = self._core
        dataset = self.dataset
        if not core.augments:
            # Accept both forms: a plain validation sampler, or the EpochSampler of a training setup.
            return [core.passthrough(dataset[operator.index(i[1] if type(i) is tuple else i)]) for i in indices]
        rows: list[dict[str, Any]] | None = [] if core.ledger is not None else None
        out = []
        for i in indices:
            epoch, index = self._unpack(i)
            item = dataset[index]
            out.append(core.augment(item, self.key_of(index, item), epoch, rows))
        if rows:
            core.ledger.write(rows)  # type: ignore[union-attr]
        return out


# -- streams -----------------------------------------------------------------------------------------


class _StreamStage:
    """What the stream front ends share: the split guard's verdict and an epoch shared with workers."""

    _core: _Core
    _epoch: _SharedEpoch

    @property
    def augments(self) -> bool:
        """Whether this stage augments (its split is in ``pipeline.splits``)."""
        return self._core.augments

    @property
    def epoch(self) -> int:
        return self._epoch.get()

    def set_epoch(self, epoch: int) -> None:
        """Set the epoch of the next pass; every DataLoader worker, persistent ones too, reads it.

        Call it between epochs, not during one.
        """
        self._epoch.set(epoch)


class AugmentedIterableDataset(_StreamStage, IterableDataset[Any]):
    """Wrap an iterable of samples (a stream) so that each is augmented by its key and the epoch.

    The source decides how its items are split across DataLoader workers and ranks (as any
    ``IterableDataset`` must); augmentation depends on each item's key and the epoch only, so the
    same key gets the same output whichever worker reads it. The epoch is shared with the workers,
    persistent ones included: call :meth:`set_epoch` before iterating the DataLoader each epoch.

    Args:
        source: an iterable (e.g. an ``IterableDataset``) of items, by default dicts with the key
            field and ``image`` (see :class:`AugmentedDataset` for the item forms and the hooks).
        pipeline: the compiled pipeline.
        key: the name of the key field of dict items (default ``"__key__"``, WebDataset's), or a
            callable ``item -> str``.
        split, to_sample, from_sample, ledger: as for :class:`AugmentedDataset`.
        epoch: the first epoch.
    """

    def __init__(
        self,
        source: Iterable[Any],
        pipeline: Pipeline,
        *,
        key: str | Callable[[Any], str] = "__key__",
        split: str = "train",
        epoch: int = 0,
        to_sample: ToSample | None = None,
        from_sample: FromSample | None = None,
        ledger: OnlineLedger | None = None,
    ) -> None:
        self.source = source
        self._core = _Core(
            pipeline,
            split=_check_split(split),
            to_sample=to_sample,
            from_sample=from_sample,
            ledger=ledger,
            owner="AugmentedIterableDataset",
        )
        self._key = key
        self._epoch = _SharedEpoch(epoch)

    def _key_of(self, item: Any) -> Any:
        if callable(self._key):
            return self._key(item)
        head = item[0] if isinstance(item, (tuple, list)) and item else item
        if not isinstance(head, Mapping) or self._key not in head:
            raise SampleError(
                f"key={self._key!r} names a field of dict items, but got a {type(item).__name__} without it; "
                "pass key= as a callable item -> str"
            )
        return head[self._key]

    def __iter__(self) -> Iterator[Any]:
        core = self._core
        if not core.augments:
            for item in self.source:
                yield core.passthrough(item)
            return
        epoch = self._epoch.get()  # once per pass: one pass is one epoch, whatever set_epoch does meanwhile
        ledger = core.ledger
        for item in self.source:
            # A stream has no batch boundary here, so each row is flushed as it is made.
            rows: list[dict[str, Any]] | None = [] if ledger is not None else None
            out = core.augment(item, self._key_of(item), epoch, rows)
            if rows:
                ledger.write(rows)  # type: ignore[union-attr]
            yield out


def _decode_image(data: bytes) -> npt.NDArray[Any]:
    """Decode PNG/JPEG/... bytes into an RGB(A) or grayscale uint8 array (OpenCV, from the image extra)."""
    import cv2

    image = cv2.imdecode(np.frombuffer(data, dtype=np.uint8), cv2.IMREAD_UNCHANGED)
    if image is None:
        raise SampleError(f"could not decode {len(data)} bytes as an image; pass decode= for this format")
    if image.ndim == 3 and image.shape[2] == 3:
        return np.asarray(cv2.cvtColor(image, cv2.COLOR_BGR2RGB))
    if image.ndim == 3 and image.shape[2] == 4:
        return np.asarray(cv2.cvtColor(image, cv2.COLOR_BGRA2RGBA))
    return np.asarray(image)


class WdsMapper(_StreamStage):
    """A picklable ``.map(...)`` stage for WebDataset pipelines: augment each sample by ``__key__`` and epoch.

    Use :func:`wds_mapper` to build one. The image is read from the first field present among
    ``image`` (e.g. ``"png;jpg"``); bytes are decoded with ``decode``, arrays (after WebDataset's
    ``.decode("rgb8")``) are used as they are. The result is the sample with that field replaced by
    the augmented array; every other field, ``__key__`` included, is kept. The epoch is shared with
    DataLoader workers, persistent ones too: call :meth:`set_epoch` between epochs, not during one.
    """

    def __init__(
        self,
        pipeline: Pipeline,
        *,
        epoch: int = 0,
        image: str = "png;jpg;jpeg",
        decode: Callable[[bytes], npt.NDArray[Any]] | None = None,
        key: str | Callable[[Mapping[str, Any]], str] = "__key__",
        split: str = "train",
        ledger: OnlineLedger | None = None,
    ) -> None:
        self._core = _Core(
            pipeline,
            split=_check_split(split),
            to_sample=None,
            from_sample=None,
            ledger=ledger,
            owner="WdsMapper",
        )
        self._fields = tuple(f for f in image.split(";") if f)
        if not self._fields:
            raise LoaderError(f"image must name at least one field, e.g. 'png;jpg'; got {image!r}")
        self._decode = decode if decode is not None else _decode_image
        self._key = key
        self._epoch = _SharedEpoch(epoch)

    def __call__(self, sample: Mapping[str, Any]) -> dict[str, Any]:
        field = next((f for f in self._fields if f in sample), None)
        if field is None:
            raise SampleError(
                f"WebDataset sample {sample.get('__key__')!r} has none of the image fields "
                f"{list(self._fields)}; "
                f"its fields are {sorted(sample)}. Pass image='<extension>' to wds_mapper."
            )
        value = sample[field]
        image = self._decode(bytes(value)) if isinstance(value, (bytes, bytearray, memoryview)) else value
        out = dict(sample)
        if not self._core.augments:
            out[field] = image
            return out
        key = self._key(sample) if callable(self._key) else sample.get(self._key)
        ledger = self._core.ledger
        rows: list[dict[str, Any]] | None = [] if ledger is not None else None
        out[field] = self._core.augment(image, key, self._epoch.get(), rows)
        if rows:
            ledger.write(rows)  # type: ignore[union-attr]
        return out


def wds_mapper(
    pipeline: Pipeline,
    *,
    epoch: int = 0,
    image: str = "png;jpg;jpeg",
    decode: Callable[[bytes], npt.NDArray[Any]] | None = None,
    key: str | Callable[[Mapping[str, Any]], str] = "__key__",
    split: str = "train",
    ledger: OnlineLedger | None = None,
) -> WdsMapper:
    """Build a :class:`WdsMapper` for ``webdataset``'s ``.map(...)``.

    Args:
        pipeline: the compiled pipeline.
        epoch: the first epoch; change it with ``mapper.set_epoch(e)``.
        image: ``;``-separated candidate fields of the image, first match wins (``"png;jpg;jpeg"``).
        decode: ``bytes -> array`` for undecoded fields (default: OpenCV, giving RGB).
        key: the key field (``"__key__"``) or a callable ``sample -> str``. WebDataset keys are unique
            within a shard; if they repeat across shards, combine them with ``__url__`` here.
        split, ledger: as for :class:`AugmentedDataset`.

    Example:
        >>> mapper = wds_mapper(pipeline, image="png")                                     # doctest: +SKIP
        >>> ds = wds.WebDataset(urls, shardshuffle=False).decode("rgb8").map(mapper)       # doctest: +SKIP
    """
    return WdsMapper(pipeline, epoch=epoch, image=image, decode=decode, key=key, split=split, ledger=ledger)
