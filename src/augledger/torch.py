"""``augledger.torch``: deterministic online augmentation inside PyTorch data loading (``torch`` extra).

The public home of :mod:`augledger.run.online` (where it is implemented, beside the offline
engine): ``AugmentedDataset``, ``AugmentedIterableDataset``, ``EpochSampler``,
``DistributedEpochSampler``, ``wds_mapper``, the batch mixers ``MixUp`` and ``CutMix``, and the
``OnlineLedger`` they write. Importing it
imports torch; ``import augledger`` never does.
"""

from __future__ import annotations

from augledger.errors import LoaderError
from augledger.ledger.online import OnlineLedger
from augledger.run.online import (
    AugmentedDataset,
    AugmentedIterableDataset,
    CutMix,
    DistributedEpochSampler,
    EpochSampler,
    MixUp,
    WdsMapper,
    wds_mapper,
)

__all__ = [
    "AugmentedDataset",
    "AugmentedIterableDataset",
    "CutMix",
    "DistributedEpochSampler",
    "EpochSampler",
    "LoaderError",
    "MixUp",
    "OnlineLedger",
    "WdsMapper",
    "wds_mapper",
]
