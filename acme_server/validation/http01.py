"""http-01 (RFC 8555 §8.3): fetch the key authorization over plain HTTP on the configured port.

Every host name is resolved through the given dnspython resolver; addresses the
`AddressPolicy` refuses (loopback, link-local/metadata, ... see addresses.py) are dropped,
and the TCP connection goes to one checked address, pinned so aiohttp cannot resolve again,
while the URL (and so `Host` and, after an https redirect, SNI) keeps the name. Redirects
are followed by hand (http/https only, ports 80/443/the http-01 port, at most 10) so each
hop is checked and pinned the same way; https targets are fetched without certificate
checks, as Boulder and Pebble do, since the key authorization, not the transport, is what
proves control. Problem details say what was wrong, never what a server sent: no body,
header or redirect target is repeated, so validation cannot be used to read internal pages.
"""

from __future__ import annotations

import asyncio
import errno
import ipaddress
import socket
from contextvars import ContextVar
from dataclasses import dataclass, field
from importlib import metadata

import aiohttp
import dns.asyncresolver
from aiohttp.abc import AbstractResolver, ResolveResult
from yarl import URL

from acme_server.domain.problems import ProblemType
from acme_server.validation.addresses import STRICT, AddressPolicy
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
        if pinned is not None:
            # Inside a validation only the checked host may be resolved, and only to the
            # checked address: anything else fails closed rather than connecting unchecked.
            if _host_key(host) != pinned[0]:
                raise OSError("refusing to resolve a host validation did not check")
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
    """Where the validation is, so an error can say precisely what failed.

    Only the challenge URL (built from the identifier and token) and, for its first hop,
    the address it resolved to are ever named in a detail. Anything learned from a
    redirect (`Location`) came from a server that may sit inside the network, so later
    hops are named by number only: a client learns what went wrong, not what was there.
    """

    url: str
    phase: str = "resolving"
    address: str = ""
    port: int = 0
    hop: int = 0
    challenge_url: str = ""

    def __post_init__(self) -> None:
        self.challenge_url = self.challenge_url or self.url

    @property
    def peer(self) -> str:
        return (
            f"[{self.address}]:{self.port}"
            if ":" in self.address
            else (f"{self.address}:{self.port}")
        )

    @property
    def where(self) -> str:
        if self.hop == 0:
            return f"{self.peer} fetching {self.challenge_url}"
        return f"the target of redirect {self.hop} from {self.challenge_url}"

    def timeout_error(self, timeout: float) -> ValidationError:
        if self.phase == "resolving":
            if self.hop:
                what = f"the host of redirect {self.hop} from {self.challenge_url}"
                return ValidationError(
                    ProblemType.DNS,
                    f"DNS problem: query timed out looking up {what} (no answer within "
                    f"{timeout:g}s)",
                    transient=True,
                )
            host = URL(self.url).host or self.url
            return ValidationError(
                ProblemType.DNS,
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
            ProblemType.CONNECTION,
            f"Timeout after {timeout:g}s {doing} {self.where}",
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
    policy: AddressPolicy = STRICT,
) -> None:
    """Fetch the challenge file and compare it with the key authorization; raise on failure.

    Every hop connects only to addresses `policy` allows, and `timeout` bounds the whole
    validation (resolution, connections, redirects and reads) as well as each socket step.
    """
    if name.startswith("*."):
        raise ValidationError(
            ProblemType.MALFORMED, f"http-01 cannot validate the wildcard name {name}"
        )
    progress = _Progress(url=challenge_url(name, port, token))
    fetch = _Fetch(progress, port, resolver, session, max_redirects, policy, timeout)
    try:
        async with asyncio.timeout(timeout):
            body = await fetch.run()
    except TimeoutError:
        raise progress.timeout_error(timeout) from None
    text = body.decode("utf-8", "replace").rstrip()
    if text != key_authorization:
        source = progress.challenge_url
        if progress.hop:
            source += f" after {progress.hop} redirect{'s' if progress.hop > 1 else ''}"
        raise ValidationError(
            ProblemType.UNAUTHORIZED,
            "The key authorization file from the server did not match this challenge: "
            f'expected "{key_authorization}", but the response body ({len(body)} bytes, '
            f"from {source}) is not the key authorization",
        )


@dataclass
class _Fetch:
    """One validation's walk from the challenge URL through its redirects."""

    progress: _Progress
    port: int
    resolver: dns.asyncresolver.Resolver
    session: aiohttp.ClientSession
    max_redirects: int
    policy: AddressPolicy
    timeout: float
    body: bytes = field(default=b"", init=False)

    async def run(self) -> bytes:
        """Follow redirects from `progress.url`; return the final 200 body."""
        progress = self.progress
        visited: set[str] = set()
        while True:
            visited.add(progress.url)
            url = URL(progress.url)
            progress.phase = "resolving"
            addresses = await self._allowed_addresses(url.raw_host or "")
            status, location = await self._get_any(url, addresses)
            if status == 200:
                return self.body
            if status not in REDIRECT_STATUSES:
                if progress.hop == 0:
                    detail = f"Invalid response from {progress.url} [{progress.address}]"
                else:
                    detail = f"Invalid response from {progress.where}"
                raise ValidationError(ProblemType.UNAUTHORIZED, f"{detail}: HTTP {status}")
            if location is None:
                raise ValidationError(
                    ProblemType.UNAUTHORIZED,
                    f"Redirect (HTTP {status}) without a Location header from {progress.where}",
                )
            target = _redirect_target(progress.url, location, self.port)
            progress.hop += 1
            if str(target) in visited:
                raise ValidationError(
                    ProblemType.CONNECTION,
                    f"Redirect loop detected following {progress.challenge_url}: redirect "
                    f"{progress.hop} leads back to an earlier URL",
                )
            if progress.hop > self.max_redirects:
                raise ValidationError(
                    ProblemType.CONNECTION,
                    f"Too many redirects (more than {self.max_redirects}) following "
                    f"{progress.challenge_url}",
                )
            progress.url = str(target)

    async def _allowed_addresses(self, host: str) -> list[str]:
        """The host's addresses the policy allows, IPv4 first; refuse when there are none."""
        progress = self.progress
        try:
            addresses = await resolve_addresses(self.resolver, host)
        except ValidationError as exc:
            if progress.hop == 0:
                raise
            raise ValidationError(
                exc.problem_type,
                f"DNS problem: cannot resolve the host of redirect {progress.hop} from "
                f"{progress.challenge_url}",
                transient=exc.transient,
            ) from None
        allowed = [a for a in addresses if self.policy.allows(a)]
        if allowed:
            return _ipv4_first(allowed)
        reasons = sorted({self.policy.refusal(a) or "" for a in addresses})
        if progress.hop == 0:
            what = f"{host} resolves only to addresses"
            if _is_ip(host):
                what = f"the address {host} is"
        else:
            what = f"redirect {progress.hop} from {progress.challenge_url} leads to an address"
        raise ValidationError(
            ProblemType.CONNECTION,
            f"{what} not allowed for validation ({', '.join(reasons)})",
        )

    async def _get_any(self, url: URL, addresses: list[str]) -> tuple[int, str | None]:
        """GET `url` from the first address that accepts a connection (IPv4 before IPv6)."""
        first_error: ValidationError | None = None
        for address in addresses:
            try:
                return await self._get(url, address)
            except _ConnectFailed as failed:
                first_error = first_error or failed.error
        assert first_error is not None
        raise first_error

    async def _get(self, url: URL, address: str) -> tuple[int, str | None]:
        """One GET connected to exactly `address` (already checked), with Host/SNI the name.

        Returns the status and any Location; a 200 body is left in `self.body`.
        """
        progress = self.progress
        host = url.raw_host or ""
        progress.phase, progress.address, progress.port = "connecting", address, url.port or 80
        # Also set for IP literals: then any resolution at all fails closed.
        pin = _PINNED.set((_host_key(host), [address]))
        where = progress.where
        step = aiohttp.ClientTimeout(total=None, sock_connect=self.timeout, sock_read=self.timeout)
        try:
            async with self.session.get(
                url,
                allow_redirects=False,
                ssl=False,
                timeout=step,
                headers={"Accept": "*/*", "Accept-Encoding": "identity"},
            ) as response:
                if response.status in REDIRECT_STATUSES:
                    return response.status, response.headers.get("Location")
                if response.status != 200:
                    return response.status, None
                progress.phase = "reading"
                source = progress.challenge_url if progress.hop == 0 else where
                self.body = await _read_limited(response, source)
                return response.status, None
        except aiohttp.ClientSSLError:
            raise ValidationError(
                ProblemType.CONNECTION, f"TLS error connecting to {where}"
            ) from None
        except aiohttp.ClientConnectorError as exc:
            if exc.os_error.errno == errno.ECONNREFUSED:
                error = ValidationError(
                    ProblemType.CONNECTION, f"Connection refused to {where}", transient=True
                )
            else:
                reason = exc.os_error.strerror or type(exc.os_error).__name__
                error = ValidationError(
                    ProblemType.CONNECTION, f"Error connecting to {where}: {reason}", transient=True
                )
            raise _ConnectFailed(error) from None
        except aiohttp.ServerDisconnectedError:
            raise ValidationError(
                ProblemType.CONNECTION,
                f"Connection closed without a response by {where}",
                transient=True,
            ) from None
        except aiohttp.ClientResponseError:
            raise ValidationError(
                ProblemType.CONNECTION, f"Invalid HTTP response from {where}"
            ) from None
        except aiohttp.ClientError as exc:
            raise ValidationError(
                ProblemType.CONNECTION,
                f"Error fetching from {where}: {type(exc).__name__}",
                transient=True,
            ) from None
        finally:
            _PINNED.reset(pin)


def _host_key(host: str) -> str:
    """How a host is compared with the pin: lower case, A-labels, no trailing dot."""
    return host.lower().rstrip(".")


def _ipv4_first(addresses: list[str]) -> list[str]:
    return sorted(addresses, key=lambda a: ":" in a)


def _redirect_target(current: str, location: str, port: int) -> URL:
    """Resolve `location` against `current` and refuse targets validation must not visit.

    Details never repeat the Location header: it may come from an internal server.
    """
    try:
        target = URL(current).join(URL(location)).with_user(None)
        _ = target.host, target.raw_host, target.port  # IDNA/port errors surface here
    except ValueError:
        raise ValidationError(
            ProblemType.CONNECTION, "Invalid redirect: the Location header is not a valid URL"
        ) from None
    if target.scheme not in ("http", "https"):
        raise ValidationError(
            ProblemType.CONNECTION, "Invalid redirect: only http and https targets are followed"
        )
    if not target.raw_host:
        raise ValidationError(ProblemType.CONNECTION, "Invalid redirect: the target has no host")
    allowed = {port, 80} if target.scheme == "http" else {443}
    if target.port not in allowed:
        raise ValidationError(
            ProblemType.CONNECTION,
            f"Invalid redirect: the target's port is not allowed "
            f"({' or '.join(str(p) for p in sorted(allowed))} for {target.scheme})",
        )
    return target.with_fragment(None)


class _ConnectFailed(Exception):
    """The TCP connection to one address failed; the next address may still work."""

    def __init__(self, error: ValidationError) -> None:
        super().__init__(error.detail)
        self.error = error


async def _read_limited(response: aiohttp.ClientResponse, where: str) -> bytes:
    """At most MAX_BODY_BYTES of body; anything bigger is refused rather than read."""
    too_big = ValidationError(
        ProblemType.UNAUTHORIZED,
        f"The response from {where} is larger than {MAX_BODY_BYTES} bytes; a key "
        "authorization file is much shorter",
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
