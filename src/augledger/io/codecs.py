"""Codecs: how a modality's samples are stored as bytes, the same rules for every reader.

A codec decodes a file's bytes into a sample dict (or raises :class:`~augledger.errors.Quarantined`
saying why it cannot), attaches a row of annotations to it, and encodes an augmented sample back
to files. Offline runs, ``verify``, ``replay`` and the online stream adapters all decode through
the same codec, so the same bytes are accepted or refused the same way everywhere.

Codecs are found by modality (:func:`get_codec`) and imported on first use, like op backends.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

from augledger.errors import SpecError

#: Images with more pixels than this are refused as possible decompression bombs (~ 16k x 11k).
DEFAULT_MAX_PIXELS = 178_956_970

__all__ = ["DEFAULT_MAX_PIXELS", "Annotation", "Codec", "Decoded", "Encoded", "find_codec", "get_codec"]


@dataclass(frozen=True)
class Annotation:
    """One row of an annotations file: what travels with one source file.

    ``label`` is a class label (kept in the ledger unchanged); ``bboxes``/``keypoints`` are lists in
    the spec's declared format; ``mask`` is the path of a mask file; ``extra`` holds the declared
    label fields (``{"labels": [...]}``); ``carry`` holds columns augledger does not use, kept in
    the ledger's ``targets`` as they are (e.g. ``split``, ``source``).
    """

    label: Any = None
    bboxes: list[Any] | None = None
    keypoints: list[Any] | None = None
    mask: str | None = None
    extra: dict[str, list[Any]] = field(default_factory=dict)
    carry: dict[str, Any] = field(default_factory=dict)
    #: Why this row cannot be used (a box that is not a list of numbers, NaN, ...): the sample is
    #: quarantined with reason ``annotation`` and this message, and the run goes on.
    problem: str | None = None


@dataclass(frozen=True)
class Decoded:
    """A decoded file: the sample dict the pipeline takes, a note on any conversion made, and what
    :meth:`Codec.encode` needs to write the sample back like its source (an audio file's subtype)."""

    sample: dict[str, Any]
    note: str | None = None
    meta: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Encoded:
    """An augmented sample as files: the main file's bytes, and side files by suffix (``mask.png``)."""

    data: bytes
    side: dict[str, bytes] = field(default_factory=dict)


class Codec(Protocol):
    """Bytes <-> samples for one modality."""

    modality: str
    #: File extensions a folder source lists as samples (lower case, with the dot).
    extensions: frozenset[str]
    #: Formats a run may ask for (``--output-format``; the first is the default).
    formats: tuple[str, ...]
    #: Sample fields stored as files (the payload, masks), not as JSON in the ledger's ``targets``.
    stored_fields: frozenset[str]

    def decode(self, data: bytes) -> Decoded:
        """Decode a file, or raise ``Quarantined(reason, message)``."""
        ...

    def attach(
        self, sample: dict[str, Any], annotation: Annotation | None, targets: Mapping[str, Any],
        read: Callable[[str], bytes],
    ) -> dict[str, Any]:
        """The pipeline input: ``sample`` plus the targets the spec declares, from ``annotation``.

        ``read(path)`` reads a file the annotation names (a mask) through the source's store.
        Raises ``Quarantined("annotation", ...)`` when the annotation has a ``problem`` or does not
        fit the sample.
        """
        ...

    def output_format(self, key: str, requested: str) -> str:
        """The file format (the output's suffix) of ``key``'s outputs when a run asked for ``requested``,
        one of :attr:`formats`: images return it as is; a codec may offer ``source`` (keep each file's own)."""
        ...

    def encode(self, sample: Mapping[str, Any], fmt: str, meta: Mapping[str, Any] | None = None) -> Encoded:
        """Encode an augmented sample as ``fmt`` (from :meth:`output_format`), with the source's
        :attr:`Decoded.meta`; or raise ``Quarantined("unencodable", ...)``."""
        ...

    def encode_side(self, sample: Mapping[str, Any]) -> dict[str, bytes]:
        """The side files of a sample alone (``{"mask.png": ...}``), e.g. for an original kept as is."""
        ...

    def versions(self) -> dict[str, str]:
        """``{library: version}`` of the libraries decoding and encoding depend on."""
        ...


#: modality -> (module, factory name); imported on first use.
_BUILTIN: dict[str, tuple[str, str]] = {
    "audio": ("augledger.io.audio", "AudioCodec"),
    "image": ("augledger.io.image", "ImageCodec"),
    "text": ("augledger.io.text", "TextCodec"),
}


def get_codec(modality: str, **settings: Any) -> Codec:
    """A codec for ``modality``, configured with ``settings`` (for images: ``max_pixels``, ``jpeg_quality``).

    Raises:
        SpecError: no codec stores that modality as files.
    """
    factory = _factory(modality)
    if factory is None:
        raise SpecError(f"modality {modality!r} has no file codec; available: {', '.join(sorted(_BUILTIN))}",
                        location="modality")
    codec: Codec = factory(**settings)
    return codec


def find_codec(modality: str) -> Codec | None:
    """The default codec of ``modality``, or ``None`` when it has none."""
    factory = _factory(modality)
    return None if factory is None else factory()


def _factory(modality: str) -> Callable[..., Codec] | None:
    entry = _BUILTIN.get(modality)
    if entry is None:
        return None
    module, name = entry
    factory: Callable[..., Codec] = getattr(importlib.import_module(module), name)
    return factory
