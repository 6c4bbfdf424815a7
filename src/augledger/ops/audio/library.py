"""Importing audiomentations (the only module that does), and the versions outputs depend on."""

from __future__ import annotations

import importlib
from functools import cache
from typing import Any

from augledger.errors import BackendError

__all__ = ["audiomentations", "versions"]


def audiomentations() -> Any:
    """The ``audiomentations`` module, imported on first use.

    Raises:
        BackendError: the ``audio`` extra is not installed (with the pip command).
    """
    try:
        am = importlib.import_module("audiomentations")
    except ImportError as exc:  # pragma: no cover - exercised only without the extra
        raise BackendError(
            "augledger's audio ops need the 'audio' extra: pip install 'augledger[audio]' "
            f"(could not import audiomentations: {exc})"
        ) from exc
    return am


@cache
def versions() -> dict[str, str]:
    """Versions of audiomentations and of the libraries its kernels and draws run on."""
    am = audiomentations()
    librosa, numpy, scipy = (importlib.import_module(name) for name in ("librosa", "numpy", "scipy"))
    return {"audiomentations": str(am.__version__), "numpy": str(numpy.__version__), "scipy": str(scipy.__version__),
            "librosa": str(librosa.__version__)}
