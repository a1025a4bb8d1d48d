"""Background challenge validation shared by every server process.

Accepted challenges sit in the store as `processing` with a due time. Each process leases
due ones (store/validation_queue.py: a conditional UPDATE, so two processes never validate
the same attempt), runs the validator, and records the outcome. This module is the policy
(how many at once, fairness, backoff); it writes no SQL itself. Nothing lives only in
memory: after a restart, or
when another process dies mid-attempt and its lease runs out, the work is picked up again.

Leasing is fair: due challenges of an account or registration already at its cap of
running validations (validation/fairness.py) are skipped and stay unleased, and a
finished attempt wakes the loop so they are taken as soon as a slot frees.
"""

from __future__ import annotations

import asyncio
import contextlib
import copy
import logging
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta

import aiohttp
import dns.asyncresolver
import sqlalchemy as sa

from acme_server.config import Settings
from acme_server.domain.problems import ProblemType, problem_json
from acme_server.domain.statuses import ChallengeStatus, ChallengeType
from acme_server.metrics import VALIDATION_SECONDS, VALIDATIONS
from acme_server.store import validation_queue as queue
from acme_server.store.availability import log_failure, store_unavailable
from acme_server.store.database import Database
from acme_server.validation.addresses import AddressPolicy
from acme_server.validation.caa_lookup import CaaChecker
from acme_server.validation.dns01 import retry_delay, validate_dns01
from acme_server.validation.errors import ValidationError
from acme_server.validation.fairness import Tenant, TenantSlots
from acme_server.validation.http01 import validate_http01
from acme_server.validation.resolver import make_perspectives
from acme_server.validation.tls_alpn01 import validate_tls_alpn01

log = logging.getLogger("acme_server.validation")

POLL_SECONDS = 1.0
RETRY_DELAYS = (1, 2, 4, 8, 15, 30)
RECORD_RETRY = 0.5  # seconds between attempts to store an outcome during a store outage


class ValidationScheduler:
    def __init__(
        self,
        db: Database,
        settings: Settings,
        resolver: dns.asyncresolver.Resolver,
        session: aiohttp.ClientSession,
        wakeup: asyncio.Event,
        caa: CaaChecker | None = None,
    ) -> None:
        self._db = db
        self._caa = caa  # None: CAA checking off (no --caa-identity)
        self._settings = settings
        self._resolver = resolver  # http-01: every configured resolver, one after another
        # dns-01: each resolver on its own, `validation_quorum` of them must agree.
        self._perspectives = make_perspectives(
            list(settings.dns_resolvers),
            settings.validation_quorum,
            timeout=settings.validation_timeout,
        )
        self._session = session
        self._wakeup = wakeup
        self._slots = asyncio.Semaphore(settings.validation_concurrency)
        self._running: set[asyncio.Task[None]] = set()
        self._held: set[str] = set()
        self._reserved = 0  # slots promised to challenges being started here (`reserve`)
        self._loop: asyncio.Task[None] | None = None
        self._tenants = TenantSlots(
            settings.validation_concurrency_per_account,
            settings.validation_concurrency_per_registration,
        )
        self._policy = AddressPolicy.from_strings(
            settings.validation_allow_cidrs, settings.validation_deny_cidrs
        )

    def start(self) -> None:
        """Run the loop in a task of its own; `close` stops it before anything else."""
        self._loop = asyncio.create_task(self.run(), name="validation")

    async def run(self) -> None:
        """Loop until cancelled; each round leases what is due and validates it."""
        while True:
            try:
                await self._round()
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log_failure(log, "validation round failed", exc)
            try:
                await asyncio.wait_for(self._wakeup.wait(), POLL_SECONDS)
            except TimeoutError:
                pass
            self._wakeup.clear()

    async def close(self) -> None:
        """Stop attempts in flight and hand their leases back so others retry at once."""
        # The loop first, so no round leases anything after the snapshot below.
        if self._loop is not None:
            self._loop.cancel()
            await asyncio.gather(self._loop, return_exceptions=True)
        # Snapshot first: each cancelled attempt drops its id from `_held` as it unwinds.
        held = set(self._held)
        for task in list(self._running):
            task.cancel()
        await asyncio.gather(*self._running, return_exceptions=True)
        await queue.release(self._db, held)

    # A challenge accepted by this process is leased to it in the same unit that starts it,
    # and validated at once from what the request already knows: no claim round, no reload.

    def reserve(self, tenant: Tenant) -> bool:
        """A slot for a challenge about to be started here; False when there is none (the
        challenge is then started unleased and taken by whichever process is free)."""
        if len(self._running) + self._reserved >= self._settings.validation_concurrency:
            return False
        if not self._tenants.fits(tenant):
            return False
        self._tenants.take(tenant)
        self._reserved += 1
        return True

    def unreserve(self, tenant: Tenant) -> None:
        """The reserved challenge was not started after all."""
        self._reserved -= 1
        self._tenants.release(tenant)

    def validate_leased(self, challenge_id: str, tenant: Tenant, job: queue.ValidationJob) -> None:
        """Validate a challenge this process started and leased (its reserved slot)."""
        self._reserved -= 1
        self._spawn(challenge_id, tenant, job)

    def _spawn(self, challenge_id: str, tenant: Tenant, job: queue.ValidationJob | None) -> None:
        self._held.add(challenge_id)
        task = asyncio.create_task(self._attempt(challenge_id, tenant, job))
        self._running.add(task)
        task.add_done_callback(self._finished)

    async def _round(self) -> None:
        free = self._settings.validation_concurrency - len(self._running) - self._reserved
        if free <= 0:
            return
        now = datetime.now(UTC)
        # The unit runs off the event loop: it counts against a copy of the tenants' slots
        # (releases meanwhile only free slots), and only leases that committed take slots.
        trial = copy.deepcopy(self._tenants)
        lease = self._settings.validation_lease
        claim = asyncio.ensure_future(
            self._db.write(lambda conn: self._claim(conn, trial, now, free, lease))
        )
        try:
            claimed = await asyncio.shield(claim)
        except asyncio.CancelledError:
            # The unit runs on and may commit: hand back whatever it leased, then stop.
            with contextlib.suppress(Exception):
                leased = await claim
                await queue.release(self._db, [challenge_id for challenge_id, _ in leased])
            raise
        for challenge_id, tenant in claimed:
            self._tenants.take(tenant)
            self._spawn(challenge_id, tenant, None)

    @staticmethod
    def _claim(
        conn: sa.Connection, tenants: TenantSlots, now: datetime, free: int, lease: timedelta
    ) -> list[tuple[str, Tenant]]:
        """Lease up to `free` due challenges, skipping tenants at their cap in `tenants`.

        Each pass asks only for challenges of tenants below their cap and stops when a pass
        leases nothing, so a round is a few queries however many challenges wait.
        """
        claimed: list[tuple[str, Tenant]] = []
        while free > 0:
            due = queue.due(
                conn,
                now=now,
                limit=free,
                skip_accounts=tenants.full_accounts(),
                skip_registrations=tenants.full_registrations(),
            )
            leased_any = False
            for challenge in due:
                tenant = Tenant(challenge.account_id, challenge.registration_id)
                if not tenants.fits(tenant):
                    continue
                if queue.lease(conn, challenge.id, now=now, until=now + lease):
                    tenants.take(tenant)
                    claimed.append((challenge.id, tenant))
                    leased_any = True
                    free -= 1
                    if free == 0:
                        break
            if not leased_any:
                break
        return claimed

    async def _attempt(
        self, challenge_id: str, tenant: Tenant, job: queue.ValidationJob | None
    ) -> None:
        try:
            await self._validate(challenge_id, job)
        except Exception as exc:
            # Most likely the store went away before the outcome was written: the lease
            # runs out and this or another process validates the challenge again.
            log_failure(log, f"validating challenge {challenge_id} failed; its lease expires", exc)
        finally:
            self._held.discard(challenge_id)
            self._tenants.release(tenant)

    def _finished(self, task: asyncio.Task[None]) -> None:
        self._running.discard(task)
        self._wakeup.set()  # a slot is free: take waiting challenges now, not at the next poll

    async def _validate(self, challenge_id: str, known: queue.ValidationJob | None) -> None:
        async with self._slots:
            job = known or await queue.load_job(self._db, challenge_id)
            if job is None:
                return
            chal_type, name = job.type, job.name
            key_authorization = f"{job.token}.{job.key_thumbprint}"
            started = time.perf_counter()
            try:
                if chal_type == ChallengeType.HTTP_01:
                    await validate_http01(
                        name,
                        job.token,
                        key_authorization,
                        port=self._settings.http01_port,
                        resolver=self._resolver,
                        session=self._session,
                        timeout=self._settings.validation_timeout,
                        policy=self._policy,
                    )
                elif chal_type == ChallengeType.TLS_ALPN_01:
                    await validate_tls_alpn01(
                        f"*.{name}" if job.wildcard else name,  # refused, never proven
                        key_authorization,
                        port=self._settings.tlsalpn01_port,
                        resolver=self._resolver,
                        timeout=self._settings.validation_timeout,
                        policy=self._policy,
                        identifier_type=job.identifier_type,
                    )
                elif chal_type == ChallengeType.DNS_01 and job.identifier_type == "dns":
                    await validate_dns01(name, key_authorization, resolver=self._perspectives)
                else:  # never dns-01 for an IP; a type without a validator fails plainly
                    raise ValidationError(
                        ProblemType.MALFORMED,
                        f"{chal_type} cannot validate the {job.identifier_type} identifier {name}",
                    )
                caa_checked_at = await self._check_caa(job)
            except ValidationError as exc:
                await self._failed(job, challenge_id, exc, started)
                return
            except Exception as exc:  # a validator bug must not strand the challenge
                log.exception("validator crashed for challenge %s", challenge_id)
                await self._failed(
                    job,
                    challenge_id,
                    ValidationError(
                        ProblemType.SERVER_INTERNAL, f"validation failed: {type(exc).__name__}"
                    ),
                    started,
                )
                return
            _observe(chal_type, ChallengeStatus.VALID, started)
            log.info("%s for %s valid (challenge %s)", chal_type, name, challenge_id)
            await self._record(
                started,
                lambda: queue.finish(
                    self._db,
                    challenge_id,
                    valid=True,
                    error=None,
                    authz_lifetime=self._settings.authz_lifetime,
                    caa_checked_at=caa_checked_at,
                ),
            )

    async def _check_caa(self, job: queue.ValidationJob) -> datetime | None:
        """After the challenge passed, CAA (when on) must allow issuance for its name to the
        account and method; when it was checked, for the authorization to record."""
        if self._caa is None or job.identifier_type != "dns":
            return None  # CAA (RFC 8659) is about domain names; an address has no CAA
        checked_at = datetime.now(UTC)
        await self._caa.check(
            job.name, wildcard=job.wildcard, account_id=job.account_id, method=job.type
        )
        return checked_at

    async def _failed(
        self,
        job: queue.ValidationJob,
        challenge_id: str,
        exc: ValidationError,
        started: float,
    ) -> None:
        chal_type, name, attempts = job.type, job.name, job.attempts
        error = problem_json(exc.problem_type, exc.detail)
        error["identifier"] = {"type": job.identifier_type, "value": name}
        attempt = attempts + 1
        delay: float | None = None
        if exc.transient and chal_type == ChallengeType.DNS_01:
            # A record may still be propagating: retried for a bounded time, not a count.
            delay = retry_delay(attempt, self._settings.dns01_retry_seconds)
            if delay is None and attempt > 1:
                error["detail"] = (
                    f"{exc.detail} (after {attempt} attempts over "
                    f"{self._settings.dns01_retry_seconds:g} s)"
                )
        elif exc.transient and attempt < self._settings.validation_max_attempts:
            delay = RETRY_DELAYS[min(attempts, len(RETRY_DELAYS) - 1)]
        if delay is None:
            _observe(chal_type, ChallengeStatus.INVALID, started)
            log.info("%s for %s invalid: %s", chal_type, name, exc.detail)
            await self._record(
                started,
                lambda: queue.finish(
                    self._db,
                    challenge_id,
                    valid=False,
                    error=error,
                    authz_lifetime=self._settings.authz_lifetime,
                ),
            )
        else:
            _observe(chal_type, "retry", started)
            log.info(
                "%s for %s attempt %d failed, retry in %gs: %s",
                chal_type,
                name,
                attempt,
                delay,
                exc.detail,
            )
            await self._record(
                started,
                lambda: queue.retry(
                    self._db, challenge_id, error=error, delay=timedelta(seconds=delay)
                ),
            )

    async def _record(self, started: float, write: Callable[[], Awaitable[None]]) -> None:
        """Write an attempt's outcome. While the store is unreachable (a PostgreSQL restart)
        keep trying as long as the lease lasts: the outcome is known, and once the lease is
        gone another process would have to validate the challenge all over again."""
        give_up = started + self._settings.validation_lease.total_seconds() - 1
        while True:
            try:
                await write()
                return
            except Exception as exc:
                if not store_unavailable(exc) or time.perf_counter() + RECORD_RETRY > give_up:
                    raise
            await asyncio.sleep(RECORD_RETRY)


def _observe(chal_type: str, outcome: str, started: float) -> None:
    """One attempt's outcome (valid, invalid, or retry after a transient failure)."""
    VALIDATIONS.labels(chal_type, outcome).inc()
    VALIDATION_SECONDS.labels(chal_type, outcome).observe(time.perf_counter() - started)
