"""AllowedDomain: keep its registration's allow-list in the store equal to the objects naming it.

The domain index (by namespace and registration name) is what the registration handlers
sync from; these handlers re-sync on every change and report whether the domain is in force.
Later changes of that verdict (the registration appearing, vanishing, being re-written) are
reported by the operator-wide domain sweep (sweeps.py), not by one kopf timer per object.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

import kopf

from acme_operator import metrics, reconcile
from acme_operator.config import OperatorConfig
from acme_operator.constants import DOMAINS, GROUP, VERSION
from acme_operator.context import OperatorContext, from_memo, store_name
from acme_operator.domains import DomainEntry, entry_from_spec
from acme_operator.handlers.common import apply_ready, index_values, namespaced, not_deleting
from acme_operator.views import ObjectView
from acme_server.store.operator_facade import Registration

RETRY_BACKOFF = 5.0

Key = tuple[str, str]  # (namespace, registration name): how the indices are keyed
RegistrationIndex = kopf.Index[Key, reconcile.RegistrationEntry]
DomainIndex = kopf.Index[Key, DomainEntry]


def verdict(
    namespace: str,
    entry: DomainEntry,
    registration: str,
    reg_entry: reconcile.RegistrationEntry | None,
    row: Registration | None,
) -> tuple[bool, str, str]:
    """(ok, reason, message) for the Ready condition, judged against the store row."""
    if entry.error is not None:
        return False, "InvalidDomain", f"{entry.field} {entry.domain!r}: {entry.error}"
    if reg_entry is None:
        return (
            False,
            "RegistrationNotFound",
            f"no AcmeRegistration {registration!r} in namespace {namespace}; create it or "
            "fix spec.registrationName (this domain takes effect once it exists)",
        )
    if row is None or not in_force(entry, row):
        return (
            False,
            "RegistrationNotReady",
            f"waiting for AcmeRegistration {registration!r} to be reconciled (see its Ready "
            "condition)",
        )
    if entry.ip_range is not None:
        return (
            True,
            "Active",
            f"IP addresses in {entry.ip_range} may be requested by registration {registration}",
        )
    if entry.rule is None:
        return True, "Active", f"every DNS name may be requested by registration {registration}"
    scope = entry.rule.domain
    if entry.rule.include_subdomains:
        scope += " and its subdomains"
    wildcard = "wildcards allowed" if entry.rule.allow_wildcard else "no wildcards"
    return True, "Active", f"{scope} may be requested by registration {registration} ({wildcard})"


async def _verdict(
    ctx: OperatorContext,
    namespace: str,
    entry: DomainEntry,
    registration: str,
    reg_entry: reconcile.RegistrationEntry | None,
) -> tuple[bool, str, str]:
    row = None
    if entry.error is None and reg_entry is not None:
        row = await ctx.rows.get(store_name(namespace, registration))
    return verdict(namespace, entry, registration, reg_entry, row)


def in_force(entry: DomainEntry, row: Registration) -> bool:
    """The store row carries this AllowedDomain's grant."""
    if entry.any_domain:
        return row.any_domain
    if entry.ip_range is not None:
        return entry.ip_range in row.ip_ranges
    return entry.rule is not None and entry.rule in row.domains


def register(registry: kopf.OperatorRegistry, config: OperatorConfig) -> None:
    res = (GROUP, VERSION, DOMAINS)

    @kopf.index(*res, id="domain_index", when=not_deleting, registry=registry)
    async def domain_index(
        namespace: str | None,
        name: str,
        uid: str,
        meta: kopf.Meta,
        spec: kopf.Spec,
        status: kopf.Status,
        **_: Any,
    ) -> dict[Key, DomainEntry]:
        namespace = namespaced(namespace)
        key = (namespace, str(spec.get("registrationName", "")))
        view = ObjectView.of("AllowedDomain", namespace, name, uid, meta, spec, status)
        return {key: dataclasses.replace(entry_from_spec(name, spec), view=view)}

    async def sync(
        ctx: OperatorContext,
        namespace: str,
        registration: str,
        registration_index: RegistrationIndex,
        domain_index: DomainIndex,
    ) -> None:
        reg_entries = index_values(registration_index, (namespace, registration))
        await reconcile.sync_domains(
            ctx,
            namespace=namespace,
            registration=registration,
            entry=reg_entries[0] if reg_entries else None,
            domains=index_values(domain_index, (namespace, registration)),
        )

    async def report(
        ctx: OperatorContext,
        registration: str,
        *,
        body: kopf.Body,
        meta: kopf.Meta,
        spec: kopf.Spec,
        status: kopf.Status,
        patch: kopf.Patch,
        namespace: str,
        name: str,
        registration_index: RegistrationIndex,
    ) -> bool:
        """Patch the Ready condition; returns whether the domain is in force."""
        reg_entries = index_values(registration_index, (namespace, registration))
        ok, reason, message = await _verdict(
            ctx,
            namespace,
            entry_from_spec(name, spec),
            registration,
            reg_entries[0] if reg_entries else None,
        )
        generation = meta.get("generation")
        if status.get("observedGeneration") != generation:
            patch.status["observedGeneration"] = generation
        apply_ready(
            body=body,
            status=status,
            patch=patch,
            ok=ok,
            reason=reason,
            message=message,
            generation=generation,
        )
        return ok

    @kopf.on.resume(*res, id="reconcile", backoff=RETRY_BACKOFF, registry=registry)
    @kopf.on.create(*res, id="reconcile", backoff=RETRY_BACKOFF, registry=registry)
    @kopf.on.update(*res, id="reconcile", backoff=RETRY_BACKOFF, registry=registry)  # type: ignore[arg-type]  # index args
    async def domain_changed(
        body: kopf.Body,
        meta: kopf.Meta,
        spec: kopf.Spec,
        status: kopf.Status,
        patch: kopf.Patch,
        old: Mapping[str, Any] | None,
        namespace: str | None,
        name: str,
        memo: kopf.Memo,
        registration_index: RegistrationIndex,
        domain_index: DomainIndex,
        **_: Any,
    ) -> None:
        namespace = namespaced(namespace)
        ctx = from_memo(memo)
        registration = str(spec.get("registrationName", ""))
        with metrics.reconcile_timer("AllowedDomain") as outcome:
            await sync(ctx, namespace, registration, registration_index, domain_index)
            previous = str(((old or {}).get("spec") or {}).get("registrationName") or "")
            if previous and previous != registration:
                await sync(ctx, namespace, previous, registration_index, domain_index)
            ok = await report(
                ctx,
                registration,
                body=body,
                meta=meta,
                spec=spec,
                status=status,
                patch=patch,
                namespace=namespace,
                name=name,
                registration_index=registration_index,
            )
            outcome.value = "ready" if ok else "not_ready"

    # No finalizer on AllowedDomains (optional=True): a deleted domain leaves the store as
    # soon as the watch reports it gone (below), and a deletion the operator missed while
    # down is caught when the registration resumes (its allow-list no longer matches the
    # index) or at the latest by the re-sync sweep. That saves two API writes per object.
    @kopf.on.delete(*res, id="delete", optional=True, registry=registry)  # type: ignore[arg-type]  # index args
    async def domain_deleted(
        spec: kopf.Spec,
        namespace: str | None,
        memo: kopf.Memo,
        registration_index: RegistrationIndex,
        domain_index: DomainIndex,
        **_: Any,
    ) -> None:
        namespace = namespaced(namespace)
        registration = str(spec.get("registrationName", ""))
        await sync(from_memo(memo), namespace, registration, registration_index, domain_index)

    @kopf.on.event(*res, id="gone", registry=registry)  # type: ignore[arg-type]  # index args
    async def domain_gone(
        event: kopf.RawEvent,
        spec: kopf.Spec,
        namespace: str | None,
        memo: kopf.Memo,
        registration_index: RegistrationIndex,
        domain_index: DomainIndex,
        **_: Any,
    ) -> None:
        """The object is gone (the index already dropped it): drop its grant from the store."""
        if event.get("type") != "DELETED":
            return
        namespace = namespaced(namespace)
        registration = str(spec.get("registrationName", ""))
        await sync(from_memo(memo), namespace, registration, registration_index, domain_index)
