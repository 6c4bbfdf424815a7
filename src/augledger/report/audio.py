"""Preview sheets of audio: a waveform and a spectrogram per row, for the original and its variants.

Drawn with NumPy into an RGB array and written as PNG with ``zlib`` (no plotting or image library
needed). Row 0 is the original, row ``1 + e`` the variant of epoch ``e``. Every row shares one time
axis (the longest signal fills the width, so a stretched or padded variant shows longer) and one
spectrogram scale (dB relative to the original's peak, 80 dB range), so rows compare by eye.
Multichannel audio is drawn as the mean of its channels.
"""

from __future__ import annotations

import struct
import zlib
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

__all__ = ["audio_sheet", "encode_png", "preview_audio", "preview_audio_file"]

#: Anchor colours of the spectrogram's colour map (dark blue -> purple -> orange -> pale yellow).
_CMAP = np.array([[0, 0, 4], [60, 15, 110], [150, 40, 120], [230, 90, 60], [252, 250, 190]], dtype=np.float64)
_N_FFT = 512
_GAP = 4


def _mono(audio: NDArray[Any]) -> NDArray[Any]:
    return np.asarray(audio, dtype=np.float64).mean(axis=0) if audio.ndim == 2 else np.asarray(audio, dtype=np.float64)


def _waveform(signal: NDArray[Any], width: int, height: int, frames: int) -> NDArray[Any]:
    panel = np.full((height, width, 3), 250, dtype=np.uint8)
    panel[height // 2, :] = (200, 200, 200)
    edges = np.linspace(0, frames, width + 1).astype(int)
    mid = (height - 1) / 2
    for x in range(width):
        part = signal[edges[x]:max(edges[x + 1], edges[x] + 1)]
        if part.size == 0:
            continue
        top = round(mid - float(np.clip(part.max(), -1, 1)) * mid)
        bottom = round(mid - float(np.clip(part.min(), -1, 1)) * mid)
        panel[top:bottom + 1, x] = (30, 80, 160)
    return panel


def _spectrum(signal: NDArray[Any], width: int, frames: int) -> NDArray[Any]:
    """Power in dB, ``(bins, width)``; columns past the signal's end are NaN."""
    padded = np.concatenate([signal, np.zeros(_N_FFT)])
    starts = np.linspace(0, frames, width, endpoint=False).astype(int)
    window = np.hanning(_N_FFT)
    out = np.full((_N_FFT // 2 + 1, width), np.nan)
    valid = starts < len(signal)
    segments = np.stack([padded[s:s + _N_FFT] * window for s in starts[valid]]) if valid.any() else None
    if segments is not None:
        out[:, valid] = (10 * np.log10(np.abs(np.fft.rfft(segments, axis=1)) ** 2 + 1e-12)).T
    return out


def _colour(db: NDArray[Any], top: float, height: int) -> NDArray[Any]:
    level = np.clip((db - (top - 80.0)) / 80.0, 0.0, 1.0)
    level = np.nan_to_num(level, nan=0.0)
    # Frequency rows resampled to the panel's height, low frequencies at the bottom.
    rows = np.linspace(0, db.shape[0] - 1, height).astype(int)[::-1]
    pos = level[rows] * (len(_CMAP) - 1)
    low = np.floor(pos).astype(int).clip(0, len(_CMAP) - 2)
    frac = (pos - low)[..., None]
    rgb: NDArray[Any] = _CMAP[low] * (1 - frac) + _CMAP[low + 1] * frac
    return rgb.round().astype(np.uint8)


def audio_sheet(samples: Sequence[Mapping[str, Any]], *, width: int = 480, height: int = 96) -> NDArray[Any]:
    """One row per sample: waveform (left) and spectrogram (right), as an RGB ``uint8`` array."""
    signals = [_mono(np.asarray(s["audio"])) for s in samples]
    frames = max(1, *(len(s) for s in signals))
    spectra = [_spectrum(s, width, frames) for s in signals]
    top = float(np.nanmax(spectra[0])) if np.isfinite(spectra[0]).any() else 0.0
    rows = []
    for signal, spectrum in zip(signals, spectra, strict=True):
        gap = np.full((height, _GAP, 3), 255, dtype=np.uint8)
        rows.append(np.concatenate([_waveform(signal, width, height, frames), gap, _colour(spectrum, top, height)], axis=1))
        rows.append(np.full((_GAP, rows[-1].shape[1], 3), 255, dtype=np.uint8))
    return np.ascontiguousarray(np.concatenate(rows[:-1], axis=0))


def preview_audio(pipeline: Any, sample: Mapping[str, Any], *, key: str, n: int, width: int = 480) -> NDArray[Any]:
    """The sheet of ``sample`` and its variants of epochs ``0 .. n-1`` under ``pipeline``."""
    variants = [pipeline.apply(sample, key=key, epoch=epoch).sample for epoch in range(n)]
    return audio_sheet([sample, *variants], width=width)


def encode_png(rgb: NDArray[Any]) -> bytes:
    """An RGB ``uint8`` array as PNG bytes (no filter, zlib level 6)."""
    height, width, _ = rgb.shape
    raw = b"".join(b"\x00" + rgb[y].tobytes() for y in range(height))

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(raw, 6)) + chunk(b"IEND", b"")


def preview_audio_file(pipeline: Any, path: Path, *, key: str, n: int, out: Path) -> str:
    """Decode ``path`` with the audio codec, write the sheet of it and ``n`` variants to ``out`` (.png),
    and return a line saying what was written (rows: original, then epochs ``0 .. n-1``)."""
    if out.suffix.lower() != ".png":
        raise ValueError(f"-o must end in .png for an audio preview; got {out.name!r}")
    from augledger.io.codecs import get_codec

    sample = get_codec("audio").decode(path.read_bytes()).sample
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_bytes(encode_png(preview_audio(pipeline, sample, key=key, n=n)))
    return (f"wrote {out} (rows: the original, then epochs 0..{n - 1} of key {key!r}; waveform left, spectrogram "
            f"right), pipeline {pipeline.fingerprint[:19]}…")
