"""``registry audit``: re-check the history chain, the stored specs and the tables against the history."""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from augledger._canonical import fingerprint_of
from augledger.registry.chain import GENESIS, Derived, HistoryEntry, entry_hash, spec_digest

__all__ = ["AuditReport", "alias_problem", "check_chain", "check_tables", "version_problems"]


@dataclass
class AuditReport:
    rows: int = 0
    versions: int = 0
    problems: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems


def check_chain(rows: list[HistoryEntry], head: str | None, problems: list[str]) -> None:
    prev = GENESIS
    for i, e in enumerate(rows, start=1):
        if e.seq != i:
            problems.append(f"history row {i} is missing: the rows jump from {i - 1} to {e.seq} (a row was removed)")
            return
        if e.prev_hash != prev:
            problems.append(f"{e.describe()}: prev_hash does not match row {i - 1}'s hash (a row before it was edited, "
                            "removed or reordered)")
            return
        if entry_hash(e.hashed()) != e.hash:
            problems.append(f"{e.describe()}: its content does not match its hash (the row was edited)")
            return
        prev = e.hash
    if head != prev:
        problems.append(f"the registry's head hash does not match the last history row ({len(rows)}): rows were "
                        "removed from the end, or the head was edited")


def version_problems(derived: Derived, name: str, version: int, *, spec_text: str, fingerprint: str, state: str,
                     added_by: str, added_at: str, note: str | None) -> list[str]:
    """What in one version's table row disagrees with the history (``[]`` when nothing does).

    The one definition of "the history vouches for this row": ``audit`` applies it to every row,
    and resolving a REF (:meth:`Registry.get` with ``verified``) to the row it is about to use.
    """
    ref, key = f"{name}@{version}", (name, version)
    added = derived.added.get(key)
    if added is None:
        return [f"{ref} has no 'add' row in the history (it was inserted outside the registry)"]
    problems = []
    try:
        now = fingerprint_of(json.loads(spec_text))
    except (ValueError, TypeError, AttributeError):
        return [f"the stored spec of {ref} is not valid JSON any more (edited outside the registry)"]
    if now != fingerprint or fingerprint != added.detail.get("fingerprint"):
        problems.append(f"the stored spec of {ref} does not match its fingerprint {added.detail.get('fingerprint')} "
                        f"(it now hashes to {now}): the spec or fingerprint was edited")
    elif spec_digest(spec_text) != added.detail.get("spec_digest"):
        problems.append(f"the stored spec of {ref} differs from the one added in {added.describe()} "
                        "(an unfingerprinted field such as the seed or description was edited)")
    for column, ours, recorded in (("added_by", added_by, added.actor), ("added_at", added_at, added.at),
                                   ("note", note, added.reason)):
        if ours != recorded:
            problems.append(f"{ref}'s {column} is {ours!r} in the versions table but {recorded!r} "
                            f"in {added.describe()} (edited outside the registry)")
    if derived.single_user is False and added.actor in derived.approvers.get(key, []):
        problems.append(f"{ref} was approved by {added.actor!r}, who added it: four-eyes approval was bypassed "
                        "(the history was rewritten)")
    if derived.states.get(key) != state:
        problems.append(f"{ref} is {state!r} in the versions table but {derived.states.get(key)!r} by its history "
                        "(the state was edited outside the registry)")
    return problems


def alias_problem(derived: Derived, name: str, alias: str, table: tuple[int, int | None] | None) -> str | None:
    """Why an alias's (target, previous target) in the table is not what its history says, or ``None``."""
    theirs = derived.aliases.get((name, alias))
    if table == theirs:
        return None

    def said(pair: tuple[int, int | None] | None) -> str:
        return "nothing (no such alias)" if pair is None else f"{pair[0]} (previously {pair[1]})"

    return (f"alias {name}@{alias} points at {said(table)} in the aliases table but {said(theirs)} by its history "
            "(moved outside the registry)")


def check_tables(derived: Derived, meta: Mapping[str, str], stored: list[Any], alias_rows: list[Any],
                 problems: list[str]) -> None:
    """Every version row and alias row against the replayed history (:func:`version_problems`, :func:`alias_problem`)."""
    if derived.single_user is not None and (meta.get("single_user") == "1") != derived.single_user:
        problems.append("the registry's single_user setting differs from the one its history was created with "
                        "(four-eyes approval was switched off by editing the database)")
    for e in derived.readded:
        problems.append(f"{e.describe()} adds {e.name}@{e.version} again: the number was taken by an earlier add "
                        "(a version row was deleted and the registry edited to reuse it)")
    seen: set[tuple[str, int]] = set()
    for row in stored:
        seen.add((row.name, int(row.version)))
        problems += version_problems(derived, row.name, int(row.version), spec_text=row.spec,
                                     fingerprint=row.fingerprint, state=row.state, added_by=row.added_by,
                                     added_at=row.added_at, note=row.note)
    for gone in sorted(set(derived.added) - seen):
        problems.append(f"{gone[0]}@{gone[1]} was added ({derived.added[gone].describe()}) but is gone from the versions table")
    table = {(str(r.name), str(r.alias)): (int(r.version), None if r.previous is None else int(r.previous))
             for r in alias_rows}
    for name, alias in sorted(set(table) | set(derived.aliases)):
        problem = alias_problem(derived, name, alias, table.get((name, alias)))
        if problem:
            problems.append(problem)
