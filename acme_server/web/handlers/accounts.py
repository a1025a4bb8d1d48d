"""newAccount, account update/deactivation, keyChange (RFC 8555 7.3)."""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from aiohttp import web
from sqlalchemy.exc import IntegrityError

from acme_server import jose, logs, strict_json
from acme_server.domain.lifecycle import account_update_status
from acme_server.domain.problems import AcmeProblem, ProblemType
from acme_server.store import accounts as account_store
from acme_server.store import registrations as registration_store
from acme_server.store.accounts import Account
from acme_server.web.account_cache import AccountView, load_view
from acme_server.web.auth import authenticate, check_account_access
from acme_server.web.responses import acme_json
from acme_server.web.state import AppState, state_of
from acme_server.web.views import account_json

MAX_CONTACTS = 10
EAB_REFUSED = "externalAccountBinding key ID is unknown or its MAC does not verify"


def _contacts(value: Any) -> list[str]:
    if value is None:
        return []
    if not isinstance(value, list) or not all(isinstance(c, str) for c in value):
        raise AcmeProblem(ProblemType.INVALID_CONTACT, "contact must be a list of strings")
    if len(value) > MAX_CONTACTS:
        raise AcmeProblem(
            ProblemType.INVALID_CONTACT, f"at most {MAX_CONTACTS} contacts are allowed"
        )
    for contact in value:
        scheme, _, address = contact.partition(":")
        if scheme.lower() != "mailto":
            raise AcmeProblem(
                ProblemType.UNSUPPORTED_CONTACT,
                f"only mailto: contacts are supported, got {contact!r}",
            )
        if "?" in address or "," in address or "@" not in address or address.startswith("@"):
            raise AcmeProblem(
                ProblemType.INVALID_CONTACT, f"{contact!r} is not a single plain email address"
            )
    return list(value)


async def new_account(request: web.Request) -> web.Response:
    state = state_of(request)
    signed = await authenticate(request, require_jwk=True)
    payload = signed.jws.payload_json()
    thumbprint = signed.key.thumbprint
    existing = await state.db.read(lambda conn: _view_by_thumbprint(conn, thumbprint))
    if existing is not None:
        # Lookup (with or without onlyReturnExisting) needs no EAB, but a refused
        # account stays refused.
        check_account_access(state, existing.account, existing.registration)
        found = existing.account
        logs.bind(account=found.id, registration=found.eab_kid)
        return acme_json(
            request,
            account_json(found, state.urls),
            status=200,
            location=state.urls.account(found.id),
        )
    if payload.get("onlyReturnExisting") is True:
        raise AcmeProblem(ProblemType.ACCOUNT_DOES_NOT_EXIST, "no account exists for this key")
    contact = _contacts(payload.get("contact"))
    tos = payload.get("termsOfServiceAgreed") is True
    if state.settings.terms_of_service and not tos:
        raise AcmeProblem(
            ProblemType.USER_ACTION_REQUIRED,
            "you must agree to the terms of service (termsOfServiceAgreed: true)",
            headers={"Link": f'<{state.settings.terms_of_service}>;rel="terms-of-service"'},
        )
    eab = payload.get("externalAccountBinding")
    if eab is None and state.settings.eab_required:
        raise AcmeProblem(
            ProblemType.EXTERNAL_ACCOUNT_REQUIRED,
            "this server requires an externalAccountBinding (pre-registration key ID and HMAC key)",
        )
    account = await _create(state, signed.key, contact, tos, eab)
    logs.bind(account=account.id, registration=account.eab_kid)
    return acme_json(
        request,
        account_json(account, state.urls),
        status=201,
        location=state.urls.account(account.id),
    )


def _view_by_thumbprint(conn: sa.Connection, thumbprint: str) -> AccountView | None:
    account = account_store.by_thumbprint(conn, thumbprint)
    return None if account is None else load_view(conn, account.id)


async def _create(
    state: AppState, key: jose.AccountKey, contact: list[str], tos: bool, eab: Any
) -> Account:
    eab_kid: str | None = None
    if eab is not None:
        eab_kid, eab_jws = jose.verify_eab(eab, outer_key=key, url=state.urls.new_account)

    def unit(conn: sa.Connection) -> Account:
        registration_id: int | None = None
        if eab is not None:
            assert eab_kid is not None
            registration = registration_store.load_by_kid(conn, eab_kid)
            hmac_key = registration.hmac_key if registration is not None else None
            # One answer for an unknown key ID and a wrong MAC, so the endpoint cannot be
            # used to find out which key IDs exist. Only a caller that proved it holds
            # the HMAC key learns more (e.g. that the registration is suspended).
            if registration is None or not jose.eab_mac_valid(eab_jws, hmac_key):
                raise AcmeProblem(ProblemType.UNAUTHORIZED, EAB_REFUSED)
            if registration.suspended:
                raise AcmeProblem(
                    ProblemType.UNAUTHORIZED, f"pre-registration {eab_kid!r} is suspended"
                )
            account_store.lock_registration(conn, registration.id)
            if registration.max_accounts is not None:
                bound = account_store.count_for_registration(conn, registration.id)
                if bound >= registration.max_accounts:
                    raise AcmeProblem(
                        ProblemType.UNAUTHORIZED,
                        f"pre-registration {eab_kid!r} already has its maximum of "
                        f"{registration.max_accounts} account(s)",
                    )
            registration_id = registration.id
        return account_store.create(
            conn,
            thumbprint=key.thumbprint,
            jwk=key.jwk,
            contact=contact,
            tos_agreed=tos,
            registration_id=registration_id,
            eab_kid=eab_kid,
            eab_binding=eab,
        )

    try:
        return await state.db.write(unit)
    except IntegrityError:
        # The same key registered concurrently: answer like any existing-key lookup.
        existing = await state.db.read(
            lambda conn: account_store.by_thumbprint(conn, key.thumbprint)
        )
        if existing is None:
            raise
        return existing


async def account(request: web.Request) -> web.Response:
    state = state_of(request)
    signed = await authenticate(request)
    assert signed.account is not None
    if signed.account.id != request.match_info["account_id"]:
        raise AcmeProblem(ProblemType.UNAUTHORIZED, "the request is signed by a different account")
    current = signed.account
    if not signed.jws.is_post_as_get:
        payload = signed.jws.payload_json()
        changes: dict[str, Any] = {}
        if "contact" in payload:
            changes["contact"] = _contacts(payload["contact"])
        if payload.get("termsOfServiceAgreed") is True:
            changes["tos_agreed"] = True
        if "status" in payload:
            changes["status"] = account_update_status(payload["status"])
        if changes:
            account_id = current.id
            current = await state.db.write(
                lambda conn: account_store.update(conn, account_id, **changes)
            )
            state.accounts.changed(account_id)
    return acme_json(
        request, account_json(current, state.urls), location=state.urls.account(current.id)
    )


async def key_change(request: web.Request) -> web.Response:
    state = state_of(request)
    signed = await authenticate(request)
    assert signed.account is not None
    inner = jose.parse_flattened(signed.jws.payload_json(), what="keyChange inner JWS")
    header = inner.protected
    if "jwk" not in header or "kid" in header:
        raise AcmeProblem(
            ProblemType.MALFORMED, "the inner keyChange JWS must carry the new key as jwk"
        )
    if "nonce" in header:
        raise AcmeProblem(ProblemType.MALFORMED, "the inner keyChange JWS must not carry a nonce")
    if header.get("url") != signed.url:
        raise AcmeProblem(
            ProblemType.MALFORMED, "the inner keyChange JWS url must equal the outer url"
        )
    new_key = jose.load_jwk(header["jwk"])
    jose.verify(inner, new_key)
    body = strict_json.loads(inner.payload, "the inner keyChange payload")
    if not isinstance(body, dict) or body.get("account") != state.urls.account(signed.account.id):
        raise AcmeProblem(
            ProblemType.MALFORMED, "keyChange payload account does not match the signing account"
        )
    old_key = jose.load_jwk(body.get("oldKey"))
    if old_key.thumbprint != signed.key.thumbprint:
        raise AcmeProblem(
            ProblemType.MALFORMED, "keyChange oldKey is not the account's current key"
        )
    account_id = signed.account.id

    def unit(conn: sa.Connection) -> Account:
        holder = account_store.by_thumbprint(conn, new_key.thumbprint)
        if holder is not None:
            raise AcmeProblem(
                ProblemType.MALFORMED,
                "the new key is already in use by an account",
                status=409,
                headers={"Location": state.urls.account(holder.id)},
            )
        return account_store.update(
            conn, account_id, key_thumbprint=new_key.thumbprint, jwk=new_key.jwk
        )

    try:
        updated = await state.db.write(unit)
    except IntegrityError:
        # Another request bound the key meanwhile: still name its account (RFC 8555 7.3.5).
        holder = await state.db.read(
            lambda conn: account_store.by_thumbprint(conn, new_key.thumbprint)
        )
        raise AcmeProblem(
            ProblemType.MALFORMED,
            "the new key is already in use by an account",
            status=409,
            headers={"Location": state.urls.account(holder.id)} if holder else None,
        ) from None
    finally:
        state.accounts.changed(account_id)
    return acme_json(
        request, account_json(updated, state.urls), location=state.urls.account(updated.id)
    )
