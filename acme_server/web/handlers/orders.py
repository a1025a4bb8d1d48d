"""newOrder, order listing and reading, authorizations and challenges (RFC 8555 7.4-7.5)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from aiohttp import web

from acme_server.config import Settings
from acme_server.jose import b64u_decode, b64u_encode
from acme_server.policy import DomainRule, IdentifierError, is_allowed, normalise_dns_name
from acme_server.problems import AcmeProblem, identifier_subproblem
from acme_server.store import limits as limit_store
from acme_server.store import orders as order_store
from acme_server.store.registrations import Registration
from acme_server.web.auth import SignedRequest, authenticate, require_post_as_get
from acme_server.web.responses import acme_json, link
from acme_server.web.state import state_of
from acme_server.web.views import authz_json, challenge_json, order_json

MAX_IDENTIFIERS = 100


def parse_identifiers(payload: dict[str, Any]) -> list[str]:
    """Normalised, de-duplicated names; every bad identifier is reported at once."""
    raw = payload.get("identifiers")
    if not isinstance(raw, list) or not raw:
        raise AcmeProblem("malformed", "identifiers must be a non-empty list")
    if len(raw) > MAX_IDENTIFIERS:
        raise AcmeProblem(
            "rejectedIdentifier", f"an order may have at most {MAX_IDENTIFIERS} identifiers"
        )
    names: list[str] = []
    problems: list[dict[str, Any]] = []
    for ident in raw:
        if not isinstance(ident, dict) or not isinstance(ident.get("value"), str):
            raise AcmeProblem("malformed", "each identifier must be an object with type and value")
        if ident.get("type") != "dns":
            problems.append(
                identifier_subproblem(
                    "unsupportedIdentifier",
                    ident["value"],
                    f"identifier type {ident.get('type')!r} is not supported; only dns",
                )
            )
            continue
        try:
            name = normalise_dns_name(ident["value"])
        except IdentifierError as exc:
            problems.append(identifier_subproblem("rejectedIdentifier", ident["value"], str(exc)))
            continue
        if name not in names:
            names.append(name)
    if problems:
        kind = (
            "rejectedIdentifier"
            if any(p["type"].endswith("rejectedIdentifier") for p in problems)
            else "unsupportedIdentifier"
        )
        raise AcmeProblem(
            kind,
            f"{len(problems)} identifier(s) cannot be issued: "
            + "; ".join(p["detail"] for p in problems),
            subproblems=problems,
        )
    return names


def check_allowed(names: list[str], registration: Registration | None) -> None:
    """Refuse names the pre-registration does not grant, one subproblem each.

    Open mode (no registration) allows every well-formed name; a registration grants its
    listed domains, or every name only with its explicit any_domain grant.
    """
    if registration is None or registration.any_domain:
        return
    if registration.grants_nothing:
        detail = f"no domain was granted to pre-registration {registration.name!r}"
        raise AcmeProblem(
            "rejectedIdentifier",
            f"{', '.join(names)} not allowed: {detail}",
            subproblems=[
                identifier_subproblem("rejectedIdentifier", n, f"{n} is not allowed: {detail}")
                for n in names
            ],
        )
    refused = [n for n in names if not is_allowed(n, registration.domains)]
    if refused:
        allowed = ", ".join(_describe(d) for d in registration.domains)
        raise AcmeProblem(
            "rejectedIdentifier",
            f"{', '.join(refused)} not allowed for pre-registration {registration.kid!r} "
            f"(allowed domains: {allowed})",
            subproblems=[
                identifier_subproblem(
                    "rejectedIdentifier",
                    n,
                    f"{n} is not within the allowed domains of pre-registration {registration.kid!r}",
                )
                for n in refused
            ],
        )


def _describe(rule: DomainRule) -> str:
    """How a rule reads in a refusal: `example.com`, `*.example.com` or `example.com (exact)`."""
    if not rule.include_subdomains:
        return f"{rule.domain} (exact)"
    return rule.domain if rule.allow_wildcard else f"{rule.domain} (no wildcard)"


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
    for unsupported in ("notBefore", "notAfter"):
        if payload.get(unsupported) is not None:
            raise AcmeProblem("malformed", f"{unsupported} is not supported by this server")
    if "profile" in payload or "replaces" in payload:
        raise AcmeProblem("malformed", "profile and replaces are not supported by this server")
    names = parse_identifiers(payload)
    check_allowed(names, signed.registration)
    now = datetime.now(UTC)
    expires = now + state.settings.order_lifetime
    limits = pending_limits(state.settings, signed.registration)
    async with state.db.transaction() as conn:
        try:
            await limit_store.check_new_order(conn, _account_of(signed), names, limits, now)
        except limit_store.PendingLimitExceeded as exc:
            raise AcmeProblem(
                "rateLimited", str(exc), headers={"Retry-After": str(exc.retry_after)}
            ) from None
        order = await order_store.create_order(
            conn, account_id=_account_of(signed), names=names, order_expires=expires
        )
    return acme_json(
        request, order_json(order, state.urls), status=201, location=state.urls.order(order.id)
    )


async def load_order_for(request: web.Request, signed: SignedRequest) -> order_store.Order:
    state = state_of(request)
    async with state.db.transaction() as conn:
        order = await order_store.get_order(conn, request.match_info["order_id"])
        if order is None or order.account_id != _account_of(signed):
            raise AcmeProblem("malformed", "no such order for this account", status=404)
        return await order_store.refresh_order(conn, order)


async def order(request: web.Request) -> web.Response:
    state = state_of(request)
    signed = await authenticate(request)
    require_post_as_get(signed)
    current = await load_order_for(request, signed)
    retry = 1 if current.status == "processing" else None
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
        raise AcmeProblem("unauthorized", "the request is signed by a different account")
    after = _decode_cursor(request.query.get("cursor"))
    size = state.settings.orders_page_size
    async with state.db.transaction() as conn:
        rows = await order_store.list_order_ids(conn, account_id, after=after, limit=size + 1)
    page, more = rows[:size], len(rows) > size
    links = []
    if more:
        last_id, last_created = page[-1]
        cursor = _encode_cursor(last_created, last_id)
        links.append(link(f"{state.urls.orders(account_id)}?cursor={cursor}", "next"))
    return acme_json(request, {"orders": [state.urls.order(oid) for oid, _ in page]}, links=links)


def _encode_cursor(created: datetime, order_id: str) -> str:
    return b64u_encode(f"{created.timestamp():.6f}|{order_id}".encode())


def _decode_cursor(cursor: str | None) -> tuple[datetime, str] | None:
    if not cursor:
        return None
    try:
        stamp, _, order_id = b64u_decode(cursor, "cursor").decode().partition("|")
        return datetime.fromtimestamp(float(stamp), UTC), order_id
    except (ValueError, UnicodeDecodeError, AcmeProblem):
        raise AcmeProblem("malformed", "invalid orders cursor") from None


async def authz(request: web.Request) -> web.Response:
    state = state_of(request)
    signed = await authenticate(request)
    account_id = _account_of(signed)
    async with state.db.transaction() as conn:
        current = await order_store.get_authz(conn, request.match_info["authz_id"])
        if current is None or current.account_id != account_id:
            raise AcmeProblem("malformed", "no such authorization for this account", status=404)
        await order_store.expire_authzs(conn, [current.id], datetime.now(UTC))
        if not signed.jws.is_post_as_get:
            payload = signed.jws.payload_json()
            if payload.get("status") != "deactivated":
                raise AcmeProblem(
                    "malformed", "an authorization can only be updated to deactivated"
                )
            fresh = await order_store.get_authz(conn, current.id)
            assert fresh is not None
            if fresh.status not in ("pending", "valid"):
                raise AcmeProblem("malformed", f"cannot deactivate a {fresh.status} authorization")
            await order_store.set_authz_status(conn, current.id, "deactivated")
        result = await order_store.get_authz(conn, current.id)
    assert result is not None
    processing = any(c.status == "processing" for c in result.challenges)
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
    async with state.db.transaction() as conn:
        chal = await order_store.get_challenge(conn, challenge_id)
        parent = await order_store.get_authz(conn, chal.authz_id) if chal else None
        if chal is None or parent is None or parent.account_id != account_id:
            raise AcmeProblem("malformed", "no such challenge for this account", status=404)
        await order_store.expire_authzs(conn, [parent.id], datetime.now(UTC))
        started = False
        if not signed.jws.is_post_as_get:
            signed.jws.payload_json()  # {} per erratum 5729; any object is accepted
            parent = await order_store.get_authz(conn, parent.id)
            assert parent is not None
            if parent.status != "pending":
                raise AcmeProblem(
                    "malformed",
                    f"the authorization is {parent.status}; its challenges cannot start",
                )
            started = await order_store.start_challenge(conn, challenge_id)
        chal = await order_store.get_challenge(conn, challenge_id)
    assert chal is not None
    if started:
        state.validation_wakeup.set()
    return acme_json(
        request,
        challenge_json(chal, state.urls),
        links=[link(state.urls.authz(chal.authz_id), "up")],
        location=state.urls.challenge(chal.id),
        retry_after=2 if chal.status == "processing" else None,
    )
