"""The audio codec: WAV and FLAC files to ``{"audio": float32, "sample_rate": int}`` samples and back.

Decoding (soundfile / libsndfile) refuses, as :class:`~augledger.errors.Quarantined`:

=================  =====================================================================
``empty``          a zero-byte file, or one with no frames
``corrupt``        libsndfile cannot open it, or it holds fewer frames than its header says
``unsupported``    a container other than WAV/FLAC, or a subtype other than PCM (8/16/24/32
                   bit) or float (32/64 bit), e.g. u-law or ADPCM
``too-long``       longer than ``max_seconds`` (the decompression-bomb analogue: refused from
                   the header, before any sample is decoded)
``nan``            NaN or infinite samples (float files only)
=================  =====================================================================

Samples are float32 in [-1, 1] for PCM files: 1-D for mono, ``(channels, frames)`` for more
channels (audiomentations' layout). :attr:`Decoded.meta` carries the source's ``format``
(``WAV``/``FLAC``) and ``subtype``, and :meth:`AudioCodec.encode` writes outputs with the same
sample rate (the sample's) and subtype; a subtype the output container cannot hold becomes the
nearest it can (float or 32-bit PCM into FLAC: ``PCM_24``; 8-bit PCM between WAV and FLAC: the
container's 8-bit form). Writing to a PCM subtype clips the float samples to [-1, 1] first
(libsndfile would otherwise wrap loud samples around); float subtypes are written as they are.
The same sample gives the same bytes: libsndfile stamps the ``PEAK`` chunk of float WAV files with
the time of writing, which :func:`_zero_peak_time` sets to 0.
"""

from __future__ import annotations

import importlib
import io
import re
import struct
from collections.abc import Callable, Mapping
from pathlib import PurePosixPath
from typing import Any

import numpy as np

from augledger.errors import Quarantined
from augledger.io.codecs import Annotation, Decoded, Encoded

__all__ = ["AUDIO_EXTENSIONS", "DEFAULT_MAX_SECONDS", "AudioCodec"]

#: File extensions a folder source lists as audio.
AUDIO_EXTENSIONS = frozenset({".wav", ".flac"})
#: Longer files are refused (``too-long``) from their header: one hour.
DEFAULT_MAX_SECONDS = 3600.0
_CONTAINERS = {"WAV": "wav", "FLAC": "flac"}
_PCM = ("PCM_S8", "PCM_U8", "PCM_16", "PCM_24", "PCM_32")
_FLOAT = ("FLOAT", "DOUBLE")
#: (container, source subtype) -> the subtype written when the container cannot hold the source's.
_NEAREST = {("FLAC", "FLOAT"): "PCM_24", ("FLAC", "DOUBLE"): "PCM_24", ("FLAC", "PCM_32"): "PCM_24",
            ("FLAC", "PCM_U8"): "PCM_S8", ("WAV", "PCM_S8"): "PCM_U8"}
_DEFAULT_SUBTYPE = {"WAV": "FLOAT", "FLAC": "PCM_24"}


def _soundfile() -> Any:
    return importlib.import_module("soundfile")  # imported on first use: ``import augledger`` stays light


class AudioCodec:
    """:class:`~augledger.io.codecs.Codec` for ``modality: audio``.

    Args:
        max_seconds: refuse longer files (``too-long``), from the header.
        settings: other run settings (``max_pixels``, ``jpeg_quality``): not used by audio.
    """

    modality = "audio"
    extensions = AUDIO_EXTENSIONS
    formats = ("source", "wav", "flac")
    stored_fields = frozenset({"audio"})

    def __init__(self, *, max_seconds: float = DEFAULT_MAX_SECONDS, **settings: Any) -> None:
        if isinstance(max_seconds, bool) or not isinstance(max_seconds, (int, float)) or not max_seconds > 0:
            raise ValueError(f"max_seconds must be a positive number; got {max_seconds!r}")
        self.max_seconds = float(max_seconds)

    def decode(self, data: bytes) -> Decoded:
        if not data:
            raise Quarantined("empty", "zero-byte file")
        sf = _soundfile()
        try:
            handle = sf.SoundFile(io.BytesIO(data))
        except Exception as exc:  # libsndfile's message says what it could not parse
            raise Quarantined("corrupt", f"not a readable WAV/FLAC file: {_message(exc)}") from None
        with handle:
            fmt, subtype, rate, frames = handle.format, handle.subtype, handle.samplerate, handle.frames
            if fmt not in _CONTAINERS:
                raise Quarantined("unsupported", f"{fmt} files are not supported; convert to WAV or FLAC")
            if subtype not in _PCM + _FLOAT:
                raise Quarantined("unsupported", f"{fmt} subtype {subtype} is not supported; convert to PCM (8-32 bit) "
                                                 "or float WAV, or FLAC")
            if frames <= 0:
                raise Quarantined("empty", "the file holds no audio frames")
            if frames > self.max_seconds * rate:
                raise Quarantined("too-long", f"{frames / rate:.1f} s of audio is over the limit of {self.max_seconds:g} s "
                                              "(max_seconds); split the file, or raise the limit")
            try:
                audio = handle.read(dtype="float32", always_2d=True)
            except Exception as exc:
                raise Quarantined("corrupt", f"cannot decode: {_message(exc)}") from None
        if len(audio) != frames:
            raise Quarantined("corrupt", f"truncated: the header says {frames} frames, the data holds {len(audio)}")
        if subtype in _FLOAT and not np.isfinite(audio).all():
            raise Quarantined("nan", "the file holds NaN or infinite samples")
        samples = np.ascontiguousarray(audio[:, 0] if audio.shape[1] == 1 else audio.T)
        return Decoded({"audio": samples, "sample_rate": int(rate)}, None, {"format": fmt, "subtype": subtype})

    def attach(
        self, sample: dict[str, Any], annotation: Annotation | None, targets: Mapping[str, Any],
        read: Callable[[str], bytes],
    ) -> dict[str, Any]:
        if annotation is not None and annotation.problem:
            raise Quarantined("annotation", annotation.problem)
        return sample  # labels and carried columns go to the ledger's targets as they are

    def output_format(self, key: str, requested: str) -> str:
        if requested != "source":
            return requested
        suffix = PurePosixPath(key).suffix.lower().lstrip(".")
        return suffix if suffix in _CONTAINERS.values() else "wav"

    def encode(self, sample: Mapping[str, Any], fmt: str, meta: Mapping[str, Any] | None = None) -> Encoded:
        container = {v: k for k, v in _CONTAINERS.items()}.get(fmt)
        if container is None:
            raise Quarantined("unencodable", f"audio is written as wav or flac, not {fmt!r}")
        audio = np.asarray(sample["audio"])
        if audio.ndim not in (1, 2) or audio.size == 0:
            raise Quarantined("unencodable", f"audio of shape {audio.shape} cannot be written (empty, or not 1-D/2-D)")
        if not np.isfinite(audio).all():
            raise Quarantined("unencodable", "the augmented audio holds NaN or infinite samples")
        source = str((meta or {}).get("subtype") or _DEFAULT_SUBTYPE[container])
        subtype = _NEAREST.get((container, source), source)
        if subtype in _PCM:
            audio = np.clip(audio, -1.0, 1.0)
        frames = audio if audio.ndim == 1 else audio.T
        buffer = io.BytesIO()
        try:
            _soundfile().write(buffer, frames, int(sample["sample_rate"]), subtype=subtype, format=container)
        except Exception as exc:
            raise Quarantined("unencodable", f"cannot write {container} {subtype}: {_message(exc)}") from None
        data = buffer.getvalue()
        return Encoded(_zero_peak_time(data) if container == "WAV" and subtype in _FLOAT else data)

    def encode_side(self, sample: Mapping[str, Any]) -> dict[str, bytes]:
        return {}

    def versions(self) -> dict[str, str]:
        sf = _soundfile()
        return {"soundfile": sf.__version__, "libsndfile": sf.__libsndfile_version__}


_OBJECT_AT = re.compile(r"<[^<>]* at 0x[0-9a-fA-F]+>")


def _message(exc: Exception) -> str:
    """libsndfile's message without the in-memory file's address (ledger rows must not depend on it)."""
    return _OBJECT_AT.sub("the file", str(exc)).replace("Error opening the file: ", "")


def _zero_peak_time(data: bytes) -> bytes:
    """A WAV file with its ``PEAK`` chunk's time stamp (seconds since 1970, at byte 4 of the chunk) set to 0."""
    if data[:4] != b"RIFF" or data[8:12] != b"WAVE":
        return data
    at = 12
    while at + 8 <= len(data):
        chunk, size = data[at:at + 4], struct.unpack_from("<I", data, at + 4)[0]
        if chunk == b"PEAK" and size >= 8:
            return data[:at + 12] + bytes(4) + data[at + 16:]
        if chunk == b"data":
            break
        at += 8 + size + (size & 1)
    return data
