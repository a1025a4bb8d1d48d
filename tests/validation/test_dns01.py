"""dns-01 validation against a real BIND9 (tests/infra) and, for failure modes BIND will
not produce on demand (SERVFAIL, silence, a CNAME left unchased), a tiny in-process DNS
responder built with dnspython."""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import AsyncIterator, Callable
from typing import cast

import dns.asyncresolver
import dns.message
import dns.name
import dns.rcode
import dns.rdatatype
import dns.rrset
import pytest

from acme_server.validation import ValidationError, dns01_txt_value, make_resolver, validate_dns01
from tests.infra.bind import BindServer

pytest_plugins = ["tests.infra.fixtures"]


def _key_authorization() -> str:
    return f"{secrets.token_urlsafe(32)}.{secrets.token_urlsafe(32)}"


def _label() -> str:
    return "t" + secrets.token_hex(6)


# -- against the real BIND9 --------------------------------------------------------------


@pytest.fixture
def bind_resolver(bind_server: BindServer) -> dns.asyncresolver.Resolver:
    return make_resolver([bind_server.resolver_address], timeout=5.0)


async def test_correct_txt_record_validates(bind_server: BindServer, bind_resolver) -> None:
    name = f"{_label()}.acme.test"
    key_auth = _key_authorization()
    bind_server.nsupdate_add_txt(f"_acme-challenge.{name}", dns01_txt_value(key_auth))
    await validate_dns01(name, key_auth, resolver=bind_resolver)


async def test_one_matching_record_among_several_is_enough(
    bind_server: BindServer, bind_resolver
) -> None:
    name = f"{_label()}.acme.test"
    key_auth = _key_authorization()
    owner = f"_acme-challenge.{name}"
    bind_server.nsupdate_add_txt(owner, "stale-value-from-an-earlier-order")
    bind_server.nsupdate_add_txt(owner, dns01_txt_value(key_auth))
    await validate_dns01(name, key_auth, resolver=bind_resolver)


async def test_wrong_txt_record_is_retried_and_does_not_echo_values(
    bind_server: BindServer, bind_resolver
) -> None:
    name = f"{_label()}.acme.test"
    owner = f"_acme-challenge.{name}"
    for i in range(5):
        bind_server.nsupdate_add_txt(owner, f"wrong-value-{i}")
    key_auth = _key_authorization()
    with pytest.raises(ValidationError) as info:
        await validate_dns01(name, key_auth, resolver=bind_resolver)
    err = info.value
    assert err.problem_type == "unauthorized"
    # An old value may still be being replaced: retried for --dns01-retry-seconds, like a
    # missing record (the scheduler makes it final when that time is up).
    assert err.transient
    assert f"Incorrect TXT record at {owner}" in err.detail
    assert f'expected "{dns01_txt_value(key_auth)}"' in err.detail
    assert err.detail.endswith("found 5 other TXT records")
    assert "wrong-value" not in err.detail  # what a (possibly internal) record says stays inside


async def test_missing_record_is_transient_then_seen_at_once(
    bind_server: BindServer, bind_resolver
) -> None:
    name = f"{_label()}.acme.test"
    key_auth = _key_authorization()
    with pytest.raises(ValidationError) as info:
        await validate_dns01(name, key_auth, resolver=bind_resolver)
    assert info.value.problem_type == "unauthorized"
    assert info.value.transient
    assert info.value.detail == f"No TXT record found at _acme-challenge.{name}"
    # No cache anywhere: the record added now is seen by the very next attempt.
    bind_server.nsupdate_add_txt(f"_acme-challenge.{name}", dns01_txt_value(key_auth))
    await validate_dns01(name, key_auth, resolver=bind_resolver)


async def test_wildcard_name_is_checked_at_its_base(bind_server: BindServer, bind_resolver) -> None:
    base = f"{_label()}.acme.test"
    key_auth = _key_authorization()
    bind_server.nsupdate_add_txt(f"_acme-challenge.{base}", dns01_txt_value(key_auth))
    await validate_dns01(f"*.{base}", key_auth, resolver=bind_resolver)


async def test_cname_is_followed(bind_server: BindServer, bind_resolver) -> None:
    name = f"{_label()}.acme.test"
    target = f"_acme-challenge.{_label()}.delegated.acme.test"
    key_auth = _key_authorization()
    bind_server.nsupdate_add_txt(target, dns01_txt_value(key_auth))
    bind_server.nsupdate(
        [f"update add _acme-challenge.{name}. 1 CNAME {target}."], bind_server.zone
    )
    assert bind_server.query(f"_acme-challenge.{name}", "CNAME") == [f"{target}."]
    await validate_dns01(name, key_auth, resolver=bind_resolver)


# -- in-process responder for failures BIND does not produce on request --------------------

Handler = Callable[[dns.message.Message], dns.message.Message | None]


class _Responder(asyncio.DatagramProtocol):
    def __init__(self, handler: Handler) -> None:
        self.handler = handler
        self.transport: asyncio.DatagramTransport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.DatagramTransport, transport)

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        response = self.handler(dns.message.from_wire(data))
        if response is not None and self.transport is not None:
            self.transport.sendto(response.to_wire(), addr)


class FakeZone:
    """name → list of (type, value); special behaviours per name: servfail, drop."""

    def __init__(self) -> None:
        self.records: dict[str, list[tuple[str, str]]] = {}
        self.behaviour: dict[str, str] = {}
        self.port = 0

    def answer(self, query: dns.message.Message) -> dns.message.Message | None:
        question = query.question[0]
        qname = question.name.to_text().lower()
        response = dns.message.make_response(query)
        mode = self.behaviour.get(qname)
        if mode == "drop":
            return None
        if mode == "servfail":
            response.set_rcode(dns.rcode.SERVFAIL)
            return response
        if qname not in self.records:
            response.set_rcode(dns.rcode.NXDOMAIN)
            return response
        for rdtype, value in self.records[qname]:
            if rdtype == "CNAME" or dns.rdatatype.from_text(rdtype) == question.rdtype:
                response.answer.append(dns.rrset.from_text(qname, 1, "IN", rdtype, value))
        return response


@pytest.fixture
async def fake_dns() -> AsyncIterator[FakeZone]:
    zone = FakeZone()
    loop = asyncio.get_running_loop()
    transport, _ = await loop.create_datagram_endpoint(
        lambda: _Responder(zone.answer), local_addr=("127.0.0.1", 0)
    )
    zone.port = transport.get_extra_info("sockname")[1]
    try:
        yield zone
    finally:
        transport.close()


async def test_servfail_is_a_transient_dns_problem(fake_dns: FakeZone) -> None:
    fake_dns.behaviour["_acme-challenge.broken.example."] = "servfail"
    resolver = make_resolver([f"127.0.0.1:{fake_dns.port}"], timeout=2.0)
    with pytest.raises(ValidationError) as info:
        await validate_dns01("broken.example", _key_authorization(), resolver=resolver)
    assert info.value.problem_type == "dns"
    assert info.value.transient
    assert info.value.detail == (
        "DNS problem: SERVFAIL looking up TXT for _acme-challenge.broken.example"
    )


async def test_silent_server_is_a_transient_timeout(fake_dns: FakeZone) -> None:
    fake_dns.behaviour["_acme-challenge.slow.example."] = "drop"
    resolver = make_resolver([f"127.0.0.1:{fake_dns.port}"], timeout=0.5)
    loop = asyncio.get_running_loop()
    started = loop.time()
    with pytest.raises(ValidationError) as info:
        await validate_dns01("slow.example", _key_authorization(), resolver=resolver)
    assert loop.time() - started < 3
    assert info.value.problem_type == "dns"
    assert info.value.transient
    assert info.value.detail == (
        "DNS problem: query timed out looking up TXT for _acme-challenge.slow.example"
    )


async def test_nxdomain_is_a_transient_missing_record(fake_dns: FakeZone) -> None:
    resolver = make_resolver([f"127.0.0.1:{fake_dns.port}"], timeout=2.0)
    with pytest.raises(ValidationError) as info:
        await validate_dns01("absent.example", _key_authorization(), resolver=resolver)
    assert info.value.problem_type == "unauthorized"
    assert info.value.transient
    assert "No TXT record found at _acme-challenge.absent.example" in info.value.detail


async def test_cname_left_unchased_by_the_server_is_chased(fake_dns: FakeZone) -> None:
    key_auth = _key_authorization()
    fake_dns.records["_acme-challenge.app.example."] = [("CNAME", "hop.other.example.")]
    fake_dns.records["hop.other.example."] = [("CNAME", "final.third.example.")]
    # A long value split into several character-strings must be compared joined.
    value = dns01_txt_value(key_auth)
    fake_dns.records["final.third.example."] = [("TXT", f'"{value[:20]}" "{value[20:]}"')]
    resolver = make_resolver([f"127.0.0.1:{fake_dns.port}"], timeout=2.0)
    await validate_dns01("app.example", key_auth, resolver=resolver)


async def test_cname_loop_is_reported(fake_dns: FakeZone) -> None:
    fake_dns.records["_acme-challenge.loop.example."] = [("CNAME", "a.loop.example.")]
    fake_dns.records["a.loop.example."] = [("CNAME", "_acme-challenge.loop.example.")]
    resolver = make_resolver([f"127.0.0.1:{fake_dns.port}"], timeout=2.0)
    with pytest.raises(ValidationError) as info:
        await validate_dns01("loop.example", _key_authorization(), resolver=resolver)
    assert info.value.problem_type == "dns"
    assert not info.value.transient
    assert info.value.detail == (
        "DNS problem: CNAME loop at _acme-challenge.loop.example "
        "looking up TXT for _acme-challenge.loop.example"
    )
