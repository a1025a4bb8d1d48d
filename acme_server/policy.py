"""Which DNS identifiers are well-formed, and which a pre-registration may request.

No grant, no names: a name is allowed only by an explicit "any name" grant, or when it
equals a listed name or (unless that entry excludes subdomains) is a subdomain of it,
compared on whole DNS labels, case-insensitively, after IDNA (A-label) conversion. An empty
list allows nothing. `*.x` names subdomains of x, so it needs ONE rule that both includes
subdomains and allows wildcards and covers x.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass

import idna

_LABEL = re.compile(r"^(?!-)[a-z0-9-]{1,63}(?<!-)$")


class IdentifierError(ValueError):
    """A DNS identifier that no certificate can carry; the message says why."""


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
        raise IdentifierError(f"{value!r} is an IP address, not a DNS name")
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
