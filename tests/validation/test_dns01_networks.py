"""dns-01 as real networks have it, against real BIND9 servers (issue 13 item 4).

Two `named` of our own (authoritative only, like the resolvers a cluster points at): A
serves `net.test`, the zone orders name, and `delegated.test`, the zone challenge names
are CNAME-delegated to (the common "_acme-challenge.example CNAME example.acme-zone."
setup), plus a zone that fails to load (SERVFAIL); B serves the same two zones with its
own records and stands for a second network perspective. The validator is called directly
for the record shapes, and through a running gateway (SQLite and PostgreSQL) for the
bounded retries and for lego v5 end to end through a delegated challenge zone.
"""

from __future__ import annotations

import asyncio
import secrets
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from acme import challenges, messages
from acme.client import ClientV2
from click.testing import CliRunner
from cryptography import x509

from acme_server.cli.serve import serve
from acme_server.validation import ValidationError, dns01_txt_value, make_resolver, validate_dns01
from acme_server.validation.resolver import Perspectives, make_perspectives
from tests.chains import verify_chain
from tests.gateway_proc import GatewayProcess, client_env
from tests.infra.bind import TTL, BindServer
from tests.infra.fixtures import running_server
from tests.infra.gotools import GoToolError, ensure_lego
from tests.polling import wait_for
from tests.protocol.acme_client import ec_key, make_csr, new_client, register

pytest_plugins = ["tests.infra.fixtures", "tests.gateway_fixtures"]

ZONE, DELEGATED, BROKEN = "net.test", "delegated.test", "broken.test"
RETRY_SECONDS = 6  # the gateways' --dns01-retry-seconds: attempts at 0, 1, 3 and 6 s


def _key_authorization() -> str:
    return f"{secrets.token_urlsafe(32)}.{secrets.token_urlsafe(32)}"


def _label() -> str:
    return "t" + secrets.token_hex(5)


@pytest.fixture(scope="module")
def bind_a(tmp_path_factory: pytest.TempPathFactory) -> Iterator[BindServer]:
    server = BindServer((ZONE, DELEGATED), broken_zones=(BROKEN,))
    yield from running_server(server, tmp_path_factory.mktemp("bind-a"))


@pytest.fixture(scope="module")
def bind_b(tmp_path_factory: pytest.TempPathFactory) -> Iterator[BindServer]:
    yield from running_server(BindServer((ZONE, DELEGATED)), tmp_path_factory.mktemp("bind-b"))


def _cname(bind: BindServer, owner: str, target: str) -> None:
    bind.nsupdate([f"update add {owner}. {TTL} CNAME {target}."], bind.zone_of(owner))


def _txt_strings(bind: BindServer, owner: str, *strings: str) -> None:
    """One TXT record made of several character-strings."""
    quoted = " ".join(f'"{s}"' for s in strings)
    bind.nsupdate([f"update add {owner}. {TTL} TXT {quoted}"], bind.zone_of(owner))


async def _fails(name: str, key_auth: str, resolver: Any) -> ValidationError:
    with pytest.raises(ValidationError) as info:
        await validate_dns01(name, key_auth, resolver=resolver)
    return info.value


# -- record shapes, one resolver -----------------------------------------------------------


async def test_cname_delegated_to_another_zone(bind_a: BindServer) -> None:
    """BIND answers the CNAME only (the target is another zone, no recursion); we chase it."""
    name, target = f"{_label()}.{ZONE}", f"{_label()}.{DELEGATED}"
    key_auth = _key_authorization()
    _cname(bind_a, f"_acme-challenge.{name}", target)
    bind_a.nsupdate_add_txt(target, dns01_txt_value(key_auth))
    assert bind_a.query(f"_acme-challenge.{name}", "TXT") == []  # the chain is left open
    await validate_dns01(name, key_auth, resolver=make_resolver([bind_a.resolver_address]))
    # The delegation is what is checked: a value only at the original name does not count.
    other = _key_authorization()
    err = await _fails(name, other, make_resolver([bind_a.resolver_address]))
    assert err.problem_type == "unauthorized"
    assert err.detail.startswith(f"Incorrect TXT record at _acme-challenge.{name}: expected")
    assert err.detail.endswith("found 1 other TXT record")


async def test_cname_chain_through_both_zones(bind_a: BindServer) -> None:
    name = f"{_label()}.{ZONE}"
    hop, final = f"{_label()}.{DELEGATED}", f"{_label()}.{ZONE}"
    key_auth = _key_authorization()
    _cname(bind_a, f"_acme-challenge.{name}", hop)
    _cname(bind_a, hop, final)
    bind_a.nsupdate_add_txt(final, dns01_txt_value(key_auth))
    await validate_dns01(name, key_auth, resolver=make_resolver([bind_a.resolver_address]))


async def test_cname_loop_across_zones_is_a_final_dns_problem(bind_a: BindServer) -> None:
    name, hop = f"{_label()}.{ZONE}", f"{_label()}.{DELEGATED}"
    owner = f"_acme-challenge.{name}"
    _cname(bind_a, owner, hop)
    _cname(bind_a, hop, owner)
    err = await _fails(name, _key_authorization(), make_resolver([bind_a.resolver_address]))
    assert err.problem_type == "dns"
    assert not err.transient
    assert err.detail == f"DNS problem: CNAME loop at {owner} looking up TXT for {owner}"


async def test_cname_loop_inside_one_zone_is_bind_s_servfail(bind_a: BindServer) -> None:
    """BIND follows an in-zone chain itself and answers a loop with SERVFAIL and an Extended
    DNS Error, which the detail passes on (retried like any SERVFAIL, then final)."""
    name, hop = f"{_label()}.{ZONE}", f"{_label()}.{ZONE}"
    owner = f"_acme-challenge.{name}"
    _cname(bind_a, owner, hop)
    _cname(bind_a, hop, owner)
    err = await _fails(name, _key_authorization(), make_resolver([bind_a.resolver_address]))
    assert err.problem_type == "dns"
    assert err.detail == (
        f"DNS problem: SERVFAIL (max. restarts reached) looking up TXT for {owner}"
    )


async def test_txt_split_into_several_strings_is_one_value(bind_a: BindServer) -> None:
    name = f"{_label()}.{ZONE}"
    key_auth = _key_authorization()
    value = dns01_txt_value(key_auth)
    _txt_strings(bind_a, f"_acme-challenge.{name}", value[:10], value[10:30], value[30:])
    await validate_dns01(name, key_auth, resolver=make_resolver([bind_a.resolver_address]))
    # The parts on their own are not the value.
    other = f"{_label()}.{ZONE}"
    _txt_strings(bind_a, f"_acme-challenge.{other}", value[:20], "x", value[20:])
    err = await _fails(other, key_auth, make_resolver([bind_a.resolver_address]))
    assert err.problem_type == "unauthorized"


async def test_wildcard_and_apex_of_one_order_share_the_name(bind_a: BindServer) -> None:
    """`*.x` and `x` both ask for `_acme-challenge.x`: two TXT values at once, either order."""
    base = f"{_label()}.{ZONE}"
    wildcard, apex = _key_authorization(), _key_authorization()
    target = f"{_label()}.{DELEGATED}"  # and through a delegation, as it is often set up
    _cname(bind_a, f"_acme-challenge.{base}", target)
    bind_a.nsupdate_add_txt(target, dns01_txt_value(wildcard))
    bind_a.nsupdate_add_txt(target, dns01_txt_value(apex))
    assert len(bind_a.query(target, "TXT")) == 2
    resolver = make_resolver([bind_a.resolver_address])
    await asyncio.gather(
        validate_dns01(f"*.{base}", wildcard, resolver=resolver),
        validate_dns01(base, apex, resolver=resolver),
    )


async def test_names_are_case_insensitive(bind_a: BindServer) -> None:
    label, target = _label(), f"{_label()}.{DELEGATED}"
    key_auth = _key_authorization()
    _cname(bind_a, f"_acme-challenge.{label}.{ZONE}", target.upper())
    bind_a.nsupdate_add_txt(target, dns01_txt_value(key_auth))
    resolver = make_resolver([bind_a.resolver_address])
    await validate_dns01(f"{label.upper()}.Net.TEST", key_auth, resolver=resolver)
    await validate_dns01(f"*.{label}.NET.test.", key_auth, resolver=resolver)


async def test_servfail_from_bind_is_a_transient_dns_problem(bind_a: BindServer) -> None:
    name = f"{_label()}.{BROKEN}"
    err = await _fails(name, _key_authorization(), make_resolver([bind_a.resolver_address]))
    assert err.problem_type == "dns"
    assert err.transient
    assert err.detail == f"DNS problem: SERVFAIL looking up TXT for _acme-challenge.{name}"


async def test_servfail_behind_a_cname_names_the_challenge(bind_a: BindServer) -> None:
    name = f"{_label()}.{ZONE}"
    _cname(bind_a, f"_acme-challenge.{name}", f"{_label()}.{BROKEN}")
    err = await _fails(name, _key_authorization(), make_resolver([bind_a.resolver_address]))
    assert err.problem_type == "dns"
    assert err.detail == f"DNS problem: SERVFAIL looking up TXT for _acme-challenge.{name}"


async def test_many_values_are_counted_not_listed(bind_a: BindServer) -> None:
    name = f"{_label()}.{ZONE}"
    owner = f"_acme-challenge.{name}"
    bind_a.nsupdate([f'update add {owner}. {TTL} TXT "old-{i}"' for i in range(40)], ZONE)
    err = await _fails(name, _key_authorization(), make_resolver([bind_a.resolver_address]))
    assert err.problem_type == "unauthorized"
    assert err.detail.endswith("found 40 other TXT records")
    assert "old-" not in err.detail
    assert len(err.detail) < 200


# -- several perspectives (--dns-resolver repeated, --validation-quorum) --------------------


def _both(bind_a: BindServer, bind_b: BindServer, quorum: int) -> Perspectives:
    return make_perspectives([bind_a.resolver_address, bind_b.resolver_address], quorum)


async def test_quorum_all_met_when_both_resolvers_agree(
    bind_a: BindServer, bind_b: BindServer
) -> None:
    name, target = f"{_label()}.{ZONE}", f"{_label()}.{DELEGATED}"
    key_auth = _key_authorization()
    for bind in (bind_a, bind_b):
        _cname(bind, f"_acme-challenge.{name}", target)
        bind.nsupdate_add_txt(target, dns01_txt_value(key_auth))
    await validate_dns01(name, key_auth, resolver=_both(bind_a, bind_b, 0))


async def test_quorum_not_met_when_resolvers_disagree(
    bind_a: BindServer, bind_b: BindServer
) -> None:
    name = f"{_label()}.{ZONE}"
    owner = f"_acme-challenge.{name}"
    key_auth = _key_authorization()
    bind_a.nsupdate_add_txt(owner, dns01_txt_value(key_auth))
    bind_b.nsupdate_add_txt(owner, "what-the-other-perspective-sees")

    err = await _fails(name, key_auth, _both(bind_a, bind_b, 0))  # 0: all, here 2
    assert err.problem_type == "unauthorized"
    assert err.transient  # B may only be late: retried within --dns01-retry-seconds
    assert err.detail == (
        f'Incorrect TXT record at {owner}: expected "{dns01_txt_value(key_auth)}", found 1 '
        "other TXT record (resolver 2 of 2; 1 of 2 resolvers found the expected TXT record, "
        "2 must)"
    )
    assert bind_b.resolver_address not in err.detail  # internal addresses stay inside
    # Quorum 1 of 2: A's answer is enough.
    await validate_dns01(name, key_auth, resolver=_both(bind_a, bind_b, 1))
    # Nobody has it: the first resolver's problem, as with one resolver.
    err = await _fails(name, _key_authorization(), _both(bind_a, bind_b, 1))
    assert err.detail.startswith(f"Incorrect TXT record at {owner}")
    assert err.detail.endswith("(resolver 1 of 2; 0 of 2 resolvers found the expected TXT "
                               "record, 1 must)")  # fmt: skip


async def test_dead_perspective_with_quorum_one_of_two(bind_a: BindServer) -> None:
    """A perspective that does not answer at all: tolerated at quorum 1, a `dns` problem at 2;
    the two are asked concurrently, each within its own timeout."""
    name = f"{_label()}.{ZONE}"
    key_auth = _key_authorization()
    bind_a.nsupdate_add_txt(f"_acme-challenge.{name}", dns01_txt_value(key_auth))
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as silent:  # takes, never answers
        silent.bind(("127.0.0.1", 0))
        dead = f"127.0.0.1:{silent.getsockname()[1]}"
        timeout = 1.5
        one = make_perspectives([dead, bind_a.resolver_address], 1, timeout=timeout)
        started = time.monotonic()
        await validate_dns01(name, key_auth, resolver=one)
        elapsed = time.monotonic() - started
        assert elapsed < timeout, f"a valid answer waited for the dead resolver ({elapsed:.1f}s)"

        both = make_perspectives([bind_a.resolver_address, dead, dead], 3, timeout=timeout)
        started = time.monotonic()
        err = await _fails(name, key_auth, both)
        elapsed = time.monotonic() - started
    assert err.problem_type == "dns"
    assert err.transient
    assert err.detail == (
        f"DNS problem: query timed out looking up TXT for _acme-challenge.{name} "
        "(resolver 2 of 3; 1 of 3 resolvers found the expected TXT record, 3 must)"
    )
    assert elapsed < 2 * timeout, f"perspectives were not asked concurrently ({elapsed:.1f}s)"


def test_quorum_above_the_resolver_count_is_refused() -> None:
    result = CliRunner().invoke(
        serve,
        ["--dns-resolver", "127.0.0.1:53", "--dns-resolver", "127.0.0.2:53",
         "--validation-quorum", "3", "--data-dir", "/nonexistent-never-used"],
    )  # fmt: skip
    assert result.exit_code == 2, result.output
    assert "--validation-quorum 3 is more than the 2 DNS resolver(s) configured" in result.output


# -- through a running gateway: bounded retries, lego through a delegated zone -------------


@pytest.fixture(scope="module")
def net_gateway(
    request: pytest.FixtureRequest,
    tmp_path_factory: pytest.TempPathFactory,
    bind_a: BindServer,
    store_backend: str,
) -> Iterator[GatewayProcess]:
    database = None
    if store_backend == "postgres":
        database = request.getfixturevalue("postgres_server").create_database()
    gw = GatewayProcess(
        tmp_path_factory.mktemp(f"gw-dns01-{store_backend}"),
        database=database,
        dns_resolvers=(bind_a.resolver_address,),
        extra_args=("--dns01-retry-seconds", str(RETRY_SECONDS)),
    )
    gw.start()
    yield gw
    gw.stop()
    if request.session.testsfailed:
        print(f"--- {gw.log_path} ---\n{gw.log_tail()}")


def _get(acme: ClientV2, url: str) -> dict[str, Any]:
    return dict(acme._post_as_get(url).json())


def _settled(acme: ClientV2, url: str) -> dict[str, Any] | None:
    state = _get(acme, url)
    return state if state["status"] in ("valid", "invalid") else None


def test_late_record_is_found_and_a_missing_one_fails_after_the_bound(
    net_gateway: GatewayProcess, bind_a: BindServer
) -> None:
    late, never = f"{_label()}.{ZONE}", f"{_label()}.{ZONE}"
    key = ec_key()
    acme = new_client(net_gateway, key)
    register(acme)
    order = acme.new_order(make_csr([late, never])[0])
    chall: dict[str, messages.ChallengeBody] = {}
    for authz in order.authorizations:
        chall[authz.body.identifier.value] = next(
            c for c in authz.body.challenges if isinstance(c.chall, challenges.DNS01)
        )
    late_target = f"{_label()}.{DELEGATED}"
    _cname(bind_a, f"_acme-challenge.{late}", late_target)  # the delegation exists already
    answered = time.monotonic()
    for name in (late, never):
        acme.answer_challenge(chall[name], chall[name].response(key))
    time.sleep(3)
    # ... and the record shows up 3 s after the challenge was answered.
    bind_a.nsupdate_add_txt(late_target, chall[late].validation(key))

    ok = wait_for("the late dns-01 record to validate", lambda: _settled(acme, chall[late].uri),
                  timeout=RETRY_SECONDS + 10)  # fmt: skip
    assert ok["status"] == "valid", ok
    failed = wait_for("the missing record to fail", lambda: _settled(acme, chall[never].uri),
                      timeout=RETRY_SECONDS + 10)  # fmt: skip
    gave_up = time.monotonic() - answered
    assert failed["status"] == "invalid", failed
    assert failed["error"]["type"] == "urn:ietf:params:acme:error:unauthorized"
    assert failed["error"]["detail"] == (
        f"No TXT record found at _acme-challenge.{never} (after 4 attempts over 6 s)"
    )
    assert RETRY_SECONDS <= gave_up < RETRY_SECONDS + 8, gave_up


@pytest.fixture(scope="module")
def lego_bin() -> Path:
    try:
        return ensure_lego()
    except GoToolError as exc:
        pytest.fail(f"cannot build lego:\n{exc}", pytrace=False)


def test_lego_rfc2136_through_a_cname_delegated_challenge_zone(
    net_gateway: GatewayProcess, bind_a: BindServer, lego_bin: Path, tmp_path: Path
) -> None:
    """The site delegates `_acme-challenge.<name>` to `delegated.test` once; lego follows
    the CNAME and updates only the delegated zone; wildcard and apex share the target."""
    domain = f"lego-{secrets.token_hex(4)}.{ZONE}"
    target = f"{secrets.token_hex(4)}.{DELEGATED}"
    _cname(bind_a, f"_acme-challenge.{domain}", target)
    names = [f"*.{domain}", domain]
    env = client_env(net_gateway.root_pem) | {
        "LEGO_CA_CERTIFICATES": str(net_gateway.root_pem),
        "RFC2136_NAMESERVER": bind_a.resolver_address,
        "RFC2136_TSIG_KEY": bind_a.key_name,
        "RFC2136_TSIG_SECRET": bind_a.key_secret,
        "RFC2136_TSIG_ALGORITHM": f"{bind_a.key_algorithm}.",
        "RFC2136_PROPAGATION_TIMEOUT": "60",
        "RFC2136_POLLING_INTERVAL": "1",
        "RFC2136_SEQUENCE_INTERVAL": "1",
    }
    cmd = [
        str(lego_bin), "run", "--accept-tos", "-c", "deleg",
        *(a for n in names for a in ("-d", n)),
        "--dns", "rfc2136", "--dns.resolvers", bind_a.resolver_address,
        "--dns.propagation.disable-ans",
        "-s", net_gateway.directory_url, "-m", "lego@example.com",
        "--path", str(tmp_path / "lego"), "--log.format", "text",
    ]  # fmt: skip
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300, env=env, check=False)
    assert proc.returncode == 0, (
        f"lego failed ({proc.returncode}):\n{proc.stdout}{proc.stderr}\n"
        f"--- gateway log ---\n{net_gateway.log_tail()}"
    )
    chain = (tmp_path / "lego" / "certificates" / "deleg.crt").read_bytes()
    verify_chain(x509.load_pem_x509_certificates(chain), net_gateway.root_pem.read_bytes(), names)
    assert "Found CNAME entry" in proc.stdout + proc.stderr
    # lego wrote (and cleaned up) only in the delegated zone; the CNAME is untouched.
    assert bind_a.query(f"_acme-challenge.{domain}", "CNAME") == [f"{target}."]
    assert bind_a.query(target, "TXT") == []


def test_gateway_with_two_perspectives_needs_both(
    tmp_path: Path, bind_a: BindServer, bind_b: BindServer
) -> None:
    """serve --dns-resolver A --dns-resolver B (quorum default: all): a record only A has
    fails, one both have validates. No retries here (--dns01-retry-seconds 0); the store
    plays no part, so SQLite only."""
    gw = GatewayProcess(
        tmp_path / "gw",
        dns_resolvers=(bind_a.resolver_address, bind_b.resolver_address),
        extra_args=("--dns01-retry-seconds", "0"),
    )
    gw.start()
    try:
        agreed, one_sided = f"{_label()}.{ZONE}", f"{_label()}.{ZONE}"
        key = ec_key()
        acme = new_client(gw, key)
        register(acme)
        order = acme.new_order(make_csr([agreed, one_sided])[0])
        chall = {
            a.body.identifier.value: next(
                c for c in a.body.challenges if isinstance(c.chall, challenges.DNS01)
            )
            for a in order.authorizations
        }
        for bind in (bind_a, bind_b):
            bind.nsupdate_add_txt(f"_acme-challenge.{agreed}", chall[agreed].validation(key))
        bind_a.nsupdate_add_txt(f"_acme-challenge.{one_sided}", chall[one_sided].validation(key))
        for name in (agreed, one_sided):
            acme.answer_challenge(chall[name], chall[name].response(key))
        ok = wait_for("agreed", lambda: _settled(acme, chall[agreed].uri), timeout=20)
        failed = wait_for("one-sided", lambda: _settled(acme, chall[one_sided].uri), timeout=20)
    except BaseException:
        print(f"--- {gw.log_path} ---\n{gw.log_tail()}")
        raise
    finally:
        gw.stop()
    assert ok["status"] == "valid", ok
    assert failed["status"] == "invalid", failed
    assert failed["error"]["type"] == "urn:ietf:params:acme:error:unauthorized"
    assert failed["error"]["detail"] == (
        f"No TXT record found at _acme-challenge.{one_sided} (resolver 2 of 2; 1 of 2 "
        "resolvers found the expected TXT record, 2 must)"
    )
