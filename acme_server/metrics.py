"""Prometheus metrics of the server, served on their own listener (`web/metrics_app.py`).

Labels are bounded sets only: route patterns (never raw paths), methods, statuses,
challenge types, outcomes, revocation reasons, store unit kinds. Nothing names an account,
a registration or a domain; per-registration numbers belong to the operator's CR status.

With `serve --workers N` every worker counts into files of a private directory
(prometheus_client's multiprocess mode) and a scrape, answered by any worker, adds them up:
`enable_multiprocess` switches value storage before the workers fork. Gauges say how
workers combine (`livesum`: per-worker amounts added up; `livemax`: per-process bounds;
`livemostrecent`: store-wide numbers one worker samples). Gauges are set by a sampler task, since callback gauges cannot work
across processes.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import os
import tempfile
from collections.abc import Awaitable, Callable
from pathlib import Path

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    REGISTRY,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
    multiprocess,
    values,
)

log = logging.getLogger("acme_server.metrics")

MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"
CONTENT_TYPE = CONTENT_TYPE_LATEST

_FAST = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
_SLOW = (0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 20.0, 30.0, 60.0)

# --- HTTP (web/middleware.py): route is the aiohttp resource pattern, or "unmatched".
REQUESTS = Counter(
    "acme_gateway_http_requests_total",
    "ACME HTTP requests answered, by route pattern, method and status",
    ["route", "method", "status"],
)
REQUEST_SECONDS = Histogram(
    "acme_gateway_http_request_duration_seconds",
    "Time to answer an ACME HTTP request, by route pattern and method",
    ["route", "method"],
    buckets=_FAST,
)
REQUESTS_IN_FLIGHT = Gauge(
    "acme_gateway_http_requests_in_flight",
    "ACME requests inside their handler (sampled each second)",
    multiprocess_mode="livesum",
)
OPEN_CONNECTIONS = Gauge(
    "acme_gateway_open_connections",
    "Open client connections on the ACME port",
    multiprocess_mode="livesum",
)
JWK_CACHE_ENTRIES = Gauge(
    "acme_gateway_jwk_cache_entries",
    "Parsed account keys cached, in the worker holding the most (the bound is per process)",
    multiprocess_mode="livemax",
)
NONCES_ISSUED = Counter("acme_gateway_nonces_issued_total", "Replay nonces handed out")
SPENT_NONCES = Gauge(
    "acme_gateway_spent_nonces",
    "Rows in the store's spent-nonce table (--nonce-scope store; 0 otherwise)",
    multiprocess_mode="livemostrecent",
)

# --- Issuance and revocation (web/handlers/certificates.py)
CERTIFICATES_ISSUED = Counter("acme_gateway_certificates_issued_total", "Certificates issued")
ISSUANCE_SECONDS = Histogram(
    "acme_gateway_issuance_duration_seconds",
    "From a finalize request's arrival to its certificate stored",
    buckets=_FAST,
)
REVOCATIONS = Counter(
    "acme_gateway_revocations_total", "Certificates revoked, by RFC 5280 reason", ["reason"]
)
REVOCATION_REASON_NAMES = {
    0: "unspecified",
    1: "keyCompromise",
    3: "affiliationChanged",
    4: "superseded",
    5: "cessationOfOperation",
}

# --- Validation (validation/scheduler.py); outcome: valid | invalid | retry
VALIDATIONS = Counter(
    "acme_gateway_validations_total",
    "Challenge validation attempts, by type and outcome",
    ["type", "outcome"],
)
VALIDATION_SECONDS = Histogram(
    "acme_gateway_validation_duration_seconds",
    "Time of one validation attempt, by type and outcome",
    ["type", "outcome"],
    buckets=_SLOW,
)
VALIDATION_QUEUE = Gauge(
    "acme_gateway_validation_queue_depth",
    "Challenges accepted and waiting for (or in) validation, store-wide",
    multiprocess_mode="livemostrecent",
)

# --- Store (store/executors.py); kind: read | write
STORE_UNIT_SECONDS = Histogram(
    "acme_gateway_store_unit_duration_seconds",
    "Time of one store unit of work (one transaction), including the wait for its thread",
    ["kind"],
    buckets=_FAST,
)
STORE_UNIT_ERRORS = Counter(
    "acme_gateway_store_unit_errors_total",
    "Store units that failed with a database error (not the ACME refusals they raise)",
    ["kind"],
)
for _kind in ("read", "write"):  # present at 0, so rates and alerts see "no errors"
    STORE_UNIT_ERRORS.labels(_kind)

# --- CA certificates (server.py), for the expiry alerts; certificate: root | ca | ocsp-signer.
# livemin: each worker holds its own OCSP signer; the one expiring first is the one to watch.
CERTIFICATE_EXPIRY = Gauge(
    "acme_gateway_certificate_expiry_timestamp_seconds",
    "Not-after (Unix time) of the CA's certificates: root, ca (the issuing one), ocsp-signer",
    ["certificate"],
    multiprocess_mode="livemin",
)

_ALL = (
    REQUESTS,
    REQUEST_SECONDS,
    REQUESTS_IN_FLIGHT,
    OPEN_CONNECTIONS,
    JWK_CACHE_ENTRIES,
    NONCES_ISSUED,
    SPENT_NONCES,
    CERTIFICATES_ISSUED,
    ISSUANCE_SECONDS,
    REVOCATIONS,
    VALIDATIONS,
    VALIDATION_SECONDS,
    VALIDATION_QUEUE,
    STORE_UNIT_SECONDS,
    STORE_UNIT_ERRORS,
    CERTIFICATE_EXPIRY,
)

_METHODS = frozenset({"GET", "HEAD", "POST"})


def method_label(method: str) -> str:
    """Clients may send any token as a method: keep the label set closed."""
    return method if method in _METHODS else "other"


@functools.lru_cache(maxsize=1024)
def request_series(route: str, method: str, status: int) -> tuple[Counter, Histogram]:
    """The children one request updates; cached, since `labels()` costs more than the
    update (the key space is small: routes x methods x statuses)."""
    return REQUESTS.labels(route, method, str(status)), REQUEST_SECONDS.labels(route, method)


# --- several processes ---------------------------------------------------------------------


def multiprocess_dir() -> Path | None:
    """The directory workers count into, when multiprocess mode is on."""
    path = os.environ.get(MULTIPROC_ENV)
    return Path(path) if path and values.ValueClass is not values.MutexValue else None


def create_multiprocess_dir() -> Path:
    """A fresh private (0700) directory, in shared memory where there is some."""
    shm = Path("/dev/shm")  # noqa: S108 - mkdtemp: a new 0700 directory of a random name
    parent = str(shm) if shm.is_dir() and os.access(shm, os.W_OK) else None
    return Path(tempfile.mkdtemp(prefix="acme-gateway-metrics-", dir=parent))


def enable_multiprocess(directory: Path) -> None:
    """Count into per-process files under `directory` from now on (before forking workers).

    prometheus_client picks its value storage when it is imported, and our metrics exist
    from import on, so: switch the storage class and give every metric (and every child
    of a labelled one made so far, which callers may hold) fresh storage."""
    os.environ[MULTIPROC_ENV] = str(directory)
    values.ValueClass = values.MultiProcessValue()
    for metric in _ALL:
        for child in list(metric._metrics.values()) if metric._labelnames else [metric]:
            child._metric_init()


def mark_dead(pid: int) -> None:
    """A worker exited: drop its live gauges (its counters stay in the totals)."""
    directory = multiprocess_dir()
    if directory is not None:
        multiprocess.mark_process_dead(pid, str(directory))


def exposition() -> bytes:
    """The text format of the whole server: every worker's files, or this process's values.
    Reads files in multiprocess mode, so run it off the event loop."""
    directory = multiprocess_dir()
    if directory is None:
        return generate_latest(REGISTRY)
    registry = CollectorRegistry()
    multiprocess.MultiProcessCollector(registry, path=str(directory))
    return generate_latest(registry)


# --- sampling gauges -------------------------------------------------------------------------

LOCAL_SAMPLE_SECONDS = 1.0
STORE_SAMPLE_SECONDS = 5.0


async def sample_periodically(
    local: list[tuple[Gauge, Callable[[], float]]],
    store: Callable[[], Awaitable[list[tuple[Gauge, float]]]] | None,
) -> None:
    """Set `local` gauges every second and, in the one process given `store`, the
    store-wide ones every few seconds; a failed store read is logged and retried."""
    loop = asyncio.get_running_loop()
    next_store = loop.time()
    while True:
        for gauge, read in local:
            gauge.set(read())
        if store is not None and loop.time() >= next_store:
            next_store = loop.time() + STORE_SAMPLE_SECONDS
            try:
                for gauge, value in await store():
                    gauge.set(value)
            except Exception:
                log.warning("sampling store metrics failed", exc_info=True)
        await asyncio.sleep(LOCAL_SAMPLE_SECONDS)
