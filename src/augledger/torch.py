"""``augledger.torch``: deterministic online augmentation inside PyTorch data loading (``torch`` extra).

The public home of :mod:`augledger.run.online` (where it is implemented, beside the offline
engine): ``AugmentedDataset``, ``AugmentedIterableDataset``, ``EpochSampler``,
``DistributedEpochSampler``, ``OnlineLedger`` and ``wds_mapper``. Importing it imports torch;
``import augledger`` never does.
"""

from __future__ import annotations

from augledger.run.online import (
    AugmentedDataset,
    AugmentedIterableDataset,
    DistributedEpochSampler,
    EpochSampler,
    LoaderError,
    OnlineLedger,
    WdsMapper,
    wds_mapper,
)

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
