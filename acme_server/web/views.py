"""JSON representations of ACME resources (RFC 8555 section 7.1)."""

from __future__ import annotations

from typing import Any

from acme_server.domain.statuses import AuthorizationStatus, ChallengeStatus, OrderStatus
from acme_server.store.accounts import Account
from acme_server.store.orders import Authorization, Challenge, Order
from acme_server.timefmt import rfc3339
from acme_server.web.urls import Urls


def account_json(account: Account, urls: Urls) -> dict[str, Any]:
    body: dict[str, Any] = {
        "status": account.status,
        "contact": account.contact,
        "termsOfServiceAgreed": account.tos_agreed,
        "orders": urls.orders(account.id),
        "createdAt": rfc3339(account.created_at),
    }
    if account.eab_binding is not None:
        body["externalAccountBinding"] = account.eab_binding
    return body


def challenge_json(chal: Challenge, urls: Urls) -> dict[str, Any]:
    body: dict[str, Any] = {
        "type": chal.type,
        "url": urls.challenge(chal.id),
        "status": chal.status,
        "token": chal.token,
    }
    if chal.validated_at is not None:
        body["validated"] = rfc3339(chal.validated_at)
    if chal.error is not None:
        body["error"] = chal.error
    return body


def authz_json(authz: Authorization, urls: Urls) -> dict[str, Any]:
    chals = authz.challenges
    if authz.status == AuthorizationStatus.VALID:
        # Only the challenge that proved control is relevant once valid.
        chals = tuple(c for c in chals if c.status == ChallengeStatus.VALID) or chals
    body: dict[str, Any] = {
        "identifier": {"type": authz.identifier_type, "value": authz.identifier_value},
        "status": authz.status,
        "expires": rfc3339(authz.expires_at),
        "challenges": [challenge_json(c, urls) for c in chals],
    }
    if authz.wildcard:
        body["wildcard"] = True
    return body


def order_json(order: Order, urls: Urls) -> dict[str, Any]:
    body: dict[str, Any] = {
        "status": order.status,
        "expires": rfc3339(order.expires_at),
        "identifiers": order.identifiers,
        "authorizations": [urls.authz(a) for a in order.authz_ids],
        "finalize": urls.finalize(order.id),
    }
    if order.profile is not None:
        body["profile"] = order.profile  # draft-ietf-acme-profiles
    if order.not_before is not None:
        body["notBefore"] = rfc3339(order.not_before)
    if order.not_after is not None:
        body["notAfter"] = rfc3339(order.not_after)
    if order.error is not None:
        body["error"] = order.error
    if order.certificate_id is not None and order.status == OrderStatus.VALID:
        body["certificate"] = urls.certificate(order.certificate_id)
    return body
