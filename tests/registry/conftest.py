"""Registry fixtures: every registry test runs against SQLite and against a real PostgreSQL server."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from augledger.registry import Registry


class Backend:
    """Where a test registry lives, and raw SQL on it (to tamper behind the registry's back)."""

    def __init__(self, kind: str, url: str) -> None:
        self.kind, self.url = kind, url

    def open(self, **kwargs: Any) -> Registry:
        return Registry(self.url, **kwargs)

    def execute(self, sql: str, params: tuple[Any, ...] = ()) -> None:
        if self.kind == "sqlite":  # the SQLite file itself, with the standard library: no augledger code involved
            with sqlite3.connect(self.url) as conn:
                conn.execute(sql, params)
        else:
            import psycopg

            dsn = self.url.replace("postgresql+psycopg://", "postgresql://")
            with psycopg.connect(dsn, autocommit=True) as conn:
                conn.execute(sql.replace("?", "%s"), params)  # type: ignore[arg-type]


@pytest.fixture(params=["sqlite", "postgres"])
def backend(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Backend]:
    if request.param == "sqlite":
        yield Backend("sqlite", str(tmp_path / "registry.db"))
    else:
        yield Backend("postgres", request.getfixturevalue("postgres_url"))


@pytest.fixture
def registry(backend: Backend) -> Iterator[Registry]:
    with backend.open(create=True) as reg:
        yield reg
