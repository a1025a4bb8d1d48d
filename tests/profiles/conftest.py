"""A pre-registration gateway with a profiles file and the revocation listener, on SQLite
and on PostgreSQL."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.gateway_fixtures import database_for, running
from tests.gateway_proc import GatewayProcess
from tests.infra.bind import BindServer
from tests.revocation.support import revocation_gateway

PROFILES_YAML = """\
profiles:
  tlsclient:
    enabled: true
  nocn:
    description: ECDSA only, no subject common name, at most 2 names
    validity: 30d
    key_types: [ecdsa]
    common_name: false
    max_names: 2
"""


def write_profiles(directory: Path) -> Path:
    path = directory / "profiles.yaml"
    path.write_text(PROFILES_YAML)
    return path


@pytest.fixture(scope="module", params=["sqlite", "postgres"])
def profile_gateway(
    request: pytest.FixtureRequest,
    tmp_path_factory: pytest.TempPathFactory,
    bind_server: BindServer,
) -> Iterator[GatewayProcess]:
    data_dir = tmp_path_factory.mktemp(f"gw-profiles-{request.param}")
    gw = revocation_gateway(
        data_dir,
        database=database_for(request.param, request),
        resolvers=(bind_server.resolver_address,),
        extra=("--profiles", str(write_profiles(data_dir))),
        account_creation="pre-registered",
    )
    yield from running(gw, request)
