"""Leader election over a `coordination.k8s.io/v1` Lease, so that of several operator
replicas exactly one acts (docs/operations.md says why not kopf peering).

client-go's semantics:
- A candidate takes the lease when it is missing, released (no holder), or unchanged for
  `leaseDurationSeconds` as measured on the candidate's own monotonic clock since it last
  saw the record change (client-go's observedTime: no trust in another node's wall clock).
- The holder renews every retry period. A renewal sent at time t lets it act until
  t + renew deadline; renew deadline < lease duration, so the holder has stopped before any
  candidate may take over, and the difference covers requests still in flight.
- On losing (deadline passed, or someone else holds the lease) `on_lost` runs at once:
  from the renew loop, and from a watchdog thread, so an event loop busy elsewhere cannot
  delay it. The operator exits there; its restart comes back as a standby.
- `fence_trace` refuses every mutating API request of a holder past its deadline.
- Lease requests use their own small connection pool with a timeout on each one: a renewal
  never waits behind a burst of exports in the main client's pool.
"""

from __future__ import annotations

import asyncio
import logging
import math
import os
import secrets
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import quote

import aiohttp
import kubernetes.client

from acme_operator.kube import bearer, ssl_context

log = logging.getLogger(__name__)

Body = dict[str, Any]
LEASE_API = "coordination.k8s.io/v1"
# One Lease request, at most (a renewal is bounded by the remaining deadline too).
REQUEST_TIMEOUT = 5.0
SA_NAMESPACE_FILE = Path("/var/run/secrets/kubernetes.io/serviceaccount/namespace")
# Methods that change nothing; every other one is refused past the holder's deadline.
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})


class NotLeader(RuntimeError):
    """A mutating request of a replica that is not (or no longer) the leader."""


class LeaseConflict(Exception):
    """Someone else wrote the Lease first (HTTP 409)."""


@dataclass(frozen=True)
class LeaseSettings:
    name: str
    namespace: str
    identity: str
    lease_duration: float = 15.0
    renew_deadline: float = 10.0
    retry_period: float = 2.0

    def __post_init__(self) -> None:
        if not 0 < self.retry_period < self.renew_deadline < self.lease_duration:
            raise ValueError(
                "leader election needs 0 < retry period < renew deadline < lease duration "
                f"(got {self.retry_period}, {self.renew_deadline}, {self.lease_duration})"
            )


def default_identity() -> str:
    """Pod name (downward API POD_NAME, else the host name) plus a random suffix: a restart
    of the same Pod is a new candidate, never mistaken for the holder it replaced."""
    base = os.environ.get("POD_NAME") or socket.gethostname()
    return f"{base}-{secrets.token_hex(4)}"


def default_namespace() -> str | None:
    """The Pod's namespace in a cluster (ServiceAccount mount), else None."""
    try:
        return SA_NAMESPACE_FILE.read_text().strip() or None
    except OSError:
        return None


def micro_time(now: datetime | None = None) -> str:
    """A Kubernetes MicroTime."""
    return (now or datetime.now(UTC)).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


class LeaseApi:
    """get/create/replace of one Lease, each request bounded by `timeout`."""

    def __init__(self, cfg: kubernetes.client.Configuration, namespace: str, name: str) -> None:
        self._cfg = cfg
        base = str(cfg.host).rstrip("/")
        self._collection = f"{base}/apis/{LEASE_API}/namespaces/{quote(namespace)}/leases"
        self._one = f"{self._collection}/{quote(name)}"
        self._session: aiohttp.ClientSession | None = None

    def _http(self) -> aiohttp.ClientSession:
        if self._session is None:
            self._session = aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(ssl=ssl_context(self._cfg), limit=2),
                timeout=aiohttp.ClientTimeout(total=REQUEST_TIMEOUT),
            )
        return self._session

    async def aclose(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def _request(self, method: str, url: str, body: Body | None) -> Body:
        headers = {"Accept": "application/json"}
        token = bearer(self._cfg)
        if token:
            headers["Authorization"] = token
        async with self._http().request(
            method,
            url,
            json=body,
            headers=headers,
        ) as resp:
            if resp.status == 409:
                raise LeaseConflict()
            if resp.status == 404 and method == "GET":
                return {}
            if resp.status >= 400:
                text = (await resp.text())[:300]
                raise RuntimeError(f"{method} lease: HTTP {resp.status}: {text}")
            out = await resp.json()
        assert isinstance(out, dict)
        return out

    async def get(self) -> Body | None:
        return await self._request("GET", self._one, None) or None

    async def create(self, body: Body) -> Body:
        return await self._request("POST", self._collection, body)

    async def replace(self, body: Body) -> Body:
        return await self._request("PUT", self._one, body)


class Elector:
    """One candidate. `acquire()` returns once it leads; `hold()` renews until it loses."""

    def __init__(
        self,
        api: LeaseApi,
        settings: LeaseSettings,
        on_lost: Callable[[str], None],
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.api = api
        self.settings = settings
        self._on_lost = on_lost
        self._clock = clock
        self._observed: Body | None = None  # the lease spec as last seen
        self._observed_at = 0.0
        self._mine: Body | None = None  # the Lease as our last write left it
        self.holder: str | None = None  # who held it when last looked at
        self.leading = False
        self.deadline = 0.0  # monotonic: act only before this
        self._lost = threading.Lock()
        self._lost_reason: str | None = None

    def acting(self) -> bool:
        return self.leading and self._clock() < self.deadline

    def _lease_body(self, spec: Body, resource_version: str | None) -> Body:
        meta: Body = {"name": self.settings.name, "namespace": self.settings.namespace}
        if resource_version:
            meta["resourceVersion"] = resource_version
        return {"apiVersion": LEASE_API, "kind": "Lease", "metadata": meta, "spec": spec}

    async def try_acquire_or_renew(self) -> bool:
        """One round (client-go's tryAcquireOrRenew): True when we hold the lease now.
        Callers bound it (asyncio.timeout); each request is bounded by REQUEST_TIMEOUT."""
        sent = self._clock()
        s = self.settings
        now_text = micro_time()
        current = await self.api.get()
        if current is None:
            spec: Body = {
                "holderIdentity": s.identity,
                "leaseDurationSeconds": math.ceil(s.lease_duration),
                "acquireTime": now_text,
                "renewTime": now_text,
                "leaseTransitions": 0,
            }
            try:
                created = await self.api.create(self._lease_body(spec, None))
            except LeaseConflict:
                return False
            return self._won(created, sent)
        old: Body = current.get("spec") or {}
        if old != self._observed:
            self._observed, self._observed_at = old, self._clock()
        self.holder = old.get("holderIdentity") or None
        mine = self.holder == s.identity
        duration = float(old.get("leaseDurationSeconds") or s.lease_duration)
        if self.holder and not mine and self._clock() < self._observed_at + duration:
            return False
        transitions = int(old.get("leaseTransitions") or 0)
        spec = {
            "holderIdentity": s.identity,
            "leaseDurationSeconds": math.ceil(s.lease_duration),
            "acquireTime": old.get("acquireTime") if mine else now_text,
            "renewTime": now_text,
            "leaseTransitions": transitions if mine else transitions + 1,
        }
        rv = str(current["metadata"]["resourceVersion"])
        try:
            updated = await self.api.replace(self._lease_body(spec, rv))
        except LeaseConflict:
            return False
        return self._won(updated, sent)

    def _won(self, lease: Body, sent: float) -> bool:
        self._mine = lease
        self._observed, self._observed_at = lease.get("spec") or {}, self._clock()
        self.holder = self.settings.identity
        self.deadline = sent + self.settings.renew_deadline
        return True

    async def acquire(self) -> None:
        """Wait until this candidate holds the lease (the standby's whole life)."""
        s = self.settings
        seen: str | None = None
        while True:
            try:
                async with asyncio.timeout(REQUEST_TIMEOUT):
                    won = await self.try_acquire_or_renew()
                if won:
                    self.leading = True
                    log.info(
                        "leader election: %s acquired lease %s/%s; acting from now",
                        s.identity,
                        s.namespace,
                        s.name,
                    )
                    return
                if self.holder != seen:
                    seen = self.holder
                    log.info(
                        "leader election: standby; lease %s/%s is held by %s",
                        s.namespace,
                        s.name,
                        seen,
                    )
            except (TimeoutError, aiohttp.ClientError, RuntimeError) as exc:
                log.warning("leader election: could not read or take the lease: %s", exc)
            await asyncio.sleep(s.retry_period * (1 + 0.2 * secrets.randbelow(1000) / 1000))

    async def hold(self) -> str:
        """Renew every retry period until the lease is lost; then `on_lost(reason)` and
        return the reason."""
        s = self.settings
        while True:
            await asyncio.sleep(max(0.0, min(s.retry_period, self.deadline - self._clock())))
            remaining = self.deadline - self._clock()
            if remaining <= 0:
                return self.lose(f"could not renew the lease within {s.renew_deadline}s")
            try:
                async with asyncio.timeout(min(REQUEST_TIMEOUT, remaining)):
                    ok = await self.try_acquire_or_renew()
            except (TimeoutError, aiohttp.ClientError, RuntimeError) as exc:
                log.warning("leader election: renewal failed (retrying): %s", exc)
                ok = False
            if not ok and self.holder not in (None, s.identity):
                return self.lose(f"lease taken over by {self.holder}")

    def lose(self, reason: str) -> str:
        """Stop acting (idempotent, thread-safe); `on_lost` runs once."""
        with self._lost:
            first = self._lost_reason is None
            if first:
                self._lost_reason = reason
            self.leading = False
            self.deadline = 0.0
        if first:
            log.error(
                "leader election: %s lost the lease (%s); stops acting now",
                self.settings.identity,
                reason,
            )
            self._on_lost(reason)
        return self._lost_reason or reason

    async def release(self) -> None:
        """Hand the lease back at a clean stop (after everything stopped acting), so that
        a standby takes over at once instead of after the lease duration."""
        mine, self._mine = self._mine, None
        was_leading = self.acting()
        self.leading, self.deadline = False, 0.0
        if mine is None or not was_leading:
            return
        spec = dict(mine.get("spec") or {})
        spec.update(holderIdentity=None, leaseDurationSeconds=1, renewTime=micro_time())
        rv = str(mine["metadata"]["resourceVersion"])
        try:
            async with asyncio.timeout(REQUEST_TIMEOUT):
                await self.api.replace(self._lease_body(spec, rv))
            log.info("leader election: released lease %s", self.settings.name)
        except (LeaseConflict, TimeoutError, aiohttp.ClientError, RuntimeError) as exc:
            log.warning("leader election: could not release the lease: %s", exc)


class Watchdog(threading.Thread):
    """Calls `elector.lose` once the deadline passes, whatever the event loop is doing."""

    def __init__(self, elector: Elector, interval: float = 0.1) -> None:
        super().__init__(name="lease watchdog", daemon=True)
        self.elector = elector
        self.interval = interval
        self.stopped = threading.Event()

    def run(self) -> None:
        while not self.stopped.wait(self.interval):
            e = self.elector
            if e.leading and time.monotonic() >= e.deadline:
                e.lose(f"renew deadline ({e.settings.renew_deadline}s) passed")
                return


def fence_trace(acting: Callable[[], bool]) -> aiohttp.TraceConfig:
    """An aiohttp trace that refuses a mutating request unless `acting()`: a holder paused
    past its deadline (a stopped or starved process) sends nothing when it wakes."""

    async def on_start(
        _session: aiohttp.ClientSession, _ctx: Any, params: aiohttp.TraceRequestStartParams
    ) -> None:
        if params.method not in SAFE_METHODS and not acting():
            raise NotLeader(f"{params.method} {params.url.path}: not the leader")

    trace = aiohttp.TraceConfig()
    trace.on_request_start.append(on_start)
    return trace


def exit_now(reason: str) -> None:
    """The operator's `on_lost`: leave at once, without cleanup (which would act)."""
    logging.shutdown()
    os._exit(3)
