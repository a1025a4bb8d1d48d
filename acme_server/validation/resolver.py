"""DNS resolution for validation, always through dnspython and the configured resolvers.

Validators never use the system's getaddrinfo: like Pebble's `-dnsserver`, every name a
challenge depends on is looked up through the resolvers given on the command line, so a
test DNS server (or a cluster's DNS) decides where validation traffic goes. The resolver
keeps no cache, so a TXT record added a moment ago is seen on the next attempt.
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from dataclasses import dataclass

import dns.asyncresolver
import dns.edns
import dns.exception
import dns.message
import dns.name
import dns.nameserver
import dns.rdatatype
import dns.resolver

from acme_server.domain.problems import ProblemType
from acme_server.validation.errors import ValidationError

DEFAULT_DNS_PORT = 53


def parse_nameserver(value: str) -> tuple[str, int]:
    """Split `HOST:PORT`, `HOST`, `[V6]:PORT`, `[V6]` or a bare IPv6 address into (ip, port).

    A host name is turned into an address once, here, at configuration time (dnspython
    needs addresses); this is the only place the system resolver is consulted.
    """
    text = value.strip()
    if not text:
        raise ValueError("empty DNS resolver address")
    host, port = text, DEFAULT_DNS_PORT
    if text.startswith("["):
        end = text.find("]")
        if end < 0:
            raise ValueError(f"DNS resolver {value!r}: missing ']'")
        host, rest = text[1:end], text[end + 1 :]
        if rest:
            if not rest.startswith(":"):
                raise ValueError(f"DNS resolver {value!r}: expected ':PORT' after ']'")
            port = _parse_port(value, rest[1:])
    elif text.count(":") == 1:
        host, port_text = text.split(":")
        port = _parse_port(value, port_text)
    if not host:
        raise ValueError(f"DNS resolver {value!r}: missing host")
    try:
        return str(ipaddress.ip_address(host)), port
    except ValueError:
        pass
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_DGRAM)
    except OSError as exc:
        raise ValueError(f"DNS resolver {value!r}: cannot resolve {host!r}: {exc}") from None
    return str(infos[0][4][0]), port


def _parse_port(value: str, text: str) -> int:
    if not text.isdigit() or not 0 < int(text) < 65536:
        raise ValueError(f"DNS resolver {value!r}: invalid port {text!r}")
    return int(text)


def make_resolver(nameservers: list[str], *, timeout: float = 5.0) -> dns.asyncresolver.Resolver:
    """An uncached async resolver for `nameservers` (system resolv.conf when empty).

    `timeout` bounds one whole lookup (dnspython's lifetime); single tries are shorter so a
    dead server among several does not use up the whole budget.
    """
    if nameservers:
        resolver = dns.asyncresolver.Resolver(configure=False)
        resolver.nameservers = [
            dns.nameserver.Do53Nameserver(*parse_nameserver(ns)) for ns in nameservers
        ]
    else:
        resolver = dns.asyncresolver.Resolver()
    resolver.cache = None
    resolver.lifetime = timeout
    resolver.timeout = min(2.0, timeout)
    resolver.retry_servfail = False
    # EDNS (DNS flag day 2020's payload size): fewer TCP retries for big TXT sets, and
    # servers attach Extended DNS Errors (RFC 8914) that make a failure's detail precise.
    resolver.use_edns(0, 0, 1232)
    return resolver


@dataclass(frozen=True)
class Perspectives:
    """Resolvers dns-01 asks independently (one per `--dns-resolver`), and how many of
    them must find the record: multi-perspective validation in the spirit of the CA/B
    Forum's BR 3.2.2.9, where each resolver stands for one network vantage point."""

    resolvers: tuple[dns.asyncresolver.Resolver, ...]
    quorum: int

    def __post_init__(self) -> None:
        if not self.resolvers:
            raise ValueError("at least one resolver is needed")
        if not 1 <= self.quorum <= len(self.resolvers):
            raise ValueError(
                f"validation quorum {self.quorum} must be between 1 and the number of "
                f"DNS resolvers ({len(self.resolvers)})"
            )

    @classmethod
    def single(cls, resolver: dns.asyncresolver.Resolver) -> Perspectives:
        return cls((resolver,), 1)


def make_perspectives(
    nameservers: list[str], quorum: int = 0, *, timeout: float = 5.0
) -> Perspectives:
    """One uncached resolver per nameserver (the system's when none); `quorum` 0 means all.

    Each has its own `timeout`, so a slow perspective cannot eat another's budget.
    """
    resolvers = tuple(make_resolver([ns], timeout=timeout) for ns in nameservers) or (
        make_resolver([], timeout=timeout),
    )
    return Perspectives(resolvers, quorum or len(resolvers))


def dns_problem(exc: Exception, rdtype: str, qname: str) -> ValidationError:
    """Turn a dnspython failure into a precise `dns` problem; only NXDOMAIN is final."""
    if isinstance(exc, dns.resolver.NXDOMAIN):
        return ValidationError(
            ProblemType.DNS, f"DNS problem: NXDOMAIN looking up {rdtype} for {qname}"
        )
    if isinstance(exc, dns.exception.Timeout):
        what = "query timed out"
    elif isinstance(exc, dns.resolver.NoNameservers):
        what = _server_failure(exc)
    elif isinstance(exc, dns.resolver.NoAnswer):
        what = "no answer"
    else:
        what = f"{type(exc).__name__}: {exc}"
    return ValidationError(
        ProblemType.DNS, f"DNS problem: {what} looking up {rdtype} for {qname}", transient=True
    )


def _server_failure(exc: dns.resolver.NoNameservers) -> str:
    errors = exc.kwargs.get("errors") or []
    for err in errors:
        if isinstance(err[3], str):
            # an rcode name such as SERVFAIL or REFUSED, with the server's Extended DNS
            # Error (RFC 8914) when it gave one, e.g. BIND's "max. restarts reached" for a
            # CNAME loop inside one zone
            return str(err[3]) + _extended_error(err[4] if len(err) > 4 else None)
    if errors:
        return f"networking error ({errors[0][3]})"
    return "SERVFAIL"


def _extended_error(response: object) -> str:
    if not isinstance(response, dns.message.Message):
        return ""
    for ede in response.extended_errors():
        what = ede.text or dns.edns.EDECode.to_text(ede.code)
        return f" ({what[:80]})"
    return ""


async def resolve_addresses(resolver: dns.asyncresolver.Resolver, name: str) -> list[str]:
    """IPv4 then IPv6 addresses of `name`; raises ValidationError when there are none.

    An IP literal is returned as is. A and AAAA are asked in parallel; an answer to either
    is enough, errors are reported for A first as that is what most names rely on.
    """
    try:
        return [str(ipaddress.ip_address(name))]
    except ValueError:
        pass
    qname = dns.name.from_text(name)
    results = await asyncio.gather(
        _addresses(resolver, qname, dns.rdatatype.A),
        _addresses(resolver, qname, dns.rdatatype.AAAA),
        return_exceptions=True,
    )
    addresses = [addr for result in results if isinstance(result, list) for addr in result]
    if addresses:
        return addresses
    for rdtype, result in zip(("A", "AAAA"), results, strict=True):
        if isinstance(result, dns.exception.DNSException):
            raise dns_problem(result, rdtype, name)
        if isinstance(result, BaseException):
            raise result
    raise ValidationError(ProblemType.DNS, f"DNS problem: No valid IP addresses found for {name}")


async def _addresses(
    resolver: dns.asyncresolver.Resolver, qname: dns.name.Name, rdtype: dns.rdatatype.RdataType
) -> list[str]:
    answer = await resolver.resolve(qname, rdtype, search=False, raise_on_no_answer=False)
    if answer.rrset is None:
        return []
    return [rdata.to_text() for rdata in answer.rrset]
