"""Running gateways for the protocol and client tests, on SQLite and on PostgreSQL."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.gateway_proc import GatewayProcess
from tests.infra.bind import BindServer
from tests.infra.postgres import PostgresServer


@pytest.fixture(scope="session", params=["sqlite", "postgres"])
def store_backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)


def database_for(backend: str, request: pytest.FixtureRequest) -> str | None:
    """None (a SQLite file in the data directory) or a fresh PostgreSQL database."""
    if backend == "sqlite":
        return None
    postgres: PostgresServer = request.getfixturevalue("postgres_server")
    return postgres.create_database()


def _gateway(
    request: pytest.FixtureRequest,
    tmp_path_factory: pytest.TempPathFactory,
    bind_server: BindServer,
    backend: str,
    account_creation: str,
) -> Iterator[GatewayProcess]:
    server = GatewayProcess(
        tmp_path_factory.mktemp(f"gw-{backend}-{account_creation}"),
        database=database_for(backend, request),
        account_creation=account_creation,
        dns_resolvers=(bind_server.resolver_address,),
    )
    yield from running(server, request)


def running(server: GatewayProcess, request: pytest.FixtureRequest) -> Iterator[GatewayProcess]:
    """Start a gateway for a fixture, stop it after, and show its log when the run failed."""
    server.start()
    try:
        yield server
    finally:
        server.stop()
        if request.session.testsfailed:
            print(f"--- {server.log_path} ---\n{server.log_tail()}")


@pytest.fixture(scope="session")
def gateway(
    request: pytest.FixtureRequest,
    tmp_path_factory: pytest.TempPathFactory,
    bind_server: BindServer,
    store_backend: str,
) -> Iterator[GatewayProcess]:
    """A server in `open` account-creation mode."""
    yield from _gateway(request, tmp_path_factory, bind_server, store_backend, "open")


@pytest.fixture(scope="session")
def prereg_gateway(
    request: pytest.FixtureRequest,
    tmp_path_factory: pytest.TempPathFactory,
    bind_server: BindServer,
    store_backend: str,
) -> Iterator[GatewayProcess]:
    """A server that requires pre-registration (External Account Binding)."""
    yield from _gateway(request, tmp_path_factory, bind_server, store_backend, "pre-registered")
