"""Starting the relying-party listener (`--crl-listen`) and its background work."""

from __future__ import annotations

import asyncio
import logging
from datetime import UTC, datetime

from aiohttp import web

from acme_server.ca import CertificateAuthority
from acme_server.config import Settings
from acme_server.revocation.app import RevocationState, build_revocation_app
from acme_server.revocation.crl_publisher import CrlPublisher
from acme_server.revocation.ocsp import IssuerIds
from acme_server.store.database import Database
from acme_server.web.connections import ConnectionLimiter, GuardedTCPSite
from acme_server.web.listeners import CANCEL_GRACE_SECONDS, Listeners

log = logging.getLogger("acme_server.revocation")

RESPONDER_CHECK_SECONDS = 600


async def start_revocation(
    settings: Settings,
    db: Database,
    ca: CertificateAuthority,
    listeners: Listeners,
    *,
    reuse_port: bool = False,
    housekeeping: bool = True,
) -> list[asyncio.Task[None]]:
    """Serve CRL/OCSP/issuer on `settings.crl_listen`; the tasks keep CRL and responder
    current. Nothing (no tasks) when the listener is off. With `--workers`, every worker
    listens (`reuse_port`) and one keeps the stored CRL current (`housekeeping`)."""
    if settings.crl_listen is None:
        return []
    loop = asyncio.get_running_loop()
    responder = await loop.run_in_executor(None, ca.ocsp_responders.current)
    ids = await loop.run_in_executor(
        None, lambda: IssuerIds(ca.issuer_certificate, responder.certificate)
    )
    publisher = CrlPublisher(db, ca, settings.crl_validity)
    await publisher.current()  # fail at start-up, not on the first relying party
    state = RevocationState(db, ca, publisher, ids, settings.ocsp_validity)
    runner = web.AppRunner(
        build_revocation_app(state),
        access_log=logging.getLogger("acme_server.revocation.access"),
        keepalive_timeout=settings.request_head_timeout,
        shutdown_timeout=CANCEL_GRACE_SECONDS,
    )
    await runner.setup()
    # Stops accepting with the ACME listener on SIGTERM and closes after its drain.
    listeners.add(runner)
    host, port = settings.crl_listen
    site = GuardedTCPSite(
        runner,
        host,
        port,
        limiter=ConnectionLimiter(settings.max_connections),
        handshake_timeout=settings.request_head_timeout,
        reuse_port=reuse_port,
    )
    await site.start()
    log.info(
        "revocation information on http://%s:%d (leaves point at %s)",
        host,
        port,
        settings.crl_base_url,
    )
    tasks = [asyncio.create_task(_rotate_responder(ca), name="ocsp-responder")]
    if housekeeping:
        tasks.append(asyncio.create_task(publisher.run_periodically(), name="crl"))
    return tasks


async def _rotate_responder(ca: CertificateAuthority) -> None:
    """Replace the responder certificate off the request path, well before it expires."""
    loop = asyncio.get_running_loop()
    while True:
        await asyncio.sleep(RESPONDER_CHECK_SECONDS)
        try:
            await loop.run_in_executor(None, lambda: ca.ocsp_responders.current(datetime.now(UTC)))
        except Exception:
            log.exception("rotating the OCSP responder certificate failed")
