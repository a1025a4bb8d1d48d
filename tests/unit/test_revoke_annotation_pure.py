"""The revoke annotation's pure parts: reason parsing, requests from Secret metadata, Events."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from types import SimpleNamespace
from typing import Any

import pytest
from acme_operator import metrics
from acme_operator.revoke import handle, outcome_event, request_of

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


class _Store:
    def __init__(self, outcome: RevocationOutcome) -> None:
        self.outcome = outcome
        self.calls: list[tuple[str, str, int]] = []

    async def revoke_certificate(self, registration: str, serial: str, code: int) -> Any:
        self.calls.append((registration, serial, code))
        return self.outcome


class _Kube:
    def __init__(self) -> None:
        self.events: list[str] = []

    async def post_event(self, obj: Any, *, type_: str, reason: str, **_: Any) -> None:
        self.events.append(reason)

    async def patch_secret(self, namespace: str, name: str, patch: Any) -> None:
        pass


def _revocations(outcome: str, reason: str) -> float:
    value = metrics.REGISTRY.get_sample_value(
        "acme_operator_revocations_total", {"outcome": outcome, "reason": reason}
    )
    return value or 0.0


def test_handled_annotations_are_counted_by_outcome_and_reason() -> None:
    """Revocations made through Kubernetes show on the operator's metrics (the server's
    counter only sees ACME revokeCert)."""
    req = request_of(_meta(**{"acme-gateway.io/revoke": "keyCompromise"}))
    bad = request_of(_meta(**{"acme-gateway.io/revoke": "cACompromise"}))
    assert req is not None and bad is not None
    cur = Revoked("0a", ["a.example"], NOW, 1, NOW)
    store = _Store(RevocationOutcome(None, "revoked", cur))
    ctx: Any = SimpleNamespace(store=store, kube=_Kube())
    before = _revocations("CertificateRevoked", "keyCompromise")
    before_bad = _revocations("InvalidRevocationReason", "none")
    asyncio.run(handle(ctx, req))
    asyncio.run(handle(ctx, bad))
    assert store.calls == [("ns/web", "0a", 1)]  # the bad reason never reached the store
    assert ctx.kube.events[:2] == ["CertificateRevoked", "CertificateRevoked"]
    assert _revocations("CertificateRevoked", "keyCompromise") == before + 1
    assert _revocations("InvalidRevocationReason", "none") == before_bad + 1
