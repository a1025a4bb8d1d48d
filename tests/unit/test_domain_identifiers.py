"""newOrder's identifier rules as core calls: parsing, the allow-list and the CA's constraints."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

import pytest

from acme_server.domain.identifiers import (
    MAX_IDENTIFIERS,
    DomainRule,
    Identifier,
    IdentifierError,
    IdentifierType,
    check_allowed,
    check_issuable,
    parse_identifiers,
    parse_ip_range,
)
from acme_server.domain.lifecycle import challenge_types
from acme_server.domain.problems import AcmeProblem, ProblemType
from acme_server.domain.statuses import ChallengeType

REJECTED = "urn:ietf:params:acme:error:rejectedIdentifier"


@dataclass(frozen=True)
class Grant:
    name: str = "team"
    kid: str = "kid-1"
    any_domain: bool = False
    domains: tuple[DomainRule, ...] = field(default=())
    ip_ranges: tuple[str, ...] = ()

    @property
    def grants_nothing(self) -> bool:
        return not self.any_domain and not self.domains and not self.ip_ranges


def dns(*values: str) -> dict[str, Any]:
    return {"identifiers": [{"type": "dns", "value": v} for v in values]}


def test_names_are_normalised_and_deduplicated_in_order() -> None:
    parsed = parse_identifiers(dns("B.Example.com", "a.example.com", "b.example.com"))
    assert [(i.type, i.value) for i in parsed] == [
        ("dns", "b.example.com"),
        ("dns", "a.example.com"),
    ]
    assert [i.value for i in parse_identifiers(dns("*.example.com"))] == ["*.example.com"]


@pytest.mark.parametrize("payload", [{}, {"identifiers": []}, {"identifiers": "a.example"}])
def test_missing_identifiers_are_malformed(payload: dict[str, Any]) -> None:
    with pytest.raises(AcmeProblem) as info:
        parse_identifiers(payload)
    assert info.value.type is ProblemType.MALFORMED


def test_identifier_without_string_value_is_malformed() -> None:
    with pytest.raises(AcmeProblem) as info:
        parse_identifiers({"identifiers": [{"type": "dns", "value": 3}]})
    assert info.value.type is ProblemType.MALFORMED


def test_too_many_identifiers_are_rejected() -> None:
    names = [f"h{i}.example.com" for i in range(MAX_IDENTIFIERS + 1)]
    with pytest.raises(AcmeProblem) as info:
        parse_identifiers(dns(*names))
    assert info.value.type is ProblemType.REJECTED_IDENTIFIER
    assert len(parse_identifiers(dns(*names[:MAX_IDENTIFIERS]))) == MAX_IDENTIFIERS


def test_unsupported_types_alone_are_unsupported_identifier() -> None:
    with pytest.raises(AcmeProblem) as info:
        parse_identifiers({"identifiers": [{"type": "email", "value": "a@example.com"}]})
    problem = info.value
    assert problem.type is ProblemType.UNSUPPORTED_IDENTIFIER
    assert problem.subproblems is not None
    assert problem.subproblems[0]["identifier"] == {"type": "email", "value": "a@example.com"}


def test_every_bad_identifier_is_reported_and_rejection_wins() -> None:
    payload = {
        "identifiers": [
            {"type": "email", "value": "a@example.com"},
            {"type": "dns", "value": "bad_label.example.com"},
            {"type": "dns", "value": "ok.example.com"},
        ]
    }
    with pytest.raises(AcmeProblem) as info:
        parse_identifiers(payload)
    problem = info.value
    assert problem.type is ProblemType.REJECTED_IDENTIFIER
    assert problem.detail.startswith("2 identifier(s) cannot be issued: ")
    assert [p["type"].rsplit(":", 1)[1] for p in problem.subproblems or []] == [
        "unsupportedIdentifier",
        "rejectedIdentifier",
    ]


def test_open_mode_and_any_domain_allow_everything() -> None:
    check_allowed(["x.example.org"], None)
    check_allowed(["x.example.org"], Grant(any_domain=True))


def test_a_registration_without_domains_grants_nothing() -> None:
    with pytest.raises(AcmeProblem) as info:
        check_allowed(["a.example.com", "b.example.com"], Grant())
    problem = info.value
    assert problem.type is ProblemType.REJECTED_IDENTIFIER
    assert "no domain was granted to pre-registration 'team'" in problem.detail
    assert [p["identifier"]["value"] for p in problem.subproblems or []] == [
        "a.example.com",
        "b.example.com",
    ]


def test_only_refused_names_get_subproblems() -> None:
    grant = Grant(domains=(DomainRule("example.com"), DomainRule("exact.org", False, False)))
    check_allowed(["a.example.com", "exact.org"], grant)
    with pytest.raises(AcmeProblem) as info:
        check_allowed(["a.example.com", "sub.exact.org"], grant)
    problem = info.value
    assert problem.detail == (
        "sub.exact.org not allowed for pre-registration 'kid-1' "
        "(allowed domains: example.com, exact.org (exact))"
    )
    assert problem.subproblems == [
        {
            "type": REJECTED,
            "detail": "sub.exact.org is not within the allowed domains of pre-registration 'kid-1'",
            "status": 400,
            "identifier": {"type": "dns", "value": "sub.exact.org"},
        }
    ]


def test_names_outside_the_ca_constraints_are_rejected() -> None:
    check_issuable(["a.example.com"], lambda name: True)
    with pytest.raises(AcmeProblem) as info:
        check_issuable(["a.example.com", "b.other.org"], lambda name: name.endswith(".example.com"))
    assert info.value.type is ProblemType.REJECTED_IDENTIFIER
    assert info.value.detail == "b.other.org is outside the name constraints of this CA"


# --- RFC 8738 IP identifiers ------------------------------------------------------------


def ip(*values: str) -> dict[str, Any]:
    return {"identifiers": [{"type": "ip", "value": v} for v in values]}


@pytest.mark.parametrize("value", ["192.0.2.1", "0.0.0.0", "2001:db8::1", "::1", "fe80::1:2"])
def test_canonical_ip_identifiers_parse(value: str) -> None:
    assert parse_identifiers(ip(value)) == [Identifier(IdentifierType.IP, value)]


@pytest.mark.parametrize(
    ("value", "canonical"),
    [
        ("192.0.2.01", "192.0.2.1"),
        ("010.0.0.1", "10.0.0.1"),
        ("2001:DB8::1", "2001:db8::1"),
        ("2001:db8:0:0:0:0:0:1", "2001:db8::1"),
        ("2001:0db8::1", "2001:db8::1"),
        ("0:0:0:0:0:0:0:1", "::1"),
    ],
)
def test_non_canonical_ip_is_malformed_and_names_the_canonical_form(
    value: str, canonical: str
) -> None:
    with pytest.raises(AcmeProblem) as info:
        parse_identifiers(ip(value))
    problem = info.value
    assert problem.type is ProblemType.MALFORMED
    assert f"write it as {canonical}" in problem.detail
    assert problem.subproblems is not None
    assert problem.subproblems[0]["identifier"] == {"type": "ip", "value": value}


@pytest.mark.parametrize(
    "value", ["192.0.2", "192.0.2.256", "0x7f.0.0.1", "example.com", "fe80::1%eth0", "10.0.0.0/8"]
)
def test_not_an_address_is_malformed(value: str) -> None:
    with pytest.raises(AcmeProblem) as info:
        parse_identifiers(ip(value))
    assert info.value.type is ProblemType.MALFORMED


@pytest.mark.parametrize("value", ["*.192.0.2.1", "192.0.2.*", "*"])
def test_ip_identifiers_are_never_wildcards(value: str) -> None:
    with pytest.raises(AcmeProblem) as info:
        parse_identifiers(ip(value))
    assert info.value.type is ProblemType.REJECTED_IDENTIFIER
    assert "never a wildcard" in info.value.detail


def test_ipv4_mapped_ipv6_is_refused_naming_the_ipv4_form() -> None:
    with pytest.raises(AcmeProblem) as info:
        parse_identifiers(ip("::ffff:10.0.0.1"))
    assert info.value.type is ProblemType.REJECTED_IDENTIFIER
    assert "request the IPv4 address 10.0.0.1" in info.value.detail


@pytest.mark.parametrize("value", ["192.0.2.1", "10.0.0.1"])
def test_dns_names_that_look_like_ips_stay_refused(value: str) -> None:
    with pytest.raises(AcmeProblem) as info:
        parse_identifiers(dns(value))
    assert info.value.type is ProblemType.REJECTED_IDENTIFIER
    assert "use an identifier of type ip" in info.value.detail


def test_ips_need_a_range_grant_any_domain_is_not_one() -> None:
    addr = Identifier(IdentifierType.IP, "10.1.2.3")
    for grant in (None, Grant(any_domain=True), Grant(domains=(DomainRule("example.com"),))):
        with pytest.raises(AcmeProblem) as info:
            check_allowed([addr], grant)
        assert info.value.type is ProblemType.REJECTED_IDENTIFIER
        assert info.value.subproblems is not None
        assert info.value.subproblems[0]["identifier"] == {"type": "ip", "value": "10.1.2.3"}
    check_allowed([addr], Grant(ip_ranges=("10.0.0.0/8",)))
    check_allowed([addr], None, open_ip_ranges=("10.1.2.0/24",))
    with pytest.raises(AcmeProblem):
        check_allowed([addr], Grant(ip_ranges=("10.1.3.0/24", "::/0")))
    # a DNS grant still works beside a range grant, and each refusal names its kind
    grant = Grant(domains=(DomainRule("example.com"),), ip_ranges=("2001:db8::/32",))
    check_allowed(["a.example.com", Identifier(IdentifierType.IP, "2001:db8::5")], grant)
    with pytest.raises(AcmeProblem) as info:
        check_allowed(["a.example.org", addr], grant)
    assert "allowed IP ranges: 2001:db8::/32" in info.value.detail
    assert [p["identifier"] for p in info.value.subproblems or []] == [
        {"type": "dns", "value": "a.example.org"},
        {"type": "ip", "value": "10.1.2.3"},
    ]


def test_ip_range_grants_are_canonical_cidrs() -> None:
    assert parse_ip_range("10.0.0.0/8") == "10.0.0.0/8"
    assert parse_ip_range("2001:DB8::/32") == "2001:db8::/32"
    assert parse_ip_range("192.0.2.7") == "192.0.2.7/32"
    with pytest.raises(
        IdentifierError, match=re.escape("host bits set; write the network as 10.0.0.0/8")
    ):
        parse_ip_range("10.1.2.3/8")
    with pytest.raises(IdentifierError, match="IPv4-mapped"):
        parse_ip_range("::ffff:0:0/96")
    with pytest.raises(IdentifierError, match="not an IP range"):
        parse_ip_range("example.com")


def test_ip_authorizations_offer_http01_and_tls_alpn01_never_dns01() -> None:
    types = challenge_types(False, ip=True)
    assert ChallengeType.DNS_01 not in types
    assert set(types) == {ChallengeType.HTTP_01, ChallengeType.TLS_ALPN_01}
