"""The unauthenticated resources: directory, newNonce, health (metrics: web/metrics_app.py)."""

from __future__ import annotations

from typing import Any

from aiohttp import web

from acme_server.web.responses import acme_json
from acme_server.web.state import state_of


async def directory(request: web.Request) -> web.Response:
    state = state_of(request)
    urls, settings = state.urls, state.settings
    meta: dict[str, Any] = {
        "externalAccountRequired": settings.eab_required,
        "website": settings.website or urls.base,
    }
    if settings.terms_of_service:
        meta["termsOfService"] = settings.terms_of_service
    if offered := settings.profile_set.meta():
        meta["profiles"] = offered  # draft-ietf-acme-profiles: name -> description
    if settings.caa_identities:
        meta["caaIdentities"] = list(settings.caa_identities)  # RFC 8555 7.1.1
    body = {
        "newNonce": urls.new_nonce,
        "newAccount": urls.new_account,
        "newOrder": urls.new_order,
        "revokeCert": urls.revoke_cert,
        "keyChange": urls.key_change,
        "renewalInfo": urls.renewal_info,
        "meta": meta,
    }
    response = acme_json(request, body)
    response.headers["Cache-Control"] = "public, max-age=60"
    return response


async def new_nonce(request: web.Request) -> web.Response:
    # The middleware attaches the Replay-Nonce itself.
    status = 200 if request.method == "HEAD" else 204
    return web.Response(status=status, headers={"Cache-Control": "no-store"})


async def healthz(_request: web.Request) -> web.Response:
    return web.Response(text="ok\n")
