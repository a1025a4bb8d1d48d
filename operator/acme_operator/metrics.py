"""The operator's Prometheus metrics and their listener (`--metrics-listen`).

`/metrics` is served on its own port, apart from kopf's liveness endpoint, from a registry
of its own (no process/platform collectors of another component mixed in). Labels come from
closed sets (kind, outcome, Ready reason): never a namespace or object name, so 10,000
registrations cost as many series as one.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from datetime import UTC, datetime

from aiohttp import web
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.exposition import CONTENT_TYPE_LATEST
from prometheus_client.registry import Collector

from acme_server.store.operator_facade import OperatorStore

log = logging.getLogger(__name__)

REGISTRY = CollectorRegistry(auto_describe=True)

KINDS = ("AcmeRegistration", "AllowedDomain")
# ready: Ready=True; not_ready: reconciled, Ready=False (the reason says why);
# skipped: up to date after a restart; error: the handler raised (kopf retries).
RECONCILE_OUTCOMES = ("ready", "not_ready", "skipped", "error")
# exported: Secret created or replaced; unchanged: already equal; orphaned: no live
# AcmeRegistration to own it (stays in the store); failed: retried next round.
EXPORT_OUTCOMES = ("exported", "unchanged", "orphaned", "failed")
# Every reason an AcmeRegistration's Ready condition can carry (reconcile.py), plus
# Pending (no Ready condition yet) and Other (anything else: keeps the label set closed).
READY_REASONS = (
    "Reconciled",
    "NoAllowedDomains",
    "Suspended",
    "SecretConflict",
    "InvalidHMACKey",
    "KeyIDConflict",
    "StoreRejected",
    "RotationRefused",
    "Pending",
    "Other",
)

RECONCILES = Counter(
    "acme_operator_reconciles_total",
    "Reconciles of custom resources by kind and outcome.",
    ["kind", "outcome"],
    registry=REGISTRY,
)
RECONCILE_SECONDS = Histogram(
    "acme_operator_reconcile_duration_seconds",
    "Time one reconcile took, by kind.",
    ["kind"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
    registry=REGISTRY,
)
EXPORTS = Counter(
    "acme_operator_certificate_exports_total",
    "Certificates handled by the exporter, by outcome.",
    ["outcome"],
    registry=REGISTRY,
)
EXPORT_LAG = Gauge(
    "acme_operator_export_lag_seconds",
    "Age of the oldest change (issuance, revocation) not yet exported to a Secret; "
    "0 when nothing waits. Sampled from the store at scrape time.",
    registry=REGISTRY,
)
REVOCATIONS = Counter(
    "acme_operator_revocations_total",
    "Revoke annotations handled, by outcome (the Event's reason) and, for a revocation, its "
    "RFC 5280 reason; ACME revocations are acme_gateway_revocations_total on the server.",
    ["outcome", "reason"],
    registry=REGISTRY,
)
LEADER = Gauge(
    "acme_operator_leader",
    "1 while this replica is the active one (holds the Lease, or leader election is off); "
    "0 while it is a standby.",
    registry=REGISTRY,
)
for _kind in KINDS:
    RECONCILE_SECONDS.labels(_kind)
    for _outcome in RECONCILE_OUTCOMES:
        RECONCILES.labels(_kind, _outcome)
for _outcome in EXPORT_OUTCOMES:
    EXPORTS.labels(_outcome)

# The Ready reasons of the registrations the operator currently sees, read at scrape time.
ReasonSource = Callable[[], Iterable[str | None]]


class Outcome:
    """What a `reconcile_timer` block ends with; `error` unless the block sets another."""

    def __init__(self) -> None:
        self.value = "error"


@contextlib.contextmanager
def reconcile_timer(kind: str) -> Iterator[Outcome]:
    """Count and time one reconcile; the block sets `.value` to its outcome."""
    outcome = Outcome()
    started = time.perf_counter()
    try:
        yield outcome
    except BaseException:
        outcome.value = "error"
        raise
    finally:
        RECONCILE_SECONDS.labels(kind).observe(time.perf_counter() - started)
        RECONCILES.labels(kind, outcome.value).inc()


def set_leader(active: bool) -> None:
    LEADER.set(1 if active else 0)


def count_exports(outcome: str, n: int = 1) -> None:
    if n:
        EXPORTS.labels(outcome).inc(n)


def reason_label(reason: str | None) -> str:
    if reason is None:
        return "Pending"
    return reason if reason in READY_REASONS else "Other"


class _Registrations(Collector):
    """`acme_operator_registrations{reason}`: counted from the source at every scrape."""

    def __init__(self) -> None:
        self.source: ReasonSource | None = None

    def describe(self) -> Iterable[Metric]:
        return [self._family()]

    def _family(self) -> GaugeMetricFamily:
        return GaugeMetricFamily(
            "acme_operator_registrations",
            "AcmeRegistrations the operator sees, by the reason of their Ready condition.",
            labels=["reason"],
        )

    def collect(self) -> Iterable[Metric]:
        counts = dict.fromkeys(READY_REASONS, 0)
        if self.source is not None:
            for reason in self.source():
                counts[reason_label(reason)] += 1
        family = self._family()
        for reason, n in counts.items():
            family.add_metric([reason], n)
        return [family]


_REGISTRATIONS = _Registrations()
REGISTRY.register(_REGISTRATIONS)


def watch_registrations(source: ReasonSource) -> None:
    """Where the registrations gauge reads from (kopf's index, once the operator started)."""
    _REGISTRATIONS.source = source


def lag_seconds(oldest: datetime | None, now: datetime) -> float:
    return 0.0 if oldest is None else max(0.0, (now - oldest).total_seconds())


async def sample_export_lag(store: OperatorStore, namespaces: Sequence[str]) -> None:
    oldest = await store.oldest_pending_export(namespaces)
    EXPORT_LAG.set(lag_seconds(oldest, datetime.now(UTC)))


# ---------------------------------------------------------------- listener

SAMPLE_TIMEOUT = 5.0
HEAD_TIMEOUT = 10.0


def parse_listen(listen: str, flag: str) -> tuple[str, int]:
    host, sep, port = listen.rpartition(":")
    if not sep or not port.isdigit() or not host or int(port) > 65535:
        raise ValueError(f"{flag}: expected HOST:PORT, got {listen!r}")
    return host.strip("[]"), int(port)


def build_app(store: OperatorStore, namespaces: Sequence[str]) -> web.Application:
    async def scrape(_request: web.Request) -> web.Response:
        try:
            await asyncio.wait_for(sample_export_lag(store, namespaces), SAMPLE_TIMEOUT)
        except Exception as exc:  # a slow store must not fail the scrape: keep the last value
            log.warning("could not sample the export lag: %s", exc)
        return web.Response(
            body=generate_latest(REGISTRY), headers={"Content-Type": CONTENT_TYPE_LATEST}
        )

    app = web.Application()
    app.router.add_get("/metrics", scrape)
    return app


class ListenError(Exception):
    """The metrics listener cannot be opened (a busy port, an address not on this host)."""


async def start(
    listen: tuple[str, int], store: OperatorStore, namespaces: Sequence[str]
) -> web.AppRunner:
    """Serve `/metrics` on `listen`; the caller cleans up the returned runner."""
    runner = web.AppRunner(
        build_app(store, namespaces), access_log=None, keepalive_timeout=HEAD_TIMEOUT
    )
    await runner.setup()
    host, port = listen
    try:
        await web.TCPSite(runner, host, port).start()
    except OSError as exc:
        await runner.cleanup()
        raise ListenError(f"cannot listen on {host}:{port} for metrics: {exc.strerror}") from None
    except BaseException:
        await runner.cleanup()
        raise
    log.info("metrics on http://%s:%d/metrics", host, port)
    return runner
