"""``augledger.torch``: deterministic online augmentation inside PyTorch data loading (``torch`` extra).

The public home of :mod:`augledger.run.online` (where it is implemented, beside the offline
engine): ``AugmentedDataset``, ``AugmentedIterableDataset``, ``EpochSampler``,
``DistributedEpochSampler``, ``wds_mapper``, and the ``OnlineLedger`` they write. Importing it
imports torch; ``import augledger`` never does.
"""

from __future__ import annotations

from augledger.errors import LoaderError
from augledger.ledger.online import OnlineLedger
from augledger.run.online import (
    AugmentedDataset,
    AugmentedIterableDataset,
    DistributedEpochSampler,
    EpochSampler,
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
