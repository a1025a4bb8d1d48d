"""The standby replica's liveness endpoint: kopf (and its /healthz) runs only in the leader.

A standby is healthy when its store answers; it reconciles, exports and sweeps nothing, so
there is nothing else to check. The leader's /healthz is kopf's (handlers/operator_level.py).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator

from aiohttp import web

from acme_operator.metrics import HEAD_TIMEOUT, parse_listen
from acme_server.store.operator_facade import OperatorStore

log = logging.getLogger(__name__)

PING_TIMEOUT = 5.0


def build_app(store: OperatorStore) -> web.Application:
    async def healthz(_request: web.Request) -> web.Response:
        try:
            await asyncio.wait_for(store.ping(), PING_TIMEOUT)
        except Exception as exc:
            log.warning("standby liveness: the store does not answer: %s", exc)
            return web.json_response({"store": "unreachable", "leader": False}, status=500)
        return web.json_response({"store": "ok", "leader": False})

    app = web.Application()
    app.router.add_get("/healthz", healthz)
    return app


@contextlib.asynccontextmanager
async def health(listen: str, store: OperatorStore) -> AsyncIterator[None]:
    """Serve /healthz on `listen` (HOST:PORT) while the block runs."""
    host, port = parse_listen(listen, "--health-listen")
    runner = web.AppRunner(build_app(store), access_log=None, keepalive_timeout=HEAD_TIMEOUT)
    await runner.setup()
    try:
        await web.TCPSite(runner, host, port).start()
        yield
    finally:
        await runner.cleanup()
