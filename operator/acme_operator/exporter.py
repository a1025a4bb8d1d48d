"""Draining the certificate outbox into Secrets, one batch at a time.

Per certificate: write the Secret (create, or replace when it differs), then mark the
revision exported. A crash in between re-exports the same content next time: no Secret is
duplicated (its name derives from the serial) and none is lost (the row stays pending).
The Secrets of a batch are written concurrently (bounded) and marked in one transaction;
owners come from kopf's index of live AcmeRegistrations, not from a GET per certificate.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Any

from kubernetes.client.exceptions import ApiException

from acme_operator import cert_secret, metrics
from acme_operator.constants import REVOKE_ANNOTATION, REVOKE_HANDLED_ANNOTATION
from acme_operator.context import OperatorContext
from acme_server.store.operator_facade import CertificateExport

log = logging.getLogger(__name__)

COMPONENT = "acme-gateway-operator"
BATCH = 1000
CONCURRENCY = 32

# (namespace, name) -> the live AcmeRegistration's uid as the index knows it (None: unknown).
OwnerLookup = Callable[[str, str], "str | None"]


async def _owner_uid(
    ctx: OperatorContext, known: OwnerLookup, namespace: str, name: str
) -> str | None:
    """From the index; else (not seen yet, e.g. just after a start) from the API server."""
    uid = known(namespace, name)
    if uid is not None:
        return uid
    owner = await ctx.kube.get_registration(namespace, name)
    if owner is None or owner["metadata"].get("deletionTimestamp"):
        return None
    return str(owner["metadata"]["uid"])


async def export_batch(ctx: OperatorContext, owner_uid: OwnerLookup) -> int:
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
    sem = asyncio.Semaphore(CONCURRENCY)

    async def one(cert: CertificateExport) -> tuple[tuple[str, int], bool] | None:
        namespace, _, name = cert.registration_name.partition("/")
        async with sem:
            uid = await _owner_uid(ctx, owner_uid, namespace, name)
        if uid is None:
            # No live custom resource: nothing could own the Secret. It stays in the store.
            log.debug(
                "skip certificate %s: AcmeRegistration %s is gone",
                cert.serial,
                cert.registration_name,
            )
            metrics.count_exports("orphaned")
            return None
        async with sem:
            changed = await _export(ctx, cert, namespace, name, uid, ca_root)
        return (cert.id, cert.revision), changed

    results = await asyncio.gather(*(one(c) for c in batch), return_exceptions=True)
    done = [r[0] for r in results if isinstance(r, tuple)]
    failed = [r for r in results if isinstance(r, BaseException)]
    for r in failed:
        log.error("certificate export failed (retried next round): %s", r)
    metrics.count_exports("failed", len(failed))
    marked = await ctx.store.mark_exported_many(done)
    changed = sum(1 for r in results if isinstance(r, tuple) and r[1])
    metrics.count_exports("exported", changed)
    metrics.count_exports("unchanged", len(done) - changed)
    return marked


async def _export(
    ctx: OperatorContext,
    cert: CertificateExport,
    namespace: str,
    name: str,
    uid: str,
    ca_root: str,
) -> bool:
    """Write the Secret; False when it already held this content."""
    wanted = cert_secret.build_secret(
        cert,
        namespace=namespace,
        registration=name,
        registration_uid=uid,
        ca_root_pem=ca_root,
        account=ctx.config.account_url(cert.account_id),
    )
    created = await _write(ctx, namespace, wanted)
    secret = wanted["metadata"]["name"]
    log.info(
        "exported certificate %s (revision %d) to Secret %s/%s",
        cert.serial,
        cert.revision,
        namespace,
        secret,
    )
    if created is None:
        return False
    what = "Exported" if created else "Updated"
    owner = {
        "apiVersion": "acme-gateway.io/v1alpha1",
        "kind": "AcmeRegistration",
        "metadata": {"name": name, "namespace": namespace, "uid": uid},
    }
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
    return True


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
    # A user's revoke request (and its handled mark) survives the re-export it causes.
    kept = {
        k: v
        for k, v in (existing["metadata"].get("annotations") or {}).items()
        if k in (REVOKE_ANNOTATION, REVOKE_HANDLED_ANNOTATION)
    }
    wanted["metadata"]["annotations"] = {**kept, **wanted["metadata"]["annotations"]}
    await ctx.kube.replace_secret(namespace, name, wanted)
    return False
