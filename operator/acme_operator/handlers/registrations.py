"""AcmeRegistration: Secret + store row on create/update/resume; finalizer on delete.

The periodic re-sync and the usage refresh are operator-wide sweeps (sweeps.py) over the
`registration_index`, not one kopf timer per object: 10,000 timers cost 10,000 tasks and
a store query each per interval.

Handlers name the kopf arguments they use (typed, so mypy checks them) and take the rest as
`**_`: kopf passes every argument to every handler.
"""

from __future__ import annotations

from typing import Any

import kopf

from acme_operator import hmac_secret, metrics, reconcile, usage
from acme_operator.conditions import get_condition
from acme_operator.config import OperatorConfig
from acme_operator.constants import GROUP, REGISTRATIONS, VERSION
from acme_operator.context import from_memo
from acme_operator.domains import DomainEntry
from acme_operator.handlers.common import apply_ready, index_values, namespaced, not_deleting
from acme_operator.views import ObjectView

RETRY_BACKOFF = 5.0

Key = tuple[str, str]  # (namespace, name): how the indices are keyed


def register(registry: kopf.OperatorRegistry, config: OperatorConfig) -> None:
    res = (GROUP, VERSION, REGISTRATIONS)

    @kopf.index(*res, id="registration_index", when=not_deleting, registry=registry)
    async def registration_index(
        namespace: str | None,
        name: str,
        uid: str,
        meta: kopf.Meta,
        spec: kopf.Spec,
        status: kopf.Status,
        **_: Any,
    ) -> dict[Key, reconcile.RegistrationEntry]:
        namespace = namespaced(namespace)
        orders, authzs = reconcile.limits(spec)
        entry = reconcile.RegistrationEntry(
            uid=uid,
            suspended=bool(spec.get("suspended", False)),
            max_pending_orders=orders,
            max_pending_authorizations=authzs,
            view=ObjectView.of("AcmeRegistration", namespace, name, uid, meta, spec, status),
        )
        return {(namespace, name): entry}

    @kopf.index(*res, id="secret_index", when=not_deleting, registry=registry)
    async def secret_index(
        namespace: str | None, name: str, uid: str, spec: kopf.Spec, meta: kopf.Meta, **_: Any
    ) -> dict[Key, reconcile.SecretClaim]:
        """Which registrations name which HMAC Secret: two on one Secret is a conflict."""
        namespace = namespaced(namespace)
        ref = hmac_secret.effective_ref(name, spec)
        claim = reconcile.SecretClaim(
            created=str(meta.get("creationTimestamp") or ""), name=name, uid=uid
        )
        return {(namespace, ref.name): claim}

    async def _run(
        *,
        body: kopf.Body,
        meta: kopf.Meta,
        spec: kopf.Spec,
        status: kopf.Status,
        patch: kopf.Patch,
        namespace: str,
        name: str,
        uid: str,
        memo: kopf.Memo,
        domain_index: kopf.Index[Key, DomainEntry],
        secret_index: kopf.Index[Key, reconcile.SecretClaim],
        resuming: bool,
    ) -> str:
        """One reconcile; returns its outcome for the metrics."""
        ctx = from_memo(memo)
        domains = index_values(domain_index, (namespace, name))
        if resuming and await reconcile.settled(
            ctx,
            namespace=namespace,
            name=name,
            spec=spec,
            meta=meta,
            status=status,
            domains=domains,
        ):
            # Finished before a restart: the sweep re-reads its Secret later, at its pace.
            return "skipped"
        ref = hmac_secret.effective_ref(name, spec)
        out = await reconcile.reconcile_registration(
            ctx,
            namespace=namespace,
            name=name,
            uid=uid,
            spec=spec,
            annotations=meta.annotations,
            domains=lambda: index_values(domain_index, (namespace, name)),
            allow_rotation=True,
            secret_claims=index_values(secret_index, (namespace, ref.name)),
            expect_secret=bool(status.get("hmacKeySecretRef")) or resuming,
        )
        for type_, reason, message in out.actions:
            kopf.event(body, type=type_, reason=reason, message=message)
        wanted = reconcile.status_fields(out, meta.get("generation"))
        if get_condition(status.get("conditions"), "Ready") is None:
            # First reconcile: the usage fields go in the same status patch.
            wanted.update(await usage.usage_status(ctx, namespace, name))
        for key, value in usage.changed_fields(status, wanted).items():
            patch.status[key] = value
        apply_ready(
            body=body,
            status=status,
            patch=patch,
            ok=out.ready,
            reason=out.reason,
            message=out.message,
            generation=meta.get("generation"),
        )
        return "ready" if out.ready else "not_ready"

    async def handle(
        *,
        resuming: bool,
        body: kopf.Body,
        meta: kopf.Meta,
        spec: kopf.Spec,
        status: kopf.Status,
        patch: kopf.Patch,
        namespace: str | None,
        name: str,
        uid: str,
        memo: kopf.Memo,
        domain_index: kopf.Index[Key, DomainEntry],
        secret_index: kopf.Index[Key, reconcile.SecretClaim],
        **_: Any,
    ) -> None:
        with metrics.reconcile_timer("AcmeRegistration") as outcome:
            outcome.value = await _run(
                body=body,
                meta=meta,
                spec=spec,
                status=status,
                patch=patch,
                namespace=namespaced(namespace),
                name=name,
                uid=uid,
                memo=memo,
                domain_index=domain_index,
                secret_index=secret_index,
                resuming=resuming,
            )

    @kopf.on.resume(*res, id="reconcile", backoff=RETRY_BACKOFF, registry=registry)
    async def registration_resumed(**kwargs: Any) -> None:
        """After a restart: skips registrations whose status and store row are up to date."""
        await handle(resuming=True, **kwargs)

    @kopf.on.create(*res, id="reconcile", backoff=RETRY_BACKOFF, registry=registry)
    @kopf.on.update(*res, id="reconcile", backoff=RETRY_BACKOFF, registry=registry)
    async def registration_changed(**kwargs: Any) -> None:
        await handle(resuming=False, **kwargs)

    @kopf.on.delete(*res, id="delete", backoff=RETRY_BACKOFF, registry=registry)
    async def registration_deleted(
        namespace: str | None, name: str, memo: kopf.Memo, logger: kopf.Logger, **_: Any
    ) -> None:
        """The store row goes; its accounts remain but the server refuses them from now on."""
        namespace = namespaced(namespace)
        removed = await reconcile.delete_registration(
            from_memo(memo), namespace=namespace, name=name
        )
        state = "deleted" if removed else "was already gone"
        logger.info(f"store registration {namespace}/{name} {state}")
