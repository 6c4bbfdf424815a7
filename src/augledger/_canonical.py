"""Canonical JSON and content digests: the byte forms that fingerprints and ledgers hash."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from typing import Any

__all__ = ["UNHASHED_FIELDS", "canonical_json", "fingerprint_of", "sha256_hex"]

#: Top-level spec fields that label a run but do not change what the pipeline does to a sample. They
#: are kept out of the fingerprint: renaming a spec, or choosing another seed, is not a new version.
#: An intensity ``policy`` constrains the ops and never changes an output either.
UNHASHED_FIELDS = ("name", "description", "seed", "policy")


def canonical_json(obj: Any) -> bytes:
    """Encode ``obj`` as canonical JSON: sorted keys, no whitespace, UTF-8, no NaN/Infinity.

    Two objects that are equal as JSON data encode to the same bytes, whatever their key order.
    """
    return json.dumps(
        obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False
    ).encode("utf-8")


def sha256_hex(data: bytes | bytearray | memoryview) -> str:
    """Return ``"sha256:<hex>"`` of ``data``."""
    return "sha256:" + hashlib.sha256(data).hexdigest()


def fingerprint_of(resolved: Mapping[str, Any]) -> str:
    """SHA-256 of the canonical JSON of a resolved spec, without its unhashed label fields.

    The resolved spec already has every default filled in and every value normalised, so key
    order, comments, formatting and ``1`` vs ``1.0`` make no difference, while any change of meaning
    does. ``name``, ``description`` and ``seed`` are left out (:data:`UNHASHED_FIELDS`).
    """
    versioned = {k: v for k, v in resolved.items() if k not in UNHASHED_FIELDS}
    return sha256_hex(canonical_json(versioned))
