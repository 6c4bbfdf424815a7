"""The tamper-evident history: how a history row is hashed, and what the history says the state is.

Every row's ``hash`` is the SHA-256 of the canonical JSON of its fields, ``prev_hash`` included, so
editing any row, removing one or reordering them breaks the chain at that row; the registry's
``head`` (in ``augledger_meta``) is the last row's hash, which catches a removed last row. The
history is also the source of truth the tables are checked against: replaying it gives every
version's state and every alias's target, and ``registry audit`` compares those with the tables.

What it does not catch: someone with write access who rewrites the whole chain from the edit on and
the head with it. A signature over the head (the guardrails work) closes that.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from augledger._canonical import canonical_json, sha256_hex

__all__ = ["GENESIS", "HASHED_FIELDS", "Derived", "HistoryEntry", "derive", "entry_hash", "spec_digest"]

#: The ``prev_hash`` of the first row.
GENESIS = "sha256:" + "0" * 64
#: The fields a row's hash covers, in the order they are stored.
HASHED_FIELDS = ("seq", "at", "actor", "action", "name", "version", "reason", "detail", "prev_hash")


@dataclass(frozen=True)
class HistoryEntry:
    """One action on the registry: who did what, when and why.

    ``action`` is one of ``init``, ``add``, ``promote``, ``deprecate``, ``retire``, ``alias``,
    ``rollback``. ``detail`` holds the action's facts: ``{"fingerprint", "spec_digest", "note"}`` for
    ``add``; ``{"from", "to"}`` (states) for lifecycle moves; ``{"alias", "from", "to"}`` (versions)
    for alias moves.
    """

    seq: int
    at: str
    actor: str
    action: str
    name: str | None
    version: int | None
    reason: str | None
    detail: dict[str, Any]
    prev_hash: str
    hash: str

    def hashed(self) -> dict[str, Any]:
        return {name: getattr(self, name) for name in HASHED_FIELDS}

    def to_dict(self) -> dict[str, Any]:
        return {**self.hashed(), "hash": self.hash}

    @classmethod
    def from_row(cls, row: Mapping[str, Any]) -> HistoryEntry:
        detail = row["detail"]
        return cls(
            seq=int(row["seq"]), at=str(row["at"]), actor=str(row["actor"]), action=str(row["action"]),
            name=row["name"], version=None if row["version"] is None else int(row["version"]),
            reason=row["reason"], detail=json.loads(detail) if isinstance(detail, str) else dict(detail),
            prev_hash=str(row["prev_hash"]), hash=str(row["hash"]),
        )

    def describe(self) -> str:
        target = f" {self.name}@{self.version}" if self.name is not None and self.version is not None else (
            f" {self.name}" if self.name else "")
        return f"history row {self.seq} ({self.at}, {self.actor}: {self.action}{target})"


def entry_hash(fields: Mapping[str, Any]) -> str:
    """The hash of a row from its :data:`HASHED_FIELDS` (``detail`` as data, not text)."""
    return sha256_hex(canonical_json({name: fields[name] for name in HASHED_FIELDS}))


def spec_digest(spec_text: str) -> str:
    """Digest of a stored spec's exact text; the ``add`` row records it, so any edit of the text shows."""
    return sha256_hex(spec_text.encode("utf-8"))


@dataclass
class Derived:
    """What the history says: every version's state, every alias's target and previous target."""

    states: dict[tuple[str, int], str] = field(default_factory=dict)
    added: dict[tuple[str, int], HistoryEntry] = field(default_factory=dict)
    aliases: dict[tuple[str, str], tuple[int, int | None]] = field(default_factory=dict)
    #: ``add`` rows that reuse a (name, version) already added (a deleted version's number taken again).
    readded: list[HistoryEntry] = field(default_factory=list)
    #: (name, version) -> the actors who moved it to ``approved``.
    approvers: dict[tuple[str, int], list[str]] = field(default_factory=dict)
    single_user: bool | None = None


def derive(entries: Iterable[HistoryEntry]) -> Derived:
    """Replay the history (in ``seq`` order) into the state the tables should hold."""
    out = Derived()
    for e in entries:
        if e.action == "init":
            out.single_user = bool(e.detail.get("single_user"))
        elif e.action == "add" and e.name is not None and e.version is not None:
            if (e.name, e.version) in out.added:
                out.readded.append(e)  # a number used twice: the first add stands, audit names the second
                continue
            out.states[(e.name, e.version)] = "draft"
            out.added[(e.name, e.version)] = e
        elif e.action in ("promote", "deprecate", "retire") and e.name is not None and e.version is not None:
            out.states[(e.name, e.version)] = str(e.detail.get("to"))
            if e.detail.get("to") == "approved":
                out.approvers.setdefault((e.name, e.version), []).append(e.actor)
        elif e.action in ("alias", "rollback") and e.name is not None:
            out.aliases[(e.name, str(e.detail.get("alias")))] = (int(e.detail["to"]), e.detail.get("from"))
    return out
