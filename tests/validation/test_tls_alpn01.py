"""tls-alpn-01 (RFC 8737) against a hand-built TLS responder on loopback, names resolved by
the real BIND9 of tests/infra (every name in `acme.test` is 127.0.0.1); then through a real
`acme-gateway serve` on SQLite and PostgreSQL (lego's run is in tests/clients/test_lego.py).
"""

from __future__ import annotations

import asyncio
import hashlib
import secrets
import uuid
from collections.abc import Iterator
from typing import Any

import dns.asyncresolver
import pytest
from cryptography.hazmat.primitives.serialization import Encoding

from acme_server.domain import lifecycle
from acme_server.store import schema
from acme_server.store.database import Database, default_database_url
from acme_server.validation import ValidationError, make_resolver, validate_tls_alpn01
from acme_server.validation.addresses import AddressPolicy
from acme_server.validation.tls_alpn01 import check_certificate, sni_for
from tests.gateway_proc import GatewayProcess
from tests.infra.bind import BindServer
from tests.procs import free_port
from tests.protocol.support import ERR, new_account, unique
from tests.validation.tlsalpn_responder import ClientHello, Responder, challenge_cert

pytest_plugins = ["tests.infra.fixtures"]

LOOPBACK_OK = AddressPolicy.from_strings(allow=["127.0.0.0/8", "::1/128"])
ALPN = "acme-tls/1"


@pytest.fixture(scope="module")
def responder() -> Iterator[Responder]:
    with Responder() as server:
        yield server


@pytest.fixture
def resolver(bind_server: BindServer) -> dns.asyncresolver.Resolver:
    return make_resolver([bind_server.resolver_address], timeout=3.0)


def _name() -> str:
    return f"t{secrets.token_hex(6)}.acme.test"


def _key_auth() -> str:
    return f"{secrets.token_urlsafe(32)}.{secrets.token_urlsafe(32)}"


async def _failure(
    name: str, key_auth: str, port: int, resolver: dns.asyncresolver.Resolver, **kwargs: Any
) -> ValidationError:
    kwargs.setdefault("policy", LOOPBACK_OK)
    with pytest.raises(ValidationError) as info:
        await validate_tls_alpn01(name, key_auth, port=port, resolver=resolver, **kwargs)
    return info.value


# --- sni_for and the certificate checks, no network -------------------------------------


def test_sni_for_dns_names_is_the_name() -> None:
    assert sni_for("dns", "www.example.com") == "www.example.com"
    assert sni_for("dns", "www.example.com.") == "www.example.com"


def test_sni_for_ips_is_the_reverse_dns_name() -> None:
    assert sni_for("ip", "127.0.0.1") == "1.0.0.127.in-addr.arpa"
    assert sni_for("ip", "192.0.2.10") == "10.2.0.192.in-addr.arpa"
    assert sni_for("ip", "2001:db8::1") == (
        "1.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.8.b.d.0.1.0.0.2.ip6.arpa"
    )
    with pytest.raises(ValueError, match="identifier type 'email'"):
        sni_for("email", "a@example.com")
    with pytest.raises(ValueError):
        sni_for("ip", "not-an-ip")


def test_ip_identifier_needs_an_ip_address_san() -> None:
    key_auth = _key_auth()
    good = challenge_cert(["192.0.2.10"], key_auth).public_bytes(Encoding.DER)
    check_certificate(good, "ip", "192.0.2.10", key_auth, "192.0.2.10:443")
    other_ip = challenge_cert(["192.0.2.11"], key_auth).public_bytes(Encoding.DER)
    as_dns = challenge_cert(["10.2.0.192.in-addr.arpa"], key_auth).public_bytes(Encoding.DER)
    for der in (other_ip, as_dns):
        with pytest.raises(ValidationError) as info:
            check_certificate(der, "ip", "192.0.2.10", key_auth, "192.0.2.10:443")
        assert info.value.problem_type == "unauthorized"
        assert "subjectAltName that is not the iPAddress 192.0.2.10" in info.value.detail
    # and a DNS identifier is not proven by an iPAddress SAN
    with pytest.raises(ValidationError, match="not the dNSName"):
        check_certificate(good, "dns", "192.0.2.10", key_auth, "192.0.2.10:443")


def test_not_offered_for_wildcards() -> None:
    assert "tls-alpn-01" not in lifecycle.challenge_types(True)
    assert "tls-alpn-01" in lifecycle.challenge_types(False)


# --- the validator against the responder -------------------------------------------------


async def test_valid_certificate_validates(responder: Responder, resolver) -> None:
    name, key_auth = _name(), _key_auth()
    responder.serve(challenge_cert([name], key_auth), alpn=[ALPN])
    responder.hellos.clear()
    responder.negotiated.clear()
    await validate_tls_alpn01(
        name, key_auth, port=responder.port, resolver=resolver, policy=LOOPBACK_OK
    )
    # SNI is the name, and acme-tls/1 is the only protocol offered (RFC 8737 §3).
    assert responder.hellos == [ClientHello(sni=name, alpn=[ALPN])]
    for _ in range(50):  # the responder's thread records the handshake after the validator
        if responder.negotiated:
            break
        await asyncio.sleep(0.05)
    assert responder.negotiated == [ALPN]


async def test_ip_identifier_validates_with_reverse_name_sni(responder: Responder) -> None:
    key_auth = _key_auth()
    responder.serve(challenge_cert(["127.0.0.1"], key_auth), alpn=[ALPN])
    responder.hellos.clear()
    no_dns = make_resolver(["127.0.0.1:9"], timeout=1.0)  # an IP literal is never looked up
    await validate_tls_alpn01(
        "127.0.0.1",
        key_auth,
        port=responder.port,
        resolver=no_dns,
        policy=LOOPBACK_OK,
        identifier_type="ip",
    )
    assert responder.hellos == [ClientHello(sni="1.0.0.127.in-addr.arpa", alpn=[ALPN])]


async def test_wrong_digest_is_unauthorized(responder: Responder, resolver) -> None:
    name, key_auth = _name(), _key_auth()
    responder.serve(challenge_cert([name], _key_auth()), alpn=[ALPN])
    err = await _failure(name, key_auth, responder.port, resolver)
    assert err.problem_type == "unauthorized"
    assert not err.transient
    assert err.detail == (
        f"The tls-alpn-01 certificate from 127.0.0.1:{responder.port} for {name} has an "
        "acmeIdentifier extension that is not the SHA-256 digest of this challenge's key "
        f'authorization "{key_auth}" (a DER OCTET STRING of 32 bytes is expected)'
    )


async def test_digest_not_wrapped_in_octet_string_is_unauthorized(
    responder: Responder, resolver
) -> None:
    """RFC 8737 §3: the extension value is the DER OCTET STRING, not the bare 32 bytes."""
    name, key_auth = _name(), _key_auth()
    bare = hashlib.sha256(key_auth.encode()).digest()
    responder.serve(challenge_cert([name], key_auth, extension_value=bare), alpn=[ALPN])
    err = await _failure(name, key_auth, responder.port, resolver)
    assert err.problem_type == "unauthorized"
    assert "not the SHA-256 digest" in err.detail


async def test_non_critical_extension_is_unauthorized(responder: Responder, resolver) -> None:
    name, key_auth = _name(), _key_auth()
    responder.serve(challenge_cert([name], key_auth, critical=False), alpn=[ALPN])
    err = await _failure(name, key_auth, responder.port, resolver)
    assert err.problem_type == "unauthorized"
    assert err.detail.endswith(
        f"for {name} has an acmeIdentifier extension that is not marked critical "
        "(RFC 8737 §3 requires it to be)"
    )


async def test_missing_extension_is_unauthorized(responder: Responder, resolver) -> None:
    name, key_auth = _name(), _key_auth()
    responder.serve(challenge_cert([name], None), alpn=[ALPN])
    err = await _failure(name, key_auth, responder.port, resolver)
    assert err.problem_type == "unauthorized"
    assert "has no acmeIdentifier extension (OID 1.3.6.1.5.5.7.1.31)" in err.detail


async def test_two_sans_are_unauthorized(responder: Responder, resolver) -> None:
    name, key_auth = _name(), _key_auth()
    responder.serve(challenge_cert([name, f"www.{name}"], key_auth), alpn=[ALPN])
    err = await _failure(name, key_auth, responder.port, resolver)
    assert err.problem_type == "unauthorized"
    assert err.detail.endswith(
        f"for {name} has 2 subjectAltName entries; exactly one, the dNSName {name}, is required"
    )


async def test_wrong_san_is_unauthorized_and_not_echoed(responder: Responder, resolver) -> None:
    name, key_auth = _name(), _key_auth()
    responder.serve(challenge_cert(["internal-secret.corp.example"], key_auth), alpn=[ALPN])
    err = await _failure(name, key_auth, responder.port, resolver)
    assert err.problem_type == "unauthorized"
    assert err.detail.endswith(f"for {name} has a subjectAltName that is not the dNSName {name}")
    assert "internal-secret" not in err.detail


async def test_no_san_is_unauthorized(responder: Responder, resolver) -> None:
    name, key_auth = _name(), _key_auth()
    responder.serve(challenge_cert([], key_auth), alpn=[ALPN])
    err = await _failure(name, key_auth, responder.port, resolver)
    assert err.problem_type == "unauthorized"
    assert "has 0 subjectAltName entries" in err.detail


async def test_wrong_alpn_is_tls_problem(responder: Responder, resolver) -> None:
    """A web server that speaks only h2/http1.1 must not count, whatever its certificate."""
    name, key_auth = _name(), _key_auth()
    responder.serve(challenge_cert([name], key_auth), alpn=["h2", "http/1.1"])
    err = await _failure(name, key_auth, responder.port, resolver)
    assert err.problem_type == "tls"
    assert not err.transient
    assert err.detail == (
        f"The server at 127.0.0.1:{responder.port} did not negotiate the acme-tls/1 protocol "
        f"for {name} (SNI {name}); it answered with no ALPN protocol: it is not a tls-alpn-01 "
        "responder (RFC 8737 §3)"
    )


async def test_plain_tls_server_without_alpn_is_tls_problem(responder: Responder, resolver) -> None:
    name, key_auth = _name(), _key_auth()
    responder.serve(challenge_cert([name], key_auth), alpn=None)
    err = await _failure(name, key_auth, responder.port, resolver)
    assert err.problem_type == "tls"
    assert "did not negotiate the acme-tls/1 protocol" in err.detail


async def test_not_a_tls_server_is_tls_problem(responder: Responder, resolver) -> None:
    name, key_auth = _name(), _key_auth()
    responder.raw("close")
    err = await _failure(name, key_auth, responder.port, resolver)
    assert err.problem_type == "tls"
    assert err.detail.startswith(
        f"TLS handshake with 127.0.0.1:{responder.port} for tls-alpn-01 ({name}, SNI {name}, "
        "ALPN acme-tls/1) failed: "
    )


async def test_silent_server_times_out_as_connection_problem(
    responder: Responder, resolver
) -> None:
    name, key_auth = _name(), _key_auth()
    responder.raw("silent")
    started = asyncio.get_running_loop().time()
    err = await _failure(name, key_auth, responder.port, resolver, timeout=1.0)
    assert asyncio.get_running_loop().time() - started < 3
    assert err.problem_type == "connection"
    assert err.transient
    assert err.detail == (
        f"Timeout after 1s in the TLS handshake with 127.0.0.1:{responder.port} for "
        f"tls-alpn-01 ({name})"
    )


async def test_nothing_listening_is_connection_problem(resolver) -> None:
    name, port = _name(), free_port()
    err = await _failure(name, _key_auth(), port, resolver)
    assert err.problem_type == "connection"
    assert err.transient
    assert err.detail == f"Connection refused to 127.0.0.1:{port} for tls-alpn-01 ({name})"


async def test_loopback_refused_by_default_policy(responder: Responder, resolver) -> None:
    """Same address rules as http-01: without the tests' allowance, loopback is refused."""
    name, key_auth = _name(), _key_auth()
    responder.serve(challenge_cert([name], key_auth), alpn=[ALPN])
    responder.hellos.clear()
    err = await _failure(name, key_auth, responder.port, resolver, policy=AddressPolicy())
    assert err.problem_type == "connection"
    assert err.detail == (
        f"{name} resolves only to addresses not allowed for validation (loopback)"
    )
    assert responder.hellos == []  # never connected
    err = await _failure(
        "127.0.0.1",
        key_auth,
        responder.port,
        resolver,
        policy=AddressPolicy(),
        identifier_type="ip",
    )
    assert err.detail == "the address 127.0.0.1 is not allowed for validation (loopback)"
    assert responder.hellos == []


async def test_forced_wildcard_attempt_is_refused(responder: Responder, resolver) -> None:
    name, key_auth = _name(), _key_auth()
    responder.serve(challenge_cert([f"*.{name}"], key_auth), alpn=[ALPN])
    responder.hellos.clear()
    err = await _failure(f"*.{name}", key_auth, responder.port, resolver)
    assert err.problem_type == "malformed"
    assert err.detail == (
        f"tls-alpn-01 cannot validate the wildcard name *.{name} (RFC 8737 §3); use dns-01"
    )
    assert responder.hellos == []  # refused before any connection


async def test_unresolvable_name_is_dns_problem(resolver) -> None:
    err = await _failure("nothing.invalid-zone.test", _key_auth(), free_port(), resolver)
    assert err.problem_type == "dns"


# --- through a real gateway, on SQLite and PostgreSQL -------------------------------------


def _tls_alpn_challenge(gateway: GatewayProcess, name: str) -> tuple[Any, str, dict[str, Any]]:
    acme = new_account(gateway)
    _, order = acme.order([name])
    [(authz_url, authz)] = acme.authorizations(order)
    types = sorted(c["type"] for c in authz["challenges"])
    assert types == ["dns-01", "http-01", "tls-alpn-01"], authz
    chall = next(c for c in authz["challenges"] if c["type"] == "tls-alpn-01")
    return acme, authz_url, chall


def test_gateway_validates_tls_alpn01_and_refuses_a_wrong_digest(
    gateway: GatewayProcess,
) -> None:
    good, bad = unique("alpn"), unique("alpn")
    with Responder(port=gateway.tlsalpn01_port) as server:
        acme, authz_url, chall = _tls_alpn_challenge(gateway, good)
        key_auth = f"{chall['token']}.{acme.key_thumbprint()}"
        server.serve(challenge_cert([good], key_auth), alpn=[ALPN])
        assert acme.post(chall["url"], {}).status_code == 200
        assert acme.wait(authz_url, {"valid", "invalid"})["status"] == "valid"
        assert ClientHello(sni=good, alpn=[ALPN]) in server.hellos

        acme, authz_url, chall = _tls_alpn_challenge(gateway, bad)
        server.serve(challenge_cert([bad], f"{chall['token']}.wrong-thumbprint"), alpn=[ALPN])
        assert acme.post(chall["url"], {}).status_code == 200
        assert acme.wait(authz_url, {"valid", "invalid"})["status"] == "invalid"
    doc = acme.get(chall["url"]).json()
    assert doc["status"] == "invalid"
    assert doc["error"]["type"] == ERR + "unauthorized", doc
    assert "not the SHA-256 digest of this challenge's key authorization" in doc["error"]["detail"]
    assert doc["error"]["identifier"] == {"type": "dns", "value": bad}


def test_gateway_offers_only_dns01_for_wildcards(gateway: GatewayProcess) -> None:
    acme = new_account(gateway)
    _, order = acme.order([f"*.{unique('alpn')}"])
    [(_, authz)] = acme.authorizations(order)
    assert [c["type"] for c in authz["challenges"]] == ["dns-01"]


def test_gateway_refuses_a_forced_wildcard_attempt(gateway: GatewayProcess) -> None:
    """A tls-alpn-01 challenge planted on a wildcard authorization (this server never offers
    one) is refused, though the responder would prove the base name."""
    base = unique("alpn")
    acme = new_account(gateway)
    _, order = acme.order([f"*.{base}"])
    [(authz_url, authz)] = acme.authorizations(order)
    chall_id, token = _plant_challenge(gateway, authz_url.rsplit("/", 1)[1], "tls-alpn-01")
    chall_url = authz["challenges"][0]["url"].rsplit("/", 1)[0] + "/" + chall_id
    with Responder(port=gateway.tlsalpn01_port) as server:
        server.serve(challenge_cert([base], f"{token}.{acme.key_thumbprint()}"), alpn=[ALPN])
        assert acme.post(chall_url, {}).status_code == 200
        assert acme.wait(authz_url, {"valid", "invalid"})["status"] == "invalid"
        assert server.hellos == []
    doc = acme.get(chall_url).json()
    assert doc["type"] == "tls-alpn-01" and doc["status"] == "invalid", doc
    assert doc["error"]["type"] == ERR + "malformed", doc
    assert doc["error"]["detail"] == (
        f"tls-alpn-01 cannot validate the wildcard name *.{base} (RFC 8737 §3); use dns-01"
    )


def _plant_challenge(gateway: GatewayProcess, authz_id: str, kind: str) -> tuple[str, str]:
    """Insert a pending challenge of `kind` for the authorization; (its id, its token)."""
    chall_id, token = uuid.uuid4().hex, secrets.token_urlsafe(32)
    row = {
        "id": chall_id,
        "authz_id": authz_id,
        "type": kind,
        "token": token,
        "status": "pending",
        "attempts": 0,
    }

    async def go() -> None:
        db = await Database.open(
            gateway.database or default_database_url(gateway.data_dir), migrate=False
        )
        try:
            await db.write(lambda conn: conn.execute(schema.challenges.insert(), [row]))
        finally:
            await db.close()

    asyncio.run(go())
    return chall_id, token
