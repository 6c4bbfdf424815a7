"""The audio codec: WAV/FLAC decoding rules (quarantine reasons), writing back like the source, bytes."""

from __future__ import annotations

import io
from typing import Any

import numpy as np
import pytest

sf = pytest.importorskip("soundfile")

from augledger.errors import Quarantined  # noqa: E402
from augledger.io.codecs import get_codec  # noqa: E402


def wav(audio: np.ndarray, rate: int = 16_000, subtype: str = "PCM_16", fmt: str = "WAV") -> bytes:
    buffer = io.BytesIO()
    sf.write(buffer, audio, rate, subtype=subtype, format=fmt)
    return buffer.getvalue()


TONE = (0.5 * np.sin(np.arange(4000) / 5.0)).astype(np.float32)


def codec(**settings: Any) -> Any:
    return get_codec("audio", max_pixels=1000, jpeg_quality=90, **settings)  # image settings are ignored


@pytest.mark.parametrize(("fmt", "subtype"), [("WAV", "PCM_16"), ("WAV", "PCM_24"), ("WAV", "FLOAT"), ("WAV", "PCM_U8"),
                                              ("FLAC", "PCM_16"), ("FLAC", "PCM_24")])
def test_round_trip_keeps_rate_subtype_and_bytes_are_deterministic(fmt: str, subtype: str) -> None:
    c = codec()
    decoded = c.decode(wav(TONE, 22_050, subtype, fmt))
    assert decoded.meta == {"format": fmt, "subtype": subtype}
    assert decoded.sample["sample_rate"] == 22_050 and decoded.sample["audio"].dtype == np.float32
    out_fmt = c.output_format(f"x/clip.{fmt.lower()}", "source")
    assert out_fmt == fmt.lower()
    one, two = (c.encode(decoded.sample, out_fmt, decoded.meta).data for _ in range(2))
    assert one == two
    info = sf.info(io.BytesIO(one))
    assert (info.format, info.subtype, info.samplerate) == (fmt, subtype, 22_050)
    again = c.decode(one).sample["audio"]
    assert np.allclose(again, decoded.sample["audio"], atol=1e-2)


def test_multichannel_is_channels_first_and_pcm_is_clipped() -> None:
    c = codec()
    stereo = np.stack([TONE, -TONE], axis=1)
    decoded = c.decode(wav(stereo))
    assert decoded.sample["audio"].shape == (2, 4000)
    loud = {"audio": decoded.sample["audio"] * 4, "sample_rate": 16_000}
    back = c.decode(c.encode(loud, "wav", decoded.meta).data).sample["audio"]
    assert back.max() <= 1.0 and back.min() >= -1.0 and back.max() > 0.99  # clipped, not wrapped around
    assert c.output_format("a.wav", "flac") == "flac"
    converted = c.encode(decoded.sample, "flac", {"format": "WAV", "subtype": "FLOAT"}).data
    assert sf.info(io.BytesIO(converted)).subtype == "PCM_24"  # FLAC holds no float: the nearest it can


def test_float_wav_bytes_do_not_depend_on_the_time(monkeypatch: pytest.MonkeyPatch) -> None:
    c = codec()
    sample = {"audio": TONE, "sample_rate": 16_000}
    first = c.encode(sample, "wav", {"format": "WAV", "subtype": "FLOAT"}).data
    import time

    time.sleep(1.1)  # libsndfile stamps the PEAK chunk with the time of writing
    assert c.encode(sample, "wav", {"format": "WAV", "subtype": "FLOAT"}).data == first


@pytest.mark.parametrize(("data", "reason"), [
    (b"", "empty"),
    (b"RIFF\x10\x00\x00\x00WAVEjunk-not-audio", "corrupt"),
    (b"\x00" * 64, "corrupt"),
    (wav(TONE, subtype="ULAW"), "unsupported"),
    (wav(TONE[:0]), "empty"),
    (wav(np.full(100, np.nan, dtype=np.float32), subtype="FLOAT"), "nan"),
    (wav(TONE, 100), "too-long"),  # 40 s at 100 Hz, over the 10 s limit below
])
def test_quarantine_reasons(data: bytes, reason: str) -> None:
    with pytest.raises(Quarantined) as info:
        codec(max_seconds=10).decode(data)
    assert info.value.reason == reason
    assert "0x" not in str(info.value)  # no memory addresses in ledger messages


def test_truncated_file_is_corrupt_or_short() -> None:
    data = wav(TONE)
    try:
        decoded = codec().decode(data[: len(data) // 2])
    except Quarantined as exc:
        assert exc.reason == "corrupt"
    else:  # libsndfile may read what is there; then the frame count says so
        assert decoded.sample["audio"].shape[0] < 4000


def test_unencodable() -> None:
    with pytest.raises(Quarantined, match="NaN"):
        codec().encode({"audio": np.full(10, np.nan, dtype=np.float32), "sample_rate": 8000}, "wav", None)
    with pytest.raises(ValueError, match="max_seconds"):
        codec(max_seconds=0)
