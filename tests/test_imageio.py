"""Decoding rules for bulk runs: the OpenCV fast path gives Pillow's pixels, and never hides a bad file."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from augledger.run.imageio import Quarantined, decode_image


def encoded(image: np.ndarray, fmt: str, **kw: object) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(image).save(buf, format=fmt, **kw)
    return buf.getvalue()


@pytest.mark.parametrize("fmt", ["JPEG", "PNG"])
def test_fast_path_matches_pillow(astronaut: np.ndarray, fmt: str) -> None:
    data = encoded(astronaut, fmt, **({"quality": 90} if fmt == "JPEG" else {}))
    fast = decode_image(data).image
    assert fast.flags.c_contiguous and fast.dtype == np.uint8 and fast.shape == astronaut.shape
    assert np.array_equal(fast, np.asarray(Image.open(io.BytesIO(data)).convert("RGB")))
    # Trailing bytes after the end marker take Pillow's path: the same pixels again.
    assert np.array_equal(decode_image(data + b"trailer").image, fast)


@pytest.mark.parametrize("fmt", ["JPEG", "PNG"])
def test_cut_files_are_quarantined_as_truncated(astronaut: np.ndarray, fmt: str) -> None:
    data = encoded(astronaut, fmt)
    for cut in (len(data) // 3, 2 * len(data) // 3):
        with pytest.raises(Quarantined) as info:
            decode_image(data[:cut])
        assert info.value.reason in ("truncated", "corrupt"), str(info.value)


def test_exif_orientation_is_ignored_on_both_paths(astronaut: np.ndarray) -> None:
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90 CW to view": pixels are stored as they are, and used as stored
    wide = np.ascontiguousarray(astronaut[:64])  # 64x96: a rotation would change the shape
    data = encoded(wide, "JPEG", exif=exif.tobytes())
    stored = np.asarray(Image.open(io.BytesIO(data)).convert("RGB"))  # Pillow does not rotate
    assert stored.shape == wide.shape
    for variant in (data, data + b"trailer"):  # the OpenCV path and the Pillow path
        assert np.array_equal(decode_image(variant).image, stored)
