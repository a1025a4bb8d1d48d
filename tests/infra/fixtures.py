"""Session-wide real BIND9 and PostgreSQL servers for the tests.

Import these into tests/conftest.py. A missing binary FAILS the test (never skips): the
suite is only meaningful against the real servers, installed by tools/install-system-deps.sh.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import TypeVar

import pytest

from tests.infra.bind import BindError, BindServer
from tests.infra.postgres import PostgresError, PostgresServer

_Server = TypeVar("_Server", BindServer, PostgresServer)


def running_server(server: _Server, workdir: Path) -> Iterator[_Server]:
    """Start a real BIND9 or PostgreSQL for a fixture and stop it after; one that cannot
    start FAILS the test with its reason (never skips)."""
    try:
        server.start(workdir)
    except (BindError, PostgresError) as exc:
        server.stop()
        pytest.fail(f"cannot start {type(server).__name__} for the tests: {exc}", pytrace=False)
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="session")
def bind_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[BindServer]:
    """named authoritative for `acme.test` (every name → 127.0.0.1), TSIG-updatable."""
    yield from running_server(BindServer(), tmp_path_factory.mktemp("bind"))


@pytest.fixture(scope="session")
def postgres_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PostgresServer]:
    """A throwaway PostgreSQL 15 cluster on 127.0.0.1; `.url` is its main database."""
    yield from running_server(PostgresServer(), tmp_path_factory.mktemp("postgres"))


@pytest.fixture
def postgres_url(postgres_server: PostgresServer) -> str:
    """URL of a fresh, empty database of its own for one test."""
    return postgres_server.create_database()
