"""AcmeRegistration: Secret + store row on create/update/resume and on a timer; finalizer on delete."""

from __future__ import annotations

from typing import Any

import kopf

from acme_operator import hmac_secret, reconcile, usage
from acme_operator.config import OperatorConfig
from acme_operator.constants import GROUP, REGISTRATIONS, VERSION
from acme_operator.context import from_memo
from acme_operator.handlers.common import apply_ready, index_values, not_deleting

RETRY_BACKOFF = 5.0


def register(registry: kopf.OperatorRegistry, config: OperatorConfig) -> None:
    res = (GROUP, VERSION, REGISTRATIONS)

    @kopf.index(*res, id="registration_index", when=not_deleting, registry=registry)
    def registration_index(**kwargs: Any) -> dict[tuple[str, str], reconcile.RegistrationEntry]:
        spec = kwargs["spec"]
        orders, authzs = reconcile.limits(spec)
        entry = reconcile.RegistrationEntry(
            uid=kwargs["uid"],
            suspended=bool(spec.get("suspended", False)),
            max_pending_orders=orders,
            max_pending_authorizations=authzs,
        )
        return {(kwargs["namespace"], kwargs["name"]): entry}

    @kopf.index(*res, id="secret_index", when=not_deleting, registry=registry)
    def secret_index(**kwargs: Any) -> dict[tuple[str, str], reconcile.SecretClaim]:
        """Which registrations name which HMAC Secret: two on one Secret is a conflict."""
        ref = hmac_secret.effective_ref(kwargs["name"], kwargs["spec"])
        claim = reconcile.SecretClaim(
            created=str(kwargs["meta"].get("creationTimestamp") or ""),
            name=kwargs["name"],
            uid=kwargs["uid"],
        )
        return {(kwargs["namespace"], ref.name): claim}

    async def run(kwargs: dict[str, Any], *, allow_rotation: bool) -> None:
        body: kopf.Body = kwargs["body"]
        status: kopf.Status = kwargs["status"]
        patch: kopf.Patch = kwargs["patch"]
        namespace, name = kwargs["namespace"], kwargs["name"]
        ctx = from_memo(kwargs["memo"])
        out = await reconcile.reconcile_registration(
            ctx,
            namespace=namespace,
            name=name,
            uid=kwargs["uid"],
            spec=kwargs["spec"],
            annotations=kwargs["meta"].get("annotations") or {},
            domains=index_values(kwargs["domain_index"], (namespace, name)),
            allow_rotation=allow_rotation,
            secret_claims=index_values(
                kwargs["secret_index"],
                (namespace, hmac_secret.effective_ref(name, kwargs["spec"]).name),
            ),
        )
        for type_, reason, message in out.actions:
            kopf.event(body, type=type_, reason=reason, message=message)
        generation = kwargs["meta"].get("generation")
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
    @kopf.on.update(*res, id="reconcile", backoff=RETRY_BACKOFF, registry=registry)
    async def registration_changed(**kwargs: Any) -> None:
        await run(kwargs, allow_rotation=True)

    @kopf.timer(
        *res,
        id="resync",
        interval=config.resync_interval,
        initial_delay=config.resync_interval,
        registry=registry,
    )
    async def registration_resync(**kwargs: Any) -> None:
        """Pick up admin edits of the Secret and anything a missed event left behind."""
        await run(kwargs, allow_rotation=False)

    @kopf.timer(*res, id="usage", interval=config.status_interval, registry=registry)
    async def registration_usage(**kwargs: Any) -> None:
        ctx = from_memo(kwargs["memo"])
        wanted = await usage.usage_status(ctx, kwargs["namespace"], kwargs["name"])
        for key, value in usage.changed_fields(kwargs["status"], wanted).items():
            kwargs["patch"].status[key] = value

    @kopf.on.delete(*res, id="delete", backoff=RETRY_BACKOFF, registry=registry)
    async def registration_deleted(**kwargs: Any) -> None:
        """The store row goes; its accounts remain but the server refuses them from now on."""
        namespace, name = kwargs["namespace"], kwargs["name"]
        removed = await reconcile.delete_registration(
            from_memo(kwargs["memo"]), namespace=namespace, name=name
        )
        state = "deleted" if removed else "was already gone"
        kwargs["logger"].info(f"store registration {namespace}/{name} {state}")
