"""Shared fixtures: real sample images, a standard spec, a sentinel on global RNG state, a PostgreSQL server."""

from __future__ import annotations

import os
import random
from collections.abc import Iterator
from typing import Any

os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")
os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")  # no phoning home from the tests' MLflow runs

import numpy as np
import pytest

import augledger
from helpers import STANDARD_SPEC
from pgserver import PostgresServer, find_pg_bin


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    """A skipped test is a test that did not run: fail the session unless skips were allowed.

    Every dependency of the suite is installed by ``make test``, so a skip means something broke
    (an import, the environment the golden outputs were recorded in). ``AUGLEDGER_ALLOW_SKIPS=1``
    allows them on purpose, e.g. on another platform.
    """
    reporter = session.config.pluginmanager.get_plugin("terminalreporter")
    skipped = len(reporter.stats.get("skipped", [])) if reporter is not None else 0
    if skipped and exitstatus == 0 and os.environ.get("AUGLEDGER_ALLOW_SKIPS") != "1":
        if reporter is not None:
            reporter.write_line(f"{skipped} test(s) were skipped; failing (set AUGLEDGER_ALLOW_SKIPS=1 to allow)", red=True)
        session.exitstatus = pytest.ExitCode.TESTS_FAILED


@pytest.fixture(autouse=True)
def global_rng_untouched() -> Any:
    """Every test must leave Python's and NumPy's global RNG exactly as it found them."""
    py_state = random.getstate()
    np_state = np.random.get_state()
    yield
    assert random.getstate() == py_state, "the global `random` state changed"
    after = np.random.get_state()
    assert after[0] == np_state[0] and np.array_equal(after[1], np_state[1]) and after[2:] == np_state[2:], (
        "the global numpy RNG state changed"
    )


@pytest.fixture(scope="session")
def astronaut() -> np.ndarray:
    """A real 512x512 RGB photograph shipped with scikit-image, downsized to keep tests fast."""
    import cv2
    from skimage import data

    return np.ascontiguousarray(cv2.resize(data.astronaut(), (96, 96), interpolation=cv2.INTER_AREA))


@pytest.fixture(scope="session")
def photos() -> list[np.ndarray]:
    """A few distinct real photographs (scikit-image data), 64x64 RGB."""
    import cv2
    from skimage import data

    out = []
    for img in (data.astronaut(), data.chelsea(), data.coffee(), data.rocket()):
        out.append(np.ascontiguousarray(cv2.resize(img, (64, 64), interpolation=cv2.INTER_AREA)))
    return out


@pytest.fixture(scope="session")
def standard_pipeline() -> augledger.Pipeline:
    return augledger.compile(augledger.parse_spec(STANDARD_SPEC))


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[PostgresServer]:
    """A PostgreSQL server of this test session's own (tests/pgserver.py), stopped and removed at the end.

    Under pytest-xdist each worker starts its own (about a second: initdb and start-up), in its own folder
    under /dev/shm or /tmp, on its own port. No PostgreSQL installed is a failure, not a skip: ``make test`` installs it.
    """
    if find_pg_bin() is None:
        pytest.fail(
            "PostgreSQL is not installed (no initdb/pg_ctl/postgres on PATH or in /usr/lib/postgresql/*/bin); "
            "the registry tests need a real server: run `make postgres` (or `apt-get install postgresql`)",
            pytrace=False,
        )
    with PostgresServer() as server:
        yield server


@pytest.fixture
def postgres_url(postgres_server: PostgresServer, request: pytest.FixtureRequest) -> Iterator[str]:
    """SQLAlchemy URL (``postgresql+psycopg://...``) of a new, empty database of this test's own.

    The database is dropped after the test, with any connection the test left open (dispose your engines).
    """
    name = postgres_server.unique_name(request.node.name)
    url = postgres_server.new_database(name)
    yield url
    postgres_server.drop_database(name)
