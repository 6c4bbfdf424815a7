"""What an offline run produces, and how (the options of ``augledger run``)."""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass, replace
from typing import Any, Literal

from augledger.io.image import DEFAULT_MAX_PIXELS
from augledger.run.export import EXPORT_FORMATS, per_image_path

__all__ = ["RunOptions", "usable_cpus"]


def usable_cpus() -> int:
    """CPUs this process may run on (its affinity mask, which containers and ``taskset`` narrow)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # pragma: no cover - not Linux
        return max(1, os.cpu_count() or 1)


@dataclass(frozen=True)
class RunOptions:
    """What to produce. Everything except ``workers`` and ``chunk_size`` is part of the folder's identity.

    ``workers`` 0 or 1 works in the calling process; N > 1 forks N worker processes.
    """

    copies: int = 1
    workers: int = 1
    include_original: bool = False
    format: Literal["folder", "webdataset"] = "folder"
    #: The format of augmented outputs, one of the modality codec's ``formats`` (images: ``png``,
    #: ``jpg``, ``webp``); ``None``: the codec's default (``png`` for images), filled in by the run.
    image_format: str | None = None
    jpeg_quality: int = 95
    max_pixels: int = DEFAULT_MAX_PIXELS
    shard_max_count: int = 1000
    shard_max_bytes: int = 1 << 30
    chunk_size: int = 4
    #: Also write the transformed annotations as ``coco``, ``yolo``, ``voc`` or ``csv`` (see :mod:`augledger.run.export`).
    export_annotations: str | None = None
    #: Also record each row's ``input_digest`` (the decoded image's digest, the column that joins an
    #: offline ledger with online ones by content). Off by default: ~0.3-0.5 ms per 384x384 image,
    #: about 5% of a run's CPU time.
    input_digests: bool = False
    #: Quarantine an output whose labels break a rule (:mod:`augledger.run.labels`) with reason
    #: ``label``, instead of listing the problem in its row.
    strict_labels: bool = False

    def __post_init__(self) -> None:
        def positive(name: str, value: object, minimum: int = 1) -> None:
            if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
                raise ValueError(f"{name} must be an int >= {minimum}; got {value!r}")

        positive("copies", self.copies)
        positive("workers", self.workers, 0)
        positive("max_pixels", self.max_pixels)
        positive("shard_max_count", self.shard_max_count)
        positive("shard_max_bytes", self.shard_max_bytes)
        positive("chunk_size", self.chunk_size)
        if self.format not in ("folder", "webdataset"):
            raise ValueError(f"format must be 'folder' or 'webdataset'; got {self.format!r}")
        if self.image_format is not None and not (isinstance(self.image_format, str) and self.image_format.isalnum()):
            raise ValueError(f"image_format must be a format name such as 'png' or 'wav'; got {self.image_format!r}")
        if self.export_annotations is not None:
            if self.export_annotations not in EXPORT_FORMATS:
                raise ValueError(f"export_annotations must be one of {', '.join(EXPORT_FORMATS)}; got {self.export_annotations!r}")
            if self.format == "webdataset" and per_image_path(self.export_annotations, "x.png") is not None:
                raise ValueError(f"export_annotations={self.export_annotations!r} writes a file beside each image, which "
                                 "tar shards do not have; with the webdataset format, use coco or csv")
        if not isinstance(self.input_digests, bool):
            raise ValueError(f"input_digests must be true or false; got {self.input_digests!r}")
        if not isinstance(self.strict_labels, bool):
            raise ValueError(f"strict_labels must be true or false; got {self.strict_labels!r}")
        if isinstance(self.jpeg_quality, bool) or not isinstance(self.jpeg_quality, int) or not 1 <= self.jpeg_quality <= 100:
            raise ValueError(f"jpeg_quality must be an int in [1, 100]; got {self.jpeg_quality!r}")

    def with_format(self, formats: tuple[str, ...]) -> RunOptions:
        """These options with ``image_format`` filled in from a codec's ``formats`` (the first is its default).

        Raises:
            ValueError: the format asked for is not one the codec writes.
        """
        fmt = self.image_format or formats[0]
        if fmt not in formats:
            raise ValueError(f"output format {fmt!r} is not one this modality writes; choose one of {', '.join(formats)}")
        return replace(self, image_format=fmt)

    def identity(self) -> dict[str, Any]:
        """The options that change the outputs (not how fast they are made, nor which derived views
        of the ledger are written beside them: an export can be added or changed by a rerun)."""
        d = asdict(self)
        for k in ("workers", "chunk_size", "export_annotations"):
            d.pop(k)
        if self.format != "webdataset":
            d.pop("shard_max_count")  # no shards: the shard size changes nothing
            d.pop("shard_max_bytes")
        if not self.strict_labels:
            d.pop("strict_labels")  # the default: folders made before the option keep their identity
        if not self.input_digests:
            d.pop("input_digests")  # the default: folders made before the option keep their identity
        if self.image_format != "jpg":
            d.pop("jpeg_quality")  # it changes nothing then; leaving it out keeps PNG folders' identity as before
        return d
