"""Hostile image files: quarantined with their reason before pixels are allocated; degenerate
images go through a real pipeline (Affine, crops, blur) or are quarantined; never a crashed run."""

from __future__ import annotations

import io
import struct
import time
import tracemalloc
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import augledger
from augledger.errors import Quarantined
from augledger.io.image import decode_image
from guard._hostile import GEOMETRY_SPEC, guarded_run, photo


def _chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def png_claiming(width: int, height: int, colour: int = 2) -> bytes:
    """A few hundred bytes of PNG whose header claims ``width x height`` pixels."""
    ihdr = struct.pack(">IIBBBBB", width, height, 8, colour, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", ihdr) + _chunk(b"IDAT", zlib.compress(b"\0" * 4096, 9)) + _chunk(b"IEND", b"")


def encoded(fmt: str, array: np.ndarray | None = None, **kw: object) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(photo() if array is None else array).save(buf, fmt, **kw)
    return buf.getvalue()


def jpeg_claiming(width: int, height: int) -> bytes:
    data = bytearray(encoded("JPEG"))
    at = data.find(b"\xff\xc0")
    data[at + 5 : at + 9] = height.to_bytes(2, "big") + width.to_bytes(2, "big")
    return bytes(data)


def huge_exif() -> bytes:
    exif = Image.Exif()
    exif[0x010E] = "A" * 60_000  # ImageDescription: close to the 64 KB APP1 limit
    return encoded("JPEG", exif=exif.tobytes())


CASES = {
    "bomb-rgb-png": (png_claiming(100_000, 100_000), "too-large"),
    "bomb-grey-png": (png_claiming(100_000, 100_000, colour=0), "too-large"),
    "bomb-jpeg": (jpeg_claiming(65_535, 65_535), "too-large"),
    "truncated-png": (encoded("PNG")[:700], "truncated"),
    "truncated-jpeg": (encoded("JPEG")[:400], "corrupt"),
    "png-header-only": (encoded("PNG")[:10], "corrupt"),
    "jpeg-soi-only": (b"\xff\xd8\xff", "corrupt"),
    "text-as-image": (b"hello, I am not an image\n" * 10, "not-an-image"),
    "empty": (b"", "empty"),
    "rgba": (encoded("PNG", np.zeros((4, 4, 4), np.uint8)), "alpha"),
    "sixteen-bit": (encoded("PNG", np.zeros((4, 4), np.uint16)), "high-bit-depth"),
}


@pytest.mark.parametrize("name", list(CASES))
def test_hostile_files_are_quarantined_before_pixels_are_allocated(name: str) -> None:
    data, reason = CASES[name]
    tracemalloc.start()
    t0 = time.perf_counter()
    try:
        with pytest.raises(Quarantined) as info:
            decode_image(data)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert info.value.reason == reason and str(info.value)
    assert time.perf_counter() - t0 < 2 and peak < 32e6  # 100000^2 RGB would be 30 GB


@pytest.mark.parametrize(("data", "shape"), [
    (encoded("PNG"), (32, 40, 3)),  # a PNG named .jpg: content decides, not the name
    (encoded("JPEG"), (32, 40, 3)),  # and a JPEG named .png
    (huge_exif(), (32, 40, 3)),
    (encoded("PNG", np.zeros((1, 1, 3), np.uint8)), (1, 1, 3)),
])
def test_odd_but_valid_files_decode(data: bytes, shape: tuple[int, ...]) -> None:
    assert decode_image(data)[0].shape == shape


def test_a_folder_of_hostile_files_runs_to_the_end(tmp_path: Path) -> None:
    pipe = augledger.compile(augledger.parse_spec(GEOMETRY_SPEC))
    src = tmp_path / "src"
    src.mkdir()
    for name, (data, _) in CASES.items():
        (src / f"{name}.png").write_bytes(data)
    (src / "png-named.jpg").write_bytes(encoded("PNG"))
    (src / "jpeg-named.png").write_bytes(encoded("JPEG"))
    (src / "huge-exif.jpg").write_bytes(huge_exif())
    for h, w in [(1, 1), (1, 64), (64, 1), (2, 2), (1, 2)]:
        (src / f"tiny-{h}x{w}.png").write_bytes(encoded("PNG", photo(h, w)))
    result, ledger = guarded_run(pipe, tmp_path, src, tmp_path / "out", copies=2)
    for name, (_, reason) in CASES.items():
        for epoch in (0, 1):
            row = ledger[f"{name}.png@{epoch}"]
            assert row["status"] == "quarantined" and row["error"].startswith(f"{reason}:")
    for key in ["png-named.jpg", "jpeg-named.png", "huge-exif.jpg", *(f"tiny-{h}x{w}.png" for h, w in
                                                                     [(1, 1), (1, 64), (64, 1), (2, 2), (1, 2)])]:
        for epoch in (0, 1):
            row = ledger[f"{key}@{epoch}"]
            assert row["status"] == "ok" or row["error"].split(":")[0] in ("augment",), row["error"]
    assert result.exit_code == 3 and len(ledger) == 2 * (len(CASES) + 8)
