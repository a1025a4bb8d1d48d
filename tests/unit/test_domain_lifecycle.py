"""The order/authorization/challenge state machine, decided without a database."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from acme_server.domain import lifecycle
from acme_server.domain.lifecycle import InvalidCause, OrderOutcome
from acme_server.domain.problems import AcmeProblem, ProblemType
from acme_server.domain.statuses import (
    AccountStatus,
    AuthorizationStatus,
    ChallengeStatus,
    ChallengeType,
    OrderStatus,
)

A = AuthorizationStatus
NOW = datetime(2026, 1, 1, tzinfo=UTC)
LATER = NOW + timedelta(hours=1)


def test_wildcards_get_only_dns01() -> None:
    assert lifecycle.challenge_types(True) == (ChallengeType.DNS_01,)
    assert lifecycle.challenge_types(False) == (
        ChallengeType.HTTP_01,
        ChallengeType.DNS_01,
        ChallengeType.TLS_ALPN_01,
    )
    assert lifecycle.challenge_types(False) == ("http-01", "dns-01", "tls-alpn-01")


def test_new_order_is_ready_only_when_every_authz_was_reused() -> None:
    assert lifecycle.new_order_status(any_new_authz=True) is OrderStatus.PENDING
    assert lifecycle.new_order_status(any_new_authz=False) is OrderStatus.READY


@pytest.mark.parametrize(
    ("status", "authzs", "expected"),
    [
        (OrderStatus.PENDING, [A.PENDING, A.VALID], None),
        (OrderStatus.PENDING, [A.VALID, A.VALID], OrderOutcome(OrderStatus.READY)),
        (OrderStatus.PENDING, [], None),
        (OrderStatus.READY, [A.VALID], None),
        (
            OrderStatus.PENDING,
            [A.VALID, A.INVALID],
            OrderOutcome(OrderStatus.INVALID, InvalidCause.AUTHZ_FAILED),
        ),
        (
            OrderStatus.PENDING,
            [A.PENDING, A.EXPIRED],
            OrderOutcome(OrderStatus.INVALID, InvalidCause.AUTHZ_FAILED),
        ),
        # A ready order whose authorization was given up cannot be finalized (as Boulder).
        (
            OrderStatus.READY,
            [A.VALID, A.DEACTIVATED],
            OrderOutcome(OrderStatus.INVALID, InvalidCause.AUTHZ_FAILED),
        ),
        (
            OrderStatus.READY,
            [A.REVOKED],
            OrderOutcome(OrderStatus.INVALID, InvalidCause.AUTHZ_FAILED),
        ),
        # Processing, valid and invalid orders no longer follow their authorizations.
        (OrderStatus.PROCESSING, [A.DEACTIVATED], None),
        (OrderStatus.VALID, [A.EXPIRED], None),
        (OrderStatus.INVALID, [A.VALID], None),
    ],
)
def test_order_outcome_follows_authorizations(
    status: OrderStatus, authzs: list[AuthorizationStatus], expected: OrderOutcome | None
) -> None:
    assert lifecycle.order_outcome(status, LATER, NOW, authzs) == expected


@pytest.mark.parametrize("status", [OrderStatus.PENDING, OrderStatus.READY])
def test_expired_order_turns_invalid_whatever_its_authorizations(status: OrderStatus) -> None:
    outcome = lifecycle.order_outcome(status, NOW, NOW, [A.VALID])
    assert outcome == OrderOutcome(OrderStatus.INVALID, InvalidCause.EXPIRED)


def test_expired_processing_order_is_left_to_finalize() -> None:
    assert lifecycle.order_outcome(OrderStatus.PROCESSING, NOW - timedelta(days=1), NOW, []) is None


def test_every_order_outcome_is_an_allowed_transition() -> None:
    for status in OrderStatus:
        for authzs in ([A.VALID], [A.INVALID], [A.PENDING]):
            for expires in (NOW, LATER):
                outcome = lifecycle.order_outcome(status, expires, NOW, authzs)
                if outcome is not None:
                    assert lifecycle.can_transition(
                        lifecycle.ORDER_TRANSITIONS, status, outcome.status
                    ), (status, outcome)


def test_order_error_documents() -> None:
    assert lifecycle.order_expired_error() == {
        "type": "urn:ietf:params:acme:error:malformed",
        "detail": "order expired before it was finalized",
        "status": 400,
    }
    assert lifecycle.authz_failed_error() == {
        "type": "urn:ietf:params:acme:error:unauthorized",
        "detail": "an authorization of this order is no longer valid",
        "status": 403,
    }


def test_only_ready_orders_finalize() -> None:
    lifecycle.check_finalizable(OrderStatus.READY)
    for status in set(OrderStatus) - {OrderStatus.READY}:
        with pytest.raises(AcmeProblem) as info:
            lifecycle.check_finalizable(status)
        assert info.value.type is ProblemType.ORDER_NOT_READY
        assert info.value.status == 403
        assert info.value.detail == f"order is {status.value}; it can be finalized only when ready"


def test_challenge_result_decides_only_pending_authorizations() -> None:
    assert lifecycle.authz_after_challenge(A.PENDING, True) is A.VALID
    assert lifecycle.authz_after_challenge(A.PENDING, False) is A.INVALID
    for status in set(A) - {A.PENDING}:
        assert lifecycle.authz_after_challenge(status, True) is None
        assert lifecycle.authz_after_challenge(status, False) is None
    assert lifecycle.challenge_result(True) is ChallengeStatus.VALID
    assert lifecycle.challenge_result(False) is ChallengeStatus.INVALID


@pytest.mark.parametrize("status", [A.PENDING, A.VALID])
def test_pending_and_valid_authorizations_deactivate(status: AuthorizationStatus) -> None:
    assert lifecycle.deactivate_authz(status, "deactivated") is A.DEACTIVATED


@pytest.mark.parametrize("status", [A.INVALID, A.DEACTIVATED, A.EXPIRED, A.REVOKED])
def test_final_authorizations_do_not_deactivate(status: AuthorizationStatus) -> None:
    with pytest.raises(AcmeProblem) as info:
        lifecycle.deactivate_authz(status, "deactivated")
    assert info.value.type is ProblemType.MALFORMED
    assert info.value.detail == f"cannot deactivate a {status.value} authorization"


@pytest.mark.parametrize("requested", ["valid", "revoked", None, {}, ["deactivated"]])
def test_authorization_updates_other_than_deactivate_are_malformed(requested: object) -> None:
    with pytest.raises(AcmeProblem) as info:
        lifecycle.deactivate_authz(A.PENDING, requested)
    assert info.value.type is ProblemType.MALFORMED
    assert "only be updated to deactivated" in info.value.detail


def test_challenges_start_only_under_a_pending_authorization() -> None:
    lifecycle.check_challenge_can_start(A.PENDING)
    for status in set(A) - {A.PENDING}:
        with pytest.raises(AcmeProblem) as info:
            lifecycle.check_challenge_can_start(status)
        assert info.value.type is ProblemType.MALFORMED
        assert info.value.detail.startswith(f"the authorization is {status.value};")


def test_accounts_may_only_be_deactivated() -> None:
    assert lifecycle.account_update_status("deactivated") is AccountStatus.DEACTIVATED
    for requested in ("valid", "revoked", 1, None):
        with pytest.raises(AcmeProblem) as info:
            lifecycle.account_update_status(requested)
        assert info.value.type is ProblemType.MALFORMED


def test_transition_tables_match_rfc8555() -> None:
    t = lifecycle.can_transition
    assert t(lifecycle.ORDER_TRANSITIONS, OrderStatus.PENDING, OrderStatus.READY)
    assert t(lifecycle.ORDER_TRANSITIONS, OrderStatus.READY, OrderStatus.PROCESSING)
    assert t(lifecycle.ORDER_TRANSITIONS, OrderStatus.PROCESSING, OrderStatus.VALID)
    assert not t(lifecycle.ORDER_TRANSITIONS, OrderStatus.PENDING, OrderStatus.PROCESSING)
    assert not t(lifecycle.ORDER_TRANSITIONS, OrderStatus.VALID, OrderStatus.INVALID)
    assert not t(lifecycle.AUTHZ_TRANSITIONS, A.INVALID, A.VALID)
    assert t(lifecycle.AUTHZ_TRANSITIONS, A.VALID, A.REVOKED)
    assert not t(lifecycle.AUTHZ_TRANSITIONS, A.PENDING, A.REVOKED)
    assert t(lifecycle.CHALLENGE_TRANSITIONS, ChallengeStatus.PENDING, ChallengeStatus.PROCESSING)
    assert not t(lifecycle.CHALLENGE_TRANSITIONS, ChallengeStatus.PENDING, ChallengeStatus.VALID)
    assert not t(lifecycle.ACCOUNT_TRANSITIONS, AccountStatus.DEACTIVATED, AccountStatus.VALID)
    # Final statuses have no way out; the derived sets agree with the tables.
    assert lifecycle.FINAL_AUTHZ == set(A) - set(lifecycle.AUTHZ_TRANSITIONS)
    assert lifecycle.EXPIRABLE_AUTHZ == {A.PENDING, A.VALID}
    assert lifecycle.UNFINISHED_ORDER == set(lifecycle.ORDER_TRANSITIONS)


def test_statuses_are_their_wire_strings() -> None:
    assert OrderStatus.PENDING == "pending" and f"{OrderStatus.PROCESSING}" == "processing"
    assert {s.value for s in A} == {
        "pending",
        "valid",
        "invalid",
        "deactivated",
        "expired",
        "revoked",
    }
