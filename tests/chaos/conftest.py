"""The chaos tests need the real control plane (for the operator's Secrets) like tests/kube.

They reuse tests/kube's fixtures and hooks: the binaries are built after collection, a
failure to build or start fails the test loudly, and a failed test gets the control-plane
logs. When tests/kube already started its control plane in this session it is reused.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.infra.fixtures import running_server
from tests.infra.kube import ControlPlane
from tests.infra.postgres import PostgresServer
from tests.kube import conftest as kube
from tests.kube.conftest import (  # noqa: F401 (fixtures and hooks re-exported for this dir)
    kube_namespace,
    pytest_collection_finish,
    pytest_collection_modifyitems,
    pytest_runtest_makereport,
)


@pytest.fixture(scope="session")
def control_plane(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ControlPlane]:
    """tests/kube's control plane when it is running, else one of our own (same code)."""
    if kube._started:
        yield kube._started[0]
        return
    yield from kube.control_plane.__wrapped__(tmp_path_factory)  # type: ignore[attr-defined]


@pytest.fixture(scope="module")
def own_postgres(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PostgresServer]:
    """A PostgreSQL for this module alone: its tests stop and start it, which the session's
    shared server must never see."""
    yield from running_server(PostgresServer(), tmp_path_factory.mktemp("pg"))
