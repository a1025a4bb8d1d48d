"""Running the ACME server: composed from `Settings` (store, CA, nonces, TLS, validation,
listener) on one exit stack, so shutdown and a failed start-up unwind the same way."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import resource
import signal
import ssl
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from aiohttp import web
from prometheus_client import Gauge
from sqlalchemy.exc import DBAPIError

from acme_server import jose, metrics
from acme_server.ca import CertificateAuthority
from acme_server.ca.constraints import NameConstraintsSpec
from acme_server.ca.ocsp_responder import Responder
from acme_server.config import Settings
from acme_server.nonces import NonceService, WindowLedger
from acme_server.revocation.listener import start_revocation
from acme_server.shared_region import SharedRegion
from acme_server.store import gauges, meta, retention
from acme_server.store.availability import log_failure
from acme_server.store.database import Database, redact_url
from acme_server.store.files import private_dir
from acme_server.store.nonces import SpentNonces, load_or_create_key
from acme_server.store.registrations import warn_ungranted
from acme_server.validation.caa_lookup import CaaChecker
from acme_server.validation.http01 import make_http_session
from acme_server.validation.resolver import make_resolver
from acme_server.validation.scheduler import ValidationScheduler
from acme_server.web.account_cache import AccountCache
from acme_server.web.app import build_app
from acme_server.web.connections import ConnectionLimiter, GuardedTCPSite
from acme_server.web.draining import DRAINING_KEY, Draining
from acme_server.web.listeners import CANCEL_GRACE_SECONDS, Listeners
from acme_server.web.metrics_app import start_metrics
from acme_server.web.middleware import AccessLogger
from acme_server.web.state import AppState
from acme_server.web.urls import Urls

log = logging.getLogger("acme_server")

NONCE_PURGE_SECONDS = 300
LINGERING_SECONDS = 2.0
FD_HEADROOM = 256  # descriptors besides client connections


def _tls_context(cert: Path, key: Path) -> ssl.SSLContext:
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.load_cert_chain(cert, key)
    return context


@dataclass(frozen=True)
class WorkerRole:
    """One of several processes of a `serve --workers N` (see `workers`): the supervisor
    prepared the store and CA, created the shared region, and waits on `ready`."""

    index: int
    region_path: Path
    ready: Callable[[], None]


async def run_server(settings: Settings, role: WorkerRole | None = None) -> None:
    """Run until SIGINT/SIGTERM, as the only process (`role` None) or as one worker.

    Every part started is registered on one exit stack as it starts, so shutdown, and a
    start-up that fails half way (a bad CA after the store opened, a busy port), stop exactly
    what was started, newest first.
    """
    async with contextlib.AsyncExitStack() as stack:
        listeners = Listeners(settings.shutdown_timeout)
        stack.push_async_callback(listeners.drain)
        await start(settings, stack, role, listeners)
        if role is not None:
            role.ready()
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
            stack.callback(loop.remove_signal_handler, sig)
        await stop.wait()
        # Stop accepting first and let requests in flight finish, while the store,
        # validation and everything else they use still run; then the stack unwinds:
        # validations still running are cancelled and hand their leases back.
        await listeners.drain()


async def prepare(settings: Settings) -> None:
    """What one process does once for all workers: migrate the store, create or check the
    CA and its serving certificate, record the CA root and the nonce key, then close."""
    async with contextlib.AsyncExitStack() as stack:
        db = await _open_store(settings, migrate=True)
        stack.push_async_callback(db.close)
        await _prepare_store(settings, db, await _load_ca(settings))
        await load_or_create_key(db)


async def _prepare_store(settings: Settings, db: Database, ca: CertificateAuthority) -> None:
    await warn_ungranted(db)
    await _record_ca_root(db, ca.root_pem, replace=settings.replace_ca_root)
    await _ssl_context(settings, ca)  # creates our serving certificate if needed


async def start(
    settings: Settings,
    stack: contextlib.AsyncExitStack,
    role: WorkerRole | None = None,
    listeners: Listeners | None = None,
) -> AppState:
    """Compose the server from `settings`: store, CA, nonces, validation, HTTP(S) and metrics
    listeners and background loops; each pushes its own shutdown onto `stack`, and the
    listeners join `listeners` so SIGTERM stops them first."""
    if listeners is None:
        listeners = Listeners(settings.shutdown_timeout)
        stack.push_async_callback(listeners.drain)
    db = await _open_store(settings, migrate=role is None)
    stack.push_async_callback(db.close)
    ca = await _load_ca(settings)
    if role is None:
        await _prepare_store(settings, db, ca)
        region = SharedRegion.create()
        stack.callback(region.remove)
    else:
        region = SharedRegion.attach(role.region_path)
    stack.callback(region.close)
    ledger = WindowLedger(region) if settings.nonce_scope == "server" else SpentNonces(db)
    nonces = NonceService(
        ledger, await load_or_create_key(db), int(settings.nonce_lifetime.total_seconds())
    )
    state = AppState(
        settings=settings,
        db=db,
        ca=ca,
        nonces=nonces,
        urls=Urls(settings.base_url),
        accounts=AccountCache(db, settings.account_cache_seconds, region),
    )
    resolver = make_resolver(list(settings.dns_resolvers), timeout=settings.validation_timeout)
    session = make_http_session(resolver, timeout=settings.validation_timeout)
    stack.push_async_callback(session.close)
    ssl_context = await _ssl_context(settings, ca)
    housekeeping = role is None or role.index == 0  # needs one process, not every worker
    limiter, draining = await _listen(
        settings, state, ssl_context, listeners, reuse_port=role is not None
    )
    revocation_tasks = await start_revocation(
        settings, db, ca, listeners, reuse_port=role is not None, housekeeping=housekeeping
    )
    # Background tasks are cancelled before anything they use closes, also when a later step
    # of the start-up fails: the cancel is registered before the first task exists.
    tasks: list[asyncio.Task[None]] = list(revocation_tasks)
    stack.push_async_callback(_cancel, tasks)
    if settings.metrics_listen is not None:
        listeners.add(
            await start_metrics(
                settings.metrics_listen,
                reuse_port=role is not None,
                shutdown_timeout=CANCEL_GRACE_SECONDS,
            )
        )
        tasks.append(
            asyncio.create_task(
                _sample_metrics(settings, state, limiter, draining, housekeeping),
                name="metrics",
            )
        )
    if settings.caa_identities:
        state.caa = CaaChecker(
            resolver,
            settings.caa_identities,
            account_uri=state.urls.account,
            timeout=settings.validation_timeout,
        )
    scheduler = ValidationScheduler(
        db, settings, resolver, session, state.validation_wakeup, caa=state.caa
    )
    stack.push_async_callback(scheduler.close)
    state.scheduler = scheduler
    scheduler.start()
    if housekeeping:
        tasks.append(asyncio.create_task(_purge_nonces(nonces), name="nonce-purge"))
        tasks.append(
            asyncio.create_task(retention.run_periodically(db, settings.purge_after), name="purge")
        )
    stack.callback(log.info, "shutting down")
    log.info(
        "acme-gateway serving %s (directory %s, account creation %s%s)",
        "https" if ssl_context else "http",
        state.urls.directory,
        settings.account_creation,
        "" if role is None else f", worker {role.index + 1} of {settings.workers}",
    )
    return state


async def _open_store(settings: Settings, *, migrate: bool) -> Database:
    private_dir(settings.data_dir)
    try:
        return await Database.open(settings.database_url, migrate=migrate)
    except (OSError, DBAPIError) as exc:
        raise StartupError(
            f"cannot open the store {redact_url(settings.database_url)}: {exc}"
        ) from None


async def _load_ca(settings: Settings) -> CertificateAuthority:
    """The given CA (--ca-cert/--ca-key) or the generated one; file work off the loop."""
    constraints = NameConstraintsSpec.from_domains(
        settings.ca_permitted_domains, settings.ca_excluded_domains
    )
    return await asyncio.get_running_loop().run_in_executor(
        None,
        lambda: CertificateAuthority.load_or_create(
            settings.data_dir,
            ca_cert=settings.ca_cert,
            ca_key=settings.ca_key,
            constraints=constraints,
            leaf_client_auth=settings.leaf_client_auth,
            revocation_base_url=settings.crl_base_url,
        ),
    )


async def _ssl_context(settings: Settings, ca: CertificateAuthority) -> ssl.SSLContext | None:
    """None for --insecure-http; else the given --tls-cert/--tls-key or our own leaf."""
    if settings.insecure_http:
        return None
    if settings.tls_cert is not None and settings.tls_key is not None:
        return _tls_context(settings.tls_cert, settings.tls_key)
    names = list(settings.tls_names)
    pair = await asyncio.get_running_loop().run_in_executor(
        None, lambda: ca.ensure_serving_certificate(settings.data_dir, names)
    )
    return _tls_context(*pair)


async def _listen(
    settings: Settings,
    state: AppState,
    ssl_context: ssl.SSLContext | None,
    listeners: Listeners,
    *,
    reuse_port: bool,
) -> tuple[ConnectionLimiter, Draining]:
    # keepalive_timeout doubles as the request-head timeout (see web.connections).
    runner = web.AppRunner(
        build_app(state),
        access_log=logging.getLogger("acme_server.access"),
        access_log_class=AccessLogger,
        keepalive_timeout=settings.request_head_timeout,
        # After an answer given before the body was read (413, 408), drain the rest this
        # long at most so the client sees the answer rather than a reset, then close.
        lingering_time=LINGERING_SECONDS,
        # Listeners.drain waits for requests first; this is only aiohttp's cancelling.
        shutdown_timeout=CANCEL_GRACE_SECONDS,
    )
    draining = Draining()
    runner.app[DRAINING_KEY] = draining
    await runner.setup()
    listeners.add(runner, draining)
    _raise_open_files_limit(settings.max_connections)
    limiter = ConnectionLimiter(settings.max_connections)
    site = GuardedTCPSite(
        runner,
        settings.listen_host,
        settings.listen_port,
        limiter=limiter,
        handshake_timeout=settings.request_head_timeout,
        ssl_context=ssl_context,
        backlog=512,
        reuse_port=reuse_port,
    )
    await site.start()
    return limiter, draining


async def _sample_metrics(
    settings: Settings,
    state: AppState,
    limiter: ConnectionLimiter,
    draining: Draining,
    housekeeping: bool,
) -> None:
    """Gauges of this process every second; the store-wide ones in one process only."""
    store_scope = settings.nonce_scope == "store"

    async def store_wide() -> list[tuple[Gauge, float]]:
        numbers = await gauges.read(state.db, spent_nonces=store_scope)
        return [
            (metrics.VALIDATION_QUEUE, numbers.validation_queue),
            (metrics.SPENT_NONCES, numbers.spent_nonces or 0),
        ]

    local: list[tuple[Gauge, Callable[[], float]]] = [
        (metrics.OPEN_CONNECTIONS, lambda: limiter.open),
        (metrics.REQUESTS_IN_FLIGHT, lambda: len(draining.busy)),
        (metrics.JWK_CACHE_ENTRIES, lambda: len(jose.KEY_CACHE)),
    ]
    ca = state.ca
    expiry = metrics.CERTIFICATE_EXPIRY
    expiry.labels("root").set(ca.root_certificate.not_valid_after_utc.timestamp())
    expiry.labels("ca").set(ca.issuer_certificate.not_valid_after_utc.timestamp())
    if (first := ca.ocsp_responders.peek()) is not None:  # made at start with --crl-listen
        # No series without a signer: a 0 would read as "expired" to the alert.
        def signer_expiry(responder: Responder = first) -> float:
            current = ca.ocsp_responders.peek() or responder
            return current.certificate.not_valid_after_utc.timestamp()

        local.append((expiry.labels("ocsp-signer"), signer_expiry))
    await metrics.sample_periodically(
        local,
        store_wide if housekeeping else None,
    )


async def _cancel(tasks: list[asyncio.Task[None]]) -> None:
    for task in tasks:
        task.cancel()
    for task in tasks:
        with contextlib.suppress(asyncio.CancelledError):
            await task


class StartupError(RuntimeError):
    """A configuration the server refuses to start with; the message says what to fix."""


async def _record_ca_root(db: Database, root_pem: str, *, replace: bool) -> None:
    """Every process on one store must issue under one root; refuse a second, silent CA."""
    stored = await meta.get(db, meta.CA_ROOT_PEM)
    if stored is not None and stored != root_pem and not replace:
        raise StartupError(
            "this store already serves certificates under a different CA root: start every "
            "server on it with the same CA (the same --data-dir, or the same --ca-cert/--ca-key), "
            "or pass --replace-ca-root to make this process's CA the store's root"
        )
    await meta.put(db, meta.CA_ROOT_PEM, root_pem)


def _raise_open_files_limit(max_connections: int) -> None:
    """Room for the connection cap plus the store, validation and files: without it, accept()
    fails with EMFILE before the cap is reached and asyncio stops accepting for a while."""
    wanted = max_connections + FD_HEADROOM
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != resource.RLIM_INFINITY and soft < wanted:
        new_soft = wanted if hard == resource.RLIM_INFINITY else min(wanted, hard)
        resource.setrlimit(resource.RLIMIT_NOFILE, (new_soft, hard))
        if new_soft < wanted:
            log.warning(
                "open-files limit %d is below --max-connections %d plus %d; raise it (ulimit -n)",
                new_soft,
                max_connections,
                FD_HEADROOM,
            )


async def _purge_nonces(nonces: NonceService) -> None:
    while True:
        await asyncio.sleep(NONCE_PURGE_SECONDS)
        try:
            await nonces.purge_expired()
        except Exception as exc:
            log_failure(log, "purging spent nonces failed", exc)
