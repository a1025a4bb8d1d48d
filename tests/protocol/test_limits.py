"""Per-account caps on pending orders and authorizations (issue 8 item 17), per registration."""

from __future__ import annotations

import uuid
from typing import Any

import requests

from tests.gateway_proc import GatewayProcess
from tests.protocol.support import Acme, assert_problem, unique


def _account(gw: GatewayProcess, *limits: str) -> tuple[Acme, dict[str, Any]]:
    reg = gw.create_registration(f"lim-{uuid.uuid4().hex[:10]}", "--any-domain", *limits)
    acme = Acme(gw)
    acme.register(reg)
    return acme, reg


def _assert_rate_limited(resp: requests.Response, detail: str) -> None:
    assert_problem(resp, "rateLimited", 429, detail)
    retry = int(resp.headers["Retry-After"])
    assert 1 <= retry <= 3600  # the first pending item expires within the order lifetime


def test_pending_orders_cap(prereg_gateway: GatewayProcess) -> None:
    acme, reg = _account(prereg_gateway, "--max-pending-orders", "2")
    assert reg["max_pending_orders"] == 2
    acme.order([unique()])
    acme.order([unique()])
    _assert_rate_limited(acme.new_order([unique()]), "too many pending orders")
    # Another account of the same registration has its own budget.
    other = Acme(prereg_gateway)
    other.register(reg)
    other.order([unique()])
    # Raising the registration's cap (CLI update) lets the first account continue.
    prereg_gateway.cli("registration", "update", str(reg["name"]), "--max-pending-orders", "3")
    acme.order([unique()])
    _assert_rate_limited(acme.new_order([unique()]), "the limit is 3")
    # 'default' falls back to the server-wide cap (300).
    out = prereg_gateway.cli(
        "registration", "update", str(reg["name"]), "--max-pending-orders", "default"
    )
    assert '"max_pending_orders": null' in out
    acme.order([unique()])


def test_pending_authorizations_cap(prereg_gateway: GatewayProcess) -> None:
    acme, reg = _account(prereg_gateway, "--max-pending-authorizations", "3")
    assert reg["max_pending_authorizations"] == 3
    done = unique("done")
    acme.ready_order([done])  # its authorization is valid now, no longer pending
    acme.order([unique(), unique()])  # 2 pending
    resp = acme.new_order([unique(), unique()])  # would be 4
    _assert_rate_limited(resp, "too many pending authorizations")
    assert "needs 2 more, the limit is 3" in resp.json()["detail"]
    acme.order([unique()])  # exactly 3
    # A reused valid authorization is not pending and does not count.
    _, reused = acme.order([done])
    assert reused["status"] == "ready"
    _assert_rate_limited(acme.new_order([done, unique()]), "too many pending authorizations")
    # Deactivating a pending authorization frees its slot.
    resp = acme.post(_first_pending_authz(acme, reg), {"status": "deactivated"})
    assert resp.status_code == 200, resp.text
    acme.order([unique()])


def _first_pending_authz(acme: Acme, reg: dict[str, Any]) -> str:
    orders = acme.get(acme.get(acme.account).json()["orders"]).json()["orders"]
    for url in orders:
        for authz_url, authz in acme.authorizations(acme.get(url).json()):
            if authz["status"] == "pending":
                return authz_url
    raise AssertionError(f"no pending authorization left for {reg['name']}")
