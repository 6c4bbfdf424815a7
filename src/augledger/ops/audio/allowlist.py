"""Which audiomentations transforms a spec may name, and why the others are left out.

A spec names ops by audiomentations class name, bare (``Gain``) or namespaced
(``audiomentations.Gain``). Each op here was read in audiomentations 0.43.1: every draw it makes
goes through the global ``random`` or ``numpy.random`` (which :mod:`~augledger.ops.audio.scope`
seeds per sample and restores), and it needs no file, download or package outside the ``audio``
extra. :data:`REFUSED` says why each other transform is not here.
"""

from __future__ import annotations

import difflib

from augledger.errors import UnknownOpError

__all__ = ["AUDIO_OPS", "COMPOSITIONS", "NAMESPACE", "REFUSED", "canonical_op_name"]

NAMESPACE = "audiomentations"

#: audiomentations transforms a spec may name (reviewed by hand for 0.43.1).
AUDIO_OPS: tuple[str, ...] = (
    "AddColorNoise", "AddGaussianNoise", "AddGaussianSNR", "AdjustDuration", "AirAbsorption", "Aliasing",
    "BandPassFilter", "BandStopFilter", "BitCrush", "Clip", "ClippingDistortion", "Gain", "GainTransition",
    "HighPassFilter", "HighShelfFilter", "LowPassFilter", "LowShelfFilter", "Normalize", "Padding",
    "PeakingFilter", "PitchShift", "PolarityInversion", "RepeatPart", "Reverse", "SevenBandParametricEQ",
    "Shift", "TanhDistortion", "TimeMask", "TimeStretch", "Trim",
)  # fmt: skip

#: Compositions and the params each accepts (beyond ``p`` and the child ``ops``).
COMPOSITIONS: dict[str, tuple[str, ...]] = {
    "Compose": ("shuffle",),
    "OneOf": ("weights",),
    "SomeOf": ("num_transforms",),
}

#: audiomentations 0.43.1 transforms a spec may not name, and why (the error says it; so does the README).
REFUSED: dict[str, str] = {
    "AddBackgroundNoise": "needs a folder of noise files",
    "AddShortNoises": "needs a folder of noise files",
    "ApplyImpulseResponse": "needs a folder of impulse-response files",
    "Lambda": "runs arbitrary Python code; a spec is data",
    "Limiter": "needs the numpy-audio-limiter package, which the audio extra does not install",
    "LoudnessNormalization": "needs the loudness package, which the audio extra does not install",
    "Mp3Compression": "needs an MP3 encoder outside the audio extra (fast-mp3-augment, lameenc, or pydub with ffmpeg)",
    "RoomSimulator": "needs the pyroomacoustics package, which the audio extra does not install",
    "Resample": "changes the sample rate without telling the sample: the output would be stored at the old rate",
}

_AUDIO_OPS = frozenset(AUDIO_OPS)


def canonical_op_name(name: str, *, location: str) -> str:
    """Map ``Gain`` or ``audiomentations.Gain`` to the canonical namespaced name.

    Raises:
        UnknownOpError: the name is not on the allowlist, with the closest allowed names.
    """
    bare = name.removeprefix(f"{NAMESPACE}.")
    if bare in _AUDIO_OPS or bare in COMPOSITIONS:
        return f"{NAMESPACE}.{bare}"
    if bare in REFUSED:
        raise UnknownOpError(f"op {name!r} is not allowed in a spec: {REFUSED[bare]}", location=location)
    choices = [*AUDIO_OPS, *COMPOSITIONS]
    lowered = {c.lower(): c for c in choices}
    close = [lowered[m] for m in difflib.get_close_matches(bare.lower(), list(lowered), n=3, cutoff=0.6)]
    hint = f"did you mean {' or '.join(repr(c) for c in close)}?" if close else "see `augledger ops list --modality audio`"
    if "." in bare or "/" in bare:
        hint = "a spec names ops by registered name, never by import path; " + hint
    raise UnknownOpError(f"op {name!r} is not an allowed audio op; {hint}", location=location)
