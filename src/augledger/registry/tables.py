"""The registry's tables (SQLAlchemy Core) and how a registry URL becomes an engine.

Four tables, created on first write:

* ``augledger_meta``: key/value facts of the registry (format, ``single_user``, creation, the
  ``head`` hash of the history chain).
* ``augledger_versions``: one row per (name, version): fingerprint, the resolved spec as canonical
  JSON, lifecycle state, who added it and when.
* ``augledger_aliases``: (name, alias) -> version, and the previous target (for rollback).
* ``augledger_history``: every action, in order, each row carrying the hash of the one before.

Writers are serialised: on SQLite every write transaction starts with ``BEGIN IMMEDIATE`` (the
database's write lock, waited for up to ``timeout`` seconds); on PostgreSQL it first locks the
``head`` row (``SELECT ... FOR UPDATE``). Either way, two processes moving aliases at once queue
rather than both reading the same head and forking the chain.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from augledger.errors import BackendError, RegistryError

__all__ = [
    "DEFAULT_PATH", "ENV_VAR", "Tables", "default_url", "display_url", "make_engine", "no_such_table", "normalise_url",
    "sqlite_file",
]

#: Where the embedded registry lives, relative to the current folder.
DEFAULT_PATH = Path(".augledger") / "registry.db"
#: The environment variable that names another registry (a path or a URL).
ENV_VAR = "AUGLEDGER_REGISTRY"
#: Seconds a writer waits for another writer's transaction before giving up.
LOCK_TIMEOUT_S = 60.0


def default_url() -> str:
    """``$AUGLEDGER_REGISTRY``; else the nearest ``.augledger/registry.db`` in the current folder or a
    parent (as git finds ``.git``); else ``.augledger/registry.db`` in the current folder (created there)."""
    given = os.environ.get(ENV_VAR)
    if given:
        return given
    here = Path.cwd()
    for folder in (here, *here.parents):
        candidate = folder / DEFAULT_PATH
        if candidate.is_file():
            return str(candidate)
    return str(DEFAULT_PATH)


def normalise_url(url_or_path: str) -> str:
    """A path becomes ``sqlite:///<absolute path>``; ``postgresql://`` gets the psycopg 3 driver."""
    text = str(url_or_path).strip()
    if not text:
        raise RegistryError(f"the registry is empty text; give a path or a URL (or unset {ENV_VAR})")
    if "://" not in text:
        return "sqlite:///" + str(Path(text).expanduser().resolve())
    scheme, _, rest = text.partition("://")
    if scheme in ("postgresql", "postgres"):
        return "postgresql+psycopg://" + rest
    if scheme.startswith(("postgresql+", "sqlite")):
        return text
    raise RegistryError(
        f"registry URL scheme {scheme!r} is not supported; use a path (SQLite) or postgresql://user@host/db"
    )


def display_url(url: str) -> str:
    """The URL without its password, for messages."""
    from sqlalchemy.engine import make_url

    return make_url(url).render_as_string(hide_password=True)


class Tables:
    """The table objects, built once per process (importing SQLAlchemy costs ~80 ms, so not at import)."""

    _instance: Tables | None = None

    def __init__(self) -> None:
        from sqlalchemy import Column, Integer, MetaData, PrimaryKeyConstraint, String, Table, Text, UniqueConstraint

        self.metadata = MetaData()
        self.meta = Table(
            "augledger_meta", self.metadata,
            Column("key", String(64), primary_key=True),
            Column("value", Text, nullable=False),
        )
        self.versions = Table(
            "augledger_versions", self.metadata,
            Column("name", String(200), nullable=False),
            Column("version", Integer, nullable=False),
            Column("fingerprint", String(80), nullable=False),
            Column("spec", Text, nullable=False),
            Column("state", String(16), nullable=False),
            Column("added_by", String(200), nullable=False),
            Column("added_at", String(40), nullable=False),
            Column("note", Text),
            PrimaryKeyConstraint("name", "version"),
            UniqueConstraint("name", "fingerprint"),
        )
        self.aliases = Table(
            "augledger_aliases", self.metadata,
            Column("name", String(200), nullable=False),
            Column("alias", String(100), nullable=False),
            Column("version", Integer, nullable=False),
            Column("previous", Integer),
            PrimaryKeyConstraint("name", "alias"),
        )
        self.history = Table(
            "augledger_history", self.metadata,
            Column("seq", Integer, primary_key=True, autoincrement=False),
            Column("at", String(40), nullable=False),
            Column("actor", String(200), nullable=False),
            Column("action", String(32), nullable=False),
            Column("name", String(200)),
            Column("version", Integer),
            Column("reason", Text),
            Column("detail", Text, nullable=False),
            Column("prev_hash", String(80), nullable=False),
            Column("hash", String(80), nullable=False),
        )

    @classmethod
    def get(cls) -> Tables:
        if cls._instance is None:
            cls._instance = cls()
        return cls._instance


def make_engine(url: str) -> Any:
    """An SQLAlchemy engine for a normalised URL, with writer serialisation set up (module docstring)."""
    try:
        from sqlalchemy import create_engine, event
    except ImportError:  # pragma: no cover - a core dependency; only a broken install lacks it
        raise BackendError("the registry needs SQLAlchemy: pip install 'sqlalchemy>=2.0'") from None
    if url.startswith("sqlite"):
        engine = create_engine(url, connect_args={"timeout": LOCK_TIMEOUT_S})

        @event.listens_for(engine, "connect")
        def _autocommit_driver(dbapi_connection: Any, _record: Any) -> None:
            # Let SQLAlchemy, not the sqlite3 module, decide when a transaction begins (below).
            dbapi_connection.isolation_level = None

        @event.listens_for(engine, "begin")
        def _begin(conn: Any) -> None:
            # A writer takes the write lock first: a deferred transaction that reads and then writes
            # can fail at once with "database is locked" when another writer got there between.
            conn.exec_driver_sql("BEGIN IMMEDIATE" if conn.get_execution_options().get("augledger_write") else "BEGIN")

        return engine
    if url.startswith("postgresql"):
        try:
            import psycopg  # noqa: F401
        except ImportError:
            raise BackendError(
                "a PostgreSQL registry needs the psycopg driver: pip install 'augledger[postgres]'"
            ) from None
        # A writer waits at most LOCK_TIMEOUT_S for another's lock, as on SQLite, instead of forever.
        return create_engine(url, pool_pre_ping=True,
                             connect_args={"options": f"-c lock_timeout={int(LOCK_TIMEOUT_S * 1000)}"})
    raise RegistryError(f"registry URL {url!r} is not supported")  # normalise_url let it through by mistake


def sqlite_file(url: str) -> str | None:
    """The database file of an SQLite URL (any driver), or ``None`` (another database, or in memory)."""
    from sqlalchemy.engine import make_url

    parsed = make_url(url)
    if parsed.get_backend_name() != "sqlite" or parsed.database in (None, "", ":memory:"):
        return None
    return str(parsed.database)


def no_such_table(exc: Exception) -> bool:
    """Whether a database error says a table is missing (SQLite or PostgreSQL wording)."""
    text = str(getattr(exc, "orig", None) or exc).lower()
    return "no such table" in text or ("does not exist" in text and "relation" in text)
