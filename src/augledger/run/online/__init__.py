"""Online augmentation inside PyTorch data loading: deterministic, train split only, optionally ledgered.

Guarantees, and where each is kept:

* **The same batches whatever the layout** (:mod:`~augledger.run.online.core`). A sample's output
  is ``Pipeline.apply(sample, key=key, epoch=epoch)``: a pure function of its key and the epoch.
  The worker count, persistent workers, the world size and the loading order do not enter it.
* **The epoch travels with the index** (:mod:`~augledger.run.online.samplers`): samplers yield
  ``(epoch, index)`` pairs; streams share their epoch with workers through shared memory.
* **Only the splits the spec allows.** ``split="val"``, ``"test"`` or ``"predict"`` passes samples
  through unless the spec lists that split; :meth:`AugmentedDataset.for_serving` never augments.
* **A ledger whose content does not depend on the layout** (:class:`~augledger.ledger.online.OnlineLedger`).
* **Batch mixing drawn from the batch** (:mod:`~augledger.run.online.mixing`): MixUp/CutMix pairs
  and weights are a function of the batch's keys and epochs, recorded in the ledger's ``mix`` column.

The change to an existing training loop is three lines::

    train = AugmentedDataset(train, pipeline, key=lambda i: paths[i])        # 1. wrap, with the key
    sampler = EpochSampler(train, shuffle=True)                              # 2. instead of shuffle=True
    loader = DataLoader(train, batch_size=64, sampler=sampler, num_workers=4, persistent_workers=True)
    for epoch in range(start_epoch, epochs):
        sampler.set_epoch(epoch)                                             # 3. every epoch
        for images, labels in loader:
            ...

This package imports torch; ``import augledger`` never imports it. Its public face is :mod:`augledger.torch`.
"""

from augledger.run.online.datasets import AugmentedDataset
from augledger.run.online.mixing import BatchMix, CutMix, MixUp
from augledger.run.online.samplers import DistributedEpochSampler, EpochSampler
from augledger.run.online.streams import AugmentedIterableDataset, WdsMapper, wds_mapper

__all__ = [
    "AugmentedDataset",
    "AugmentedIterableDataset",
    "BatchMix",
    "CutMix",
    "DistributedEpochSampler",
    "EpochSampler",
    "MixUp",
    "WdsMapper",
    "wds_mapper",
]
