"""Importing Albumentations (the only module that does), and the versions outputs depend on."""

from __future__ import annotations

import os
from functools import cache
from typing import Any

from augledger.errors import BackendError

__all__ = ["albumentations", "versions"]


def albumentations() -> Any:
    """The ``albumentations`` module, imported on first use.

    Raises:
        BackendError: the ``image`` extra is not installed (with the pip command).
    """
    # Albumentations checks PyPI for a newer version on import unless this is set. A library must not
    # touch the network on import, and CI machines have none.
    os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")
    try:
        import albumentations as A
    except ImportError as exc:  # pragma: no cover - exercised only without the extra
        raise BackendError(
            "augledger's image ops need the 'image' extra: pip install 'augledger[image]' "
            f"(could not import albumentations: {exc})"
        ) from exc
    return A


@cache
def versions() -> dict[str, str]:
    """Versions of Albumentations, albucore and OpenCV (the kernels and their RNG use)."""
    A = albumentations()
    import albucore
    import cv2

    return {"albumentations": A.__version__, "albucore": albucore.__version__, "opencv": cv2.__version__}
