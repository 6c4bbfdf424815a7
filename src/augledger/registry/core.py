"""The registry: governed pipeline versions (content-addressed, with a lifecycle, aliases and an audit).

A version is a resolved spec stored under its ``name`` and numbered 1, 2, ... per name; adding a
spec whose fingerprint that name already has changes nothing and returns the existing version.
Every action appends a row to a hash-chained history (:mod:`augledger.registry.chain`).

Lifecycle (:data:`~augledger.registry.model.TRANSITIONS`)::

    draft ──▶ approved ──▶ deprecated ──▶ retired
    draft ──▶ retired      deprecated ──▶ approved   (un-deprecate)

Approving needs a second person (an actor other than the one who added the version) unless the
registry was created single-user.

This module is long because every write (add, lifecycle move, alias move) must go through the one
serialised transaction (:meth:`Registry._writing`) that also appends the hash-chained history row;
splitting the writers across modules would invite one that bypasses it.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any

from augledger._canonical import canonical_json
from augledger.errors import AuditFailure, LifecycleError, RegistryError
from augledger.registry.audit import AuditReport, check_chain, check_tables
from augledger.registry.chain import GENESIS, HistoryEntry, derive, entry_hash, spec_digest
from augledger.registry.model import (
    ALIAS_PATTERN,
    TRANSITIONS,
    AddResult,
    AliasMove,
    VersionInfo,
    current_actor,
    parse_ref,
)
from augledger.registry.tables import Tables, default_url, display_url, make_engine, normalise_url

if TYPE_CHECKING:
    from augledger.spec import PipelineSpec

__all__ = ["Registry"]

log = logging.getLogger(__name__)

_ACTION = {"approved": "promote", "deprecated": "deprecate", "retired": "retire"}
FORMAT = 1


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="microseconds")


class Registry:
    """A registry of pipeline versions in an SQL database (SQLite file by default, or PostgreSQL).

    Args:
        url: a path (SQLite) or a URL (``postgresql://user@host/db``); default
            ``$AUGLEDGER_REGISTRY`` or ``.augledger/registry.db``.
        create: create the registry if it does not exist (otherwise a missing one is an error).
        single_user: when creating, turn four-eyes approval off (recorded in the history; fixed for
            the registry's life).

    Raises:
        RegistryError: the registry does not exist (and ``create`` is false), or cannot be opened.
    """

    def __init__(self, url: str | Path | None = None, *, create: bool = False, single_user: bool = False) -> None:
        self.url = normalise_url(str(url) if url is not None else default_url())
        self.where = display_url(self.url)
        self._t = Tables.get()
        if self.url.startswith("sqlite:///") and not create:
            path = Path(self.url[len("sqlite:///"):])
            if not path.is_file():
                raise RegistryError(
                    f"no registry at {str(path)!r}; `augledger registry add SPEC` creates one there, "
                    f"or point --registry / ${'AUGLEDGER_REGISTRY'} at an existing one"
                )
        if self.url.startswith("sqlite:///") and create:
            Path(self.url[len("sqlite:///"):]).parent.mkdir(parents=True, exist_ok=True)
        self._engine = make_engine(self.url)
        try:
            self._open(create=create, single_user=single_user)
        except RegistryError:
            self._engine.dispose()
            raise
        except Exception as exc:
            self._engine.dispose()
            raise RegistryError(f"cannot open the registry at {self.where}: {type(exc).__name__}: {exc}") from None

    # -- opening ------------------------------------------------------------------------------------
    def _open(self, *, create: bool, single_user: bool) -> None:
        from sqlalchemy import select
        from sqlalchemy.exc import DBAPIError

        t = self._t
        if create:
            self._create_tables()  # CREATE TABLE IF NOT EXISTS, then the first history row
            with self._writing(single_user) as (_conn, _head):
                pass
        try:
            with self._engine.connect() as conn:
                meta = {str(k): str(v) for k, v in conn.execute(select(t.meta.c.key, t.meta.c.value))}
        except DBAPIError:  # no such table (reading first beats asking the catalogue: one round trip)
            meta = {}
        if "head" not in meta:
            raise RegistryError(f"{self.where} holds no augledger registry; `augledger registry add SPEC` creates one")
        fmt = int(meta.get("format", "0"))
        if fmt != FORMAT:
            raise RegistryError(f"registry {self.where} has format {fmt}; this augledger reads format {FORMAT}")
        self.single_user = meta.get("single_user") == "1"
        if create and single_user and not self.single_user:
            log.warning("registry %s already exists with four-eyes approval; --single-user applies only "
                        "when a registry is created", self.where)

    def _create_tables(self) -> None:
        from sqlalchemy.exc import DBAPIError

        for attempt in range(3):  # two processes creating the registry at once: one wins, the other re-checks
            try:
                self._t.metadata.create_all(self._engine)
                return
            except DBAPIError:
                if attempt == 2:
                    raise

    def _initialise(self, conn: Any, single_user: bool) -> str:
        t = self._t
        conn.execute(t.meta.insert(), [
            {"key": "format", "value": str(FORMAT)},
            {"key": "single_user", "value": "1" if single_user else "0"},
            {"key": "head", "value": GENESIS},
        ])
        return self._append(conn, GENESIS, action="init", name=None, version=None, reason=None,
                            detail={"format": FORMAT, "single_user": single_user}, actor=None)

    @contextmanager
    def _writing(self, single_user: bool = False) -> Iterator[tuple[Any, list[str]]]:
        """A write transaction holding the registry's write lock; yields (connection, [head hash])."""
        from sqlalchemy import select

        t = self._t
        with self._engine.connect() as conn:
            conn = conn.execution_options(augledger_write=True)
            with conn.begin():
                head = conn.execute(select(t.meta.c.value).where(t.meta.c.key == "head").with_for_update()).scalar()
                if head is None:
                    head = self._initialise(conn, single_user)
                box = [str(head)]
                yield conn, box

    def _append(self, conn: Any, head: str, *, action: str, name: str | None, version: int | None,
                reason: str | None, detail: Mapping[str, Any], actor: str | None) -> str:
        from sqlalchemy import func, select

        t = self._t
        seq = int(conn.execute(select(func.coalesce(func.max(t.history.c.seq), 0))).scalar_one()) + 1
        fields: dict[str, Any] = {"seq": seq, "at": _now(), "actor": actor or current_actor(), "action": action,
                                  "name": name, "version": version, "reason": reason, "detail": dict(detail),
                                  "prev_hash": head}
        digest = entry_hash(fields)
        conn.execute(t.history.insert().values(**{**fields, "detail": canonical_json(fields["detail"]).decode(),
                                                  "hash": digest}))
        conn.execute(t.meta.update().where(t.meta.c.key == "head").values(value=digest))
        return digest

    def close(self) -> None:
        self._engine.dispose()

    def __enter__(self) -> Registry:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"Registry({self.where!r}{', single_user' if self.single_user else ''})"

    # -- reading ------------------------------------------------------------------------------------
    @staticmethod
    def _info(row: Any) -> VersionInfo:
        return VersionInfo(name=row.name, version=int(row.version), fingerprint=row.fingerprint, state=row.state,
                           added_by=row.added_by, added_at=row.added_at, note=row.note, spec_text=row.spec)

    def _version_row(self, conn: Any, name: str, version: int) -> Any:
        from sqlalchemy import select

        v = self._t.versions
        return conn.execute(select(v).where(v.c.name == name, v.c.version == version)).first()

    def _get(self, conn: Any, ref: str) -> VersionInfo:
        from sqlalchemy import select

        name, selector = parse_ref(ref)
        if isinstance(selector, str):
            a = self._t.aliases
            target = conn.execute(select(a.c.version).where(a.c.name == name, a.c.alias == selector)).scalar()
            if target is None:
                known = conn.execute(select(a.c.alias).where(a.c.name == name).order_by(a.c.alias)).scalars().all()
                raise RegistryError(self._unknown(conn, name, f"no alias {selector!r}", f"aliases: {', '.join(known) or 'none'}"))
            selector = int(target)
        row = self._version_row(conn, name, selector)
        if row is None:
            raise RegistryError(self._unknown(conn, name, f"no version {selector}", ""))
        return self._info(row)

    def _unknown(self, conn: Any, name: str, what: str, more: str) -> str:
        from sqlalchemy import select

        v = self._t.versions
        numbers = conn.execute(select(v.c.version).where(v.c.name == name).order_by(v.c.version)).scalars().all()
        if not numbers:
            names = conn.execute(select(v.c.name).distinct().order_by(v.c.name)).scalars().all()
            return (f"no spec named {name!r} in the registry {self.where}; registered: "
                    f"{', '.join(names[:20]) or 'none'} (add one with `augledger registry add SPEC`)")
        extra = f"; {more}" if more else ""
        return f"{name!r} has {what} in {self.where}; versions: {', '.join(map(str, numbers))}{extra}"

    def get(self, ref: str) -> VersionInfo:
        """The version a REF (``NAME@VERSION`` or ``NAME@ALIAS``) names.

        Raises:
            RegistryError: no such name, version or alias (the message lists what exists).
        """
        with self._engine.connect() as conn:
            return self._get(conn, ref)

    def find(self, name: str, fingerprint: str) -> VersionInfo | None:
        """The version of ``name`` with this fingerprint, if registered."""
        from sqlalchemy import select

        v = self._t.versions
        with self._engine.connect() as conn:
            row = conn.execute(select(v).where(v.c.name == name, v.c.fingerprint == fingerprint)).first()
        return None if row is None else self._info(row)

    def with_fingerprint(self, fingerprint: str) -> list[VersionInfo]:
        """Every version, under any name, with this fingerprint."""
        from sqlalchemy import select

        v = self._t.versions
        with self._engine.connect() as conn:
            rows = conn.execute(select(v).where(v.c.fingerprint == fingerprint).order_by(v.c.name, v.c.version))
            return [self._info(row) for row in rows]

    def versions(self, name: str | None = None) -> list[VersionInfo]:
        """Every version (of one name), ordered by name and version."""
        from sqlalchemy import select

        v = self._t.versions
        query = select(v).order_by(v.c.name, v.c.version)
        if name is not None:
            query = query.where(v.c.name == name)
        with self._engine.connect() as conn:
            return [self._info(row) for row in conn.execute(query)]

    def aliases(self, name: str | None = None) -> dict[tuple[str, str], tuple[int, int | None]]:
        """``(name, alias) -> (version, previous version)``."""
        from sqlalchemy import select

        a = self._t.aliases
        query = select(a).order_by(a.c.name, a.c.alias)
        if name is not None:
            query = query.where(a.c.name == name)
        with self._engine.connect() as conn:
            return {(r.name, r.alias): (int(r.version), None if r.previous is None else int(r.previous))
                    for r in conn.execute(query)}

    def history(self, name: str | None = None, version: int | None = None) -> list[HistoryEntry]:
        """History rows in order; of one name (alias moves included) or one version."""
        from sqlalchemy import select

        h = self._t.history
        query = select(h).order_by(h.c.seq)
        if name is not None:
            query = query.where(h.c.name == name)
        if version is not None:
            query = query.where(h.c.version == version)
        with self._engine.connect() as conn:
            return [HistoryEntry.from_row(row._mapping) for row in conn.execute(query)]

    # -- writing ------------------------------------------------------------------------------------
    def add(self, spec: PipelineSpec | Mapping[str, Any], *, note: str | None = None, actor: str | None = None) -> AddResult:
        """Register a spec; the same fingerprint under the same name returns the existing version.

        Raises:
            SpecError, UnknownOpError, ParamError: the spec does not compile.
            RegistryError: the name cannot be used in a REF (it contains ``@``).
        """
        from sqlalchemy import func, select

        from augledger.pipeline import compile_spec
        from augledger.spec import PipelineSpec, parse_spec

        pipe = compile_spec(spec if isinstance(spec, PipelineSpec) else parse_spec(spec))
        name = pipe.name
        if "@" in name or name != name.strip():
            raise RegistryError(f"spec name {name!r} cannot be registered: a REF is NAME@VERSION, so the name must "
                                "not contain '@' or start or end with spaces; rename it in the spec")
        resolved = pipe.resolved_spec
        text = canonical_json(resolved).decode("utf-8")
        v = self._t.versions
        with self._writing() as (conn, head):
            existing = conn.execute(select(v).where(v.c.name == name, v.c.fingerprint == pipe.fingerprint)).first()
            if existing is not None:
                info = self._info(existing)
                differs = tuple(k for k in ("seed", "description") if info.spec.get(k) != resolved.get(k))
                return AddResult(info, created=False, differs=differs)
            number = int(conn.execute(select(func.coalesce(func.max(v.c.version), 0)).where(v.c.name == name)).scalar_one()) + 1
            who, when = actor or current_actor(), _now()
            conn.execute(v.insert().values(name=name, version=number, fingerprint=pipe.fingerprint, spec=text,
                                           state="draft", added_by=who, added_at=when, note=note))
            head[0] = self._append(conn, head[0], action="add", name=name, version=number, reason=note,
                                   detail={"fingerprint": pipe.fingerprint, "spec_digest": spec_digest(text)}, actor=who)
            row = self._version_row(conn, name, number)
        log.info("registered %s@%d %s", name, number, pipe.fingerprint)
        return AddResult(self._info(row), created=True)

    def transition(self, ref: str, to: str, *, reason: str, actor: str | None = None) -> VersionInfo:
        """Move a version to another lifecycle state (:data:`TRANSITIONS`), recording who and why.

        Raises:
            LifecycleError: an illegal move (the allowed ones are named), no reason, a four-eyes
                refusal, or retiring a version an alias still points at.
        """
        from sqlalchemy import select

        if to not in _ACTION:
            raise LifecycleError(f"--to must be one of approved, deprecated, retired; got {to!r}")
        if not reason or not reason.strip():
            raise LifecycleError(f"a reason is required to move {ref} to {to} (--reason TEXT): the history records why")
        who = actor or current_actor()
        with self._writing() as (conn, head):
            info = self._get(conn, ref)
            allowed = TRANSITIONS[info.state]
            if to not in allowed:
                options = ", ".join(allowed) if allowed else "nothing (retired is final)"
                raise LifecycleError(f"{info.ref} is {info.state}; it can move to {options}, not to {to}")
            if to == "approved" and not self.single_user and who == info.added_by:
                raise LifecycleError(
                    f"four eyes: {who!r} added {info.ref} and cannot also approve it; another person must "
                    "(set AUGLEDGER_USER to who is acting), or use a registry created with --single-user"
                )
            if to == "retired":
                a = self._t.aliases
                pointing = conn.execute(select(a.c.alias).where(a.c.name == info.name, a.c.version == info.version)).scalars().all()
                if pointing:
                    raise LifecycleError(f"{info.ref} is the target of alias(es) {', '.join(sorted(pointing))}; move them "
                                         f"first (`augledger registry alias {info.name} ALIAS VERSION`)")
            v = self._t.versions
            conn.execute(v.update().where(v.c.name == info.name, v.c.version == info.version).values(state=to))
            head[0] = self._append(conn, head[0], action=_ACTION[to], name=info.name, version=info.version,
                                   reason=reason, detail={"from": info.state, "to": to}, actor=who)
            row = self._version_row(conn, info.name, info.version)
        return self._info(row)

    def promote(self, ref: str, *, to: str = "approved", reason: str, actor: str | None = None) -> VersionInfo:
        return self.transition(ref, to, reason=reason, actor=actor)

    def deprecate(self, ref: str, *, reason: str, actor: str | None = None) -> VersionInfo:
        return self.transition(ref, "deprecated", reason=reason, actor=actor)

    def retire(self, ref: str, *, reason: str, actor: str | None = None) -> VersionInfo:
        return self.transition(ref, "retired", reason=reason, actor=actor)

    def set_alias(self, name: str, alias: str, version: int, *, reason: str | None = None,
                  actor: str | None = None) -> AliasMove:
        """Point ``name@alias`` at ``version`` atomically, keeping the previous target for rollback.

        Raises:
            RegistryError: a bad alias name, or no such version.
            LifecycleError: the version is retired.
        """
        if alias.isdigit() or not ALIAS_PATTERN.fullmatch(alias):
            raise RegistryError(f"alias {alias!r} must start with a letter and hold letters, digits, _ . - "
                                "(a number would read as a version)")
        return self._move(name, alias, reason=reason, actor=actor, to=int(version))

    def rollback(self, name: str, alias: str, *, reason: str | None = None, actor: str | None = None) -> AliasMove:
        """Move ``name@alias`` back to its previous target (a second rollback undoes the first).

        Raises:
            RegistryError: no such alias, or it has never been moved.
            LifecycleError: the previous target has been retired since.
        """
        return self._move(name, alias, reason=reason, actor=actor, to=None)

    def _move(self, name: str, alias: str, *, reason: str | None, actor: str | None, to: int | None) -> AliasMove:
        from sqlalchemy import select

        a = self._t.aliases
        rolling_back = to is None
        with self._writing() as (conn, head):
            current = conn.execute(select(a).where(a.c.name == name, a.c.alias == alias)).first()
            if to is None:
                if current is None:
                    raise RegistryError(self._unknown(conn, name, f"no alias {alias!r}", ""))
                if current.previous is None:
                    raise RegistryError(f"{name}@{alias} has never been moved: there is nothing to roll back to")
                to = int(current.previous)
            row = self._version_row(conn, name, to)
            if row is None:
                raise RegistryError(self._unknown(conn, name, f"no version {to}", ""))
            if row.state == "retired":
                raise LifecycleError(f"{name}@{to} is retired; an alias cannot point at it")
            before = None if current is None else int(current.version)
            if before == to:
                return AliasMove(name, alias, current.previous, to, changed=False)
            if current is None:
                conn.execute(a.insert().values(name=name, alias=alias, version=to, previous=None))
            else:
                conn.execute(a.update().where(a.c.name == name, a.c.alias == alias).values(version=to, previous=before))
            head[0] = self._append(conn, head[0], action="rollback" if rolling_back else "alias", name=name,
                                   version=to, reason=reason, detail={"alias": alias, "from": before, "to": to},
                                   actor=actor)
        return AliasMove(name, alias, before, to)

    # -- audit --------------------------------------------------------------------------------------
    def audit(self) -> AuditReport:
        """Re-check the history chain, the stored specs and the tables against the history."""
        from sqlalchemy import select

        t = self._t
        report = AuditReport()
        with self._engine.connect() as conn:
            rows = [HistoryEntry.from_row(r._mapping) for r in conn.execute(select(t.history).order_by(t.history.c.seq))]
            meta = {str(k): str(v) for k, v in conn.execute(select(t.meta.c.key, t.meta.c.value))}
            stored = list(conn.execute(select(t.versions).order_by(t.versions.c.name, t.versions.c.version)))
            alias_rows = list(conn.execute(select(t.aliases)))
        report.rows, report.versions = len(rows), len(stored)
        check_chain(rows, meta.get("head"), report.problems)
        check_tables(derive(rows), meta, stored, alias_rows, report.problems)
        return report

    def check(self) -> AuditReport:
        """:meth:`audit`, raising :class:`AuditFailure` naming the first problem."""
        report = self.audit()
        if not report.ok:
            raise AuditFailure(report.problems[0])
        return report
