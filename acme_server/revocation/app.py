"""The plain-HTTP listener for relying parties (`--crl-listen`): the CRL, OCSP (GET and
POST) and the issuer certificate (AIA caIssuers). Plain HTTP because relying parties fetch
revocation information without TLS (RFC 5280 4.2.1.13, RFC 6960 A.1)."""

from __future__ import annotations

import base64
import binascii
import hashlib
import logging
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from urllib.parse import unquote

from aiohttp import web
from cryptography.hazmat.primitives import serialization
from cryptography.x509 import ocsp as x509_ocsp

from acme_server.ca import CertificateAuthority
from acme_server.ca.revocation_urls import CRL_PATH, ISSUER_PATH, OCSP_PATH
from acme_server.revocation import ocsp
from acme_server.revocation.crl_publisher import CrlPublisher
from acme_server.revocation.status import status_of
from acme_server.store.database import Database

log = logging.getLogger("acme_server.revocation")

MAX_OCSP_REQUEST = 8 * 1024  # one CertID, a nonce and perhaps a signature fit easily
OCSP_REQUEST_TYPE = "application/ocsp-request"
OCSP_RESPONSE_TYPE = "application/ocsp-response"


@dataclass
class RevocationState:
    db: Database
    ca: CertificateAuthority
    publisher: CrlPublisher
    issuer_ids: ocsp.IssuerIds
    ocsp_validity: timedelta


REVOCATION_KEY = web.AppKey("revocation_state", RevocationState)


def _http_date(value: datetime) -> str:
    return format_datetime(value.astimezone(UTC), usegmt=True)


def _cacheable(
    body: bytes, content_type: str, this_update: datetime, next_update: datetime
) -> web.Response:
    """RFC 5019 6.2 caching headers: fresh until nextUpdate, never served stale."""
    max_age = max(0, int((next_update - datetime.now(UTC)).total_seconds()))
    return web.Response(
        body=body,
        headers={
            "Content-Type": content_type,
            "Cache-Control": f"max-age={max_age}, public, no-transform, must-revalidate",
            "Last-Modified": _http_date(this_update),
            "Expires": _http_date(next_update),
            "ETag": '"' + hashlib.sha256(body).hexdigest()[:32] + '"',
        },
    )


def _key_id(request: web.Request, suffix: str) -> str:
    name = request.match_info["name"]
    if not name.endswith(suffix):
        raise web.HTTPNotFound()
    return name[: -len(suffix)].lower()


async def crl(request: web.Request) -> web.Response:
    state = request.app[REVOCATION_KEY]
    if _key_id(request, ".crl") != state.publisher.key_id:
        raise web.HTTPNotFound(text="no CRL for this issuer here\n")
    try:
        current = await state.publisher.current()
    except Exception:
        log.exception("serving the CRL failed")
        raise web.HTTPServiceUnavailable(
            text="the CRL is unavailable right now\n", headers={"Retry-After": "30"}
        ) from None
    assert current.der is not None and current.this_update and current.next_update
    return _cacheable(current.der, "application/pkix-crl", current.this_update, current.next_update)


async def issuer(request: web.Request) -> web.Response:
    state = request.app[REVOCATION_KEY]
    if _key_id(request, ".der") != state.ca.issuer_key_id.hex():
        raise web.HTTPNotFound(text="no such issuer here\n")
    der = state.ca.issuer_certificate.public_bytes(serialization.Encoding.DER)
    return web.Response(
        body=der,
        headers={"Content-Type": "application/pkix-cert", "Cache-Control": "max-age=86400, public"},
    )


async def ocsp_post(request: web.Request) -> web.Response:
    if request.content_type != OCSP_REQUEST_TYPE:
        return _ocsp_response(ocsp.unsuccessful(x509_ocsp.OCSPResponseStatus.MALFORMED_REQUEST))
    if request.content_length is not None and request.content_length > MAX_OCSP_REQUEST:
        return _ocsp_response(ocsp.unsuccessful(x509_ocsp.OCSPResponseStatus.MALFORMED_REQUEST))
    body = await request.content.read(MAX_OCSP_REQUEST + 1)
    if len(body) > MAX_OCSP_REQUEST:
        return _ocsp_response(ocsp.unsuccessful(x509_ocsp.OCSPResponseStatus.MALFORMED_REQUEST))
    return _ocsp_response(await _answer(request, body))


async def ocsp_get(request: web.Request) -> web.Response:
    """RFC 6960 A.1: `{url}/{url-encoding of the base64 DER request}` (may contain '/')."""
    raw = request.raw_path.split("?", 1)[0][len(OCSP_PATH) + 1 :]
    try:
        der = base64.b64decode(unquote(raw), validate=True)
    except (binascii.Error, ValueError):
        der = b""
    return _ocsp_response(await _answer(request, der))


async def _answer(request: web.Request, der: bytes) -> ocsp.Answer:
    state = request.app[REVOCATION_KEY]
    parsed = ocsp.parse_request(der)
    if parsed is None:
        return ocsp.unsuccessful(x509_ocsp.OCSPResponseStatus.MALFORMED_REQUEST)
    if not state.issuer_ids.matches(parsed):
        return ocsp.unsuccessful(x509_ocsp.OCSPResponseStatus.UNAUTHORIZED)
    try:
        status = await status_of(state.db, state.issuer_ids.key_id, parsed.serial_number)
    except Exception:
        log.exception("OCSP status lookup failed")
        return ocsp.unsuccessful(x509_ocsp.OCSPResponseStatus.TRY_LATER)
    responder = state.ca.ocsp_responders.current()
    return ocsp.sign(parsed, status, responder, validity=state.ocsp_validity)


def _ocsp_response(answer: ocsp.Answer) -> web.Response:
    if answer.next_update is None or answer.this_update is None:
        return web.Response(
            body=answer.der,
            headers={"Content-Type": OCSP_RESPONSE_TYPE, "Cache-Control": "no-store"},
        )
    return _cacheable(answer.der, OCSP_RESPONSE_TYPE, answer.this_update, answer.next_update)


async def healthz(_request: web.Request) -> web.Response:
    return web.Response(text="ok\n")


def build_revocation_app(state: RevocationState) -> web.Application:
    app = web.Application(client_max_size=MAX_OCSP_REQUEST)
    app[REVOCATION_KEY] = state
    r = app.router
    r.add_get(CRL_PATH.split("{", 1)[0] + "{name}", crl)
    r.add_get(ISSUER_PATH.split("{", 1)[0] + "{name}", issuer)
    r.add_post(OCSP_PATH, ocsp_post)
    r.add_get(OCSP_PATH + "/{request:.+}", ocsp_get)
    r.add_get("/healthz", healthz)
    return app
