"""The environment stamp: library versions that byte-identical output depends on.

NumPy promises identical streams only for the same bit generator, seed, call sequence, build and
machine, and image kernels change between releases. augledger therefore promises byte equality for
the same stamp, and across stamps detects and reports the difference instead of promising equality.
"""

from __future__ import annotations

import platform
import sys
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from augledger._version import __version__

__all__ = ["EnvStamp"]


@dataclass(frozen=True)
class EnvStamp:
    """Versions of augledger, Python, NumPy, the platform and the loaded backends."""

    augledger: str
    python: str
    numpy: str
    platform: str
    backends: dict[str, str] = field(default_factory=dict)

    @classmethod
    def current(cls, modality: str | None = "image") -> EnvStamp:
        """The stamp of this process: core versions, plus the libraries of ``modality``'s op backend
        and codec (for images: Albumentations, albucore, OpenCV, Pillow, simplejpeg); ``None`` for
        the core alone."""
        backends: dict[str, str] = {}
        if modality is not None:
            from augledger.io.codecs import find_codec
            from augledger.ops.registry import get_backend

            backends.update(get_backend(modality).versions())
            codec = find_codec(modality)
            if codec is not None:
                backends.update(codec.versions())
        return cls(
            augledger=__version__,
            python=platform.python_version(),
            numpy=np.__version__,
            platform=f"{sys.platform}-{platform.machine()}",
            backends=backends,
        )

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> EnvStamp:
        return cls(
            augledger=str(data["augledger"]),
            python=str(data["python"]),
            numpy=str(data["numpy"]),
            platform=str(data["platform"]),
            backends={str(k): str(v) for k, v in dict(data.get("backends", {})).items()},
        )

    def differences(self, other: EnvStamp) -> dict[str, tuple[str | None, str | None]]:
        """``{component: (self's version, other's version)}`` for every component that differs."""
        mine = {k: v for k, v in asdict(self).items() if k != "backends"} | self.backends
        theirs = {k: v for k, v in asdict(other).items() if k != "backends"} | other.backends
        return {
            k: (mine.get(k), theirs.get(k))
            for k in sorted(set(mine) | set(theirs))
            if mine.get(k) != theirs.get(k)
        }

    def describe_differences(self, other: EnvStamp) -> str:
        """One line such as ``opencv 4.12.0 -> 5.0.0; numpy 2.3.1 -> 2.4.6`` (empty if equal)."""
        return "; ".join(f"{k} {a} -> {b}" for k, (a, b) in self.differences(other).items())
