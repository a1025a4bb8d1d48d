"""Which identifiers (DNS names, RFC 8738 IP addresses) are well-formed, and which an order
may request.

No grant, no names: a name is allowed only by an explicit "any name" grant, or when it
equals a listed name or (unless that entry excludes subdomains) is a subdomain of it,
compared on whole DNS labels, case-insensitively, after IDNA (A-label) conversion. An empty
list allows nothing. `*.x` names subdomains of x, so it needs ONE rule that both includes
subdomains and allows wildcards and covers x.

`parse_identifiers`, `check_allowed` and `check_issuable` turn these rules into the ACME
problems (`malformed`, `rejectedIdentifier`, `unsupportedIdentifier`) newOrder and finalize
return, one subproblem per refused identifier.

IP identifiers (RFC 8738) must be written canonically (IPv4 dotted quad, RFC 1123; IPv6 as
RFC 5952 says), are never wildcards, and are granted only by IP ranges (CIDRs): neither the
"any name" grant nor open mode grants an address, so no address is issuable by omission.
An IPv4-mapped IPv6 address is refused outright: it is the IPv4 address in disguise, and
would otherwise slip past a grant written for IPv4.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Any, Protocol

import idna

from acme_server.domain.problems import AcmeProblem, ProblemType, identifier_subproblem

MAX_IDENTIFIERS = 100

_LABEL = re.compile(r"^(?!-)[a-z0-9-]{1,63}(?<!-)$")


class IdentifierError(ValueError):
    """A DNS identifier that no certificate can carry; the message says why."""


class IdentifierType(StrEnum):
    DNS = "dns"
    IP = "ip"  # RFC 8738


@dataclass(frozen=True)
class Identifier:
    """A normalised identifier: a DNS name (maybe `*.x`) or a canonical IP address."""

    type: IdentifierType
    value: str

    @classmethod
    def of(cls, value: str) -> Identifier:
        """The identifier a stored, normalised value stands for: normalised DNS names are
        never IP literals (normalise_dns_name refuses them), so the text decides."""
        return cls(IdentifierType.IP if is_ip_literal(value) else IdentifierType.DNS, value)

    @property
    def wildcard(self) -> bool:
        return self.type is IdentifierType.DNS and self.value.startswith("*.")

    def to_json(self) -> dict[str, str]:
        return {"type": str(self.type), "value": self.value}


IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network
_DOTTED_QUAD = re.compile(r"^[0-9]{1,3}(\.[0-9]{1,3}){3}$")


class MalformedIP(IdentifierError):
    """An IP identifier not written in its one canonical form (RFC 8738 section 3)."""


def is_ip_literal(value: str) -> bool:
    try:
        ipaddress.ip_address(value)
    except ValueError:
        return False
    return True


def normalise_ip(value: str) -> str:
    """`value` if it is a canonical IPv4/IPv6 address; else MalformedIP naming the
    canonical form when there is one, IdentifierError for a wildcard or mapped address."""
    if not isinstance(value, str) or not value:
        raise MalformedIP("identifier value must be a non-empty string")
    if "*" in value:
        raise IdentifierError(f"{value!r}: an ip identifier is never a wildcard")
    if "%" in value or "/" in value:
        raise MalformedIP(f"{value!r} is not an IP address (no zone index or prefix length)")
    if ":" in value:
        try:
            v6 = ipaddress.IPv6Address(value)
        except ValueError:
            raise MalformedIP(f"{value!r} is not an IPv6 address") from None
        if v6.ipv4_mapped is not None:
            raise IdentifierError(
                f"{value!r} is an IPv4-mapped IPv6 address; request the IPv4 address "
                f"{v6.ipv4_mapped} as an ip identifier instead"
            )
        if str(v6) != value:
            raise MalformedIP(f"{value!r} is not in canonical form (RFC 5952); write it as {v6}")
        return value
    if not _DOTTED_QUAD.match(value) or any(int(p) > 255 for p in value.split(".")):
        raise MalformedIP(
            f"{value!r} is not an IPv4 address in dotted-decimal form (four decimal numbers "
            "0-255) or an IPv6 address"
        )
    canonical = ".".join(str(int(p)) for p in value.split("."))
    if canonical != value:
        raise MalformedIP(
            f"{value!r} is not in canonical form (no leading zeros, RFC 1123); "
            f"write it as {canonical}"
        )
    return value


def parse_ip_range(text: str) -> str:
    """A CIDR grant in its canonical text (`10.0.0.0/8`, `2001:db8::/32`); a bare address
    is its /32 or /128. Host bits set, mapped IPv6 ranges and garbage are refused."""
    try:
        net = ipaddress.ip_network(text.strip(), strict=True)
    except ValueError as exc:
        if "host bits set" in str(exc):
            fixed = ipaddress.ip_network(text.strip(), strict=False)
            raise IdentifierError(
                f"IP range {text!r} has host bits set; write the network as {fixed}"
            ) from None
        raise IdentifierError(f"{text!r} is not an IP range in CIDR form: {exc}") from None
    if isinstance(net, ipaddress.IPv6Network) and net.subnet_of(
        ipaddress.IPv6Network("::ffff:0:0/96")
    ):
        raise IdentifierError(
            f"IP range {text!r} is IPv4-mapped IPv6; grant the IPv4 range instead"
        )
    return str(net)


def ip_in_ranges(address: str, ranges: Iterable[str]) -> bool:
    """Whether the canonical address lies in one of the CIDR ranges (same IP version)."""
    ip = ipaddress.ip_address(address)
    for text in ranges:
        net = ipaddress.ip_network(text, strict=False)
        if net.version == ip.version and ip in net:
            return True
    return False


@dataclass(frozen=True)
class DomainRule:
    domain: str
    include_subdomains: bool = True
    allow_wildcard: bool = True


def normalise_dns_name(value: str, *, allow_wildcard: bool = True) -> str:
    """Lower-cased A-label form of `value`, validated; a single leading `*.` is kept."""
    if not isinstance(value, str) or not value:
        raise IdentifierError("identifier value must be a non-empty string")
    name = value.strip()
    if name != value:
        raise IdentifierError(f"{value!r} contains whitespace")
    if name.endswith("."):
        raise IdentifierError(f"{value!r} must not end with a dot")
    wildcard = name.startswith("*.")
    if wildcard:
        if not allow_wildcard:
            raise IdentifierError(f"{value!r}: wildcards are not allowed here")
        name = name[2:]
    if "*" in name:
        raise IdentifierError(f"{value!r}: only a single leading '*.' label may be a wildcard")
    try:
        ascii_name = idna.encode(name, uts46=True).decode("ascii").lower()
    except idna.IDNAError as exc:
        raise IdentifierError(f"{value!r} is not a valid DNS name: {exc}") from None
    if len(ascii_name) > 253:
        raise IdentifierError(f"{value!r} is longer than 253 characters")
    labels = ascii_name.split(".")
    if len(labels) < 2:
        raise IdentifierError(f"{value!r} must have at least two labels")
    for label in labels:
        if not _LABEL.match(label):
            raise IdentifierError(f"{value!r} has an invalid label {label!r}")
    if labels[-1].isdigit() or _looks_like_ip(ascii_name):
        raise IdentifierError(
            f"{value!r} is an IP address, not a DNS name (use an identifier of type ip)"
        )
    return ("*." if wildcard else "") + ascii_name


def _looks_like_ip(name: str) -> bool:
    return all(part.isdigit() for part in name.split("."))


def _covers(rule: DomainRule, base: str) -> bool:
    if base == rule.domain:
        return True
    return rule.include_subdomains and base.endswith("." + rule.domain)


def is_allowed(name: str, rules: Iterable[DomainRule], *, any_domain: bool = False) -> bool:
    """`name` is normalised (see normalise_dns_name); without `any_domain`, no rules = no names."""
    if any_domain:
        return True
    wildcard = name.startswith("*.")
    base = name[2:] if wildcard else name
    for rule in rules:
        if wildcard:
            # `*.x` covers names below x: the rule must allow wildcards AND subdomains.
            if rule.allow_wildcard and rule.include_subdomains and _covers(rule, base):
                return True
        elif _covers(rule, base):
            return True
    return False


class Grant(Protocol):
    """What the allow-list check needs of a pre-registration (the store's `Registration`)."""

    @property
    def name(self) -> str: ...
    @property
    def kid(self) -> str: ...
    @property
    def any_domain(self) -> bool: ...
    @property
    def domains(self) -> Sequence[DomainRule]: ...
    @property
    def ip_ranges(self) -> Sequence[str]: ...
    @property
    def grants_nothing(self) -> bool: ...


def parse_identifiers(payload: dict[str, Any]) -> list[Identifier]:
    """Normalised, de-duplicated identifiers; every bad identifier is reported at once."""
    raw = payload.get("identifiers")
    if not isinstance(raw, list) or not raw:
        raise AcmeProblem(ProblemType.MALFORMED, "identifiers must be a non-empty list")
    if len(raw) > MAX_IDENTIFIERS:
        raise AcmeProblem(
            ProblemType.REJECTED_IDENTIFIER,
            f"an order may have at most {MAX_IDENTIFIERS} identifiers",
        )
    idents: list[Identifier] = []
    problems: list[dict[str, Any]] = []
    kinds: set[ProblemType] = set()
    for ident in raw:
        if not isinstance(ident, dict) or not isinstance(ident.get("value"), str):
            raise AcmeProblem(
                ProblemType.MALFORMED, "each identifier must be an object with type and value"
            )
        value, kind = ident["value"], ident.get("type")
        if kind not in (IdentifierType.DNS, IdentifierType.IP):
            problems.append(
                identifier_subproblem(
                    ProblemType.UNSUPPORTED_IDENTIFIER,
                    value,
                    f"identifier type {kind!r} is not supported; only dns and ip",
                    kind if isinstance(kind, str) else "dns",
                )
            )
            kinds.add(ProblemType.UNSUPPORTED_IDENTIFIER)
            continue
        try:
            if kind == IdentifierType.IP:
                parsed = Identifier(IdentifierType.IP, normalise_ip(value))
            else:
                parsed = Identifier(IdentifierType.DNS, normalise_dns_name(value))
        except IdentifierError as exc:
            problem = (
                ProblemType.MALFORMED
                if isinstance(exc, MalformedIP)
                else ProblemType.REJECTED_IDENTIFIER
            )
            problems.append(identifier_subproblem(problem, value, str(exc), kind))
            kinds.add(problem)
            continue
        if parsed not in idents:
            idents.append(parsed)
    if problems:
        # The most specific cause wins: malformed, then rejected, then unsupported.
        top = next(
            t
            for t in (
                ProblemType.MALFORMED,
                ProblemType.REJECTED_IDENTIFIER,
                ProblemType.UNSUPPORTED_IDENTIFIER,
            )
            if t in kinds
        )
        raise AcmeProblem(
            top,
            f"{len(problems)} identifier(s) cannot be issued: "
            + "; ".join(p["detail"] for p in problems),
            subproblems=problems,
        )
    return idents


def _typed(items: Sequence[str | Identifier]) -> list[Identifier]:
    return [i if isinstance(i, Identifier) else Identifier.of(i) for i in items]


def _refuse(refused: list[Identifier], detail: str, each: Callable[[Identifier], str]) -> None:
    rejected = ProblemType.REJECTED_IDENTIFIER
    raise AcmeProblem(
        rejected,
        f"{', '.join(i.value for i in refused)} {detail}",
        subproblems=[identifier_subproblem(rejected, i.value, each(i), i.type) for i in refused],
    )


def check_allowed(
    identifiers: Sequence[str | Identifier],
    grant: Grant | None,
    *,
    open_ip_ranges: Sequence[str] = (),
) -> None:
    """Refuse identifiers the pre-registration does not grant, one subproblem each.

    Open mode (no registration) allows every well-formed DNS name; a registration grants
    its listed domains, or every name only with its explicit any_domain grant. IP
    addresses are granted only by IP ranges: the registration's, or in open mode the
    server's `open_ip_ranges` (none by default); `any_domain` never grants an address.
    """
    idents = _typed(identifiers)
    ips = [i for i in idents if i.type is IdentifierType.IP]
    names = [i.value for i in idents if i.type is IdentifierType.DNS]
    if grant is None:
        refused_ips = [i for i in ips if not ip_in_ranges(i.value, open_ip_ranges)]
        if refused_ips:
            granted = (
                f"outside the IP ranges granted without a pre-registration "
                f"({', '.join(open_ip_ranges)})"
                if open_ip_ranges
                else "no IP range is granted to accounts without a pre-registration"
            )
            _refuse(
                refused_ips,
                f"not allowed: {granted}",
                lambda i: f"{i.value} is not allowed: {granted}",
            )
        return
    rejected = ProblemType.REJECTED_IDENTIFIER
    if grant.grants_nothing:
        detail = f"no domain was granted to pre-registration {grant.name!r} (nor an IP range)"
        raise AcmeProblem(
            rejected,
            f"{', '.join(i.value for i in idents)} not allowed: {detail}",
            subproblems=[
                identifier_subproblem(
                    rejected, i.value, f"{i.value} is not allowed: {detail}", i.type
                )
                for i in idents
            ],
        )
    refused = [] if grant.any_domain else [n for n in names if not is_allowed(n, grant.domains)]
    refused_ips = [i for i in ips if not ip_in_ranges(i.value, grant.ip_ranges)] if ips else []
    if refused and not refused_ips:
        allowed = ", ".join(_describe(d) for d in grant.domains) or "none"
        raise AcmeProblem(
            rejected,
            f"{', '.join(refused)} not allowed for pre-registration {grant.kid!r} "
            f"(allowed domains: {allowed})",
            subproblems=[
                identifier_subproblem(
                    rejected,
                    n,
                    f"{n} is not within the allowed domains of pre-registration {grant.kid!r}",
                )
                for n in refused
            ],
        )
    if refused_ips:
        both = [Identifier(IdentifierType.DNS, n) for n in refused] + refused_ips
        domains = ", ".join(_describe(d) for d in grant.domains) or "none"
        if grant.any_domain:
            domains = "any name"
        ranges = ", ".join(grant.ip_ranges) or "none"
        _refuse(
            both,
            f"not allowed for pre-registration {grant.kid!r} (allowed domains: {domains}; "
            f"allowed IP ranges: {ranges}; an IP address needs an IP range grant)",
            lambda i: (
                f"{i.value} is not within the allowed "
                f"{'IP ranges' if i.type is IdentifierType.IP else 'domains'} "
                f"of pre-registration {grant.kid!r}"
            ),
        )


def check_issuable(identifiers: Sequence[str | Identifier], permits: Callable[[str], bool]) -> None:
    """Refuse names outside the CA's X.509 name constraints (`permits`) up front: a leaf
    for them would be signed, then rejected by every verifier."""
    refused = [i for i in _typed(identifiers) if not permits(i.value)]
    if refused:
        detail = "outside the name constraints of this CA"
        _refuse(
            refused,
            f"{'is' if len(refused) == 1 else 'are'} {detail}",
            lambda i: f"{i.value} is {detail}",
        )


def _describe(rule: DomainRule) -> str:
    """How a rule reads in a refusal: `example.com`, `*.example.com` or `example.com (exact)`."""
    if not rule.include_subdomains:
        return f"{rule.domain} (exact)"
    return rule.domain if rule.allow_wildcard else f"{rule.domain} (no wildcard)"
