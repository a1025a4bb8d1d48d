"""A gateway with the relying-party listener, on SQLite and on PostgreSQL."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.gateway_proc import GatewayProcess
from tests.infra.bind import BindServer
from tests.infra.postgres import PostgresServer
from tests.revocation.support import revocation_gateway


@pytest.fixture(scope="module", params=["sqlite", "postgres"])
def rev_gateway(
    request: pytest.FixtureRequest,
    tmp_path_factory: pytest.TempPathFactory,
    bind_server: BindServer,
) -> Iterator[GatewayProcess]:
    database = None
    if request.param == "postgres":
        postgres: PostgresServer = request.getfixturevalue("postgres_server")
        database = postgres.create_database()
    gw = revocation_gateway(
        tmp_path_factory.mktemp(f"gw-revocation-{request.param}"),
        database=database,
        resolvers=(bind_server.resolver_address,),
        extra=("--ari-retry-after", "90s"),
    ).start()
    try:
        yield gw
    finally:
        gw.stop()
        if request.session.testsfailed:
            print(f"--- {gw.log_path} ---\n{gw.log_tail()}")
