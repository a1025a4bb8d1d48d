"""finalize, certificate download, revokeCert (RFC 8555 7.4, 7.4.2, 7.6)."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from datetime import UTC, datetime

import sqlalchemy as sa
from aiohttp import web
from cryptography import x509
from cryptography.hazmat.primitives import serialization

from acme_server.ca import CSRError, check_csr, parse_csr, spki_sha256
from acme_server.ca.authority import IssuedCertificate
from acme_server.ca.profile import LeafOptions, key_type
from acme_server.domain import profiles
from acme_server.domain.identifiers import check_allowed
from acme_server.domain.lifecycle import check_finalizable
from acme_server.domain.problems import AcmeProblem, ProblemType
from acme_server.domain.revocation import ALLOWED_REASONS
from acme_server.domain.statuses import OrderStatus
from acme_server.jose import b64u_decode
from acme_server.metrics import (
    CERTIFICATES_ISSUED,
    ISSUANCE_SECONDS,
    REVOCATION_REASON_NAMES,
    REVOCATIONS,
)
from acme_server.store import certificates as cert_store
from acme_server.store import orders as order_store
from acme_server.store import revocations
from acme_server.store.ids import new_id
from acme_server.validation import caa_recheck
from acme_server.web.auth import authenticate, require_post_as_get
from acme_server.web.handlers.orders import load_order_for
from acme_server.web.responses import acme_json, link
from acme_server.web.state import AppState, state_of
from acme_server.web.views import order_json

log = logging.getLogger("acme_server.issuance")

REVOCATION_REASONS = set(ALLOWED_REASONS)
PEM_CHAIN = "application/pem-certificate-chain"


async def finalize(request: web.Request) -> web.Response:
    started = time.perf_counter()
    state = state_of(request)
    signed = await authenticate(request)
    assert signed.account is not None
    payload = signed.jws.payload_json()
    current = await load_order_for(request, signed)
    check_finalizable(current.status)
    csr_der = b64u_decode(payload.get("csr"), "csr")
    try:
        csr = parse_csr(csr_der)
        check_csr(csr, current.names, account_key_spki_sha256=signed.key.spki_sha256())
    except CSRError as exc:
        raise AcmeProblem(ProblemType.BAD_CSR, str(exc)) from None
    # The allow-list may have shrunk since the order was placed; so may the profiles.
    check_allowed(
        current.typed_identifiers,
        signed.registration,
        open_ip_ranges=state.settings.open_ip_ranges,
    )
    profile = profiles.select_profile(
        state.settings.profile_set, current.profile, signed.registration
    )
    profiles.check_key_type(profile, key_type(csr.public_key()))
    account = signed.account
    caa_rechecked, caa_checked_at = await _recheck_caa(state, current)

    # One transaction: the order is either still ready, or valid with its certificate. The
    # leaf is signed inside it (well under a millisecond), so a failure at any step leaves
    # the order ready and no certificate is signed for an order that another request won.
    def unit(conn: sa.Connection) -> tuple[order_store.Order, IssuedCertificate]:
        if not order_store.set_order_status(
            conn, current.id, expect=OrderStatus.READY, status=OrderStatus.PROCESSING
        ):
            raise AcmeProblem(ProblemType.ORDER_NOT_READY, "order is already being finalized")
        try:
            issued = state.ca.issue(
                csr,
                current.names,
                validity=profile.validity,
                not_before=current.not_before,
                not_after=current.not_after,
                options=LeafOptions(
                    server_auth=profile.server_auth,
                    client_auth=profile.client_auth,
                    common_name=profile.common_name,
                    revocation_info=profile.revocation_info,
                ),
            )
        except ValueError as exc:
            log.error("cannot issue for order %s: %s", current.id, exc)
            raise AcmeProblem(
                ProblemType.SERVER_INTERNAL, f"the CA cannot issue right now: {exc}", status=500
            ) from None
        cert_id = new_id()
        cert_store.insert(
            conn,
            id=cert_id,
            serial=issued.serial_hex,
            order_id=current.id,
            account_id=account.id,
            registration_id=account.registration_id,
            names=issued.names,
            chain_pem=issued.chain_pem,
            spki_sha256=issued.spki_sha256,
            not_before=issued.not_before,
            not_after=issued.not_after,
        )
        order_store.set_order_status(
            conn,
            current.id,
            expect=OrderStatus.PROCESSING,
            status=OrderStatus.VALID,
            certificate_id=cert_id,
        )
        order_store.mark_caa_checked(conn, caa_rechecked, caa_checked_at)
        done = order_store.get_order(conn, current.id)
        assert done is not None
        return done, issued

    done, issued = await state.db.write(unit)
    CERTIFICATES_ISSUED.inc()
    ISSUANCE_SECONDS.observe(time.perf_counter() - started)
    log.info("issued serial %s for %s (order %s)", issued.serial_hex, issued.names, current.id)
    return acme_json(request, order_json(done, state.urls), location=state.urls.order(done.id))


async def _recheck_caa(state: AppState, order: order_store.Order) -> tuple[list[str], datetime]:
    """CAA again for the order's names whose check is too old (validation/caa_recheck.py);
    the authorizations re-checked and when, for the issuing unit to record."""
    now = datetime.now(UTC)
    if state.caa is None:
        return [], now

    def read(conn: sa.Connection) -> list[order_store.Authorization]:
        found = (order_store.get_authz(conn, authz_id) for authz_id in order.authz_ids)
        return [a for a in found if a is not None]

    authzs = await state.db.read(read)
    if not caa_recheck.stale(authzs, now, state.settings.caa_recheck_after):
        return [], now
    return await caa_recheck.recheck(state.caa, authzs, now, state.settings.caa_recheck_after), now


async def certificate(request: web.Request) -> web.Response:
    state = state_of(request)
    signed = await authenticate(request)
    require_post_as_get(signed)
    assert signed.account is not None
    cert_id = request.match_info["cert_id"]
    cert = await state.db.read(lambda conn: cert_store.by_id(conn, cert_id))
    if cert is None or cert.account_id != signed.account.id:
        raise AcmeProblem(ProblemType.MALFORMED, "no such certificate for this account", status=404)
    response = web.Response(body=(cert.chain_pem).encode(), headers={"Content-Type": PEM_CHAIN})
    response.headers.add("Link", link(state.urls.issuer, "up"))
    return response


async def issuer(request: web.Request) -> web.Response:
    """The issuing chain above our leaves (unauthenticated GET, for `rel="up"`)."""
    state = state_of(request)
    body = state.ca.issuer_chain_pem or state.ca.root_pem
    return web.Response(body=body.encode(), headers={"Content-Type": PEM_CHAIN})


async def revoke(request: web.Request) -> web.Response:
    state = state_of(request)
    signed = await authenticate(request, allow_jwk=True)
    payload = signed.jws.payload_json()
    der = b64u_decode(payload.get("certificate"), "certificate")
    try:
        leaf = x509.load_der_x509_certificate(der)
    except ValueError:
        raise AcmeProblem(
            ProblemType.MALFORMED, "certificate is not a DER X.509 certificate"
        ) from None
    reason = payload.get("reason", 0)
    if not isinstance(reason, int) or isinstance(reason, bool) or reason not in REVOCATION_REASONS:
        raise AcmeProblem(
            ProblemType.BAD_REVOCATION_REASON,
            f"revocation reason {reason!r} is not allowed; use 0, 1, 3, 4 or 5",
        )
    serial = format(leaf.serial_number, "x")
    now = datetime.now(UTC)
    account = signed.account

    def unit(conn: sa.Connection) -> None:
        stored = cert_store.by_serial(conn, serial)
        if stored is None or not _same_leaf(stored.chain_pem, der):
            raise AcmeProblem(
                ProblemType.MALFORMED, "certificate was not issued by this server", status=404
            )
        _refused(revocations.check_revocable, stored, now)
        if account is None:
            if signed.key.spki_sha256() != spki_sha256(leaf.public_key()):
                raise AcmeProblem(
                    ProblemType.UNAUTHORIZED,
                    "the JWS key is not the certificate's key; sign with it or an account",
                )
        elif account.id != stored.account_id:
            held = order_store.valid_authz_names(conn, account.id, now)
            missing = [n for n in stored.names if (n[2:] if n.startswith("*.") else n) not in held]
            if missing:
                raise AcmeProblem(
                    ProblemType.UNAUTHORIZED,
                    "the account neither issued this certificate nor holds valid authorizations "
                    f"for all its names (missing: {', '.join(missing)})",
                )
        _refused(revocations.revoke, conn, stored, reason, now)

    await state.db.write(unit)
    REVOCATIONS.labels(REVOCATION_REASON_NAMES[reason]).inc()
    log.info("revoked serial %s reason %s", serial, reason)
    return web.Response(status=200)


_REFUSALS = {
    revocations.Refusal.ALREADY_REVOKED: ProblemType.ALREADY_REVOKED,
    revocations.Refusal.EXPIRED: ProblemType.UNAUTHORIZED,
    revocations.Refusal.BAD_REASON: ProblemType.BAD_REVOCATION_REASON,
    revocations.Refusal.UNKNOWN: ProblemType.MALFORMED,
}


def _refused(check: Callable[..., object], *args: object) -> None:
    """Run a rule of store/revocations.py; its refusal as the matching ACME problem."""
    try:
        check(*args)
    except revocations.RevocationRefused as exc:
        raise AcmeProblem(_REFUSALS[exc.refusal], exc.detail) from None


def _same_leaf(chain_pem: str, der: bytes) -> bool:
    first = x509.load_pem_x509_certificate(chain_pem.encode())
    return first.public_bytes(serialization.Encoding.DER) == der
