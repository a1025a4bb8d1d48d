"""AllowedDomain objects as allow-list rules for the store.

A registration with no allow-list allows every name (seed semantics), so a registration whose
AllowedDomains are all invalid must not fall back to "everything": it is held suspended.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from acme_server.domain.identifiers import DomainRule, normalise_dns_name


@dataclass(frozen=True)
class DomainEntry:
    name: str  # the AllowedDomain object's name
    domain: str  # as written in spec.domain
    rule: DomainRule | None
    error: str | None


def entry_from_spec(name: str, spec: Mapping[str, Any]) -> DomainEntry:
    domain = str(spec.get("domain") or "")
    include = bool(spec.get("includeSubdomains", True))
    wildcard = bool(spec.get("allowWildcard", True))
    try:
        normalised = normalise_dns_name(domain, allow_wildcard=False)
    except ValueError as exc:
        return DomainEntry(name, domain, None, f"{exc}; write a DNS name like example.com")
    return DomainEntry(name, domain, DomainRule(normalised, include, wildcard), None)


@dataclass(frozen=True)
class AllowList:
    rules: list[DomainRule]
    invalid: list[DomainEntry]

    @property
    def all_invalid(self) -> bool:
        """Every AllowedDomain is broken: allowing everything would be wrong."""
        return bool(self.invalid) and not self.rules


def allow_list(entries: Iterable[DomainEntry]) -> AllowList:
    rules: dict[str, DomainRule] = {}
    invalid = []
    for e in sorted(entries, key=lambda e: e.name):
        if e.rule is None:
            invalid.append(e)
        else:
            rules[e.rule.domain] = e.rule
    return AllowList([rules[k] for k in sorted(rules)], invalid)
