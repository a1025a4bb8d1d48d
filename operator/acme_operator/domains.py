"""AllowedDomain objects as the grant the store enforces.

No grant, no names: a registration without a valid AllowedDomain grants nothing (the store
refuses every order), an `anyDomain: true` AllowedDomain is the one explicit "any name" grant,
and a wildcard needs both includeSubdomains and allowWildcard (objects stored before the CRD
refused that pair are narrowed here, never widened).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from acme_operator.views import ObjectView
from acme_server.domain.identifiers import DomainRule, normalise_dns_name


@dataclass(frozen=True)
class DomainEntry:
    name: str  # the AllowedDomain object's name
    domain: str  # as written in spec.domain ("" for anyDomain)
    rule: DomainRule | None
    error: str | None
    any_domain: bool = False
    # The AllowedDomain as last seen (for the domain sweep), set by the index.
    view: ObjectView | None = None

    @property
    def valid(self) -> bool:
        return self.error is None


def entry_from_spec(name: str, spec: Mapping[str, Any]) -> DomainEntry:
    domain = str(spec.get("domain") or "")
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

    @property
    def grants_nothing(self) -> bool:
        """No valid AllowedDomain: the store refuses every name."""
        return not self.any_domain and not self.rules


def allow_list(entries: Iterable[DomainEntry]) -> AllowList:
    rules: dict[str, DomainRule] = {}
    invalid = []
    any_domain = False
    for e in sorted(entries, key=lambda e: e.name):
        if e.error is not None:
            invalid.append(e)
        elif e.any_domain:
            any_domain = True
        elif e.rule is not None:
            rules[e.rule.domain] = e.rule
    return AllowList([rules[k] for k in sorted(rules)], invalid, any_domain)
