"""The aiohttp application: routes, middleware and shared state."""

from __future__ import annotations

from aiohttp import web

from acme_server.web.handlers import accounts, certificates, directory, orders, renewal_info
from acme_server.web.middleware import acme_middleware, context_middleware
from acme_server.web.state import STATE_KEY, AppState


def build_app(state: AppState) -> web.Application:
    app = web.Application(
        middlewares=[context_middleware, acme_middleware],
        client_max_size=state.settings.max_body_bytes,
    )
    app[STATE_KEY] = state
    r = app.router
    r.add_get("/directory", directory.directory)
    r.add_route("HEAD", "/acme/new-nonce", directory.new_nonce)
    r.add_get("/acme/new-nonce", directory.new_nonce, allow_head=False)
    r.add_post("/acme/new-account", accounts.new_account)
    r.add_post("/acme/acct/{account_id}", accounts.account)
    r.add_post("/acme/acct/{account_id}/orders", orders.orders_list)
    r.add_post("/acme/key-change", accounts.key_change)
    r.add_post("/acme/new-order", orders.new_order)
    r.add_post("/acme/order/{order_id}", orders.order)
    r.add_post("/acme/order/{order_id}/finalize", certificates.finalize)
    r.add_post("/acme/authz/{authz_id}", orders.authz)
    r.add_post("/acme/chall/{challenge_id}", orders.challenge)
    r.add_post("/acme/cert/{cert_id}", certificates.certificate)
    r.add_post("/acme/revoke-cert", certificates.revoke)
    r.add_get("/acme/issuer", certificates.issuer)
    r.add_get("/acme/renewal-info/{cert_id}", renewal_info.renewal_info)
    r.add_get("/healthz", directory.healthz)
    return app
