"""Allowed-domain semantics of the seed product, and DNS identifier validation."""

from __future__ import annotations

import pytest

from acme_server.policy import DomainRule, IdentifierError, is_allowed, normalise_dns_name

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


def test_empty_list_allows_everything() -> None:
    assert is_allowed("anything.example.org", [])
    assert is_allowed("*.anything.example.org", [])


def test_subdomains_excluded() -> None:
    rules = [DomainRule("example.com", include_subdomains=False)]
    assert is_allowed("example.com", rules)
    assert not is_allowed("www.example.com", rules)


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
