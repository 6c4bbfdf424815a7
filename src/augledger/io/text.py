"""The text codec: UTF-8 ``.txt`` files to ``{"text": str}`` samples and back, keeping the source's form.

Decoding refuses, with a quarantine reason, what a text op could only garble:

==================  =====================================================================
``empty``           a zero-byte file (or only a byte order mark)
``too-large``       more than ``max_bytes`` bytes (default 16 MiB), before decoding
``not-utf8``        bytes that are not UTF-8 (with the offset of the first bad byte)
``nul-bytes``       a NUL character: a binary file named ``.txt``
==================  =====================================================================

Line endings: a file that uses one convention throughout (``\\r\\n`` or ``\\r``) is handed to the
ops with ``\\n`` line breaks and written back with its own; a file mixing conventions is handed
over as it is. A UTF-8 byte order mark is removed before the ops and written back. Both are kept
in :attr:`~augledger.io.codecs.Decoded.meta` (``newline``, ``bom``), so an output differs from
its source only where an op changed the text.
"""

from __future__ import annotations

import unicodedata
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from augledger.errors import Quarantined
from augledger.io.codecs import Annotation, Decoded, Encoded

__all__ = ["DEFAULT_MAX_BYTES", "TEXT_EXTENSIONS", "TextCodec", "decode_text", "encode_text"]

#: Text files larger than this are refused (``too-large``).
DEFAULT_MAX_BYTES = 16 * 1024 * 1024
TEXT_EXTENSIONS = frozenset({".txt"})
_BOM = b"\xef\xbb\xbf"


def decode_text(data: bytes, *, max_bytes: int = DEFAULT_MAX_BYTES) -> tuple[str, dict[str, Any]]:
    """The text of a UTF-8 file (``\\n`` line breaks where the file is consistent) and its ``meta``.

    Raises:
        Quarantined: ``empty``, ``too-large``, ``not-utf8`` or ``nul-bytes``.
    """
    if len(data) > max_bytes:
        raise Quarantined("too-large", f"{len(data)} bytes exceeds the limit of {max_bytes}; raise max_bytes if the file is genuine")
    bom = data.startswith(_BOM)
    body = data[len(_BOM):] if bom else data
    if not body:
        raise Quarantined("empty", "no text: an empty file or text field" if not bom else "only a byte order mark")
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise Quarantined("not-utf8", f"not UTF-8: byte {exc.start + len(_BOM) * bom} ({body[exc.start]:#04x}) "
                          f"is invalid ({exc.reason}); convert the file to UTF-8") from None
    if "\x00" in text:
        raise Quarantined("nul-bytes", f"NUL character at offset {text.index(chr(0))}: a binary file, not text")
    newline = "\n"
    if "\r" in text:
        crlf = text.count("\r\n")
        if crlf == text.count("\r") == text.count("\n"):
            newline, text = "\r\n", text.replace("\r\n", "\n")
        elif "\n" not in text:
            newline, text = "\r", text.replace("\r", "\n")
        else:
            newline = "mixed"  # left as it is: no single convention to restore
    return text, {"bom": bom, "newline": newline}


def encode_text(text: str, meta: Mapping[str, Any] | None = None) -> bytes:
    """``text`` as UTF-8 with the source's line breaks and byte order mark (``meta`` from :func:`decode_text`)."""
    meta = meta or {}
    newline = meta.get("newline", "\n")
    if newline in ("\r\n", "\r"):
        text = text.replace("\n", newline)
    try:
        data = text.encode("utf-8")
    except UnicodeEncodeError as exc:  # a lone surrogate from a hand-made sample
        raise Quarantined("unencodable", f"the text cannot be stored as UTF-8: {exc.reason} at {exc.start}") from None
    return (_BOM + data) if meta.get("bom") else data


@dataclass(frozen=True)
class TextCodec:
    """:class:`~augledger.io.codecs.Codec` for ``modality: text``: a folder of UTF-8 ``.txt`` files.

    Args:
        max_bytes: refuse larger files (``too-large``) before decoding them.
        settings: the run's other settings (``max_pixels``, ``jpeg_quality``), which text has no use for.
    """

    max_bytes: int = DEFAULT_MAX_BYTES

    modality = "text"
    extensions = TEXT_EXTENSIONS
    formats = ("txt",)
    stored_fields = frozenset({"text"})

    def __init__(self, max_bytes: int = DEFAULT_MAX_BYTES, **settings: Any) -> None:
        if isinstance(max_bytes, bool) or not isinstance(max_bytes, int) or max_bytes < 1:
            raise ValueError(f"max_bytes must be an int >= 1; got {max_bytes!r}")
        object.__setattr__(self, "max_bytes", max_bytes)

    def decode(self, data: bytes) -> Decoded:
        text, meta = decode_text(data, max_bytes=self.max_bytes)
        return Decoded({"text": text}, None, meta)

    def attach(
        self, sample: dict[str, Any], annotation: Annotation | None, targets: Mapping[str, Any],
        read: Callable[[str], bytes],
    ) -> dict[str, Any]:
        if annotation is not None and annotation.problem:
            raise Quarantined("annotation", annotation.problem)
        return sample  # labels and other columns travel in the ledger's targets, never through the ops

    def output_format(self, key: str, requested: str) -> str:
        return "txt"

    def encode(self, sample: Mapping[str, Any], fmt: str, meta: Mapping[str, Any] | None = None) -> Encoded:
        text = sample.get("text")
        if not isinstance(text, str):
            raise Quarantined("unencodable", f"a text sample needs a 'text' str; got {type(text).__name__}")
        return Encoded(encode_text(text, meta))

    def encode_side(self, sample: Mapping[str, Any]) -> dict[str, bytes]:
        return {}

    def versions(self) -> dict[str, str]:
        return {"python-unicode": unicodedata.unidata_version}
