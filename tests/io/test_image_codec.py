"""The image codec: the fast paths give Pillow's pixels, and a bad file is never hidden."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from augledger.errors import Quarantined
from augledger.io.image import decode_image


def encoded(image: np.ndarray, fmt: str, **kw: object) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(image).save(buf, format=fmt, **kw)
    return buf.getvalue()


@pytest.mark.parametrize("fmt", ["JPEG", "PNG"])
def test_fast_path_matches_pillow(astronaut: np.ndarray, fmt: str) -> None:
    data = encoded(astronaut, fmt, **({"quality": 90} if fmt == "JPEG" else {}))
    fast = decode_image(data)[0]
    assert fast.flags.c_contiguous and fast.dtype == np.uint8 and fast.shape == astronaut.shape
    assert np.array_equal(fast, np.asarray(Image.open(io.BytesIO(data)).convert("RGB")))
    # Trailing bytes after the end marker take Pillow's path: the same pixels again.
    assert np.array_equal(decode_image(data + b"trailer")[0], fast)


@pytest.mark.parametrize("fmt", ["JPEG", "PNG"])
def test_cut_files_are_quarantined_as_truncated(astronaut: np.ndarray, fmt: str) -> None:
    data = encoded(astronaut, fmt)
    for cut in (len(data) // 3, 2 * len(data) // 3):
        with pytest.raises(Quarantined) as info:
            decode_image(data[:cut])
        assert info.value.reason == "truncated", str(info.value)


def test_exif_orientation_is_ignored_on_both_paths(astronaut: np.ndarray) -> None:
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90 CW to view": pixels are stored as they are, and used as stored
    wide = np.ascontiguousarray(astronaut[:64])  # 64x96: a rotation would change the shape
    data = encoded(wide, "JPEG", exif=exif.tobytes())
    stored = np.asarray(Image.open(io.BytesIO(data)).convert("RGB"))  # Pillow does not rotate
    assert stored.shape == wide.shape
    for variant in (data, data + b"trailer"):  # the libjpeg-turbo fast path and the Pillow path
        assert np.array_equal(decode_image(variant)[0], stored)


def test_header_sniff_recognises_exactly_the_plain_rgb_files(astronaut: np.ndarray) -> None:
    from augledger.io.image import _rgb8_size

    small = np.ascontiguousarray(astronaut[:40, :56])
    assert _rgb8_size(encoded(small, "JPEG")) == (56, 40)
    assert _rgb8_size(encoded(small, "JPEG", progressive=True)) == (56, 40)
    png = encoded(small, "PNG")
    assert _rgb8_size(png) == (56, 40)
    others = {
        "grey JPEG": encoded(small[..., 0], "JPEG"),
        "CMYK JPEG": encoded_mode(small, "CMYK", "JPEG"),
        "RGBA PNG": encoded_mode(small, "RGBA", "PNG"),
        "palette PNG": encoded_mode(small, "P", "PNG"),
        "16-bit PNG": encoded(small[..., 0].astype(np.uint16) * 257, "PNG"),
        "cut JPEG": encoded(small, "JPEG")[:-40],
        "JPEG with trailer": encoded(small, "JPEG") + b"x",
        "GIF": encoded_mode(small, "P", "GIF"),
        # A damaged chunk length: OpenCV would spend seconds on it, so it goes to Pillow.
        "PNG with a bad chunk length": png[:33] + b"\xff" + png[34:],
    }
    for name, data in others.items():
        assert _rgb8_size(data) is None, name


def encoded_mode(image: np.ndarray, mode: str, fmt: str) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(image).convert(mode).save(buf, format=fmt)
    return buf.getvalue()


def test_fast_path_enforces_the_pixel_limit(astronaut: np.ndarray) -> None:
    for fmt in ("JPEG", "PNG"):
        with pytest.raises(Quarantined) as info:
            decode_image(encoded(np.ascontiguousarray(astronaut[:50, :40]), fmt), max_pixels=1_999)
        assert info.value.reason == "too-large" and "40x50 = 2000 pixels" in str(info.value)


def test_progressive_jpeg_fast_path_matches_pillow(astronaut: np.ndarray) -> None:
    data = encoded(astronaut, "JPEG", progressive=True, quality=85)
    assert np.array_equal(decode_image(data)[0], np.asarray(Image.open(io.BytesIO(data)).convert("RGB")))


def test_damaged_headers_are_quarantined_or_decoded_never_crash(astronaut: np.ndarray) -> None:
    """Single-byte damage throughout the header segments ends in a clean outcome, never another exception."""
    small = np.ascontiguousarray(astronaut[:48, :64])
    outcomes = set()
    for fmt in ("JPEG", "PNG"):
        data = encoded(small, fmt)
        for i in range(min(640, len(data) - 2)):
            for value in (0x00, 0xFF, data[i] ^ 0x10):
                damaged = data[:i] + bytes([value]) + data[i + 1 :]
                try:
                    image = decode_image(damaged)[0]
                except Quarantined as q:
                    outcomes.add(q.reason)
                    continue
                assert image.dtype == np.uint8 and image.ndim == 3 and image.shape[2] == 3
                outcomes.add("decoded")
    assert "decoded" in outcomes and outcomes & {"corrupt", "not-an-image", "truncated"}


def test_16_bit_rgb_png_is_refused_not_silently_reduced(astronaut: np.ndarray) -> None:
    import cv2

    ok, buf = cv2.imencode(".png", astronaut.astype(np.uint16) * 257)
    assert ok
    assert Image.open(io.BytesIO(buf.tobytes())).mode == "RGB"  # what Pillow reports for it
    with pytest.raises(Quarantined) as info:
        decode_image(buf.tobytes())
    assert info.value.reason == "high-bit-depth" and "16-bit RGB PNG" in str(info.value)


def test_a_jpeg_with_a_damaged_header_is_corrupt_not_a_non_image(astronaut: np.ndarray) -> None:
    data = encoded(astronaut, "JPEG")
    with pytest.raises(Quarantined) as info:
        decode_image(data[:2] + b"\x00" * 9 + data[11:])
    assert info.value.reason == "corrupt"
    with pytest.raises(Quarantined) as info:
        decode_image(b"GIF87a but not really")
    assert info.value.reason == "not-an-image"
