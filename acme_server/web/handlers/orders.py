"""newOrder, order listing and reading, authorizations and challenges (RFC 8555 7.4-7.5)."""

from __future__ import annotations

import math
import re
from datetime import UTC, datetime

import sqlalchemy as sa
from aiohttp import web

from acme_server.config import Settings
from acme_server.domain import lifecycle, profiles
from acme_server.domain.identifiers import check_allowed, check_issuable, parse_identifiers
from acme_server.domain.problems import AcmeProblem, ProblemType
from acme_server.domain.statuses import ChallengeStatus, OrderStatus
from acme_server.jose import b64u_decode, b64u_encode
from acme_server.revocation import ari
from acme_server.store import limits as limit_store
from acme_server.store import orders as order_store
from acme_server.store.registrations import Registration
from acme_server.store.validation_queue import ValidationJob
from acme_server.validation.fairness import Tenant
from acme_server.web.auth import SignedRequest, authenticate, require_post_as_get
from acme_server.web.responses import acme_json, link
from acme_server.web.state import state_of
from acme_server.web.views import authz_json, challenge_json, order_json


def pending_limits(
    settings: Settings, registration: Registration | None
) -> limit_store.PendingLimits:
    """The server-wide caps, overridden by the pre-registration's own where it sets them."""
    orders = settings.max_pending_orders
    authzs = settings.max_pending_authorizations
    if registration is not None:
        orders = registration.max_pending_orders or orders
        authzs = registration.max_pending_authorizations or authzs
    return limit_store.PendingLimits(orders=orders, authorizations=authzs)


def _account_of(signed: SignedRequest) -> str:
    assert signed.account is not None
    return signed.account.id


async def new_order(request: web.Request) -> web.Response:
    state = state_of(request)
    signed = await authenticate(request)
    payload = signed.jws.payload_json()
    identifiers = parse_identifiers(payload)
    names = [i.value for i in identifiers]
    check_allowed(identifiers, signed.registration, open_ip_ranges=state.settings.open_ip_ranges)
    check_issuable(identifiers, state.ca.permits)
    now = datetime.now(UTC)
    profile, not_before, not_after = profiles.order_terms(
        state.settings.profile_set, payload, names, signed.registration, now
    )
    expires = now + state.settings.order_lifetime
    limits = pending_limits(state.settings, signed.registration)
    account_id = _account_of(signed)

    def unit(conn: sa.Connection) -> order_store.Order:
        try:
            limit_store.check_new_order(conn, account_id, names, limits, now)
        except limit_store.PendingLimitExceeded as exc:
            raise AcmeProblem(
                ProblemType.RATE_LIMITED, str(exc), headers={"Retry-After": str(exc.retry_after)}
            ) from None
        order = order_store.create_order(
            conn,
            account_id=account_id,
            names=identifiers,
            order_expires=expires,
            profile=profile.name,
            not_before=not_before,
            not_after=not_after,
        )
        if "replaces" in payload:  # RFC 9773 5; a refusal rolls the order back
            ari.record_replacement(
                conn,
                payload["replaces"],
                account_id=order.account_id,
                names=names,
                order_id=order.id,
                now=now,
            )
        return order

    order = await state.db.write(unit)
    return acme_json(
        request, order_json(order, state.urls), status=201, location=state.urls.order(order.id)
    )


async def load_order_for(request: web.Request, signed: SignedRequest) -> order_store.Order:
    """The order as of now: read without the write lock; written only when time or its
    authorizations moved it on (expiry, all authorizations valid)."""
    state = state_of(request)
    order_id, account_id = request.match_info["order_id"], _account_of(signed)

    def own_order(conn: sa.Connection) -> order_store.Order:
        order = order_store.get_order(conn, order_id)
        if order is None or order.account_id != account_id:
            raise AcmeProblem(ProblemType.MALFORMED, "no such order for this account", status=404)
        return order

    def read(conn: sa.Connection) -> tuple[order_store.Order, bool]:
        order = own_order(conn)
        return order, order_store.needs_refresh(conn, order, datetime.now(UTC))

    order, stale = await state.db.read(read)
    if not stale:
        return order
    return await state.db.write(lambda conn: order_store.refresh_order(conn, own_order(conn)))


async def order(request: web.Request) -> web.Response:
    state = state_of(request)
    signed = await authenticate(request)
    require_post_as_get(signed)
    current = await load_order_for(request, signed)
    retry = 1 if current.status == OrderStatus.PROCESSING else None
    return acme_json(
        request,
        order_json(current, state.urls),
        location=state.urls.order(current.id),
        retry_after=retry,
    )


async def orders_list(request: web.Request) -> web.Response:
    state = state_of(request)
    signed = await authenticate(request)
    require_post_as_get(signed)
    account_id = _account_of(signed)
    if request.match_info["account_id"] != account_id:
        raise AcmeProblem(ProblemType.UNAUTHORIZED, "the request is signed by a different account")
    after = _decode_cursor(request.query.get("cursor"))
    size = state.settings.orders_page_size
    rows = await state.db.read(
        lambda conn: order_store.list_order_ids(conn, account_id, after=after, limit=size + 1)
    )
    page, more = rows[:size], len(rows) > size
    links = []
    if more:
        last_id, last_created = page[-1]
        cursor = _encode_cursor(last_created, last_id)
        links.append(link(f"{state.urls.orders(account_id)}?cursor={cursor}", "next"))
    return acme_json(request, {"orders": [state.urls.order(oid) for oid, _ in page]}, links=links)


def _encode_cursor(created: datetime, order_id: str) -> str:
    return b64u_encode(f"{created.timestamp():.6f}|{order_id}".encode())


_CURSOR_ORDER_ID = re.compile(r"[A-Za-z0-9_-]{1,64}")
_MAX_CURSOR_CHARS = 200


def _decode_cursor(cursor: str | None) -> tuple[datetime, str] | None:
    """A cursor this server issued, or `malformed`: garbage must never reach the store
    (huge or non-finite timestamps overflow datetime; NULs break PostgreSQL)."""
    if not cursor:
        return None
    invalid = AcmeProblem(
        ProblemType.MALFORMED, "invalid orders cursor; use the Link rel=next URL as given"
    )
    if len(cursor) > _MAX_CURSOR_CHARS:
        raise invalid
    try:
        stamp, _, order_id = b64u_decode(cursor, "cursor").decode().partition("|")
        seconds = float(stamp)
        if not math.isfinite(seconds) or not _CURSOR_ORDER_ID.fullmatch(order_id):
            raise invalid
        return datetime.fromtimestamp(seconds, UTC), order_id
    except (ValueError, UnicodeDecodeError, OverflowError, OSError, AcmeProblem):
        raise invalid from None


async def authz(request: web.Request) -> web.Response:
    state = state_of(request)
    signed = await authenticate(request)
    account_id, authz_id = _account_of(signed), request.match_info["authz_id"]
    requested = None if signed.jws.is_post_as_get else signed.jws.payload_json().get("status")

    def own_authz(conn: sa.Connection) -> order_store.Authorization:
        current = order_store.get_authz(conn, authz_id)
        if current is None or current.account_id != account_id:
            raise AcmeProblem(
                ProblemType.MALFORMED, "no such authorization for this account", status=404
            )
        return current

    def update(conn: sa.Connection) -> order_store.Authorization:
        order_store.expire_authzs(conn, [own_authz(conn).id], datetime.now(UTC))
        if not signed.jws.is_post_as_get:
            target = lifecycle.deactivate_authz(own_authz(conn).status, requested)
            order_store.set_authz_status(conn, authz_id, target)
        return own_authz(conn)

    result = None
    if signed.jws.is_post_as_get:
        result = await state.db.read(own_authz)
        if order_store.authz_expired(result, datetime.now(UTC)):
            result = None
    if result is None:
        result = await state.db.write(update)
    processing = any(c.status == ChallengeStatus.PROCESSING for c in result.challenges)
    return acme_json(
        request,
        authz_json(result, state.urls),
        location=state.urls.authz(result.id),
        retry_after=2 if processing else None,
    )


async def challenge(request: web.Request) -> web.Response:
    state = state_of(request)
    signed = await authenticate(request)
    account_id = _account_of(signed)
    challenge_id = request.match_info["challenge_id"]
    respond = signed.jws.is_post_as_get
    if not respond:
        signed.jws.payload_json()  # {} per erratum 5729; any object is accepted

    def own(conn: sa.Connection) -> tuple[order_store.Challenge, order_store.Authorization]:
        chal = order_store.get_challenge(conn, challenge_id)
        parent = order_store.get_authz(conn, chal.authz_id) if chal else None
        if chal is None or parent is None or parent.account_id != account_id:
            raise AcmeProblem(
                ProblemType.MALFORMED, "no such challenge for this account", status=404
            )
        return chal, parent

    # Accepting a challenge leases it to this process's validator when it has a free slot for
    # the tenant: validation starts at once, without a claim round (scheduler.reserve).
    scheduler = None if respond else state.scheduler
    assert signed.account is not None
    tenant = Tenant(signed.account.id, signed.account.registration_id)
    leased = scheduler is not None and scheduler.reserve(tenant)
    lease_until = datetime.now(UTC) + state.settings.validation_lease if leased else None

    def update(
        conn: sa.Connection,
    ) -> tuple[order_store.Challenge, order_store.Authorization, bool]:
        chal, parent = own(conn)
        if order_store.authz_expired(parent, datetime.now(UTC)):
            order_store.expire_authzs(conn, [parent.id], datetime.now(UTC))
            chal, parent = own(conn)
        started = False
        if not respond:
            lifecycle.check_challenge_can_start(parent.status)
            started = order_store.start_challenge(conn, challenge_id, lease_until=lease_until)
            if started:
                chal = order_store.get_challenge(conn, challenge_id) or chal
        return chal, parent, started

    started = False
    chal: order_store.Challenge | None = None
    try:
        if respond:
            chal, parent = await state.db.read(own)
            if order_store.authz_expired(parent, datetime.now(UTC)):
                chal = None
        if chal is None:
            chal, parent, started = await state.db.write(update)
    except BaseException:
        if leased and scheduler is not None:
            scheduler.unreserve(tenant)
        raise
    assert chal is not None
    if leased and scheduler is not None:
        if started:
            job = ValidationJob(
                chal.type,
                chal.token,
                parent.identifier_value,
                signed.account.key_thumbprint,
                0,
                account_id=parent.account_id,
                wildcard=parent.wildcard,
                identifier_type=parent.identifier_type,
            )
            scheduler.validate_leased(chal.id, tenant, job)
        else:
            scheduler.unreserve(tenant)
    elif started:
        state.validation_wakeup.set()
    return acme_json(
        request,
        challenge_json(chal, state.urls),
        links=[link(state.urls.authz(chal.authz_id), "up")],
        location=state.urls.challenge(chal.id),
        retry_after=2 if chal.status == ChallengeStatus.PROCESSING else None,
    )
