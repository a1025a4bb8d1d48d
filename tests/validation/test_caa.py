"""CAA (RFC 8659, RFC 8657) against a real BIND9: every record form through the lookup, then
end to end through the server (check after validation, re-check at finalize) on SQLite and
PostgreSQL.

BIND here is authoritative-only, so it serves `test` too: the climb asks every name up to
the TLD, and a name no zone covers would be REFUSED (which, like SERVFAIL, refuses issuance).
`broken.caa.test` is a zone that never loads: BIND answers SERVFAIL for everything in it.
"""

from __future__ import annotations

import datetime
import secrets
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests
from acme import challenges, messages
from acme import client as acme_client
from click.testing import CliRunner

from acme_server.cli import main
from acme_server.validation import make_resolver
from acme_server.validation.caa_lookup import CaaChecker, relevant_rrset
from acme_server.validation.errors import ValidationError
from tests.chains import verify_chain
from tests.gateway_fixtures import database_for
from tests.gateway_proc import GatewayProcess
from tests.infra.bind import TTL, BindServer
from tests.infra.fixtures import running_server
from tests.polling import wait_for
from tests.protocol.acme_client import make_csr, new_client, register

OURS = "ca.acme.test"
SECOND = "second-name.acme.test"  # a second --caa-identity
OTHER_CA = "other-ca.example"
ACCOUNT_BASE = "https://gw.caa.test/acme/acct/"
ACCOUNT_ID = "acct1"
ACCOUNT_URI = ACCOUNT_BASE + ACCOUNT_ID


def _label() -> str:
    return "c" + secrets.token_hex(5)


@pytest.fixture(scope="module")
def caa_bind(tmp_path_factory: pytest.TempPathFactory) -> Iterator[BindServer]:
    server = BindServer(
        ("caa.test", "elsewhere.test", "ok.broken.caa.test", "test"),
        broken_zones=("broken.caa.test",),
    )
    yield from running_server(server, tmp_path_factory.mktemp("caa-bind"))


def add(bind: BindServer, name: str, *rdatas: str, rdtype: str = "CAA") -> None:
    """Add records at `name` (CAA by default) with nsupdate, as an operator would."""
    bind.nsupdate(
        [f"update add {name}. {TTL} {rdtype} {rdata}" for rdata in rdatas], bind.zone_of(name)
    )


def remove(bind: BindServer, name: str, rdtype: str = "CAA") -> None:
    bind.nsupdate([f"update delete {name}. {rdtype}"], bind.zone_of(name))


# -- the lookup and policy against BIND, record form by record form ----------------------


@pytest.fixture
def checker(caa_bind: BindServer) -> CaaChecker:
    resolver = make_resolver([caa_bind.resolver_address], timeout=5.0)
    return CaaChecker(resolver, (OURS, SECOND), account_uri=lambda a: ACCOUNT_BASE + a, timeout=5.0)


async def check(
    checker: CaaChecker, name: str, *, wildcard: bool = False, method: str = "dns-01"
) -> None:
    await checker.check(name, wildcard=wildcard, account_id=ACCOUNT_ID, method=method)


async def refused(checker: CaaChecker, name: str, **kwargs: bool | str) -> ValidationError:
    with pytest.raises(ValidationError) as info:
        await check(checker, name, **kwargs)  # type: ignore[arg-type]
    return info.value


async def test_no_caa_anywhere_allows(checker: CaaChecker) -> None:
    await check(checker, f"{_label()}.caa.test")
    await check(checker, f"{_label()}.caa.test", wildcard=True)


@pytest.mark.parametrize("ours", [OURS, SECOND])
async def test_issue_naming_us_allows(caa_bind, checker: CaaChecker, ours: str) -> None:
    name = f"{_label()}.caa.test"
    add(caa_bind, name, f'0 issue "{ours}"')
    await check(checker, name)


async def test_issue_for_another_ca_refuses_naming_the_record(caa_bind, checker) -> None:
    name = f"{_label()}.caa.test"
    add(caa_bind, name, f'0 issue "{OTHER_CA}"', '0 iodef "mailto:sec@caa.test"')
    err = await refused(checker, name)
    assert err.problem_type == "caa"
    assert not err.transient
    assert err.detail == (
        f'CAA record for {name} prevents issuance: 0 issue "{OTHER_CA}" (names another CA)'
    )


async def test_issue_semicolon_means_nobody(caa_bind, checker) -> None:
    name = f"{_label()}.caa.test"
    add(caa_bind, name, '0 issue ";"')
    err = await refused(checker, name)
    assert err.problem_type == "caa"
    assert 'prevents issuance: 0 issue ";" (no CA may issue)' in err.detail


async def test_issuewild_vs_issue(caa_bind, checker) -> None:
    name = f"{_label()}.caa.test"
    add(caa_bind, name, f'0 issue "{OTHER_CA}"', f'0 issuewild "{OURS}"')
    await check(checker, name, wildcard=True)  # issuewild replaces issue for *.name
    err = await refused(checker, name)  # and is ignored for name itself
    assert f'0 issue "{OTHER_CA}"' in err.detail
    other = f"{_label()}.caa.test"
    add(caa_bind, other, f'0 issue "{OURS}"', '0 issuewild ";"')
    await check(checker, other)
    err = await refused(checker, other, wildcard=True)
    assert 'prevents issuance: 0 issuewild ";" (no CA may issue)' in err.detail
    only_issue = f"{_label()}.caa.test"
    add(caa_bind, only_issue, f'0 issue "{OURS}"')
    await check(checker, only_issue, wildcard=True)  # no issuewild: issue decides


async def test_critical_unknown_tag_refuses(caa_bind, checker) -> None:
    name = f"{_label()}.caa.test"
    add(caa_bind, name, f'0 issue "{OURS}"', '128 tbs "unknown"')
    err = await refused(checker, name)
    assert err.problem_type == "caa"
    assert 'unknown critical property: 128 tbs "unknown"' in err.detail


async def test_non_critical_unknown_tag_is_ignored(caa_bind, checker) -> None:
    name = f"{_label()}.caa.test"
    add(caa_bind, name, f'0 issue "{OURS}"', '0 tbs "unknown"')
    await check(checker, name)
    bare = f"{_label()}.caa.test"
    add(caa_bind, bare, '0 tbs "unknown"')  # a CAA RRset with nothing about issuance
    await check(checker, bare)


async def test_accounturi(caa_bind, checker) -> None:
    name = f"{_label()}.caa.test"
    add(caa_bind, name, f'0 issue "{OURS}; accounturi={ACCOUNT_URI}"')
    await check(checker, name)
    mismatch = f"{_label()}.caa.test"
    add(caa_bind, mismatch, f'0 issue "{OURS}; accounturi={ACCOUNT_BASE}someone-else"')
    err = await refused(checker, mismatch)
    assert err.problem_type == "caa"
    assert "accounturi is not this account" in err.detail


async def test_validationmethods(caa_bind, checker) -> None:
    name = f"{_label()}.caa.test"
    add(caa_bind, name, f'0 issue "{OURS}; validationmethods=dns-01"')
    await check(checker, name, method="dns-01")
    err = await refused(checker, name, method="http-01")
    assert err.problem_type == "caa"
    assert "validationmethods does not include http-01" in err.detail


async def test_caa_at_a_parent_is_found_by_climbing(caa_bind, checker) -> None:
    parent = f"{_label()}.caa.test"
    name = f"deep.er.{parent}"
    add(caa_bind, parent, f'0 issue "{OTHER_CA}"')
    resolver = make_resolver([caa_bind.resolver_address], timeout=5.0)
    found_at, records = await relevant_rrset(resolver, name)
    assert found_at == parent
    assert [str(r) for r in records] == [f'0 issue "{OTHER_CA}"']
    err = await refused(checker, name)
    assert f"CAA record for {parent} prevents issuance" in err.detail
    # The closest RRset wins: one at the name itself overrides the parent's.
    add(caa_bind, name, f'0 issue "{OURS}"')
    await check(checker, name)


async def test_caa_at_the_tld_is_reached(caa_bind, checker) -> None:
    tld_bind_name = "test"
    name = f"{_label()}.elsewhere.test"
    add(caa_bind, tld_bind_name, '0 issue ";"')
    try:
        err = await refused(checker, name)
        assert 'CAA record for test prevents issuance: 0 issue ";"' in err.detail
    finally:
        remove(caa_bind, tld_bind_name)
    await check(checker, name)


async def test_cname_is_followed_and_the_climb_goes_on_from_the_name(caa_bind, checker) -> None:
    target = f"{_label()}.elsewhere.test"  # another zone
    add(caa_bind, target, f'0 issue "{OTHER_CA}"')
    name = f"{_label()}.caa.test"
    add(caa_bind, name, f"{target}.", rdtype="CNAME")
    err = await refused(checker, name)
    # The RRset found by resolving the name (through its CNAME) is reported at the name.
    assert f'CAA record for {name} prevents issuance: 0 issue "{OTHER_CA}"' in err.detail
    # A CNAME whose target has no CAA: the climb continues at the name's parent, not at
    # the target's (RFC 8659 §3).
    bare_target = f"{_label()}.sub.elsewhere.test"
    add(caa_bind, "sub.elsewhere.test", '0 issue ";"')
    try:
        alias = f"{_label()}.caa.test"
        add(caa_bind, alias, f"{bare_target}.", rdtype="CNAME")
        await check(checker, alias)
    finally:
        remove(caa_bind, "sub.elsewhere.test")


async def test_servfail_refuses_with_a_dns_problem(checker) -> None:
    name = f"{_label()}.broken.caa.test"
    err = await refused(checker, name)
    assert err.problem_type == "dns"
    assert err.detail == (
        f"While processing CAA for {name}: DNS problem: SERVFAIL looking up CAA for {name}"
    )


async def test_servfail_behind_a_cname_refuses(caa_bind, checker) -> None:
    name = f"{_label()}.caa.test"
    add(caa_bind, name, f"{_label()}.broken.caa.test.", rdtype="CNAME")
    err = await refused(checker, name, wildcard=True)
    assert err.problem_type == "dns"
    assert err.detail.startswith(f"While processing CAA for *.{name}: DNS problem: SERVFAIL")


async def test_servfail_above_the_relevant_rrset_does_not_matter(caa_bind, checker) -> None:
    # ok.broken.caa.test is a zone of its own below the broken one: the climb finds its
    # RRset before it would reach the name that SERVFAILs.
    name = f"{_label()}.ok.broken.caa.test"
    add(caa_bind, "ok.broken.caa.test", f'0 issue "{OURS}"')
    await check(checker, name)
    remove(caa_bind, "ok.broken.caa.test")
    err = await refused(checker, name)  # nothing there now: the climb reaches the SERVFAIL
    assert err.problem_type == "dns"
    assert err.detail.endswith("SERVFAIL looking up CAA for broken.caa.test")


# -- end to end through the server ------------------------------------------------------


@pytest.fixture(scope="module")
def caa_gateway(
    request: pytest.FixtureRequest,
    tmp_path_factory: pytest.TempPathFactory,
    caa_bind: BindServer,
    store_backend: str,
) -> Iterator[GatewayProcess]:
    server = GatewayProcess(
        tmp_path_factory.mktemp(f"gw-caa-{store_backend}"),
        database=database_for(store_backend, request),
        dns_resolvers=(caa_bind.resolver_address,),
        workers=1,
        extra_args=(
            "--caa-identity",
            f"{OURS},{SECOND.upper()}",
            "--caa-recheck-after",
            "2s",
        ),
    )
    server.start()
    try:
        yield server
    finally:
        server.stop()
        if request.session.testsfailed:
            print(f"--- {server.log_path} ---\n{server.log_tail()}")


def _answer_dns01(
    acme: acme_client.ClientV2, bind: BindServer, names: list[str]
) -> messages.OrderResource:
    csr_pem, _ = make_csr(names)
    order = acme.new_order(csr_pem)
    for authz in order.authorizations:
        chall = next(c for c in authz.body.challenges if isinstance(c.chall, challenges.DNS01))
        response, validation = chall.response_and_validation(acme.net.key)
        bind.nsupdate_add_txt(f"_acme-challenge.{authz.body.identifier.value}", validation)
        acme.answer_challenge(chall, response)
    return order


def _settled(
    acme: acme_client.ClientV2, order: messages.OrderResource
) -> list[messages.Authorization]:
    def probe() -> list[messages.Authorization] | None:
        bodies = [acme.poll(a)[0].body for a in order.authorizations]
        done = all(b.status in (messages.STATUS_VALID, messages.STATUS_INVALID) for b in bodies)
        return bodies if done else None

    return wait_for("authorizations to settle", probe, timeout=30)


def _deadline() -> datetime.datetime:
    return datetime.datetime.now() + datetime.timedelta(seconds=30)


def test_directory_meta_names_our_identities(caa_gateway: GatewayProcess) -> None:
    meta = requests.get(caa_gateway.directory_url, verify=str(caa_gateway.root_pem), timeout=10)
    assert meta.json()["meta"]["caaIdentities"] == [OURS, SECOND]


def test_directory_meta_without_identities(gateway: GatewayProcess) -> None:
    meta = requests.get(gateway.directory_url, verify=str(gateway.root_pem), timeout=10)
    assert "caaIdentities" not in meta.json()["meta"]


def test_issues_when_caa_allows(caa_gateway: GatewayProcess, caa_bind) -> None:
    acme = new_client(caa_gateway)
    account = register(acme)
    parent = f"{_label()}.caa.test"
    add(caa_bind, parent, f'0 issue "{OURS}; accounturi={account.uri}"')
    names = [f"*.{parent}", parent, f"free.{_label()}.caa.test"]
    order = _answer_dns01(acme, caa_bind, names)
    done = acme.poll_and_finalize(order, deadline=_deadline())
    verify_chain(done.fullchain_pem, caa_gateway.root_pem.read_bytes(), names)


def test_caa_refusal_after_validation_makes_the_order_invalid(
    caa_gateway: GatewayProcess, caa_bind
) -> None:
    acme = new_client(caa_gateway)
    register(acme)
    parent = f"{_label()}.caa.test"
    add(caa_bind, parent, f'0 issue "{OURS}; validationmethods=http-01"')
    name = f"www.{parent}"
    order = _answer_dns01(acme, caa_bind, [name])
    (authz,) = _settled(acme, order)
    assert authz.status == messages.STATUS_INVALID
    chall = next(c for c in authz.challenges if isinstance(c.chall, challenges.DNS01))
    assert chall.error is not None
    assert chall.error.typ == "urn:ietf:params:acme:error:caa"
    assert chall.error.detail == (
        f'CAA record for {parent} prevents issuance: 0 issue "{OURS}; '
        'validationmethods=http-01" (validationmethods does not include dns-01)'
    )
    body = acme._post_as_get(order.uri).json()
    assert body["status"] == "invalid"
    assert body["error"]["type"] == "urn:ietf:params:acme:error:caa"


def test_servfail_on_caa_keeps_the_challenge_from_succeeding(
    caa_gateway: GatewayProcess, caa_bind
) -> None:
    acme = new_client(caa_gateway)
    register(acme)
    name = f"{_label()}.caa.test"
    # The name's CAA lookup follows its CNAME into the broken zone; its dns-01 TXT is fine.
    add(caa_bind, name, f"{_label()}.broken.caa.test.", rdtype="CNAME")
    order = _answer_dns01(acme, caa_bind, [name])
    (authzr,) = order.authorizations

    def error() -> messages.Error | None:
        body = acme.poll(authzr)[0].body
        assert body.status != messages.STATUS_VALID
        return next((c.error for c in body.challenges if c.error is not None), None)

    err = wait_for("the CAA lookup's error on the challenge", error, timeout=30)
    assert err.typ == "urn:ietf:params:acme:error:dns"
    assert (err.detail or "").startswith(
        f"While processing CAA for {name}: DNS problem: SERVFAIL looking up CAA for {name}"
    )


def test_finalize_rechecks_caa_older_than_the_window(caa_gateway: GatewayProcess, caa_bind) -> None:
    acme = new_client(caa_gateway)
    register(acme)
    name = f"{_label()}.caa.test"
    names = [name, f"*.{name}"]
    order = _answer_dns01(acme, caa_bind, names)
    assert all(a.status == messages.STATUS_VALID for a in _settled(acme, order))
    add(caa_bind, name, f'0 issue "{OTHER_CA}"', '0 issuewild ";"')
    time.sleep(2.5)  # past --caa-recheck-after 2s
    csr_pem, _ = make_csr(names)
    with pytest.raises(messages.Error) as info:
        acme.finalize_order(order.update(csr_pem=csr_pem), _deadline())
    err = info.value
    assert err.typ == "urn:ietf:params:acme:error:caa"
    assert "rechecking CAA for" in (err.detail or "")
    kinds = {(p.identifier.value if p.identifier else None, p.typ) for p in err.subproblems or []}
    assert kinds == {
        (name, "urn:ietf:params:acme:error:caa"),
        (f"*.{name}", "urn:ietf:params:acme:error:caa"),
    }
    body = acme._post_as_get(order.uri).json()
    assert body["status"] == "ready"  # refused, not failed: fix CAA and finalize again
    remove(caa_bind, name)
    add(caa_bind, name, f'0 issuewild "{SECOND}"', f'0 issue "{OURS}"')
    done = acme.finalize_order(order.update(csr_pem=csr_pem), _deadline())
    verify_chain(done.fullchain_pem, caa_gateway.root_pem.read_bytes(), names)


def test_finalize_servfail_refuses_with_a_dns_problem(
    caa_gateway: GatewayProcess, caa_bind
) -> None:
    acme = new_client(caa_gateway)
    register(acme)
    name = f"{_label()}.caa.test"
    order = _answer_dns01(acme, caa_bind, [name])
    assert all(a.status == messages.STATUS_VALID for a in _settled(acme, order))
    # Now the name is an alias into the broken zone (its A, pinned for dns-01, goes first).
    remove(caa_bind, name, "A")
    add(caa_bind, name, f"{_label()}.broken.caa.test.", rdtype="CNAME")
    time.sleep(2.5)
    csr_pem, _ = make_csr([name])
    with pytest.raises(messages.Error) as info:
        acme.finalize_order(order.update(csr_pem=csr_pem), _deadline())
    assert info.value.typ == "urn:ietf:params:acme:error:dns"
    assert (info.value.detail or "").startswith(
        f"rechecking CAA: While processing CAA for {name}: DNS problem: SERVFAIL"
    )


# -- configuration ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("args", "env", "message"),
    [
        (["--caa-identity", "bad_name.example"], {}, "CAA identity 'bad_name.example'"),
        (["--caa-identity", "ok.example -bad.example"], {}, "CAA identity '-bad.example'"),
        ([], {"ACME_GATEWAY_CAA_IDENTITIES": "ok.example,x..example"}, "CAA identity 'x..example'"),
        (["--caa-identity", "ok.example", "--caa-recheck-after", "0h"], {}, "duration '0h'"),
    ],
)
def test_bad_caa_settings_are_refused_before_start(
    tmp_path: Path, args: list[str], env: dict[str, str], message: str
) -> None:
    # --tls-cert without --tls-key is refused right after the CAA flags are read: should
    # those pass by mistake, the command still ends here instead of starting a server.
    lone_cert = tmp_path / "cert.pem"
    lone_cert.write_text("unused")
    data_dir = tmp_path / "data"
    result = CliRunner().invoke(
        main,
        ["serve", "--data-dir", str(data_dir), "--tls-cert", str(lone_cert), *args],
        env=env,
    )
    assert result.exit_code == 2, result.output
    assert "Invalid value" in result.output
    assert message in result.output
    assert not data_dir.exists(), "nothing may be created before the flags are checked"
