"""Samplers that carry the epoch with every index, so it reaches persistent DataLoader workers.

``set_epoch`` on a Dataset does not reach persistent workers: each holds the copy of the dataset
it was started with. :class:`EpochSampler` (and :class:`DistributedEpochSampler`) run in the main
process and yield ``(epoch, index)`` pairs, which reach whichever worker loads them. The visiting
order is a function of (seed, epoch) alone, identical on every rank.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import logging
import math
from collections.abc import Iterator, Sized

import numpy as np
from torch.utils.data import Sampler

from augledger.errors import LoaderError

__all__ = ["DistributedEpochSampler", "EpochSampler", "check_count"]

log = logging.getLogger(__name__)

_ORDER_DOMAIN = "augledger/order/v1"


def check_count(name: str, value: object, *, minimum: int = 0) -> int:
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
        self.seed = check_count("seed", seed)
        self.epoch = check_count("epoch", epoch)
        self._last_epoch: int | None = None
        self._warned = False

    def set_epoch(self, epoch: int) -> None:
        """Set the epoch of the next iteration (call it before every epoch, as with DistributedSampler)."""
        self.epoch = check_count("epoch", epoch)

    def _size(self) -> int:
        return self.data_source if isinstance(self.data_source, int) else len(self.data_source)

    def _indices(self, epoch: int) -> list[int]:
        return _order(self._size(), seed=self.seed, epoch=epoch, shuffle=self.shuffle)

    def __iter__(self) -> Iterator[tuple[int, int]]:
        epoch = self.epoch  # read once: a set_epoch during iteration must not split an epoch in two
        if epoch == self._last_epoch and not self._warned:
            # A forgotten set_epoch repeats the same augmentation every epoch, silently.
            self._warned = True
            log.warning(
                "%s iterated twice with epoch %d: every sample gets the same augmentation again. Call "
                "sampler.set_epoch(epoch) before each epoch (this warning is shown once)", type(self).__name__, epoch
            )
        self._last_epoch = epoch
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
        self.num_replicas = check_count("num_replicas", num_replicas, minimum=1)
        self.rank = check_count("rank", rank)
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
