"""A gateway with the relying-party listener, on SQLite and on PostgreSQL."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.gateway_fixtures import database_for, running
from tests.gateway_proc import GatewayProcess
from tests.infra.bind import BindServer
from tests.revocation.support import revocation_gateway


@pytest.fixture(scope="module", params=["sqlite", "postgres"])
def rev_gateway(
    request: pytest.FixtureRequest,
    tmp_path_factory: pytest.TempPathFactory,
    bind_server: BindServer,
) -> Iterator[GatewayProcess]:
    gw = revocation_gateway(
        tmp_path_factory.mktemp(f"gw-revocation-{request.param}"),
        database=database_for(request.param, request),
        resolvers=(bind_server.resolver_address,),
        extra=("--ari-retry-after", "90s"),
    )
    yield from running(gw, request)
