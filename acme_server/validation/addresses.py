"""Which IP addresses validation may connect to, so a challenge cannot be aimed inside.

http-01 connects wherever an attacker's DNS answers or redirects point. By default the
server refuses the addresses that reach the server's own host or infrastructure rather
than a customer's web server: loopback, link-local (cloud metadata at 169.254.169.254),
unspecified, multicast, broadcast, reserved and documentation ranges, and the IPv6
spellings that embed one of those (IPv4-mapped `::ffff:127.0.0.1`, NAT64 `64:ff9b::/96`,
6to4 `2002::/16`, which are judged by the IPv4 address inside). Private ranges (RFC 1918,
IPv6 ULA, 100.64.0.0/10) stay allowed: a private CA validates private names.

Administrators adjust this with two CIDR lists. `allow` exempts ranges from the built-in
list (the tests allow 127.0.0.0/8 and ::1/128); `deny` adds ranges (e.g. the cluster's pod
and service networks, or all of RFC 1918). When both match, deny wins: an explicit
refusal is never undone by a broader exemption.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable
from dataclasses import dataclass, field

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network

# (range, why it is refused); checked in order, the first match names the reason.
BUILTIN_DENY: tuple[tuple[str, str], ...] = (
    ("0.0.0.0/8", "unspecified"),
    ("127.0.0.0/8", "loopback"),
    ("169.254.0.0/16", "link-local"),
    ("100.100.100.200/32", "cloud metadata"),  # Alibaba Cloud, inside 100.64.0.0/10
    ("192.0.0.0/24", "IETF protocol assignments"),
    ("192.0.2.0/24", "documentation"),
    ("198.18.0.0/15", "benchmarking"),
    ("198.51.100.0/24", "documentation"),
    ("203.0.113.0/24", "documentation"),
    ("224.0.0.0/4", "multicast"),
    ("255.255.255.255/32", "broadcast"),
    ("240.0.0.0/4", "reserved"),
    ("::/128", "unspecified"),
    ("::1/128", "loopback"),
    ("::/96", "IPv4-compatible IPv6 (deprecated)"),
    ("64:ff9b:1::/48", "NAT64 local use"),
    ("100::/64", "discard-only"),
    ("2001::/32", "Teredo"),
    ("2001:db8::/32", "documentation"),
    ("fd00:ec2::254/128", "cloud metadata"),  # AWS IMDS over IPv6, inside fc00::/7
    ("fe80::/10", "link-local"),
    ("fec0::/10", "site-local (deprecated)"),
    ("ff00::/8", "multicast"),
)

_NAT64 = ipaddress.IPv6Network("64:ff9b::/96")


def parse_cidrs(values: Iterable[str]) -> tuple[IPNetwork, ...]:
    """Networks from `10.0.0.0/8`, `::1` (a single address) ...; ValueError names the bad one."""
    out: list[IPNetwork] = []
    for value in values:
        try:
            out.append(ipaddress.ip_network(value.strip(), strict=False))
        except ValueError:
            raise ValueError(
                f"invalid CIDR {value!r} (expected e.g. 10.0.0.0/8 or ::1/128)"
            ) from None
    return tuple(out)


def embedded_ipv4(address: IPAddress) -> ipaddress.IPv4Address | None:
    """The IPv4 address an IPv6 spelling stands for (mapped, NAT64 well-known, 6to4)."""
    if isinstance(address, ipaddress.IPv4Address):
        return None
    if address.ipv4_mapped is not None:
        return address.ipv4_mapped
    if address in _NAT64:
        return ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)
    return address.sixtofour


@dataclass(frozen=True)
class AddressPolicy:
    """Built-in deny list, minus admin `allow` ranges, plus admin `deny` ranges (deny wins)."""

    allow: tuple[IPNetwork, ...] = ()
    deny: tuple[IPNetwork, ...] = ()
    builtin: tuple[tuple[IPNetwork, str], ...] = field(
        default=tuple((ipaddress.ip_network(net), why) for net, why in BUILTIN_DENY)
    )

    @classmethod
    def from_strings(cls, allow: Iterable[str] = (), deny: Iterable[str] = ()) -> AddressPolicy:
        return cls(allow=parse_cidrs(allow), deny=parse_cidrs(deny))

    def refusal(self, address: str | IPAddress) -> str | None:
        """Why validation must not connect to `address`, or None when it may."""
        ip = ipaddress.ip_address(address) if isinstance(address, str) else address
        if isinstance(ip, ipaddress.IPv6Address) and ip.scope_id:
            ip = ipaddress.IPv6Address(int(ip))  # a zone does not change where it leads
        inner = embedded_ipv4(ip)
        forms: list[IPAddress] = [ip] if inner is None else [ip, inner]
        if any(_within(form, self.deny) for form in forms):
            return "denied by the server's configuration"
        if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
            forms = [ip.ipv4_mapped]  # only a spelling of the IPv4 address: judge that
        for form in forms:
            why = self._builtin_reason(form)
            if why is not None and not _within(form, self.allow):
                return why
        return None

    def allows(self, address: str | IPAddress) -> bool:
        return self.refusal(address) is None

    def _builtin_reason(self, ip: IPAddress) -> str | None:
        for net, why in self.builtin:
            if ip.version == net.version and ip in net:
                return why
        return None


def _within(ip: IPAddress, networks: Iterable[IPNetwork]) -> bool:
    return any(ip.version == net.version and ip in net for net in networks)


STRICT = AddressPolicy()
