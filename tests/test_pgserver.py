"""The PostgreSQL fixtures (conftest.py, pgserver.py) work: a real server, one isolated database per use."""

from __future__ import annotations

import sqlalchemy as sa

from pgserver import PostgresServer


def test_databases_are_separate(postgres_server: PostgresServer, postgres_url: str) -> None:
    other_name = postgres_server.unique_name("other")
    other_url = postgres_server.new_database(other_name)
    assert other_url != postgres_url
    assert postgres_url.startswith(f"postgresql+psycopg://augledger@127.0.0.1:{postgres_server.port}/")

    engine = sa.create_engine(postgres_url)
    other = sa.create_engine(other_url)
    try:
        with engine.begin() as conn:
            conn.execute(sa.text("CREATE TABLE pipelines (id integer PRIMARY KEY, name text NOT NULL)"))
            conn.execute(sa.text("INSERT INTO pipelines VALUES (1, 'digits-train')"))
        with engine.connect() as conn:
            assert conn.execute(sa.text("SELECT id, name FROM pipelines")).all() == [(1, "digits-train")]
            assert conn.execute(sa.text("SHOW server_encoding")).scalar_one() == "UTF8"
        # The other database is a different database on the same server: it has no such table.
        assert sa.inspect(engine).has_table("pipelines")
        assert not sa.inspect(other).has_table("pipelines")
    finally:
        engine.dispose()
        other.dispose()
        postgres_server.drop_database(other_name)


def test_server_settings(postgres_server: PostgresServer) -> None:
    engine = sa.create_engine(postgres_server.url)
    try:
        with engine.connect() as conn:
            show = {name: conn.execute(sa.text(f"SHOW {name}")).scalar_one() for name in ("listen_addresses", "fsync")}
            assert show == {"listen_addresses": "127.0.0.1", "fsync": "off"}
            assert conn.execute(sa.text("SELECT current_user")).scalar_one() == "augledger"
    finally:
        engine.dispose()
