"""How soon a pre-registration change made elsewhere (admin CLI, operator) is enforced.

Accounts and their pre-registrations are served from memory for `--account-cache-seconds`
(default 2 s); suspension and deletion must be enforced within that bound, and at once
with the cache off.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator

import pytest

from tests.gateway_proc import GatewayProcess
from tests.protocol.support import Acme, assert_problem, unique

DEFAULT_BOUND = 2.0  # the product's default --account-cache-seconds
SLACK = 0.5  # polling and request time on a busy test machine


@pytest.fixture(scope="module", params=[DEFAULT_BOUND, 0.0], ids=["default", "off"])
def gateway(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[GatewayProcess]:
    gw = GatewayProcess(
        tmp_path_factory.mktemp("gw-cache"),
        account_creation="pre-registered",
        account_cache_seconds=request.param,
    )
    gw.start()
    yield gw
    gw.stop()


def _bound_account(gw: GatewayProcess) -> tuple[Acme, str]:
    name = f"cache-{uuid.uuid4().hex[:10]}"
    reg = gw.create_registration(name, "--any-domain")
    acme = Acme(gw)
    assert acme.register(reg).status_code == 201
    for _ in range(5):  # served (and cached) a few times before the change
        assert acme.get(acme.account).status_code == 200
    return acme, name


def _seconds_until_refused(acme: Acme, detail: str, limit: float) -> float:
    changed = time.monotonic()
    while True:
        resp = acme.new_order([unique()])
        elapsed = time.monotonic() - changed
        if resp.status_code != 201:
            assert_problem(resp, "unauthorized", 403, detail)
            return elapsed
        assert elapsed < limit, f"still issuing {elapsed:.1f}s after the change"
        time.sleep(0.05)


@pytest.mark.parametrize("change,detail", [("suspend", "suspended"), ("delete", "deleted")])
def test_a_change_is_enforced_within_the_cache_bound(
    gateway: GatewayProcess, change: str, detail: str
) -> None:
    acme, name = _bound_account(gateway)
    gateway.cli("registration", change, name, settle=False)
    bound = gateway.account_cache_seconds
    elapsed = _seconds_until_refused(acme, detail, bound + SLACK)
    if bound == 0:
        assert elapsed < SLACK, f"with the cache off, refused only after {elapsed:.2f}s"
    # The account itself is refused as well, not only new orders.
    assert_problem(acme.get(acme.account), "unauthorized", 403, detail)
