"""Allowed-domain semantics (no grant, no names), and DNS identifier validation."""

from __future__ import annotations

import pytest

from acme_server.domain.identifiers import (
    DomainRule,
    IdentifierError,
    is_allowed,
    normalise_dns_name,
)

EXAMPLE = [DomainRule("example.com")]


@pytest.mark.parametrize(
    ("name", "allowed"),
    [
        ("example.com", True),
        ("cm.example.com", True),
        ("a.b.example.com", True),
        ("*.example.com", True),
        ("*.cm.example.com", True),
        ("badexample.com", False),  # label boundary: must not match by suffix
        ("example.com.evil.net", False),
        ("nexusgroup.se", False),
        ("com", False),
    ],
)
def test_seed_semantics(name: str, allowed: bool) -> None:
    assert is_allowed(normalise_dns_name(name) if name != "com" else name, EXAMPLE) is allowed


def test_empty_list_allows_nothing() -> None:
    # Issue 8 item 1: an empty allow-list used to allow every name.
    assert not is_allowed("anything.example.org", [])
    assert not is_allowed("*.anything.example.org", [])


def test_any_domain_is_an_explicit_grant() -> None:
    assert is_allowed("anything.example.org", [], any_domain=True)
    assert is_allowed("*.anything.example.org", [], any_domain=True)
    assert is_allowed("other.example.net", EXAMPLE, any_domain=True)


def test_subdomains_excluded() -> None:
    rules = [DomainRule("example.com", include_subdomains=False)]
    assert is_allowed("example.com", rules)
    assert not is_allowed("www.example.com", rules)


@pytest.mark.parametrize("allow_wildcard", [True, False])
def test_no_subdomains_means_no_wildcard(allow_wildcard: bool) -> None:
    # Issue 8 item 2: `*.example.com` names subdomains, so a rule excluding them must not
    # allow it, whatever its allow_wildcard says.
    rules = [DomainRule("example.com", include_subdomains=False, allow_wildcard=allow_wildcard)]
    assert not is_allowed("*.example.com", rules)
    assert not is_allowed("*.www.example.com", rules)


def test_wildcard_needs_one_rule_with_both() -> None:
    # Two half-rules do not add up to a wildcard grant.
    rules = [
        DomainRule("example.com", include_subdomains=False, allow_wildcard=True),
        DomainRule("example.com", include_subdomains=True, allow_wildcard=False),
    ]
    assert not is_allowed("*.example.com", rules)
    parent = [DomainRule("example.com"), DomainRule("www.example.com", False, True)]
    assert is_allowed("*.www.example.com", parent)  # the parent rule grants it


def test_wildcard_forbidden_by_rule() -> None:
    rules = [DomainRule("example.com", allow_wildcard=False)]
    assert is_allowed("www.example.com", rules)
    assert not is_allowed("*.example.com", rules)


def test_case_and_idna_normalisation() -> None:
    assert normalise_dns_name("WWW.Example.COM") == "www.example.com"
    assert normalise_dns_name("bücher.example") == "xn--bcher-kva.example"
    rules = [DomainRule(normalise_dns_name("Bücher.example"))]
    assert is_allowed(normalise_dns_name("shop.BÜCHER.example"), rules)


@pytest.mark.parametrize(
    ("value", "reason"),
    [
        ("example.com.", "dot"),
        ("", "non-empty"),
        ("*.*.example.com", "wildcard"),
        ("www.*.example.com", "wildcard"),
        ("-bad.example.com", "hyphen"),
        ("bad_.example.com", "U\\+005F"),
        ("192.168.1.1", "IP address"),
        ("localhost", "two labels"),
        ("a" * 64 + ".example.com", "too long"),
        (" example.com", "whitespace"),
    ],
)
def test_invalid_identifiers(value: str, reason: str) -> None:
    with pytest.raises(IdentifierError, match=reason):
        normalise_dns_name(value)


def test_wildcard_refused_where_not_allowed() -> None:
    with pytest.raises(IdentifierError, match="wildcards are not allowed"):
        normalise_dns_name("*.example.com", allow_wildcard=False)
