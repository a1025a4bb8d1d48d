"""Authenticating ACME POSTs: JWS shape, URL, nonce, key or account, signature, access."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Any

from aiohttp import web

from acme_server import logs, strict_json
from acme_server.config import Settings
from acme_server.domain.problems import AcmeProblem, ProblemType
from acme_server.domain.statuses import AccountStatus
from acme_server.jose import (
    AccountKey,
    ParsedJWS,
    check_signature_alg,
    load_jwk,
    parse_flattened,
    verify,
)
from acme_server.store.accounts import Account
from acme_server.store.registrations import Registration
from acme_server.web.state import AppState, state_of

JOSE_JSON = "application/jose+json"


@dataclass(frozen=True)
class SignedRequest:
    jws: ParsedJWS
    key: AccountKey  # the key that signed (account key for kid, embedded key for jwk)
    account: Account | None  # set for kid-signed requests
    url: str
    registration: Registration | None = None  # the account's live pre-registration


async def read_jws(request: web.Request, state: AppState) -> ParsedJWS:
    if request.content_type != JOSE_JSON:
        raise AcmeProblem(
            ProblemType.MALFORMED,
            f"Content-Type must be {JOSE_JSON}, not {request.content_type or 'missing'}",
            status=415,
        )
    body = await read_body(request, state.settings)
    return parse_flattened(strict_json.loads(body, "request body"))


async def read_body(request: web.Request, settings: Settings) -> bytes:
    """The whole body, however many TCP reads it takes, up to `max_body_bytes` (413 beyond)
    and within `body_timeout` (408, so a slow sender cannot hold a handler)."""
    limit = settings.max_body_bytes
    too_large = AcmeProblem(
        ProblemType.MALFORMED, f"request body exceeds {limit} bytes", status=413
    )
    if request.content_length is not None and request.content_length > limit:
        raise too_large
    try:
        async with asyncio.timeout(settings.body_timeout):
            # aiohttp reads until the end of the body and stops at client_max_size.
            return await request.read()
    except web.HTTPRequestEntityTooLarge:
        raise too_large from None
    except TimeoutError:
        raise AcmeProblem(
            ProblemType.MALFORMED,
            f"request body did not arrive within {settings.body_timeout:g} seconds",
            status=408,
        ) from None


async def authenticate(
    request: web.Request, *, allow_jwk: bool = False, require_jwk: bool = False
) -> SignedRequest:
    """Verify a POST; `require_jwk` for newAccount, `allow_jwk` also for revokeCert."""
    state = state_of(request)
    jws = await read_jws(request, state)
    header = jws.protected
    url = state.urls.request_url(request.path_qs)
    check_signature_alg(jws)
    if header.get("url") != url:
        raise AcmeProblem(
            ProblemType.UNAUTHORIZED, f"JWS url header {header.get('url')!r} does not match {url!r}"
        )
    has_jwk, has_kid = "jwk" in header, "kid" in header
    if has_jwk == has_kid:
        raise AcmeProblem(
            ProblemType.MALFORMED, "JWS protected header must have exactly one of jwk or kid"
        )
    if require_jwk and not has_jwk:
        raise AcmeProblem(
            ProblemType.MALFORMED, "this request must be signed with an embedded jwk, not kid"
        )
    if has_jwk and not (require_jwk or allow_jwk):
        raise AcmeProblem(
            ProblemType.MALFORMED, "this request must be signed with the account kid, not jwk"
        )
    await state.nonces.consume(header.get("nonce"))
    account: Account | None = None
    registration: Registration | None = None
    if has_kid:
        account, registration = await _account_for_kid(state, header["kid"])
        logs.bind(account=account.id, registration=account.eab_kid)
        key = load_jwk(account.jwk)
    else:
        key = load_jwk(header["jwk"])
    verify(jws, key)
    if account is not None:
        check_account_access(state, account, registration)
    return SignedRequest(jws, key, account, url, registration)


async def _account_for_kid(state: AppState, kid: Any) -> tuple[Account, Registration | None]:
    account_id = state.urls.account_id_from_url(kid) if isinstance(kid, str) else None
    if account_id is None:
        raise AcmeProblem(
            ProblemType.MALFORMED, f"kid {kid!r} is not an account URL of this server"
        )
    view = await state.accounts.get(account_id)
    if view is None:
        raise AcmeProblem(ProblemType.ACCOUNT_DOES_NOT_EXIST, f"no account at {kid}")
    return view.account, view.registration


def check_account_access(
    state: AppState, account: Account, registration: Registration | None
) -> None:
    """Refuse deactivated accounts and accounts whose pre-registration is gone or suspended."""
    if account.status != AccountStatus.VALID:
        raise AcmeProblem(ProblemType.UNAUTHORIZED, f"account is {account.status}")
    if registration is None:
        if account.eab_kid is not None:
            raise AcmeProblem(
                ProblemType.UNAUTHORIZED,
                f"the pre-registration {account.eab_kid!r} this account was bound to was deleted",
            )
        if state.settings.eab_required:
            raise AcmeProblem(
                ProblemType.UNAUTHORIZED,
                "this server requires pre-registration and the account is not bound to one",
            )
        return
    if registration.suspended:
        raise AcmeProblem(
            ProblemType.UNAUTHORIZED,
            f"the account's pre-registration {registration.kid!r} is suspended",
        )


def require_post_as_get(signed: SignedRequest) -> None:
    if not signed.jws.is_post_as_get:
        raise AcmeProblem(
            ProblemType.MALFORMED, "this resource expects POST-as-GET (an empty payload)"
        )
