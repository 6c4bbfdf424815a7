"""The text backend: augledger's own text ops, in pure Python (nothing downloaded, no model).

* :mod:`~augledger.ops.text.tokens`: the documented tokenizer, the draws, and edits (``[start, old, new]``).
* :mod:`~augledger.ops.text.tables`: the QWERTY neighbour and OCR confusion tables.
* :mod:`~augledger.ops.text.ops`: the ops (word swap, deletion, duplication, keyboard typos, OCR
  noise, case noise, punctuation insertion, synonyms from the spec's own table).
* :mod:`~augledger.ops.text.resolve`: strict validation naming locations; every default filled in.
* :mod:`~augledger.ops.text.runtime`: per-sample seeding, compositions, records, :func:`apply_recorded`.

Samples are ``{"text": str}``; a spec says ``modality: text``. Op names are ``augledger.text.X``
(the bare ``X`` in a spec).
"""

from __future__ import annotations

import copy
import unicodedata
from collections.abc import Mapping, Sequence
from typing import Any

from augledger.ops.text.ops import TEXT_OPS
from augledger.ops.text.resolve import (
    COMPOSITIONS,
    DEFAULT_P,
    NAMESPACE,
    canonical_op_name,
    resolve_ops,
    resolve_targets,
)
from augledger.ops.text.runtime import TextApplier, TextCompiled, apply_recorded, replay_records
from augledger.ops.text.tables import TABLES_VERSION
from augledger.ops.text.tokens import TOKEN_PATTERN, tokenize
from augledger.spec import OpSpec

__all__ = [
    "BACKEND",
    "COMPOSITIONS",
    "EXAMPLE_TEXT",
    "NAMESPACE",
    "TEXT_OPS",
    "TOKEN_PATTERN",
    "TextApplier",
    "TextBackend",
    "TextCompiled",
    "apply_recorded",
    "canonical_op_name",
    "replay_records",
    "tokenize",
]

#: The example sample's text: every op's ``example`` changes it.
EXAMPLE_TEXT = (
    "The quick brown fox jumps over the lazy dog near the river bank.\n"
    "In 1985, Sam moved 50 boxes of modern clocks to Room 208; nobody would believe it!\n"
)


class TextBackend:
    """:class:`~augledger.ops.base.Backend` for ``modality: text``."""

    modality = "text"
    namespace = NAMESPACE

    def op_names(self) -> tuple[str, ...]:
        return (*TEXT_OPS, *COMPOSITIONS)

    def describe_ops(self) -> list[dict[str, Any]]:
        entries: list[dict[str, Any]] = []
        for name, op in TEXT_OPS.items():
            entries.append({"op": name, "modality": self.modality, "p": DEFAULT_P, "params": copy.deepcopy(op.defaults),
                            "required": list(op.required), "example": copy.deepcopy(op.example), "doc": op.doc})
        for name, (p, params) in COMPOSITIONS.items():
            entries.append({"op": name, "modality": self.modality, "p": p, "params": dict(params), "required": [],
                            "example": dict(params), "composition": True,
                            "doc": f"{name} over child text ops, as Albumentations' {name}."})
        return sorted(entries, key=lambda e: str(e["op"]))

    def example_sample(self) -> dict[str, Any]:
        return {"text": EXAMPLE_TEXT}

    def resolve_ops(self, ops: Sequence[OpSpec]) -> list[dict[str, Any]]:
        return resolve_ops(ops)

    def resolve_targets(self, targets: Mapping[str, Any]) -> dict[str, Any]:
        return resolve_targets(targets)

    def targets_schema(self) -> dict[str, Any]:
        return {"type": "object", "maxProperties": 0, "description": "text specs take no targets"}

    def compile(self, ops: Sequence[Mapping[str, Any]], targets: Mapping[str, Any]) -> TextCompiled:
        return TextCompiled(ops)

    def versions(self) -> dict[str, str]:
        # \w (the tokenizer) follows the Unicode database of the running Python; the tables are ours.
        return {"python-unicode": unicodedata.unidata_version, "augledger-text-tables": TABLES_VERSION}

    def storage_problem(self, ops: Sequence[Mapping[str, Any]]) -> str | None:
        return None


BACKEND = TextBackend()
