"""newOrder's identifier rules as core calls: parsing, the allow-list and the CA's constraints."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import pytest

from acme_server.domain.identifiers import (
    MAX_IDENTIFIERS,
    DomainRule,
    check_allowed,
    check_issuable,
    parse_identifiers,
)
from acme_server.domain.problems import AcmeProblem, ProblemType

REJECTED = "urn:ietf:params:acme:error:rejectedIdentifier"


@dataclass(frozen=True)
class Grant:
    name: str = "team"
    kid: str = "kid-1"
    any_domain: bool = False
    domains: tuple[DomainRule, ...] = field(default=())

    @property
    def grants_nothing(self) -> bool:
        return not self.any_domain and not self.domains


def dns(*values: str) -> dict[str, Any]:
    return {"identifiers": [{"type": "dns", "value": v} for v in values]}


def test_names_are_normalised_and_deduplicated_in_order() -> None:
    assert parse_identifiers(dns("B.Example.com", "a.example.com", "b.example.com")) == [
        "b.example.com",
        "a.example.com",
    ]
    assert parse_identifiers(dns("*.example.com")) == ["*.example.com"]


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
        parse_identifiers({"identifiers": [{"type": "ip", "value": "192.0.2.1"}]})
    problem = info.value
    assert problem.type is ProblemType.UNSUPPORTED_IDENTIFIER
    assert problem.subproblems is not None
    assert problem.subproblems[0]["identifier"] == {"type": "dns", "value": "192.0.2.1"}


def test_every_bad_identifier_is_reported_and_rejection_wins() -> None:
    payload = {
        "identifiers": [
            {"type": "ip", "value": "192.0.2.1"},
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
