"""Draining the certificate outbox into Secrets, one batch at a time.

Per certificate: write the Secret (create, or replace when it differs), then mark the
revision exported. A crash in between re-exports the same content next time: no Secret is
duplicated (its name derives from the serial) and none is lost (the row stays pending).
"""

from __future__ import annotations

import logging
from typing import Any

from kubernetes.client.exceptions import ApiException

from acme_operator import cert_secret
from acme_operator.context import OperatorContext

log = logging.getLogger(__name__)

COMPONENT = "acme-gateway-operator"
BATCH = 100


async def export_batch(ctx: OperatorContext) -> int:
    """Export what is pending now; returns how many certificates were marked exported."""
    batch = await ctx.store.pending_exports(ctx.config.namespaces, limit=BATCH)
    if not batch:
        return 0
    ca_root = await ctx.store.ca_root_pem()
    if ca_root is None:
        log.warning(
            "%d certificate(s) wait for export: the store has no CA root yet "
            "(the ACME server records it when it starts)",
            len(batch),
        )
        return 0
    owners: dict[str, dict[str, Any] | None] = {}
    done = 0
    for cert in batch:
        namespace, _, name = cert.registration_name.partition("/")
        if cert.registration_name not in owners:
            owners[cert.registration_name] = await ctx.kube.get_registration(namespace, name)
        owner = owners[cert.registration_name]
        if owner is None or owner["metadata"].get("deletionTimestamp"):
            # No live custom resource: nothing could own the Secret. It stays in the store.
            log.debug(
                "skip certificate %s: AcmeRegistration %s is gone",
                cert.serial,
                cert.registration_name,
            )
            continue
        wanted = cert_secret.build_secret(
            cert,
            namespace=namespace,
            registration=name,
            registration_uid=owner["metadata"]["uid"],
            ca_root_pem=ca_root,
            account=ctx.config.account_url(cert.account_id),
        )
        created = await _write(ctx, namespace, wanted)
        if await ctx.store.mark_exported(cert.id, cert.revision):
            done += 1
        secret = wanted["metadata"]["name"]
        log.info(
            "exported certificate %s (revision %d) to Secret %s/%s",
            cert.serial,
            cert.revision,
            namespace,
            secret,
        )
        if created is not None:
            what = "Exported" if created else "Updated"
            try:
                await ctx.kube.post_event(
                    owner,
                    type_="Normal",
                    reason="CertificateExported",
                    message=f"{what} certificate {cert.serial} for {', '.join(cert.names)} "
                    f"to Secret {secret}",
                    component=COMPONENT,
                )
            except ApiException as exc:
                log.warning("could not post an Event about %s: %s", secret, exc.reason)
    return done


async def _write(ctx: OperatorContext, namespace: str, wanted: dict[str, Any]) -> bool | None:
    """True when created, False when replaced, None when it was already up to date."""
    name = wanted["metadata"]["name"]
    try:
        await ctx.kube.create_secret(namespace, wanted)
        return True
    except ApiException as exc:
        if exc.status != 409:
            raise
    existing = await ctx.kube.get_secret(namespace, name)
    if existing is None:  # deleted in between: next round creates it
        raise RuntimeError(f"Secret {namespace}/{name} vanished while exporting")
    if cert_secret.same_content(existing, wanted):
        return None
    wanted = {**wanted, "metadata": {**wanted["metadata"]}}
    wanted["metadata"]["resourceVersion"] = existing["metadata"]["resourceVersion"]
    await ctx.kube.replace_secret(namespace, name, wanted)
    return False
