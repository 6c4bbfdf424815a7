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
from augledger.errors import AuditFailure, LifecycleError, RegistryError, RegistryNotFound
from augledger.registry.audit import AuditReport, alias_problem, check_chain, check_tables, version_problems
from augledger.registry.chain import GENESIS, Derived, HistoryEntry, derive, entry_hash, spec_digest
from augledger.registry.model import (
    ALIAS_PATTERN,
    TRANSITIONS,
    AddResult,
    AliasMove,
    VersionInfo,
    current_actor,
    parse_ref,
)
from augledger.registry.tables import (
    Tables,
    default_url,
    display_url,
    make_engine,
    no_such_table,
    normalise_url,
    sqlite_file,
)

if TYPE_CHECKING:
    from augledger.spec import PipelineSpec

__all__ = ["Registry"]

log = logging.getLogger(__name__)

FORMAT = 1
_EDITED = "; the registry was edited outside augledger: run `augledger registry audit`"
_ACTION = {"approved": "promote", "deprecated": "deprecate", "retired": "retire"}
#: The advisory lock key that serialises creating a registry on PostgreSQL ("augl").
_CREATE_LOCK = 0x6175676C
#: Longest name, alias, actor the tables hold (String(200) / String(100)); checked before writing.
MAX_NAME = 200


def _checked_actor(actor: str | None) -> str:
    who = actor or current_actor()
    if len(who) > MAX_NAME:
        raise RegistryError(f"actor {who[:40]!r}... is longer than {MAX_NAME} characters; shorten AUGLEDGER_USER")
    return who


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
        #: Whether this call created the registry (made its tables and first history row).
        self.created = False
        database = sqlite_file(self.url)
        if database is not None:
            path = Path(database)
            if not path.is_file() and not create:
                raise RegistryNotFound(
                    f"no registry at {str(path)!r} (nor in a parent folder's .augledger/); point --registry or "
                    "$AUGLEDGER_REGISTRY at yours, or start one here with `augledger registry init`"
                )

        if database is not None and create:
            Path(database).parent.mkdir(parents=True, exist_ok=True)
        self._engine = make_engine(self.url)
        try:
            self._open(create=create, single_user=single_user)
        except RegistryError:
            self._engine.dispose()
            raise
        except Exception as exc:
            self._engine.dispose()
            detail = str(getattr(exc, "orig", None) or exc).splitlines()[0]
            raise RegistryError(f"cannot open the registry at {self.where}: {detail} (is it an augledger registry, "
                                "an SQLite file or a reachable PostgreSQL database?)") from None

    # -- opening ------------------------------------------------------------------------------------
    def _open(self, *, create: bool, single_user: bool) -> None:
        from sqlalchemy import select
        from sqlalchemy.exc import DBAPIError

        t = self._t
        if create:
            self.created = self._create(single_user)
        try:
            with self._engine.connect() as conn:
                meta = {str(k): str(v) for k, v in conn.execute(select(t.meta.c.key, t.meta.c.value))}
        except DBAPIError as exc:  # reading first beats asking the catalogue: one round trip
            if not no_such_table(exc):
                raise
            meta = {}
        if "head" not in meta:
            raise RegistryNotFound(f"{self.where} holds no augledger registry; `augledger registry init` starts one")
        fmt = int(meta.get("format", "0"))
        if fmt != FORMAT:
            raise RegistryError(f"registry {self.where} has format {fmt}; this augledger reads format {FORMAT}")
        self.single_user = meta.get("single_user") == "1"

    def _create(self, single_user: bool) -> bool:
        """Create the tables and the first history row, once, however many processes try at the same time.

        The whole creation is one transaction under the database's writer lock: ``BEGIN IMMEDIATE`` on
        SQLite, a transaction-scoped advisory lock on PostgreSQL (there is no head row to lock yet).
        """
        from sqlalchemy import select, text
        from sqlalchemy.exc import DBAPIError

        t = self._t
        try:  # already a registry: nothing to create, and no writer lock to wait for
            with self._engine.connect() as conn:
                if conn.execute(select(t.meta.c.value).where(t.meta.c.key == "head")).scalar() is not None:
                    return False
        except DBAPIError as exc:
            if not no_such_table(exc):
                raise
        try:
            with self._engine.connect() as conn:
                conn = conn.execution_options(augledger_write=True)
                with conn.begin():
                    if self._engine.dialect.name == "postgresql":
                        conn.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": _CREATE_LOCK})
                    t.metadata.create_all(conn)  # IF NOT EXISTS, table by table
                    if conn.execute(select(t.meta.c.value).where(t.meta.c.key == "head")).scalar() is not None:
                        return False  # another process created it while this one waited for the lock
                    self._initialise(conn, single_user)
                    return True
        except DBAPIError as exc:
            detail = str(exc.orig if exc.orig is not None else exc).splitlines()[0]
            raise RegistryError(f"cannot create the registry at {self.where}: {detail}"
                                + ("; another writer held it for over a minute: retry" if "lock" in detail else "")) from None

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
    def _writing(self) -> Iterator[tuple[Any, list[str]]]:
        """A write transaction holding the registry's write lock; yields (connection, [head hash]).

        Database errors (a lock not granted in time, a value too long for a column) become
        :class:`~augledger.errors.RegistryError`; the transaction is rolled back.
        """
        from sqlalchemy import select
        from sqlalchemy.exc import DBAPIError

        t = self._t
        try:
            with self._engine.connect() as conn:
                conn = conn.execution_options(augledger_write=True)
                with conn.begin():
                    head = conn.execute(select(t.meta.c.value).where(t.meta.c.key == "head").with_for_update()).scalar()
                    if head is None:
                        raise RegistryError(f"{self.where} holds no augledger registry (its head row is gone); "
                                            "run `augledger registry audit`")
                    box = [str(head)]
                    yield conn, box
        except DBAPIError as exc:
            detail = str(exc.orig if exc.orig is not None else exc).splitlines()[0]
            hint = ("; another writer held the registry for over a minute: retry" if "locked" in detail else "")
            raise RegistryError(f"the registry at {self.where} refused the write: {detail}{hint}") from None

    @contextmanager
    def _reading(self) -> Iterator[Any]:
        """A read-only transaction that sees one snapshot (REPEATABLE READ on PostgreSQL; SQLite's read lock)."""
        with self._engine.connect() as conn:
            if self._engine.dialect.name == "postgresql":
                conn = conn.execution_options(isolation_level="REPEATABLE READ", postgresql_readonly=True)
            with conn.begin():
                yield conn

    def _append(self, conn: Any, head: str, *, action: str, name: str | None, version: int | None,
                reason: str | None, detail: Mapping[str, Any], actor: str | None, at: str | None = None) -> str:
        from sqlalchemy import func, select

        t = self._t
        seq = int(conn.execute(select(func.coalesce(func.max(t.history.c.seq), 0))).scalar_one()) + 1
        fields: dict[str, Any] = {"seq": seq, "at": at or _now(), "actor": actor or current_actor(), "action": action,
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

    def get(self, ref: str, *, verified: bool = False) -> VersionInfo:
        """The version a REF (``NAME@VERSION`` or ``NAME@ALIAS``) names.

        Args:
            verified: also check the version against its own history rows (:meth:`_check_version`):
                what a run uses must be what was added and approved, not an edited table row.

        Raises:
            RegistryError: no such name, version or alias (the message lists what exists).
            AuditFailure: ``verified`` and the version's tables disagree with its history.
        """
        if not verified:
            with self._engine.connect() as conn:
                return self._get(conn, ref)
        with self._reading() as conn:  # the row and its history from one snapshot, whatever writers do meanwhile
            info = self._get(conn, ref)
            _name, selector = parse_ref(ref)
            self._check_version(conn, info, alias=selector if isinstance(selector, str) else None)
            return info

    def _history(self, conn: Any, name: str) -> Derived:
        """The name's history rows, each checked against its own hash, replayed (the chain as a whole is ``audit``'s)."""
        from sqlalchemy import select

        h = self._t.history
        rows = [HistoryEntry.from_row(r._mapping) for r in
                conn.execute(select(h).where(h.c.name == name).order_by(h.c.seq))]
        for e in rows:
            if entry_hash(e.hashed()) != e.hash:
                raise AuditFailure(f"{e.describe()} does not match its hash{_EDITED}")
        derived = derive(rows)
        derived.single_user = self.single_user  # the init row is not among the name's rows
        return derived

    def _alias_row(self, conn: Any, name: str, alias: str) -> tuple[int, int | None] | None:
        from sqlalchemy import select

        a = self._t.aliases
        row = conn.execute(select(a.c.version, a.c.previous).where(a.c.name == name, a.c.alias == alias)).first()
        return None if row is None else (int(row.version), None if row.previous is None else int(row.previous))

    def _check_version(self, conn: Any, info: VersionInfo, *, alias: str | None = None) -> Derived:
        """Refuse a version (and the alias that named it) whose table rows its history does not vouch for
        (:func:`~augledger.registry.audit.version_problems`); returns the name's replayed history."""
        derived = self._history(conn, info.name)
        problems = version_problems(derived, info.name, info.version, spec_text=info.spec_text,
                                    fingerprint=info.fingerprint, state=info.state, added_by=info.added_by,
                                    added_at=info.added_at, note=info.note)
        if alias is not None:
            problems.append(alias_problem(derived, info.name, alias, self._alias_row(conn, info.name, alias)) or "")
        problems = [p for p in problems if p]
        if problems:
            raise AuditFailure(problems[0] + _EDITED)
        return derived

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
        if any(c in name for c in "@/\\") or name != name.strip() or len(name) > MAX_NAME:
            raise RegistryError(f"spec name {name!r} cannot be registered: a REF is NAME@VERSION and must not read as "
                                f"a path, so the name must not contain '@', '/' or '\\', start or end with spaces, "
                                f"or be longer than {MAX_NAME} characters; rename it in the spec")
        who = _checked_actor(actor)
        resolved = pipe.resolved_spec
        if pipe.policy is not None:  # not fingerprinted, but kept: a REF must run under the spec's own policy
            resolved["policy"] = pipe.policy.to_dict()
        text = canonical_json(resolved).decode("utf-8")
        v = self._t.versions
        with self._writing() as (conn, head):
            existing = conn.execute(select(v).where(v.c.name == name, v.c.fingerprint == pipe.fingerprint)).first()
            if existing is not None:
                info = self._info(existing)
                differs = tuple(k for k in ("seed", "description", "policy") if info.spec.get(k) != resolved.get(k))
                return AddResult(info, created=False, differs=differs)
            # Numbered past every version the history ever added: a deleted row's number is never reused.
            h = self._t.history
            in_table = conn.execute(select(func.coalesce(func.max(v.c.version), 0)).where(v.c.name == name)).scalar_one()
            in_history = conn.execute(select(func.coalesce(func.max(h.c.version), 0))
                                      .where(h.c.name == name, h.c.action == "add")).scalar_one()
            number = max(int(in_table), int(in_history)) + 1
            when = _now()
            conn.execute(v.insert().values(name=name, version=number, fingerprint=pipe.fingerprint, spec=text,
                                           state="draft", added_by=who, added_at=when, note=note))
            head[0] = self._append(conn, head[0], action="add", name=name, version=number, reason=note,
                                   detail={"fingerprint": pipe.fingerprint, "spec_digest": spec_digest(text)}, actor=who,
                                   at=when)
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
            raise LifecycleError(f"the new state must be approved, deprecated or retired; got {to!r}")
        if not reason or not reason.strip():
            raise LifecycleError(f"a reason is required to move {ref} to {to} (--reason TEXT): the history records why")
        who = _checked_actor(actor)
        with self._writing() as (conn, head):
            info = self._get(conn, ref)
            self._check_version(conn, info)  # never approve (or retire) what the history does not vouch for
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
                  actor: str | None = None, allow_unapproved: bool = False) -> AliasMove:
        """Point ``name@alias`` at ``version`` atomically, keeping the previous target for rollback.

        Only an approved version, unless ``allow_unapproved`` (a ``staging`` alias for a draft, say).

        Raises:
            RegistryError: a bad alias name, or no such version.
            LifecycleError: the version is retired, or not approved without ``allow_unapproved``.
        """
        if not ALIAS_PATTERN.fullmatch(alias) or alias.lower().endswith((".yaml", ".yml", ".json")):
            raise RegistryError(f"alias {alias!r} must start with a letter, hold letters, digits, _ . - (at most 100), "
                                "and not end in .yaml/.yml/.json (NAME@ALIAS would read as a spec file)")
        return self._move(name, alias, reason=reason, actor=actor, to=int(version), allow_unapproved=allow_unapproved)

    def rollback(self, name: str, alias: str, *, reason: str | None = None, actor: str | None = None) -> AliasMove:
        """Move ``name@alias`` back to its previous target (a second rollback undoes the first).

        Raises:
            RegistryError: no such alias, or it has never been moved.
            LifecycleError: the previous target has been retired since.
        """
        return self._move(name, alias, reason=reason, actor=actor, to=None, allow_unapproved=True)

    def _previous_target(self, conn: Any, name: str, alias: str) -> int | None:
        """Where a rollback goes: the alias's previous target by its history (the table's row must agree)."""
        derived = self._history(conn, name)
        problem = alias_problem(derived, name, alias, self._alias_row(conn, name, alias))
        if problem:
            raise AuditFailure(problem + _EDITED)
        return derived.aliases[(name, alias)][1]

    def _move(self, name: str, alias: str, *, reason: str | None, actor: str | None, to: int | None,
              allow_unapproved: bool) -> AliasMove:
        from sqlalchemy import select

        a = self._t.aliases
        rolling_back = to is None
        with self._writing() as (conn, head):
            current = conn.execute(select(a).where(a.c.name == name, a.c.alias == alias)).first()
            if current is not None:
                previous = self._previous_target(conn, name, alias)  # the row must be what its history says
            if to is None:
                if current is None:
                    raise RegistryError(self._unknown(conn, name, f"no alias {alias!r}", ""))
                if previous is None:
                    raise RegistryError(f"{name}@{alias} has never been moved: there is nothing to roll back to")
                to = previous
            row = self._version_row(conn, name, to)
            if row is None:
                raise RegistryError(self._unknown(conn, name, f"no version {to}", ""))
            if row.state == "retired":
                raise LifecycleError(f"{name}@{to} is retired; an alias cannot point at it")
            if rolling_back and row.state == "draft":
                raise LifecycleError(f"{name}@{alias} would roll back to {name}@{to}, a draft: approve it first, or "
                                     "point the alias with `registry alias --allow-unapproved`")
            if row.state != "approved" and not allow_unapproved:
                raise LifecycleError(f"{name}@{to} is {row.state}, not approved: approve it first (four eyes), or "
                                     "--allow-unapproved for an alias that may serve unapproved versions (staging)")
            self._check_version(conn, self._info(row))
            before = None if current is None else int(current.version)
            if before == to:
                return AliasMove(name, alias, current.previous, to, changed=False)
            if current is None:
                conn.execute(a.insert().values(name=name, alias=alias, version=to, previous=None))
            else:
                conn.execute(a.update().where(a.c.name == name, a.c.alias == alias).values(version=to, previous=before))
            head[0] = self._append(conn, head[0], action="rollback" if rolling_back else "alias", name=name,
                                   version=to, reason=reason, detail={"alias": alias, "from": before, "to": to},
                                   actor=_checked_actor(actor))
        return AliasMove(name, alias, before, to)

    # -- audit --------------------------------------------------------------------------------------
    def audit(self) -> AuditReport:
        """Re-check the history chain, the stored specs and the tables against the history."""
        from sqlalchemy import select

        t = self._t
        report = AuditReport()
        with self._reading() as conn:  # one snapshot: a writer in between must not look like tampering
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
