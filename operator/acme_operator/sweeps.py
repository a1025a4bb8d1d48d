"""Operator-wide passes over every object, replacing one kopf timer per object.

At 10,000 registrations, per-object timers meant 10,000+ sleeping tasks and a store query
(plus a Secret GET) per object and interval. Here each sweep reads the store in batches and
the objects from kopf's indices (memory), and writes only what is out of date:

- resync: re-reads each registration's Secret and store row (admin edits, missed events) at
  most RESYNC_PER_SECOND objects per second, so a pass takes max(--resync-interval,
  count / RESYNC_PER_SECOND);
- usage: accounts and certificate counts of all registrations, two grouped queries per
  500 registrations, every --status-interval;
- domains: the Ready condition of AllowedDomains, at once for registrations whose store row
  was just written, and for all of them every --status-interval;
- registration refresh: a registration whose grant an AllowedDomain changed is re-judged
  at once (its Ready condition names the grant), not at its next re-sync.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from typing import TypeVar

import kopf

from acme_operator import hmac_secret, reconcile, usage
from acme_operator.conditions import get_condition
from acme_operator.constants import DOMAINS, REGISTRATIONS
from acme_operator.context import OperatorContext, store_name
from acme_operator.domains import DomainEntry
from acme_operator.handlers.domains import in_force, verdict
from acme_operator.status import COMPONENT, due, send, write_status
from acme_operator.views import ObjectView
from acme_server.store.operator_facade import log_failure

log = logging.getLogger(__name__)

Key = tuple[str, str]
RESYNC_PER_SECOND = 25.0
# Status patches in flight at once from a sweep (the API server is shared with kopf's own).
PATCH_CONCURRENCY = 24
# A burst of registration writes is judged for its domains after this pause, so that the
# domain handlers' own status patches (read before the write) have landed first.
DOMAIN_DELAY = 1.0
T = TypeVar("T")


@dataclass
class Indices:
    """The kopf indices the sweeps read (live views, filled by the watch)."""

    registration_index: kopf.Index[Key, reconcile.RegistrationEntry]
    secret_index: kopf.Index[Key, reconcile.SecretClaim]
    domain_index: kopf.Index[Key, DomainEntry]

    def registration_views(self, key: Key | None = None) -> list[ObjectView]:
        """Every registration (or the one at `key`) as last seen."""
        entries = (
            [e for _, e in _all(self.registration_index)]
            if key is None
            else _values(self.registration_index, key)
        )
        return [e.view for e in entries if e.view is not None]


def _values(index: kopf.Index[Key, T], key: Key) -> list[T]:
    return list(index[key]) if key in index else []


def _all(index: kopf.Index[Key, T]) -> list[tuple[Key, T]]:
    return [(key, value) for key in list(index) for value in _values(index, key)]


async def _bounded(
    items: Iterable[T], fn: Callable[[T], Awaitable[bool]], limit: int = PATCH_CONCURRENCY
) -> int:
    """`await fn(item)` for each item with `limit` workers (not one task per object: a pass
    over 10,000 objects must not hold 10,000 coroutines); how many returned True."""
    pending = iter(items)
    done = 0

    async def worker() -> None:
        nonlocal done
        for item in pending:
            try:
                done += bool(await fn(item))
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log_failure(log, "update failed (the next sweep retries)", exc)

    await asyncio.gather(*(worker() for _ in range(limit)))
    return done


def _handled(view: ObjectView) -> bool:
    """The index shows the object's handler ran for its current generation: judging it now
    cannot race with that handler's own status patch."""
    ready = get_condition(view.status.get("conditions"), "Ready")
    return ready is not None and ready.get("observedGeneration") == view.generation


# ---------------------------------------------------------------- resync


async def resync_one(ctx: OperatorContext, idx: Indices, view: ObjectView) -> None:
    ns, name = view.namespace, view.name
    current = [v for v in idx.registration_views((ns, name)) if v.uid == view.uid]
    if not current:
        return  # deleted (or being deleted) since the pass began
    view = current[0]
    ref = hmac_secret.effective_ref(name, view.spec)

    def alive() -> bool:
        return any(v.uid == view.uid for v in idx.registration_views((ns, name)))

    try:
        out = await reconcile.reconcile_registration(
            ctx,
            namespace=ns,
            name=name,
            uid=view.uid,
            spec=view.spec,
            annotations=view.annotations,
            domains=lambda: _values(idx.domain_index, (ns, name)),
            allow_rotation=False,
            secret_claims=_values(idx.secret_index, (ns, ref.name)),
            alive=alive,
        )
    except reconcile.RegistrationGone:
        return
    for type_, reason, message in out.actions:
        await ctx.kube.post_event(
            view.involved(), type_=type_, reason=reason, message=message, component=COMPONENT
        )
    await write_status(
        ctx,
        REGISTRATIONS,
        view,
        reconcile.status_fields(out, view.generation),
        (out.ready, out.reason, out.message),
    )


async def resync_loop(ctx: OperatorContext, idx: Indices) -> None:
    while True:
        started = time.monotonic()
        await asyncio.sleep(ctx.config.resync_interval)
        views = idx.registration_views()
        for view in views:
            tick = time.monotonic()
            try:
                await resync_one(ctx, idx, view)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log_failure(
                    log, f"re-sync of {view.namespace}/{view.name} failed; next pass retries", exc
                )
            await asyncio.sleep(max(0.0, 1 / RESYNC_PER_SECOND - (time.monotonic() - tick)))
        log.debug("re-synced %d registrations in %.1fs", len(views), time.monotonic() - started)


# ---------------------------------------------------------------- usage


async def usage_pass(ctx: OperatorContext, idx: Indices) -> None:
    views = idx.registration_views()
    found = await ctx.store.usage_many([store_name(v.namespace, v.name) for v in views])
    jobs = []
    for view in views:
        used = found.get(store_name(view.namespace, view.name))
        if used is None or "conditions" not in view.status:
            continue  # not reconciled yet: its first status patch carries the usage
        wanted = usage.build_usage(
            ctx.config, used.accounts, used.certificates_issued, used.last_issuance
        )
        if usage.changed_fields(view.status, wanted):
            if (write := due(REGISTRATIONS, view, wanted)) is not None:
                jobs.append(write)
    if written := await _bounded(jobs, lambda w: send(ctx, w)):
        log.info("usage sweep: updated the status of %d AcmeRegistration(s)", written)


async def usage_loop(ctx: OperatorContext, idx: Indices) -> None:
    while True:
        await asyncio.sleep(ctx.config.status_interval)
        try:
            await usage_pass(ctx, idx)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            log_failure(
                log, f"usage refresh failed; retrying in {ctx.config.status_interval}s", exc
            )


# ---------------------------------------------------------------- AllowedDomain status


async def domain_pass(ctx: OperatorContext, idx: Indices, keys: Iterable[Key] | None) -> None:
    """Re-judge the AllowedDomains naming `keys` (all of them when None)."""
    views = (
        _all(idx.domain_index)
        if keys is None
        else [(k, v) for k in keys for v in _values(idx.domain_index, k)]
    )
    rows = await ctx.store.registrations(sorted({store_name(*k) for k, _ in views}))
    jobs = []
    repair: set[Key] = set()
    for (ns, registration), entry in views:
        view = entry.view
        if view is None:
            continue
        if keys is not None and not _handled(view):
            ctx.domains_dirty.add((ns, registration))  # its handler's patch is not seen yet
            continue
        reg_entries = _values(idx.registration_index, (ns, registration))
        row = rows.get(store_name(ns, registration))
        if entry.error is None and row is not None and not in_force(entry, row):
            repair.add((ns, registration))  # a sync a crash cut short
        ok, reason, message = verdict(
            ns, entry, registration, reg_entries[0] if reg_entries else None, row
        )
        fields = {"observedGeneration": view.generation}
        if (write := due(DOMAINS, view, fields, (ok, reason, message))) is not None:
            jobs.append(write)
    for ns, registration in sorted(repair):
        reg_entries = _values(idx.registration_index, (ns, registration))
        await reconcile.sync_domains(
            ctx,
            namespace=ns,
            registration=registration,
            entry=reg_entries[0] if reg_entries else None,
            domains=_values(idx.domain_index, (ns, registration)),
        )
    if written := await _bounded(jobs, lambda w: send(ctx, w)):
        log.info("domain sweep: updated the Ready condition of %d AllowedDomain(s)", written)


async def domain_dirty_loop(ctx: OperatorContext, idx: Indices) -> None:
    """AllowedDomains of registrations just written: judged within about DOMAIN_DELAY."""
    dirty = ctx.domains_dirty
    while True:
        await dirty.event.wait()
        await asyncio.sleep(DOMAIN_DELAY)
        try:
            await domain_pass(ctx, idx, dirty.take())
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            log_failure(log, "AllowedDomain status refresh failed; the next pass retries", exc)


async def domain_full_loop(ctx: OperatorContext, idx: Indices) -> None:
    """Every AllowedDomain, every --status-interval (a separate task: a full pass over
    10,000 objects must not hold up the prompt one above)."""
    while True:
        await asyncio.sleep(ctx.config.status_interval)
        try:
            await domain_pass(ctx, idx, None)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            log_failure(log, "AllowedDomain status refresh failed; retrying next interval", exc)


async def registration_refresh_loop(ctx: OperatorContext, idx: Indices) -> None:
    """Registrations whose grant an AllowedDomain changed: re-judge them (and their status)
    soon, not at the next re-sync pass."""
    dirty = ctx.registrations_dirty
    while True:
        await dirty.event.wait()
        await asyncio.sleep(DOMAIN_DELAY)
        keys = dirty.take()
        views = []
        for key in sorted(keys):
            for view in idx.registration_views(key):
                if _handled(view):
                    views.append(view)
                else:  # its handler's own status patch is not in the index yet: later
                    dirty.add(key)

        async def one(view: ObjectView) -> bool:
            await resync_one(ctx, idx, view)
            return True

        try:
            await _bounded(views, one)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            log_failure(log, "registration refresh failed; the re-sync sweep retries", exc)


def start(ctx: OperatorContext, idx: Indices) -> list[asyncio.Task[None]]:
    return [
        asyncio.create_task(resync_loop(ctx, idx), name="resync sweep"),
        asyncio.create_task(usage_loop(ctx, idx), name="usage sweep"),
        asyncio.create_task(domain_dirty_loop(ctx, idx), name="domain sweep (written)"),
        asyncio.create_task(domain_full_loop(ctx, idx), name="domain sweep (all)"),
        asyncio.create_task(registration_refresh_loop(ctx, idx), name="registration refresh"),
    ]
