"""Running the ACME server: start-up (store, CA, nonces, TLS), the validation loop, shutdown."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import ssl
from pathlib import Path

from aiohttp import web
from sqlalchemy.exc import DBAPIError

from acme_server.ca import CertificateAuthority
from acme_server.config import Settings
from acme_server.store import meta, retention
from acme_server.store.database import Database, redact_url
from acme_server.store.files import private_dir
from acme_server.store.nonces import NonceService, load_or_create_key
from acme_server.store.registrations import warn_ungranted
from acme_server.validation.http01 import make_http_session
from acme_server.validation.resolver import make_resolver
from acme_server.validation.scheduler import ValidationScheduler
from acme_server.web.app import build_app
from acme_server.web.state import AppState
from acme_server.web.urls import Urls

log = logging.getLogger("acme_server")

NONCE_PURGE_SECONDS = 300


def _tls_context(cert: Path, key: Path) -> ssl.SSLContext:
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.load_cert_chain(cert, key)
    return context


async def serve(
    settings: Settings,
    *,
    tls_cert: Path | None = None,
    tls_key: Path | None = None,
    insecure_http: bool = False,
    ca_cert: Path | None = None,
    ca_key: Path | None = None,
    replace_ca_root: bool = False,
) -> None:
    """Run until SIGINT/SIGTERM."""
    private_dir(settings.data_dir)
    try:
        db = await Database.open(settings.database_url)
    except (OSError, DBAPIError) as exc:
        raise StartupError(
            f"cannot open the store {redact_url(settings.database_url)}: {exc}"
        ) from None
    await warn_ungranted(db)
    loop = asyncio.get_running_loop()
    ca = await loop.run_in_executor(
        None,
        lambda: CertificateAuthority.load_or_create(
            settings.data_dir, ca_cert=ca_cert, ca_key=ca_key
        ),
    )
    await _record_ca_root(db, ca.root_pem, replace=replace_ca_root)
    nonces = NonceService(
        db, await load_or_create_key(db), int(settings.nonce_lifetime.total_seconds())
    )
    state = AppState(settings=settings, db=db, ca=ca, nonces=nonces, urls=Urls(settings.base_url))
    resolver = make_resolver(list(settings.dns_resolvers), timeout=settings.validation_timeout)
    session = make_http_session(resolver, timeout=settings.validation_timeout)
    scheduler = ValidationScheduler(db, settings, resolver, session, state.validation_wakeup)

    ssl_context: ssl.SSLContext | None = None
    if not insecure_http:
        if tls_cert is not None and tls_key is not None:
            pair = (tls_cert, tls_key)
        else:
            names = list(settings.tls_names)
            pair = await loop.run_in_executor(
                None, lambda: ca.ensure_serving_certificate(settings.data_dir, names)
            )
        ssl_context = _tls_context(*pair)

    runner = web.AppRunner(build_app(state), access_log=logging.getLogger("acme_server.access"))
    await runner.setup()
    site = web.TCPSite(
        runner,
        settings.listen_host,
        settings.listen_port,
        ssl_context=ssl_context,
        backlog=512,
        reuse_address=True,
    )
    await site.start()
    stop = asyncio.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    tasks = [
        asyncio.create_task(scheduler.run(), name="validation"),
        asyncio.create_task(_purge_nonces(nonces), name="nonce-purge"),
        asyncio.create_task(retention.run_periodically(db, settings.purge_after), name="purge"),
    ]
    log.info(
        "acme-gateway serving %s (directory %s, account creation %s)",
        "https" if ssl_context else "http",
        state.urls.directory,
        settings.account_creation,
    )
    try:
        await stop.wait()
    finally:
        log.info("shutting down")
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        await scheduler.close()
        await runner.cleanup()
        await session.close()
        await db.close()


class StartupError(RuntimeError):
    """A configuration the server refuses to start with; the message says what to fix."""


async def _record_ca_root(db: Database, root_pem: str, *, replace: bool) -> None:
    """Every process on one store must issue under one root; refuse a second, silent CA."""
    stored = await meta.get(db, meta.CA_ROOT_PEM)
    if stored is not None and stored != root_pem and not replace:
        await db.close()
        raise StartupError(
            "this store already serves certificates under a different CA root: start every "
            "server on it with the same CA (the same --data-dir, or the same --ca-cert/--ca-key), "
            "or pass --replace-ca-root to make this process's CA the store's root"
        )
    await meta.put(db, meta.CA_ROOT_PEM, root_pem)


async def _purge_nonces(nonces: NonceService) -> None:
    while True:
        await asyncio.sleep(NONCE_PURGE_SECONDS)
        try:
            await nonces.purge_expired()
        except Exception:
            log.exception("purging spent nonces failed")
