"""Map-style online augmentation: :class:`AugmentedDataset`, indexed by ``(epoch, index)`` pairs."""

from __future__ import annotations

import operator
from collections.abc import Callable, Mapping, Sequence, Sized
from typing import Any

from torch.utils.data import Dataset

from augledger.errors import LoaderError, SampleError
from augledger.ledger.online import OnlineLedger
from augledger.observe.base import RunObserver
from augledger.pipeline import Pipeline
from augledger.run.online.core import Core, FromSample, Pending, ToSample, check_split
from augledger.run.online.mixing import BatchMix
from augledger.variants import Augmenter, Variants

__all__ = ["AugmentedDataset", "KeySpec"]

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
        observers: :class:`~augledger.observe.base.RunObserver` s called with each batch's rows, in
            the process that loads the batch (each DataLoader worker has its own copy).
        batch_mix: a :class:`~augledger.run.online.mixing.MixUp` or ``CutMix`` applied to each
            batch after the samples' own augmentation, drawn from the batch's keys and epochs and
            recorded in the ledger's ``mix`` column. Training only; it needs a DataLoader with a
            ``batch_size`` (batches reach it through ``__getitems__``).

    Raises:
        LoaderError: ``split`` is not a split name, ``key`` has another length than the dataset, or
            ``batch_mix`` is given to a split other than ``train`` or to one the spec does not augment.

    Example:
        >>> train = AugmentedDataset(train, pipeline, key=lambda i: paths[i])           # doctest: +SKIP
        >>> sampler = EpochSampler(train, shuffle=True)                                  # doctest: +SKIP
        >>> loader = DataLoader(train, batch_size=64, sampler=sampler, num_workers=4)   # doctest: +SKIP
    """

    def __init__(
        self,
        dataset: Dataset[Any] | Sequence[Any],
        pipeline: Augmenter,
        *,
        key: KeySpec,
        split: str = "train",
        to_sample: ToSample | None = None,
        from_sample: FromSample | None = None,
        ledger: OnlineLedger | None = None,
        observers: Sequence[RunObserver] = (),
        batch_mix: BatchMix | None = None,
    ) -> None:
        if not isinstance(pipeline, (Pipeline, Variants)):
            raise LoaderError(
                "pipeline must be an augledger Pipeline (build it with augledger.compile(spec)); "
                f"got {type(pipeline).__name__}"
            )
        self._setup(dataset, pipeline, key, check_split(split), to_sample, from_sample, ledger, observers)
        if batch_mix is not None:
            if not isinstance(batch_mix, BatchMix):
                raise LoaderError(f"batch_mix must be augledger.torch.MixUp(...) or CutMix(...); got {type(batch_mix).__name__}")
            if split != "train":
                raise LoaderError(f"batch_mix={batch_mix!r} is for training only, but this dataset's split is "
                                  f"{split!r}; pass batch_mix only to the train split's AugmentedDataset")
            if not self.augments:
                raise LoaderError(f"batch_mix={batch_mix!r} mixes augmented batches, but the spec does not augment "
                                  f"the train split (its splits: {list(pipeline.splits)}); add train to splits")
        self._batch_mix: BatchMix | None = batch_mix

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
        self._setup(dataset, None, None, "predict", to_sample, from_sample, None, ())
        return self

    def _setup(
        self,
        dataset: Dataset[Any] | Sequence[Any],
        pipeline: Augmenter | None,
        key: KeySpec | None,
        split: str,
        to_sample: ToSample | None,
        from_sample: FromSample | None,
        ledger: OnlineLedger | None,
        observers: Sequence[RunObserver],
    ) -> None:
        self.dataset = dataset
        self._batch_mix = None
        self._core = Core(
            pipeline,
            split=split,
            to_sample=to_sample,
            from_sample=from_sample,
            ledger=ledger,
            observers=observers,
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
    def pipeline(self) -> Augmenter | None:
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
        if self._batch_mix is not None:
            raise LoaderError(
                f"batch_mix={self._batch_mix!r} mixes whole batches, but this dataset was indexed one sample at a "
                "time (a DataLoader with batch_size=None, or a plain dataset[i]); use DataLoader(dataset, "
                "batch_size=N, sampler=EpochSampler(dataset)) so each batch reaches __getitems__"
            )
        return self.__getitems__([index])[0]

    def __getitems__(self, indices: Sequence[Any]) -> list[Any]:
        """Load a batch; the DataLoader calls this once per batch, and the ledger flushes once per batch."""
        core = self._core
        dataset = self.dataset
        if not core.augments:
            # Accept both forms: a plain validation sampler, or the EpochSampler of a training setup.
            return [core.passthrough(dataset[operator.index(i[1] if type(i) is tuple else i)]) for i in indices]
        pending: Pending | None = [] if core.collects else None
        out = []
        samples: list[tuple[int, Any]] = []
        for i in indices:
            epoch, index = self._unpack(i)
            item = dataset[index]
            key = self.key_of(index, item)
            samples.append((epoch, key))
            out.append(core.augment(item, key, epoch, pending))
        if self._batch_mix is not None:
            pipe = core.pipeline
            assert pipe is not None  # a dataset that augments has one
            out = self._batch_mix.mix(out, samples, pending, fingerprint=pipe.fingerprint, seed=pipe.seed)
        if pending:
            core.commit(pending)
        return out

    def close(self) -> None:
        """End of training (in this process): observers' ``on_finish``; the ledger's part file closed."""
        self._core.close()
