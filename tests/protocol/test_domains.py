"""Allowed domain names per pre-registration: newOrder refusal and the finalize re-check."""

from __future__ import annotations

import uuid
from typing import Any

import pytest

from tests.gateway_proc import GatewayProcess
from tests.protocol.acme_client import make_csr
from tests.protocol.support import Acme, assert_problem, subproblem_values, unique

IDN = "bücher.test"
IDN_ASCII = "xn--bcher-kva.test"


def _bound_account(gw: GatewayProcess, *domains: str) -> tuple[Acme, dict[str, Any]]:
    args = [a for d in domains for a in ("--domain", d)]
    reg = gw.create_registration(f"dom-{uuid.uuid4().hex[:10]}", *args)
    acme = Acme(gw)
    acme.register(reg)
    return acme, reg


@pytest.fixture(scope="module")
def example(prereg_gateway: GatewayProcess) -> Acme:
    """An account whose registration allows example.test and the IDN bücher.test."""
    return _bound_account(prereg_gateway, "example.test", IDN)[0]


@pytest.mark.parametrize(
    ("requested", "expected"),
    [
        (["example.test"], ["example.test"]),
        (
            ["sub.example.test", "deep.sub.example.test"],
            ["sub.example.test", "deep.sub.example.test"],
        ),
        (["*.example.test"], ["*.example.test"]),
        (["*.sub.example.test", "example.test"], ["*.sub.example.test", "example.test"]),
        (
            ["EXAMPLE.test", "Www.Example.TEST", "example.test"],
            ["example.test", "www.example.test"],
        ),
        ([f"shop.{IDN}"], [f"shop.{IDN_ASCII}"]),
        ([f"shop.{IDN_ASCII}", "BÜCHER.test"], [f"shop.{IDN_ASCII}", IDN_ASCII]),
    ],
)
def test_allowed_names(example: Acme, requested: list[str], expected: list[str]) -> None:
    resp = example.new_order(requested)
    assert resp.status_code == 201, resp.text
    assert [i["value"] for i in resp.json()["identifiers"]] == expected


@pytest.mark.parametrize(
    "bad",
    [
        "badexample.test",
        "example.test.evil",
        "example.testx",
        "xexample.test",
        "other.test",
        "*.badexample.test",
        "test",
        "bucher.test",
    ],
)
def test_disallowed_name(example: Acme, bad: str) -> None:
    resp = example.new_order([bad])
    if bad == "test":  # a single label is no DNS name at all
        doc = assert_problem(resp, "rejectedIdentifier", 400, "at least two labels")
    else:
        doc = assert_problem(resp, "rejectedIdentifier", 400, "not allowed for pre-registration")
        assert "example.test" in doc["detail"]  # says what is allowed
    assert subproblem_values(doc) == {bad: "rejectedIdentifier"}
    sub = doc["subproblems"][0]
    assert sub["status"] == 400 and bad in sub["detail"]


def test_several_disallowed_names(example: Acme) -> None:
    resp = example.new_order(
        [
            "ok.example.test",
            "badexample.test",
            "example.test.evil",
            "fine.example.test",
            "x.other.test",
        ]
    )
    doc = assert_problem(resp, "rejectedIdentifier", 400, "badexample.test")
    assert subproblem_values(doc) == {
        "badexample.test": "rejectedIdentifier",
        "example.test.evil": "rejectedIdentifier",
        "x.other.test": "rejectedIdentifier",
    }


def test_empty_allow_list_allows_any(prereg_gateway: GatewayProcess) -> None:
    acme, _ = _bound_account(prereg_gateway)
    for name in (unique(), "anything.example.org", "*.wild.example.net"):
        assert acme.new_order([name]).status_code == 201


def test_add_and_remove_domain(prereg_gateway: GatewayProcess) -> None:
    first, second = unique("a"), unique("b")
    acme, reg = _bound_account(prereg_gateway, first)
    target = f"www.{second}"
    assert_problem(acme.new_order([target]), "rejectedIdentifier", 400, target)
    prereg_gateway.cli("registration", "add-domain", str(reg["name"]), second)
    assert acme.new_order([target]).status_code == 201
    prereg_gateway.cli("registration", "remove-domain", str(reg["name"]), second)
    doc = assert_problem(acme.new_order([target, f"x.{first}"]), "rejectedIdentifier", 400)
    assert subproblem_values(doc) == {target: "rejectedIdentifier"}


def test_finalize_rechecks_allowed_domains(prereg_gateway: GatewayProcess) -> None:
    keep, drop = unique("keep"), unique("drop")
    acme, reg = _bound_account(prereg_gateway, keep, drop)
    names = [f"www.{drop}", keep]
    url, order = acme.ready_order(names)
    assert order["status"] == "ready"
    prereg_gateway.cli("registration", "remove-domain", str(reg["name"]), drop)
    csr_pem, _ = make_csr(names)
    doc = assert_problem(acme.finalize(order, csr_pem), "rejectedIdentifier", 400, f"www.{drop}")
    assert subproblem_values(doc) == {f"www.{drop}": "rejectedIdentifier"}
    assert acme.get(url).json()["status"] == "ready"  # nothing was issued
    # Allowed again: the same order finalizes.
    prereg_gateway.cli("registration", "add-domain", str(reg["name"]), drop)
    resp = acme.finalize(order, csr_pem)
    assert resp.status_code == 200, resp.text
    assert acme.wait(url, {"valid", "invalid"})["status"] == "valid"
