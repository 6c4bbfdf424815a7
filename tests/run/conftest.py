"""Fixtures of the run tests: the run pipeline and a module's source folder of real photo tiles."""

from __future__ import annotations

from pathlib import Path

import pytest

import augledger
from helpers import SPEC, make_source


@pytest.fixture(scope="module")
def pipe() -> augledger.Pipeline:
    return augledger.compile(augledger.parse_spec(SPEC))


@pytest.fixture(scope="module")
def source(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """24 tiles, shared by a module's tests: copy it before changing anything in it."""
    return make_source(tmp_path_factory.mktemp("src"), 24)
