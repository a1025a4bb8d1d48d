"""AcmeRegistration: Secret + store row on create/update/resume and on a timer; finalizer on delete.

Handlers name the kopf arguments they use (typed, so mypy checks them) and take the rest as
`**_`: kopf passes every argument to every handler.
"""

from __future__ import annotations

from typing import Any

import kopf

from acme_operator import hmac_secret, reconcile, usage
from acme_operator.config import OperatorConfig
from acme_operator.constants import GROUP, REGISTRATIONS, VERSION
from acme_operator.context import from_memo
from acme_operator.domains import DomainEntry
from acme_operator.handlers.common import apply_ready, index_values, namespaced, not_deleting

RETRY_BACKOFF = 5.0

Key = tuple[str, str]  # (namespace, name): how the indices are keyed


def register(registry: kopf.OperatorRegistry, config: OperatorConfig) -> None:
    res = (GROUP, VERSION, REGISTRATIONS)

    @kopf.index(*res, id="registration_index", when=not_deleting, registry=registry)
    def registration_index(
        namespace: str | None, name: str, uid: str, spec: kopf.Spec, **_: Any
    ) -> dict[Key, reconcile.RegistrationEntry]:
        namespace = namespaced(namespace)
        orders, authzs = reconcile.limits(spec)
        entry = reconcile.RegistrationEntry(
            uid=uid,
            suspended=bool(spec.get("suspended", False)),
            max_pending_orders=orders,
            max_pending_authorizations=authzs,
        )
        return {(namespace, name): entry}

    @kopf.index(*res, id="secret_index", when=not_deleting, registry=registry)
    def secret_index(
        namespace: str | None, name: str, uid: str, spec: kopf.Spec, meta: kopf.Meta, **_: Any
    ) -> dict[Key, reconcile.SecretClaim]:
        """Which registrations name which HMAC Secret: two on one Secret is a conflict."""
        namespace = namespaced(namespace)
        ref = hmac_secret.effective_ref(name, spec)
        claim = reconcile.SecretClaim(
            created=str(meta.get("creationTimestamp") or ""), name=name, uid=uid
        )
        return {(namespace, ref.name): claim}

    async def run(
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
        allow_rotation: bool,
    ) -> None:
        out = await reconcile.reconcile_registration(
            from_memo(memo),
            namespace=namespace,
            name=name,
            uid=uid,
            spec=spec,
            annotations=meta.annotations,
            domains=index_values(domain_index, (namespace, name)),
            allow_rotation=allow_rotation,
            secret_claims=index_values(
                secret_index, (namespace, hmac_secret.effective_ref(name, spec).name)
            ),
        )
        for type_, reason, message in out.actions:
            kopf.event(body, type=type_, reason=reason, message=message)
        generation = meta.get("generation")
        wanted: dict[str, Any] = {
            "observedGeneration": generation,
            "keyID": out.kid,
            "hmacKeySecretRef": out.secret_ref.as_status(),
            "hmacKeyRotation": out.rotation,
        }
        for key, value in usage.changed_fields(status, wanted).items():
            patch.status[key] = value
        apply_ready(
            body=body,
            status=status,
            patch=patch,
            ok=out.ready,
            reason=out.reason,
            message=out.message,
            generation=generation,
        )

    @kopf.on.resume(*res, id="reconcile", backoff=RETRY_BACKOFF, registry=registry)
    @kopf.on.create(*res, id="reconcile", backoff=RETRY_BACKOFF, registry=registry)
    @kopf.on.update(*res, id="reconcile", backoff=RETRY_BACKOFF, registry=registry)  # type: ignore[arg-type]  # index args
    async def registration_changed(
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
        namespace = namespaced(namespace)
        await run(
            body=body,
            meta=meta,
            spec=spec,
            status=status,
            patch=patch,
            namespace=namespace,
            name=name,
            uid=uid,
            memo=memo,
            domain_index=domain_index,
            secret_index=secret_index,
            allow_rotation=True,
        )

    @kopf.timer(  # type: ignore[arg-type]  # index args
        *res,
        id="resync",
        interval=config.resync_interval,
        initial_delay=config.resync_interval,
        registry=registry,
    )
    async def registration_resync(
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
        """Pick up admin edits of the Secret and anything a missed event left behind."""
        namespace = namespaced(namespace)
        await run(
            body=body,
            meta=meta,
            spec=spec,
            status=status,
            patch=patch,
            namespace=namespace,
            name=name,
            uid=uid,
            memo=memo,
            domain_index=domain_index,
            secret_index=secret_index,
            allow_rotation=False,
        )

    @kopf.timer(*res, id="usage", interval=config.status_interval, registry=registry)
    async def registration_usage(
        status: kopf.Status,
        patch: kopf.Patch,
        namespace: str | None,
        name: str,
        memo: kopf.Memo,
        **_: Any,
    ) -> None:
        namespace = namespaced(namespace)
        wanted = await usage.usage_status(from_memo(memo), namespace, name)
        for key, value in usage.changed_fields(status, wanted).items():
            patch.status[key] = value

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
