"""AllowedDomain objects as the grant the store enforces.

No grant, no names: a registration without a valid AllowedDomain grants nothing (the store
refuses every order), an `anyDomain: true` AllowedDomain is the one explicit "any name" grant,
and a wildcard needs both includeSubdomains and allowWildcard (objects stored before the CRD
refused that pair are narrowed here, never widened). An AllowedDomain with `ipRange`
grants the addresses of one CIDR (RFC 8738 ip identifiers); `anyDomain` never grants
addresses.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from acme_operator.views import ObjectView
from acme_server.domain.identifiers import DomainRule, normalise_dns_name, parse_ip_range


@dataclass(frozen=True)
class DomainEntry:
    name: str  # the AllowedDomain object's name
    domain: str  # as written in spec.domain ("" for anyDomain)
    rule: DomainRule | None
    error: str | None
    any_domain: bool = False
    ip_range: str | None = None  # canonical CIDR of an `ipRange` grant
    field: str = "spec.domain"  # what an error message names
    # The AllowedDomain as last seen (for the domain sweep), set by the index.
    view: ObjectView | None = None

    @property
    def valid(self) -> bool:
        return self.error is None


def entry_from_spec(name: str, spec: Mapping[str, Any]) -> DomainEntry:
    domain = str(spec.get("domain") or "")
    if spec.get("ipRange"):
        text = str(spec["ipRange"])
        field = "spec.ipRange"
        if domain or spec.get("anyDomain") is True:
            error = "ipRange cannot be combined with domain or anyDomain; remove one"
            return DomainEntry(name, text, None, error, field=field)
        try:
            cidr = parse_ip_range(text)
        except ValueError as exc:
            error = f"{exc}; write a CIDR like 10.0.0.0/8"
            return DomainEntry(name, text, None, error, field=field)
        return DomainEntry(name, text, None, None, ip_range=cidr, field=field)
    if spec.get("anyDomain") is True:
        if domain:
            return DomainEntry(
                name, domain, None, "anyDomain cannot be combined with domain; remove one"
            )
        return DomainEntry(name, "", None, None, any_domain=True)
    include = bool(spec.get("includeSubdomains", True))
    wildcard = include and bool(spec.get("allowWildcard", True))
    try:
        normalised = normalise_dns_name(domain, allow_wildcard=False)
    except ValueError as exc:
        return DomainEntry(name, domain, None, f"{exc}; write a DNS name like example.com")
    return DomainEntry(name, domain, DomainRule(normalised, include, wildcard), None)


@dataclass(frozen=True)
class AllowList:
    rules: list[DomainRule]
    invalid: list[DomainEntry]
    any_domain: bool = False
    ip_ranges: tuple[str, ...] = ()

    @property
    def grants_nothing(self) -> bool:
        """No valid AllowedDomain: the store refuses every name."""
        return not self.any_domain and not self.rules and not self.ip_ranges


def allow_list(entries: Iterable[DomainEntry]) -> AllowList:
    rules: dict[str, DomainRule] = {}
    invalid = []
    any_domain = False
    ranges: set[str] = set()
    for e in sorted(entries, key=lambda e: e.name):
        if e.error is not None:
            invalid.append(e)
        elif e.any_domain:
            any_domain = True
        elif e.ip_range is not None:
            ranges.add(e.ip_range)
        elif e.rule is not None:
            rules[e.rule.domain] = e.rule
    return AllowList([rules[k] for k in sorted(rules)], invalid, any_domain, tuple(sorted(ranges)))
