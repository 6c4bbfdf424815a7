"""Stream online augmentation: :class:`AugmentedIterableDataset` and the WebDataset stage :class:`WdsMapper`.

Streams have no sampler to carry the epoch, so each stage keeps it in a one-element shared-memory
tensor that every DataLoader worker reads (:class:`~augledger.run.online.core.SharedEpoch`).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from typing import Any

import numpy.typing as npt
from torch.utils.data import IterableDataset

from augledger._canonical import sha256_hex
from augledger.errors import LoaderError, SampleError
from augledger.ledger.online import OnlineLedger
from augledger.observe.base import RunObserver
from augledger.run.online.core import Core, FromSample, Pending, SharedEpoch, ToSample, check_split
from augledger.variants import Augmenter

__all__ = ["AugmentedIterableDataset", "WdsMapper", "wds_mapper"]


def _decode_image(data: bytes) -> npt.NDArray[Any]:
    """Decode image bytes with the image codec: the same rules as offline runs (raises ``Quarantined``)."""
    from augledger.io.image import decode_image

    image, _conversion = decode_image(data)
    return image


class _StreamStage:
    """What the stream front ends share: the split guard's verdict and an epoch shared with workers."""

    _core: Core
    _epoch: SharedEpoch

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

    def close(self) -> None:
        """End of training (in this process): observers' ``on_finish``; the ledger's part file closed."""
        self._core.close()


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
        pipeline: Augmenter,
        *,
        key: str | Callable[[Any], str] = "__key__",
        split: str = "train",
        epoch: int = 0,
        to_sample: ToSample | None = None,
        from_sample: FromSample | None = None,
        ledger: OnlineLedger | None = None,
        observers: Sequence[RunObserver] = (),
    ) -> None:
        self.source = source
        self._core = Core(
            pipeline,
            split=check_split(split),
            to_sample=to_sample,
            from_sample=from_sample,
            ledger=ledger,
            observers=observers,
            owner="AugmentedIterableDataset",
        )
        self._key = key
        self._epoch = SharedEpoch(epoch)

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
        for item in self.source:
            # A stream has no batch boundary here, so each row is committed as it is made.
            pending: Pending | None = [] if core.collects else None
            out = core.augment(item, self._key_of(item), epoch, pending)
            if pending:
                core.commit(pending)
            yield out


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
        pipeline: Augmenter,
        *,
        epoch: int = 0,
        image: str = "png;jpg;jpeg",
        decode: Callable[[bytes], npt.NDArray[Any]] | None = None,
        key: str | Callable[[Mapping[str, Any]], str] = "__key__",
        split: str = "train",
        ledger: OnlineLedger | None = None,
        observers: Sequence[RunObserver] = (),
    ) -> None:
        self._core = Core(
            pipeline,
            split=check_split(split),
            to_sample=None,
            from_sample=None,
            ledger=ledger,
            observers=observers,
            owner="WdsMapper",
        )
        self._fields = tuple(f for f in image.split(";") if f)
        if not self._fields:
            raise LoaderError(f"image must name at least one field, e.g. 'png;jpg'; got {image!r}")
        self._decode = decode if decode is not None else _decode_image
        self._key = key
        self._epoch = SharedEpoch(epoch)

    def __call__(self, sample: Mapping[str, Any]) -> dict[str, Any]:
        field = next((f for f in self._fields if f in sample), None)
        if field is None:
            raise SampleError(
                f"WebDataset sample {sample.get('__key__')!r} has none of the image fields "
                f"{list(self._fields)}; "
                f"its fields are {sorted(sample)}. Pass image='<extension>' to wds_mapper."
            )
        value = sample[field]
        raw = bytes(value) if isinstance(value, (bytes, bytearray, memoryview)) else None
        image = self._decode(raw) if raw is not None else value
        out = dict(sample)
        if not self._core.augments:
            out[field] = image
            return out
        key = self._key(sample) if callable(self._key) else sample.get(self._key)
        core = self._core
        pending: Pending | None = [] if core.collects else None
        out[field] = core.augment(image, key, self._epoch.get(), pending,
                                  source_digest=sha256_hex(raw) if raw is not None and pending is not None else None)
        if pending:
            core.commit(pending)
        return out


def wds_mapper(
    pipeline: Augmenter,
    *,
    epoch: int = 0,
    image: str = "png;jpg;jpeg",
    decode: Callable[[bytes], npt.NDArray[Any]] | None = None,
    key: str | Callable[[Mapping[str, Any]], str] = "__key__",
    split: str = "train",
    ledger: OnlineLedger | None = None,
    observers: Sequence[RunObserver] = (),
) -> WdsMapper:
    """Build a :class:`WdsMapper` for ``webdataset``'s ``.map(...)``.

    Args:
        pipeline: the compiled pipeline.
        epoch: the first epoch; change it with ``mapper.set_epoch(e)``.
        image: ``;``-separated candidate fields of the image, first match wins (``"png;jpg;jpeg"``).
        decode: ``bytes -> array`` for undecoded fields (default: the image codec, the rules of
            offline runs: RGB out, alpha and 16-bit images refused, damaged JPEGs refused).
        key: the key field (``"__key__"``) or a callable ``sample -> str``. WebDataset keys are unique
            within a shard; if they repeat across shards, combine them with ``__url__`` here.
        split, ledger, observers: as for :class:`AugmentedDataset`.

    Example:
        >>> mapper = wds_mapper(pipeline, image="png")                                     # doctest: +SKIP
        >>> ds = wds.WebDataset(urls, shardshuffle=False).decode("rgb8").map(mapper)       # doctest: +SKIP
    """
    return WdsMapper(pipeline, epoch=epoch, image=image, decode=decode, key=key, split=split, ledger=ledger,
                     observers=observers)
