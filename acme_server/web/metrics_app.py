"""The metrics listener (`--metrics-listen`): `/metrics` on its own plain-HTTP port, never on
the ACME port, so it can be kept off the Service clients reach.

With `--workers N`, every worker listens on the same port (SO_REUSEPORT, like the ACME and
CRL listeners) and answers with the aggregate of all workers' files, so any worker's answer
is the whole server's. This keeps the supervisor a plain process that forks (no threads or
event loop in it), and a scrape works as long as one worker does.
"""

from __future__ import annotations

import asyncio
import logging

from aiohttp import web

from acme_server import metrics
from acme_server.web.connections import ConnectionLimiter, GuardedTCPSite

log = logging.getLogger("acme_server.metrics")

MAX_CONNECTIONS = 32  # scrapers, not clients
HEAD_TIMEOUT = 10.0


async def _metrics(_request: web.Request) -> web.Response:
    loop = asyncio.get_running_loop()
    body = await loop.run_in_executor(None, metrics.exposition)  # reads files: off the loop
    return web.Response(body=body, headers={"Content-Type": metrics.CONTENT_TYPE})


def build_metrics_app() -> web.Application:
    app = web.Application()
    app.router.add_get("/metrics", _metrics)
    return app


async def start_metrics(
    listen: tuple[str, int], *, reuse_port: bool, shutdown_timeout: float
) -> web.AppRunner:
    """Serve `/metrics` on `listen`; the caller stops the returned runner at shutdown."""
    runner = web.AppRunner(
        build_metrics_app(),
        access_log=None,  # a scrape every few seconds would drown the access log
        keepalive_timeout=HEAD_TIMEOUT,
        shutdown_timeout=shutdown_timeout,
    )
    await runner.setup()
    host, port = listen
    site = GuardedTCPSite(
        runner,
        host,
        port,
        limiter=ConnectionLimiter(MAX_CONNECTIONS),
        handshake_timeout=HEAD_TIMEOUT,
        reuse_port=reuse_port,
    )
    try:
        await site.start()
    except BaseException:
        await runner.cleanup()
        raise
    log.info("metrics on http://%s:%d/metrics", host, port)
    return runner
