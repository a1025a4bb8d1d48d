"""The order/authorization/challenge state machine (RFC 8555 section 7.1.6), as pure decisions.

Each function takes the current statuses (and times) and says what happens next; the store
persists the answer and the handlers report it. Nothing here reads a clock or a database, so
the whole machine is unit-tested in milliseconds.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from dataclasses import dataclass
from datetime import datetime
from enum import Enum
from typing import Any

from acme_server.domain.problems import AcmeProblem, ProblemType, problem_json
from acme_server.domain.statuses import (
    AccountStatus,
    AuthorizationStatus,
    ChallengeStatus,
    ChallengeType,
    OrderStatus,
)

# Allowed transitions, as drawn in RFC 8555 section 7.1.6 (a status absent as a key is final).
ORDER_TRANSITIONS: Mapping[OrderStatus, frozenset[OrderStatus]] = {
    OrderStatus.PENDING: frozenset({OrderStatus.READY, OrderStatus.INVALID}),
    OrderStatus.READY: frozenset({OrderStatus.PROCESSING, OrderStatus.INVALID}),
    OrderStatus.PROCESSING: frozenset({OrderStatus.VALID, OrderStatus.INVALID}),
}
AUTHZ_TRANSITIONS: Mapping[AuthorizationStatus, frozenset[AuthorizationStatus]] = {
    AuthorizationStatus.PENDING: frozenset(
        {
            AuthorizationStatus.VALID,
            AuthorizationStatus.INVALID,
            AuthorizationStatus.DEACTIVATED,
            AuthorizationStatus.EXPIRED,
        }
    ),
    AuthorizationStatus.VALID: frozenset(
        {AuthorizationStatus.DEACTIVATED, AuthorizationStatus.EXPIRED, AuthorizationStatus.REVOKED}
    ),
}
CHALLENGE_TRANSITIONS: Mapping[ChallengeStatus, frozenset[ChallengeStatus]] = {
    ChallengeStatus.PENDING: frozenset({ChallengeStatus.PROCESSING}),
    ChallengeStatus.PROCESSING: frozenset({ChallengeStatus.VALID, ChallengeStatus.INVALID}),
}
ACCOUNT_TRANSITIONS: Mapping[AccountStatus, frozenset[AccountStatus]] = {
    AccountStatus.VALID: frozenset({AccountStatus.DEACTIVATED, AccountStatus.REVOKED}),
}

# Orders that still count against the pending limits (not yet valid or invalid).
UNFINISHED_ORDER: frozenset[OrderStatus] = frozenset(
    {OrderStatus.PENDING, OrderStatus.READY, OrderStatus.PROCESSING}
)
# Orders whose status still follows their authorizations and expiry.
REFRESHABLE_ORDER: frozenset[OrderStatus] = frozenset({OrderStatus.PENDING, OrderStatus.READY})
# Authorizations that can no longer become valid: an order holding one is invalid.
FINAL_AUTHZ: frozenset[AuthorizationStatus] = frozenset(
    {
        AuthorizationStatus.INVALID,
        AuthorizationStatus.DEACTIVATED,
        AuthorizationStatus.EXPIRED,
        AuthorizationStatus.REVOKED,
    }
)
# Authorizations that turn `expired` once their expiry passes.
EXPIRABLE_AUTHZ: frozenset[AuthorizationStatus] = frozenset(
    s for s, targets in AUTHZ_TRANSITIONS.items() if AuthorizationStatus.EXPIRED in targets
)


def can_transition(table: Mapping[Any, frozenset[Any]], current: str, target: str) -> bool:
    """Whether `table` (one of the *_TRANSITIONS above) allows `current` -> `target`."""
    return target in table.get(current, frozenset())


# --- orders -------------------------------------------------------------------------------


def challenge_types(wildcard: bool, *, ip: bool = False) -> tuple[ChallengeType, ...]:
    """The challenges a new authorization offers: only dns-01 can prove a wildcard
    (http-01 and tls-alpn-01, RFC 8737 §3, prove one host), and an IP address
    (RFC 8738 §7) has no DNS zone, so never dns-01."""
    if ip:
        return (ChallengeType.HTTP_01, ChallengeType.TLS_ALPN_01)
    if wildcard:
        return (ChallengeType.DNS_01,)
    return (ChallengeType.HTTP_01, ChallengeType.DNS_01, ChallengeType.TLS_ALPN_01)


def new_order_status(any_new_authz: bool) -> OrderStatus:
    """Reused authorizations are valid by construction: only new ones are pending."""
    return OrderStatus.PENDING if any_new_authz else OrderStatus.READY


class InvalidCause(Enum):
    """Why `order_outcome` turned an order invalid; the store picks the error document."""

    EXPIRED = "expired"
    AUTHZ_FAILED = "authz_failed"


@dataclass(frozen=True)
class OrderOutcome:
    status: OrderStatus
    cause: InvalidCause | None = None


def order_outcome(
    status: OrderStatus,
    expires_at: datetime,
    now: datetime,
    authz_statuses: Collection[AuthorizationStatus],
) -> OrderOutcome | None:
    """The new status of a pending/ready order, or None when it stays as it is.

    `authz_statuses` are its authorizations' statuses with expiry already applied. A ready
    order also turns invalid when one of them was deactivated or expired meanwhile (as
    Boulder does): finalizing must not use a given-up authorization.
    """
    if status not in REFRESHABLE_ORDER:
        return None
    if expires_at <= now:
        return OrderOutcome(OrderStatus.INVALID, InvalidCause.EXPIRED)
    if any(s in FINAL_AUTHZ for s in authz_statuses):
        return OrderOutcome(OrderStatus.INVALID, InvalidCause.AUTHZ_FAILED)
    if (
        status == OrderStatus.PENDING
        and authz_statuses
        and all(s == AuthorizationStatus.VALID for s in authz_statuses)
    ):
        return OrderOutcome(OrderStatus.READY)
    return None


def order_expired_error() -> dict[str, Any]:
    return problem_json(ProblemType.MALFORMED, "order expired before it was finalized")


def authz_failed_error() -> dict[str, Any]:
    """The order's error when no challenge of its failed authorization recorded one."""
    return problem_json(
        ProblemType.UNAUTHORIZED, "an authorization of this order is no longer valid"
    )


def check_finalizable(status: OrderStatus) -> None:
    if status != OrderStatus.READY:
        raise AcmeProblem(
            ProblemType.ORDER_NOT_READY,
            f"order is {status}; it can be finalized only when ready",
        )


# --- authorizations -----------------------------------------------------------------------


def deactivate_authz(status: AuthorizationStatus, requested: object) -> AuthorizationStatus:
    """The status a client's authorization update asks for, or `malformed`."""
    if requested != AuthorizationStatus.DEACTIVATED:
        raise AcmeProblem(
            ProblemType.MALFORMED, "an authorization can only be updated to deactivated"
        )
    if not can_transition(AUTHZ_TRANSITIONS, status, AuthorizationStatus.DEACTIVATED):
        raise AcmeProblem(ProblemType.MALFORMED, f"cannot deactivate a {status} authorization")
    return AuthorizationStatus.DEACTIVATED


def authz_after_challenge(status: AuthorizationStatus, valid: bool) -> AuthorizationStatus | None:
    """A challenge's result decides a pending authorization; any other stays as it is."""
    if status != AuthorizationStatus.PENDING:
        return None
    return AuthorizationStatus.VALID if valid else AuthorizationStatus.INVALID


# --- challenges ---------------------------------------------------------------------------


def check_challenge_can_start(authz_status: AuthorizationStatus) -> None:
    """Only a pending authorization's challenges may be started by the client."""
    if authz_status != AuthorizationStatus.PENDING:
        raise AcmeProblem(
            ProblemType.MALFORMED,
            f"the authorization is {authz_status}; its challenges cannot start",
        )


def challenge_result(valid: bool) -> ChallengeStatus:
    return ChallengeStatus.VALID if valid else ChallengeStatus.INVALID


# --- accounts -----------------------------------------------------------------------------


def account_update_status(requested: object) -> AccountStatus:
    """A client may only deactivate its account (RFC 8555 7.3.6)."""
    if requested != AccountStatus.DEACTIVATED:
        raise AcmeProblem(
            ProblemType.MALFORMED, "an account's status can only be set to deactivated"
        )
    return AccountStatus.DEACTIVATED
