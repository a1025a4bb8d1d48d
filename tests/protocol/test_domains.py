"""Allowed domain names per pre-registration: newOrder refusal and the finalize re-check."""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

import pytest

from acme_server.domain.identifiers import DomainRule
from acme_server.store import registrations
from acme_server.store.database import Database, default_database_url
from tests.gateway_proc import GatewayProcess
from tests.protocol.acme_client import make_csr
from tests.protocol.support import Acme, assert_problem, subproblem_values, unique

IDN = "bücher.test"
IDN_ASCII = "xn--bcher-kva.test"


def _bound_account(gw: GatewayProcess, *domains: str) -> tuple[Acme, dict[str, Any]]:
    """An account of a new registration granting `domains` (none: `--any-domain`)."""
    args = [a for d in domains for a in ("--domain", d)] or ["--any-domain"]
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


def test_any_domain_grant_allows_any(prereg_gateway: GatewayProcess) -> None:
    acme, _ = _bound_account(prereg_gateway)
    for name in (unique(), "anything.example.org", "*.wild.example.net"):
        assert acme.new_order([name]).status_code == 201


def _assert_nothing_granted(resp: Any, reg: dict[str, Any], names: list[str]) -> None:
    detail = f"no domain was granted to pre-registration '{reg['name']}'"
    doc = assert_problem(resp, "rejectedIdentifier", 400, detail)
    assert subproblem_values(doc) == {n: "rejectedIdentifier" for n in names}


def test_removing_last_domain_grants_nothing(prereg_gateway: GatewayProcess) -> None:
    """Issue 8 item 1: removing the last domain used to widen the registration to any name."""
    only = unique("only")
    acme, reg = _bound_account(prereg_gateway, only)
    assert acme.new_order([f"www.{only}"]).status_code == 201
    out = prereg_gateway.cli("registration", "remove-domain", str(reg["name"]), only, check=False)
    names = ["anything.example.org", f"www.{only}", "*.wild.example.net"]
    _assert_nothing_granted(acme.new_order(names), reg, names)
    assert "now grants no names" in out  # the CLI tells the admin
    # An explicit grant (and only that) allows any name again; revoking it takes it back.
    prereg_gateway.cli("registration", "grant-any", str(reg["name"]))
    assert acme.new_order(["anything.example.org"]).status_code == 201
    prereg_gateway.cli("registration", "revoke-any", str(reg["name"]))
    again = unique()
    _assert_nothing_granted(acme.new_order([again]), reg, [again])


def test_finalize_refused_once_nothing_is_granted(prereg_gateway: GatewayProcess) -> None:
    only = unique("fin")
    acme, reg = _bound_account(prereg_gateway, only)
    url, order = acme.ready_order([only])
    prereg_gateway.cli("registration", "remove-domain", str(reg["name"]), only)
    csr_pem, _ = make_csr([only])
    _assert_nothing_granted(acme.finalize(order, csr_pem), reg, [only])
    assert acme.get(url).json()["status"] == "ready"  # nothing was issued


def test_create_needs_domain_or_explicit_any(prereg_gateway: GatewayProcess) -> None:
    name = f"dom-{uuid.uuid4().hex[:10]}"
    out = prereg_gateway.cli("registration", "create", name, check=False)
    assert "--any-domain" in out and "hmac_key" not in out
    listed = prereg_gateway.cli("registration", "list")
    assert f'"{name}"' not in listed  # nothing was created
    both = prereg_gateway.cli(
        "registration", "create", name, "--any-domain", "--domain", "x.test", check=False
    )
    assert "drop --domain" in both and "hmac_key" not in both


def test_exact_domain_refuses_wildcard(prereg_gateway: GatewayProcess) -> None:
    """Issue 8 item 2: a rule without subdomains must not allow `*.domain`."""
    exact = unique("exact")
    acme, reg = _bound_account(prereg_gateway, unique("other"))
    refused = prereg_gateway.cli(
        "registration", "add-domain", str(reg["name"]), exact, "--no-subdomains", check=False
    )
    assert "--no-subdomains needs --no-wildcard" in refused
    assert exact not in prereg_gateway.cli("registration", "list")  # not stored
    prereg_gateway.cli(
        "registration", "add-domain", str(reg["name"]), exact, "--no-subdomains", "--no-wildcard"
    )
    assert acme.new_order([exact]).status_code == 201
    for name in (f"*.{exact}", f"www.{exact}"):
        doc = assert_problem(acme.new_order([name]), "rejectedIdentifier", 400, name)
        assert subproblem_values(doc) == {name: "rejectedIdentifier"}


def test_stored_exact_rule_with_wildcard_flag_refuses_wildcard(
    prereg_gateway: GatewayProcess,
) -> None:
    """The operator may store includeSubdomains=false with allowWildcard=true: no `*.x` either."""
    exact = unique("exact")
    acme, reg = _bound_account(prereg_gateway, unique("other"))

    async def store_rule() -> None:
        db = await Database.open(
            prereg_gateway.database or default_database_url(prereg_gateway.data_dir)
        )
        try:
            current = await registrations.get(db, str(reg["name"]))
            assert current is not None
            await registrations.upsert(
                db,
                current.name,
                kid=current.kid,
                hmac_key=current.hmac_key,
                max_accounts=None,
                suspended=False,
                domains=[DomainRule(exact, include_subdomains=False, allow_wildcard=True)],
            )
        finally:
            await db.close()

    asyncio.run(store_rule())
    assert acme.new_order([exact]).status_code == 201
    for name in (f"*.{exact}", f"*.www.{exact}"):
        doc = assert_problem(acme.new_order([name]), "rejectedIdentifier", 400, name)
        assert subproblem_values(doc) == {name: "rejectedIdentifier"}


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
