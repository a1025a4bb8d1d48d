"""The revoke annotation's pure parts: reason parsing, requests from Secret metadata, Events."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from acme_operator.revoke import outcome_event, request_of

from acme_server.domain.revocation import ALLOWED_REASONS, allowed_text, reason_from_text
from acme_server.store.operator_facade import Refusal, RevocationOutcome, Revoked

NOW = datetime(2026, 11, 30, 12, 0, tzinfo=UTC)


@pytest.mark.parametrize(
    ("text", "code"),
    [
        ("keyCompromise", 1),
        ("KEYCOMPROMISE", 1),
        (" superseded ", 4),
        ("unspecified", 0),
        ("affiliationChanged", 3),
        ("cessationOfOperation", 5),
        ("5", 5),
        ("0", 0),
        ("2", None),  # cACompromise: a CA's reason, not a subscriber's
        ("6", None),
        ("cACompromise", None),
        ("certificateHold", None),
        ("", None),
        ("-1", None),
        ("\uff11", None),  # a full-width digit is not a code
        ("0001", None),
    ],
)
def test_reason_from_text(text: str, code: int | None) -> None:
    assert reason_from_text(text) == code


def test_allowed_text_names_every_reason() -> None:
    text = allowed_text()
    for code, name in ALLOWED_REASONS.items():
        assert f"{name} ({code})" in text
    assert set(ALLOWED_REASONS) == {0, 1, 3, 4, 5}


def _meta(**annotations: str) -> dict[str, object]:
    return {
        "name": "web-cert-0a",
        "namespace": "ns",
        "uid": "u1",
        "annotations": {"acme-gateway.io/serial": "0a", **annotations},
        "ownerReferences": [
            {"apiVersion": "acme-gateway.io/v1alpha1", "kind": "AcmeRegistration",
             "name": "web", "uid": "r1"},
        ],
    }  # fmt: skip


def test_request_of() -> None:
    assert request_of(_meta()) is None  # no annotation
    req = request_of(_meta(**{"acme-gateway.io/revoke": "keyCompromise"}))
    assert req is not None
    assert (req.registration, req.serial, req.value) == ("web", "0a", "keyCompromise")
    handled = {"acme-gateway.io/revoke": "x", "acme-gateway.io/revoke-handled": "x"}
    assert request_of(_meta(**handled)) is None
    changed = {"acme-gateway.io/revoke": "y", "acme-gateway.io/revoke-handled": "x"}
    assert request_of(_meta(**changed)) is not None


def test_outcome_events() -> None:
    req = request_of(_meta(**{"acme-gateway.io/revoke": "keyCompromise"}))
    assert req is not None
    cur = Revoked("0a", ["a.example"], NOW, 1, NOW)
    type_, reason, message = outcome_event(req, RevocationOutcome(None, "revoked", cur))
    assert (type_, reason) == ("Normal", "CertificateRevoked")
    assert "0a" in message and "keyCompromise" in message and "web-cert-0a" in message
    type_, reason, message = outcome_event(
        req, RevocationOutcome(Refusal.ALREADY_REVOKED, "already", cur)
    )
    assert (type_, reason) == ("Warning", "AlreadyRevoked")
    assert "2026-11-30T12:00:00Z" in message
    type_, reason, message = outcome_event(
        req, RevocationOutcome(Refusal.EXPIRED, "expired", Revoked("0a", [], None, None, NOW))
    )
    assert (type_, reason) == ("Warning", "RevocationRefused") and "expired" in message
