"""AllowedDomain: keep its registration's allow-list in the store equal to the objects naming it.

The domain index (by namespace and registration name) is what the registration handlers
sync from; these handlers re-sync on every change and report whether the domain is in force.
"""

from __future__ import annotations

from typing import Any

import kopf

from acme_operator import reconcile
from acme_operator.config import OperatorConfig
from acme_operator.constants import DOMAINS, GROUP, VERSION
from acme_operator.context import OperatorContext, from_memo, store_name
from acme_operator.domains import DomainEntry, entry_from_spec
from acme_operator.handlers.common import apply_ready, index_values, not_deleting
from acme_server.store import registrations

RETRY_BACKOFF = 5.0


async def _verdict(
    ctx: OperatorContext,
    namespace: str,
    entry: DomainEntry,
    registration: str,
    reg_entry: reconcile.RegistrationEntry | None,
) -> tuple[bool, str, str]:
    """(ok, reason, message) for the Ready condition, judged against the store itself."""
    if entry.error is not None:
        return False, "InvalidDomain", f"spec.domain {entry.domain!r}: {entry.error}"
    if reg_entry is None:
        return (
            False,
            "RegistrationNotFound",
            f"no AcmeRegistration {registration!r} in namespace {namespace}; create it or "
            "fix spec.registrationName (this domain takes effect once it exists)",
        )
    row = await registrations.get(ctx.db, store_name(namespace, registration))
    if row is None or not in_force(entry, row):
        return (
            False,
            "RegistrationNotReady",
            f"waiting for AcmeRegistration {registration!r} to be reconciled (see its Ready "
            "condition)",
        )
    if entry.rule is None:
        return True, "Active", f"every DNS name may be requested by registration {registration}"
    scope = entry.rule.domain
    if entry.rule.include_subdomains:
        scope += " and its subdomains"
    wildcard = "wildcards allowed" if entry.rule.allow_wildcard else "no wildcards"
    return True, "Active", f"{scope} may be requested by registration {registration} ({wildcard})"


def in_force(entry: DomainEntry, row: registrations.Registration) -> bool:
    """The store row carries this AllowedDomain's grant."""
    if entry.any_domain:
        return row.any_domain
    return entry.rule is not None and entry.rule in row.domains


def register(registry: kopf.OperatorRegistry, config: OperatorConfig) -> None:
    res = (GROUP, VERSION, DOMAINS)

    @kopf.index(*res, id="domain_index", when=not_deleting, registry=registry)
    def domain_index(**kwargs: Any) -> dict[tuple[str, str], DomainEntry]:
        spec = kwargs["spec"]
        key = (kwargs["namespace"], str(spec.get("registrationName", "")))
        return {key: entry_from_spec(kwargs["name"], spec)}

    async def sync(kwargs: dict[str, Any], registration: str) -> None:
        namespace = kwargs["namespace"]
        reg_entries = index_values(kwargs["registration_index"], (namespace, registration))
        await reconcile.sync_domains(
            from_memo(kwargs["memo"]),
            namespace=namespace,
            registration=registration,
            entry=reg_entries[0] if reg_entries else None,
            domains=index_values(kwargs["domain_index"], (namespace, registration)),
        )

    async def report(kwargs: dict[str, Any], registration: str) -> None:
        namespace = kwargs["namespace"]
        reg_entries = index_values(kwargs["registration_index"], (namespace, registration))
        entry = entry_from_spec(kwargs["name"], kwargs["spec"])
        ok, reason, message = await _verdict(
            from_memo(kwargs["memo"]),
            namespace,
            entry,
            registration,
            reg_entries[0] if reg_entries else None,
        )
        generation = kwargs["meta"].get("generation")
        if kwargs["status"].get("observedGeneration") != generation:
            kwargs["patch"].status["observedGeneration"] = generation
        apply_ready(
            body=kwargs["body"],
            status=kwargs["status"],
            patch=kwargs["patch"],
            ok=ok,
            reason=reason,
            message=message,
            generation=generation,
        )

    @kopf.on.resume(*res, id="reconcile", backoff=RETRY_BACKOFF, registry=registry)
    @kopf.on.create(*res, id="reconcile", backoff=RETRY_BACKOFF, registry=registry)
    @kopf.on.update(*res, id="reconcile", backoff=RETRY_BACKOFF, registry=registry)
    async def domain_changed(**kwargs: Any) -> None:
        registration = str(kwargs["spec"].get("registrationName", ""))
        await sync(kwargs, registration)
        old = kwargs.get("old") or {}
        previous = str((old.get("spec") or {}).get("registrationName") or "")
        if previous and previous != registration:
            await sync(kwargs, previous)
        await report(kwargs, registration)

    @kopf.timer(*res, id="status", interval=config.status_interval, registry=registry)
    async def domain_status(**kwargs: Any) -> None:
        """Notice the registration appearing/vanishing; repair a sync a crash cut short."""
        registration = str(kwargs["spec"].get("registrationName", ""))
        entry = entry_from_spec(kwargs["name"], kwargs["spec"])
        row = await registrations.get(
            from_memo(kwargs["memo"]).db, store_name(kwargs["namespace"], registration)
        )
        if entry.error is None and row is not None and not in_force(entry, row):
            await sync(kwargs, registration)
        await report(kwargs, registration)

    @kopf.on.delete(*res, id="delete", backoff=RETRY_BACKOFF, registry=registry)
    async def domain_deleted(**kwargs: Any) -> None:
        await sync(kwargs, str(kwargs["spec"].get("registrationName", "")))
