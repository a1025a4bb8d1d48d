"""Session-wide real BIND9 and PostgreSQL servers for the tests.

Import these into tests/conftest.py. A missing binary FAILS the test (never skips): the
suite is only meaningful against the real servers, installed by tools/install-system-deps.sh.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.infra.bind import BindError, BindServer
from tests.infra.postgres import PostgresError, PostgresServer


@pytest.fixture(scope="session")
def bind_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[BindServer]:
    """named authoritative for `acme.test` (every name → 127.0.0.1), TSIG-updatable."""
    server = BindServer()
    try:
        server.start(tmp_path_factory.mktemp("bind"))
    except BindError as exc:
        server.stop()
        pytest.fail(f"cannot start BIND9 for the tests: {exc}", pytrace=False)
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="session")
def postgres_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PostgresServer]:
    """A throwaway PostgreSQL 15 cluster on 127.0.0.1; `.url` is its main database."""
    server = PostgresServer()
    try:
        server.start(tmp_path_factory.mktemp("postgres"))
    except PostgresError as exc:
        server.stop()
        pytest.fail(f"cannot start PostgreSQL for the tests: {exc}", pytrace=False)
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def postgres_url(postgres_server: PostgresServer) -> str:
    """URL of a fresh, empty database of its own for one test."""
    return postgres_server.create_database()
