"""http-01 validation against a real local aiohttp server, with every name resolved by a
real BIND9 (tests/infra) that answers 127.0.0.1 for any name in `acme.test`."""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import aiohttp
import dns.asyncresolver
import pytest
from aiohttp import web

from acme_server.validation import (
    ValidationError,
    make_http_session,
    make_resolver,
    validate_http01,
)
from acme_server.validation.addresses import AddressPolicy
from acme_server.validation.http01 import MAX_BODY_BYTES, USER_AGENT
from tests.infra.bind import BindServer
from tests.procs import free_port

pytest_plugins = ["tests.infra.fixtures"]

PREFIX = "/.well-known/acme-challenge/"
# The challenge server listens on loopback, which validation refuses unless allowed.
LOOPBACK_OK = AddressPolicy.from_strings(allow=["127.0.0.0/8", "::1/128"])


@dataclass
class ChallengeServer:
    """A real HTTP server on 127.0.0.1:port whose behaviour each test sets per token."""

    port: int = 0
    files: dict[str, bytes] = field(default_factory=dict)
    redirects: dict[str, tuple[int, str]] = field(default_factory=dict)
    slow: set[str] = field(default_factory=set)
    seen: list[tuple[str, str, str]] = field(default_factory=list)  # (path, Host, User-Agent)

    async def handle(self, request: web.Request) -> web.StreamResponse:
        token = request.match_info["token"]
        self.seen.append(
            (request.path, request.headers.get("Host", ""), request.headers.get("User-Agent", ""))
        )
        if token in self.slow:
            await asyncio.sleep(30)
        if token in self.redirects:
            status, location = self.redirects[token]
            return web.Response(status=status, headers={"Location": location})
        if token in self.files:
            return web.Response(body=self.files[token], content_type="text/plain")
        return web.Response(status=404, text="not here")

    def url(self, name: str, token: str) -> str:
        return f"http://{name}:{self.port}{PREFIX}{token}"


@pytest.fixture
async def challenge_server() -> AsyncIterator[ChallengeServer]:
    server = ChallengeServer()
    app = web.Application()
    app.router.add_get(PREFIX + "{token}", server.handle)
    runner = web.AppRunner(app, shutdown_timeout=0.1)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    server.port = runner.addresses[0][1]
    try:
        yield server
    finally:
        await runner.cleanup()


@pytest.fixture
def resolver(bind_server: BindServer) -> dns.asyncresolver.Resolver:
    return make_resolver([bind_server.resolver_address], timeout=3.0)


@pytest.fixture
async def session(resolver: dns.asyncresolver.Resolver) -> AsyncIterator[aiohttp.ClientSession]:
    async with make_http_session(resolver, timeout=10.0) as http:
        yield http


def _name() -> str:
    return f"h{secrets.token_hex(6)}.acme.test"


def _challenge() -> tuple[str, str]:
    token = secrets.token_urlsafe(32)
    return token, f"{token}.{secrets.token_urlsafe(32)}"


async def _validate(
    server: ChallengeServer,
    resolver: dns.asyncresolver.Resolver,
    session: aiohttp.ClientSession,
    name: str,
    token: str,
    key_auth: str,
    **kwargs: Any,
) -> None:
    kwargs.setdefault("policy", LOOPBACK_OK)
    await validate_http01(
        name, token, key_auth, port=server.port, resolver=resolver, session=session, **kwargs
    )


async def _failure(*args: Any, **kwargs: Any) -> ValidationError:
    with pytest.raises(ValidationError) as info:
        await _validate(*args, **kwargs)
    return info.value


async def test_correct_body_validates_through_bind(
    challenge_server: ChallengeServer, resolver, session
) -> None:
    name = _name()
    token, key_auth = _challenge()
    challenge_server.files[token] = (key_auth + "\r\n").encode()  # trailing whitespace is fine
    await _validate(challenge_server, resolver, session, name, token, key_auth)
    assert challenge_server.seen == [
        (PREFIX + token, f"{name}:{challenge_server.port}", USER_AGENT)
    ]


async def test_wrong_body_is_unauthorized_and_not_echoed(
    challenge_server: ChallengeServer, resolver, session
) -> None:
    """What the server sent is never shown: it may be an internal page (item 7)."""
    name = _name()
    token, key_auth = _challenge()
    challenge_server.files[token] = b"SECRET-internal-page " * 10
    err = await _failure(challenge_server, resolver, session, name, token, key_auth)
    assert err.problem_type == "unauthorized"
    assert not err.transient
    assert err.detail == (
        "The key authorization file from the server did not match this challenge: "
        f'expected "{key_auth}", but the response body (210 bytes, from '
        f"{challenge_server.url(name, token)}) is not the key authorization"
    )
    assert "SECRET" not in err.detail


async def test_404_is_unauthorized_with_status(
    challenge_server: ChallengeServer, resolver, session
) -> None:
    name = _name()
    token, key_auth = _challenge()
    err = await _failure(challenge_server, resolver, session, name, token, key_auth)
    assert err.problem_type == "unauthorized"
    assert not err.transient
    assert err.detail == (
        f"Invalid response from {challenge_server.url(name, token)} [127.0.0.1]: HTTP 404"
    )


async def test_redirect_to_another_path_and_host_is_followed(
    challenge_server: ChallengeServer, resolver, session
) -> None:
    name, other = _name(), _name()
    token, key_auth = _challenge()
    challenge_server.redirects[token] = (302, f"{PREFIX}hop")  # relative
    challenge_server.redirects["hop"] = (301, challenge_server.url(other, "final"))
    challenge_server.files["final"] = key_auth.encode()
    await _validate(challenge_server, resolver, session, name, token, key_auth)
    assert [(path, host) for path, host, _ in challenge_server.seen] == [
        (PREFIX + token, f"{name}:{challenge_server.port}"),
        (PREFIX + "hop", f"{name}:{challenge_server.port}"),
        (PREFIX + "final", f"{other}:{challenge_server.port}"),
    ]


async def test_redirect_loop_is_detected(
    challenge_server: ChallengeServer, resolver, session
) -> None:
    name = _name()
    token, key_auth = _challenge()
    challenge_server.redirects[token] = (302, f"{PREFIX}back")
    challenge_server.redirects["back"] = (307, f"{PREFIX}{token}")
    err = await _failure(challenge_server, resolver, session, name, token, key_auth)
    assert err.problem_type == "connection"
    assert not err.transient
    assert err.detail == (
        f"Redirect loop detected following {challenge_server.url(name, token)}: redirect 2 "
        "leads back to an earlier URL"
    )


async def test_too_many_redirects(challenge_server: ChallengeServer, resolver, session) -> None:
    name = _name()
    token, key_auth = _challenge()
    challenge_server.redirects[token] = (302, f"{PREFIX}r1")
    for i in range(1, 6):
        challenge_server.redirects[f"r{i}"] = (302, f"{PREFIX}r{i + 1}")
    challenge_server.files["r6"] = key_auth.encode()
    err = await _failure(
        challenge_server, resolver, session, name, token, key_auth, max_redirects=3
    )
    assert err.problem_type == "connection"
    assert err.detail == (
        f"Too many redirects (more than 3) following {challenge_server.url(name, token)}"
    )
    # The same chain is fine with the default limit.
    challenge_server.seen.clear()
    await _validate(challenge_server, resolver, session, name, token, key_auth)
    assert len(challenge_server.seen) == 7


async def test_redirect_to_other_port_or_scheme_is_refused(
    challenge_server: ChallengeServer, resolver, session
) -> None:
    name = _name()
    token, key_auth = _challenge()
    challenge_server.redirects[token] = (302, f"http://{name}:8081/x")
    err = await _failure(challenge_server, resolver, session, name, token, key_auth)
    assert err.problem_type == "connection"
    assert err.detail == (
        "Invalid redirect: the target's port is not allowed "
        f"(80 or {challenge_server.port} for http)"
    )
    challenge_server.redirects[token] = (302, f"ftp://{name}/x")
    err = await _failure(challenge_server, resolver, session, name, token, key_auth)
    assert err.detail == "Invalid redirect: only http and https targets are followed"


async def test_too_large_body_is_refused(
    challenge_server: ChallengeServer, resolver, session
) -> None:
    name = _name()
    token, key_auth = _challenge()
    challenge_server.files[token] = key_auth.encode() + b" " * MAX_BODY_BYTES
    err = await _failure(challenge_server, resolver, session, name, token, key_auth)
    assert err.problem_type == "unauthorized"
    assert err.detail.startswith(
        f"The response from {challenge_server.url(name, token)} is larger than "
        f"{MAX_BODY_BYTES} bytes"
    )


async def test_connection_refused_is_transient(resolver, session) -> None:
    server = ChallengeServer(port=free_port())  # nothing listens there
    name = _name()
    token, key_auth = _challenge()
    err = await _failure(server, resolver, session, name, token, key_auth)
    assert err.problem_type == "connection"
    assert err.transient
    assert err.detail == f"Connection refused to 127.0.0.1:{server.port} fetching " + server.url(
        name, token
    )


async def test_slow_server_times_out(challenge_server: ChallengeServer, resolver, session) -> None:
    name = _name()
    token, key_auth = _challenge()
    challenge_server.slow.add(token)
    loop = asyncio.get_running_loop()
    started = loop.time()
    err = await _failure(challenge_server, resolver, session, name, token, key_auth, timeout=0.5)
    assert loop.time() - started < 5
    assert err.problem_type == "connection"
    assert err.transient
    assert err.detail == (
        "Timeout after 0.5s connecting to or waiting for a response from "
        f"127.0.0.1:{challenge_server.port} fetching {challenge_server.url(name, token)}"
    )


async def test_nxdomain_is_a_dns_problem(
    challenge_server: ChallengeServer, resolver, session
) -> None:
    # `ns.acme.test` exists, so the zone's `*` does not cover names below it: NXDOMAIN.
    name = f"{secrets.token_hex(4)}.ns.acme.test"
    token, key_auth = _challenge()
    err = await _failure(challenge_server, resolver, session, name, token, key_auth)
    assert err.problem_type == "dns"
    assert not err.transient
    assert err.detail == f"DNS problem: NXDOMAIN looking up A for {name}"
    assert challenge_server.seen == []


async def test_session_resolves_names_through_bind(
    challenge_server: ChallengeServer, session: aiohttp.ClientSession
) -> None:
    """The session's connector never uses getaddrinfo: `*.acme.test` only exists in BIND."""
    name = _name()
    challenge_server.files["plain"] = b"hello"
    async with session.get(challenge_server.url(name, "plain")) as response:
        assert response.status == 200
        assert await response.read() == b"hello"
    assert challenge_server.seen[-1][1] == f"{name}:{challenge_server.port}"


async def test_wildcard_name_is_malformed(resolver, session) -> None:
    with pytest.raises(ValidationError) as info:
        await validate_http01(
            "*.x.acme.test", "t", "t.k", port=80, resolver=resolver, session=session
        )
    assert info.value.problem_type == "malformed"


# --- item 7: validation must not become a proxy into the network -------------------------


@dataclass
class Trap:
    """A listener validation must never reach; counts the connections it receives."""

    connections: int = 0
    reply: bytes = b""

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        if self.reply:
            await reader.readuntil(b"\r\n\r\n")
            writer.write(
                b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\nConnection: close\r\n\r\n%s"
                % (len(self.reply), self.reply)
            )
            await writer.drain()
        writer.close()


async def _trap(host: str, port: int) -> tuple[Trap, asyncio.Server]:
    trap = Trap()
    server = await asyncio.start_server(trap.handle, host, port)
    return trap, server


ONLY_127_0_0_1 = AddressPolicy.from_strings(allow=["127.0.0.1/32"])


async def test_strict_policy_refuses_a_loopback_name_without_connecting(
    challenge_server: ChallengeServer, resolver, session
) -> None:
    name = _name()
    token, key_auth = _challenge()
    challenge_server.files[token] = key_auth.encode()
    err = await _failure(
        challenge_server, resolver, session, name, token, key_auth, policy=AddressPolicy()
    )
    assert err.problem_type == "connection"
    assert not err.transient
    assert err.detail == f"{name} resolves only to addresses not allowed for validation (loopback)"
    assert challenge_server.seen == []


async def test_redirect_to_a_forbidden_address_is_refused_without_connecting(
    challenge_server: ChallengeServer, resolver, session, bind_server: BindServer
) -> None:
    """First hop allowed (127.0.0.1), the redirect targets are not: each hop is re-checked."""
    trap, trap_server = await _trap("127.0.0.2", challenge_server.port)
    hidden = _name()
    bind_server.nsupdate([f"update add {hidden}. 60 A 127.0.0.2"], bind_server.zone)
    port = challenge_server.port
    targets = {
        f"http://127.0.0.2:{port}/latest": "loopback",
        f"http://[::ffff:127.0.0.2]:{port}/latest": "loopback",
        f"http://{hidden}:{port}/latest": "loopback",
        "http://169.254.169.254/latest/meta-data/": "link-local",
        "http://[fe80::1]/x": "link-local",
        "http://0.0.0.0/x": "unspecified",
        "http://[::]/x": "unspecified",
        "https://224.0.0.1/x": "multicast",
    }
    try:
        for location, reason in targets.items():
            name = _name()
            token, key_auth = _challenge()
            challenge_server.redirects[token] = (302, location)
            err = await _failure(
                challenge_server, resolver, session, name, token, key_auth, policy=ONLY_127_0_0_1
            )
            assert err.problem_type == "connection", location
            assert not err.transient
            assert err.detail == (
                f"redirect 1 from {challenge_server.url(name, token)} leads to an address not "
                f"allowed for validation ({reason})"
            ), location
            assert "latest" not in err.detail and "169.254" not in err.detail
        assert trap.connections == 0
        # The same redirect is followed once the admin allows the range: the check is real.
        trap.reply = b"allowed"
        name = _name()
        token, _ = _challenge()
        challenge_server.redirects[token] = (302, f"http://{hidden}:{port}/latest")
        await _validate(challenge_server, resolver, session, name, token, "allowed")
        assert trap.connections == 1
    finally:
        trap_server.close()
        await trap_server.wait_closed()


async def test_redirect_to_another_port_on_loopback_is_refused_without_connecting(
    challenge_server: ChallengeServer, resolver, session
) -> None:
    trap, trap_server = await _trap("127.0.0.1", 0)
    other = trap_server.sockets[0].getsockname()[1]
    try:
        for location in (f"http://127.0.0.1:{other}/x", f"https://127.0.0.1:{other}/x"):
            name = _name()
            token, key_auth = _challenge()
            challenge_server.redirects[token] = (301, location)
            err = await _failure(challenge_server, resolver, session, name, token, key_auth)
            assert err.problem_type == "connection"
            assert "port is not allowed" in err.detail
            assert str(other) not in err.detail
        assert trap.connections == 0
    finally:
        trap_server.close()
        await trap_server.wait_closed()


async def test_name_with_forbidden_and_allowed_addresses_uses_only_the_allowed(
    challenge_server: ChallengeServer, resolver, session, bind_server: BindServer
) -> None:
    """169.254.169.254 listed first would hang the attempt if it were tried at all."""
    name = _name()
    bind_server.nsupdate(
        [f"update add {name}. 60 A 169.254.169.254", f"update add {name}. 60 A 127.0.0.1"],
        bind_server.zone,
    )
    token, key_auth = _challenge()
    challenge_server.files[token] = key_auth.encode()
    await _validate(challenge_server, resolver, session, name, token, key_auth, timeout=3.0)
    # With loopback refused too, nothing is left to try, and the detail says why.
    err = await _failure(
        challenge_server, resolver, session, name, token, key_auth, policy=AddressPolicy()
    )
    assert err.problem_type == "connection"
    assert err.detail == (
        f"{name} resolves only to addresses not allowed for validation (link-local, loopback)"
    )
    assert len(challenge_server.seen) == 1


async def test_error_details_never_repeat_what_a_redirected_server_said(
    challenge_server: ChallengeServer, resolver, session
) -> None:
    """A redirect into the network must not turn error details into a read channel."""
    name = _name()
    secret_path = f"{PREFIX}SECRET-{secrets.token_hex(4)}"
    token, key_auth = _challenge()
    challenge_server.redirects[token] = (302, secret_path)
    challenge_server.files[secret_path.removeprefix(PREFIX)] = b"SECRET internal data"
    err = await _failure(challenge_server, resolver, session, name, token, key_auth)
    assert "SECRET" not in err.detail
    assert err.detail.endswith(
        f"(20 bytes, from {challenge_server.url(name, token)} after 1 redirect) is not the key "
        "authorization"
    )
    token, key_auth = _challenge()
    challenge_server.redirects[token] = (302, f"{PREFIX}SECRET-missing")
    err = await _failure(challenge_server, resolver, session, name, token, key_auth)
    assert err.detail == (
        f"Invalid response from the target of redirect 1 from {challenge_server.url(name, token)}"
        ": HTTP 404"
    )
    token, key_auth = _challenge()
    challenge_server.redirects[token] = (302, "gopher://SECRET/x")
    err = await _failure(challenge_server, resolver, session, name, token, key_auth)
    assert "SECRET" not in err.detail


async def test_internationalized_redirect_target_is_checked_and_pinned(
    challenge_server: ChallengeServer, resolver, session, bind_server: BindServer
) -> None:
    """A U-label host is resolved, checked and connected to as its A-label, never unchecked."""
    label = f"bücher-{secrets.token_hex(3)}"
    hidden = f"{label}.acme.test"
    ace = f"{label.encode('idna').decode()}.acme.test"
    bind_server.nsupdate([f"update add {ace}. 60 A 127.0.0.2"], bind_server.zone)
    trap, trap_server = await _trap("127.0.0.2", challenge_server.port)
    trap.reply = b"ok"
    try:
        name = _name()
        token, _ = _challenge()
        challenge_server.redirects[token] = (302, f"http://{hidden}:{challenge_server.port}/x")
        err = await _failure(
            challenge_server, resolver, session, name, token, "ok", policy=ONLY_127_0_0_1
        )
        assert err.detail.endswith("leads to an address not allowed for validation (loopback)")
        assert trap.connections == 0
        await _validate(challenge_server, resolver, session, name, token, "ok")
        assert trap.connections == 1
    finally:
        trap_server.close()
        await trap_server.wait_closed()


async def test_session_fails_closed_for_a_host_it_was_not_pinned_to(
    resolver: dns.asyncresolver.Resolver, session: aiohttp.ClientSession
) -> None:
    from acme_server.validation.http01 import _PINNED

    token = _PINNED.set(("checked.acme.test", ["127.0.0.1"]))
    try:
        with pytest.raises(aiohttp.ClientConnectorError) as info:
            await session.get(f"http://{_name()}:1/")
        assert "did not check" in str(info.value.os_error) + str(info.value.__cause__)
    finally:
        _PINNED.reset(token)


async def test_cname_chain_to_a_forbidden_address_is_refused(
    challenge_server: ChallengeServer, resolver, session, bind_server: BindServer
) -> None:
    """Addresses learned at the end of a CNAME chain are checked like any other."""
    name, alias = _name(), _name()
    bind_server.nsupdate(
        [f"update add {name}. 60 CNAME {alias}.", f"update add {alias}. 60 A 169.254.169.254"],
        bind_server.zone,
    )
    token, key_auth = _challenge()
    challenge_server.files[token] = key_auth.encode()
    err = await _failure(challenge_server, resolver, session, name, token, key_auth)
    assert err.problem_type == "connection"
    assert err.detail == (
        f"{name} resolves only to addresses not allowed for validation (link-local)"
    )
