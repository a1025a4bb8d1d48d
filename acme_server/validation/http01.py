"""http-01 (RFC 8555 §8.3): fetch the key authorization over plain HTTP on the configured port.

Every host name is resolved through the given dnspython resolver and the TCP connection
goes to one of those addresses, while the URL (and so `Host` and, after an https redirect,
SNI) keeps the name. Redirects are followed by hand so each hop is checked and resolved
the same way; https targets are fetched without certificate checks, as Boulder and Pebble
do, since the key authorization, not the transport, is what proves control.
"""

from __future__ import annotations

import asyncio
import errno
import ipaddress
import socket
from contextvars import ContextVar
from dataclasses import dataclass
from importlib import metadata

import aiohttp
import dns.asyncresolver
from aiohttp.abc import AbstractResolver, ResolveResult
from yarl import URL

from acme_server.validation.errors import ValidationError
from acme_server.validation.resolver import resolve_addresses

MAX_BODY_BYTES = 8192
REDIRECT_STATUSES = frozenset({301, 302, 303, 307, 308})


def _user_agent() -> str:
    try:
        version = metadata.version("acme-gateway")
    except metadata.PackageNotFoundError:
        version = "dev"
    return f"acme-gateway-validator/{version} (http-01)"


USER_AGENT = _user_agent()

# (host, [addresses]) the current validation has already resolved and wants to connect to;
# aiohttp resolves inside the request's task, so a context variable reaches the resolver.
_PINNED: ContextVar[tuple[str, list[str]] | None] = ContextVar("acme_http01_pinned", default=None)


class DnspythonResolver(AbstractResolver):
    """aiohttp resolver that answers from dnspython (or from addresses pinned by the caller)."""

    def __init__(self, resolver: dns.asyncresolver.Resolver) -> None:
        self._resolver = resolver

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        pinned = _PINNED.get()
        if pinned is not None and pinned[0] == host.lower():
            addresses = pinned[1]
        else:
            try:
                addresses = await resolve_addresses(self._resolver, host)
            except ValidationError as exc:
                raise OSError(exc.detail) from None
        results: list[ResolveResult] = []
        for address in addresses:
            addr_family = socket.AF_INET6 if ":" in address else socket.AF_INET
            if family in (socket.AF_UNSPEC, addr_family):
                results.append(
                    {
                        "hostname": host,
                        "host": address,
                        "port": port,
                        "family": addr_family,
                        "proto": 0,
                        "flags": socket.AI_NUMERICHOST,
                    }
                )
        if not results:
            raise OSError(f"No usable address found for {host}")
        return results

    async def close(self) -> None:
        """Nothing to release: dnspython's async resolver holds no sockets between queries."""


def make_http_session(
    resolver: dns.asyncresolver.Resolver, *, timeout: float
) -> aiohttp.ClientSession:
    """A session fit for validation: our resolver, no cookies, no env proxies, no keep-alive.

    Connections are never reused (`force_close`): a pooled connection is keyed by host
    name, and each validation must connect to the address it has just resolved.
    """
    connector = aiohttp.TCPConnector(
        resolver=DnspythonResolver(resolver),
        use_dns_cache=False,
        force_close=True,
        limit=64,
        limit_per_host=8,
        ssl=False,
    )
    return aiohttp.ClientSession(
        connector=connector,
        cookie_jar=aiohttp.DummyCookieJar(),
        trust_env=False,
        timeout=aiohttp.ClientTimeout(total=timeout),
        headers={"User-Agent": USER_AGENT},
        auto_decompress=False,
    )


@dataclass
class _Progress:
    """Where the validation is, so a timeout can say precisely what was slow."""

    url: str
    phase: str = "resolving"
    address: str = ""
    port: int = 0

    @property
    def peer(self) -> str:
        return (
            f"[{self.address}]:{self.port}"
            if ":" in self.address
            else (f"{self.address}:{self.port}")
        )

    def timeout_error(self, timeout: float) -> ValidationError:
        if self.phase == "resolving":
            host = URL(self.url).host or self.url
            return ValidationError(
                "dns",
                f"DNS problem: query timed out looking up A for {host} (no answer within "
                f"{timeout:g}s)",
                transient=True,
            )
        doing = (
            "connecting to or waiting for a response from"
            if self.phase == "connecting"
            else "reading the response body from"
        )
        return ValidationError(
            "connection",
            f"Timeout after {timeout:g}s {doing} {self.peer} fetching {self.url}",
            transient=True,
        )


def challenge_url(name: str, port: int, token: str) -> str:
    host = f"[{name}]" if ":" in name else name
    port_part = "" if port == 80 else f":{port}"
    return f"http://{host}{port_part}/.well-known/acme-challenge/{token}"


async def validate_http01(
    name: str,
    token: str,
    key_authorization: str,
    *,
    port: int,
    resolver: dns.asyncresolver.Resolver,
    session: aiohttp.ClientSession,
    timeout: float = 10.0,  # noqa: ASYNC109 - interface fixed by the scheduler; applied below
    max_redirects: int = 10,
) -> None:
    """Fetch the challenge file and compare it with the key authorization; raise on failure."""
    if name.startswith("*."):
        raise ValidationError("malformed", f"http-01 cannot validate the wildcard name {name}")
    progress = _Progress(url=challenge_url(name, port, token))
    try:
        async with asyncio.timeout(timeout):
            body, final_url = await _fetch(progress, port, resolver, session, max_redirects)
    except TimeoutError:
        raise progress.timeout_error(timeout) from None
    text = body.decode("utf-8", "replace").rstrip()
    if text != key_authorization:
        raise ValidationError(
            "unauthorized",
            "The key authorization file from the server did not match this challenge: "
            f'expected "{key_authorization}" got "{_clip(text)}" (from {final_url})',
        )


async def _fetch(
    progress: _Progress,
    port: int,
    resolver: dns.asyncresolver.Resolver,
    session: aiohttp.ClientSession,
    max_redirects: int,
) -> tuple[bytes, str]:
    """Follow redirects from `progress.url`; return the final 200 body and its URL."""
    visited: set[str] = set()
    redirects = 0
    while True:
        visited.add(progress.url)
        url = URL(progress.url)
        host = url.host or ""
        progress.phase = "resolving"
        addresses = _ipv4_first(await resolve_addresses(resolver, host))
        status, location, body = await _get_any(progress, session, url, addresses)
        if status not in REDIRECT_STATUSES:
            if status != 200:
                raise ValidationError(
                    "unauthorized",
                    f"Invalid response from {progress.url} [{progress.address}]: HTTP {status}",
                )
            return body, progress.url
        if location is None:
            raise ValidationError(
                "unauthorized",
                f"Redirect (HTTP {status}) without a Location header from {progress.url}",
            )
        target = _redirect_target(progress.url, location, port)
        if str(target) in visited:
            raise ValidationError(
                "connection", f"Redirect loop detected: {progress.url} redirects back to {target}"
            )
        redirects += 1
        if redirects > max_redirects:
            raise ValidationError(
                "connection",
                f"Too many redirects (more than {max_redirects}) following {progress.url}",
            )
        progress.url = str(target)


def _ipv4_first(addresses: list[str]) -> list[str]:
    return sorted(addresses, key=lambda a: ":" in a)


def _redirect_target(current: str, location: str, port: int) -> URL:
    """Resolve `location` against `current` and refuse targets validation must not visit."""
    try:
        target = URL(current).join(URL(location))
    except ValueError as exc:
        raise ValidationError(
            "connection", f"Invalid redirect Location {_clip(location)!r} from {current}: {exc}"
        ) from None
    if target.scheme not in ("http", "https"):
        raise ValidationError(
            "connection",
            f"Invalid redirect from {current} to {_clip(location)!r}: only http and https "
            "targets are followed",
        )
    if not target.host:
        raise ValidationError(
            "connection", f"Invalid redirect from {current} to {_clip(location)!r}: no host"
        )
    allowed = {port, 80} if target.scheme == "http" else {443}
    if target.port not in allowed:
        raise ValidationError(
            "connection",
            f"Invalid redirect from {current} to {target}: port {target.port} is not allowed "
            f"({' or '.join(str(p) for p in sorted(allowed))} for {target.scheme})",
        )
    return target.with_fragment(None)


async def _get_any(
    progress: _Progress, session: aiohttp.ClientSession, url: URL, addresses: list[str]
) -> tuple[int, str | None, bytes]:
    """GET `url` from the first address that accepts a connection (IPv4 before IPv6)."""
    first_error: ValidationError | None = None
    for address in addresses:
        try:
            return await _get(progress, session, url, address)
        except _ConnectFailed as failed:
            first_error = first_error or failed.error
    assert first_error is not None
    raise first_error


class _ConnectFailed(Exception):
    """The TCP connection to one address failed; the next address may still work."""

    def __init__(self, error: ValidationError) -> None:
        super().__init__(error.detail)
        self.error = error


async def _get(
    progress: _Progress, session: aiohttp.ClientSession, url: URL, address: str
) -> tuple[int, str | None, bytes]:
    host = (url.host or "").lower()
    progress.phase, progress.address, progress.port = "connecting", address, url.port or 80
    pin = None if _is_ip(host) else _PINNED.set((host, [address]))
    where = f"{progress.peer} fetching {progress.url}"
    try:
        async with session.get(
            url,
            allow_redirects=False,
            ssl=False,
            timeout=aiohttp.ClientTimeout(total=None),
            headers={"Accept": "*/*", "Accept-Encoding": "identity"},
        ) as response:
            if response.status in REDIRECT_STATUSES:
                return response.status, response.headers.get("Location"), b""
            if response.status != 200:
                return response.status, None, b""
            progress.phase = "reading"
            body = await _read_limited(response, progress.url)
            return response.status, None, body
    except aiohttp.ClientSSLError as exc:
        raise ValidationError("connection", f"TLS error connecting to {where}: {exc}") from None
    except aiohttp.ClientConnectorError as exc:
        if exc.os_error.errno == errno.ECONNREFUSED:
            error = ValidationError("connection", f"Connection refused to {where}", transient=True)
        else:
            reason = exc.os_error.strerror or str(exc.os_error)
            error = ValidationError(
                "connection", f"Error connecting to {where}: {reason}", transient=True
            )
        raise _ConnectFailed(error) from None
    except aiohttp.ServerDisconnectedError:
        raise ValidationError(
            "connection",
            f"Connection closed without a response by {where}",
            transient=True,
        ) from None
    except aiohttp.ClientResponseError as exc:
        raise ValidationError(
            "connection",
            f"Invalid HTTP response from {where}: {_clip(' '.join(exc.message.split()), 120)}",
        ) from None
    except aiohttp.ClientError as exc:
        raise ValidationError(
            "connection",
            f"Error fetching from {where}: {type(exc).__name__}: {exc}",
            transient=True,
        ) from None
    finally:
        if pin is not None:
            _PINNED.reset(pin)


async def _read_limited(response: aiohttp.ClientResponse, url: str) -> bytes:
    """At most MAX_BODY_BYTES of body; anything bigger is refused rather than read."""
    too_big = ValidationError(
        "unauthorized",
        f"The response from {url} is larger than {MAX_BODY_BYTES} bytes; a key authorization "
        "file is much shorter",
    )
    if response.content_length is not None and response.content_length > MAX_BODY_BYTES:
        raise too_big
    body = bytearray()
    while len(body) <= MAX_BODY_BYTES:
        chunk = await response.content.read(MAX_BODY_BYTES + 1 - len(body))
        if not chunk:
            return bytes(body)
        body += chunk
    raise too_big


def _is_ip(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


def _clip(value: str, limit: int = 80) -> str:
    return value if len(value) <= limit else value[:limit] + "..."
