"""`acme-gateway.io/revoke: <reason>` on an exported certificate Secret revokes it.

Whoever may patch the Secret may revoke its certificate: Kubernetes RBAC decides, the
operator only acts. It watches the metadata (never the data) of Secrets labelled as
exported certificates, server-side filtered, and for each new annotation value:
- checks that the Secret is the one exported for that certificate (its name derives from
  the owning AcmeRegistration and the serial), so a Secret in one namespace can never
  name a certificate of another namespace's registration;
- revokes through `OperatorStore.revoke_certificate`, the rules ACME's revokeCert obeys
  (reasons 0, 1, 3, 4, 5; not expired; not already revoked), which marks the CRL stale
  and bumps the revision, so the exporter re-writes the Secret with `revoked: "true"`;
- posts an Event on the AcmeRegistration (and the Secret) saying what happened or what
  to fix, and records the handled value in `acme-gateway.io/revoke-handled`.
Requests are handled one at a time: revocations are rare, and order makes them simple.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from typing import Any

from kubernetes.client.exceptions import ApiException

from acme_operator import metrics
from acme_operator.cert_secret import REVOCATION_REASONS, secret_name
from acme_operator.constants import (
    GROUP,
    MANAGED_BY,
    MANAGED_BY_LABEL,
    PURPOSE_LABEL,
    REGISTRATION_KIND,
    REVOKE_ANNOTATION,
    REVOKE_HANDLED_ANNOTATION,
)
from acme_operator.context import OperatorContext, store_name
from acme_server.domain.revocation import allowed_text, reason_from_text
from acme_server.store.operator_facade import Refusal, RevocationOutcome
from acme_server.timefmt import rfc3339

log = logging.getLogger(__name__)

COMPONENT = "acme-gateway-operator"
SELECTOR = f"{MANAGED_BY_LABEL}={MANAGED_BY},{PURPOSE_LABEL}=certificate"
SERIAL_ANNOTATION = f"{GROUP}/serial"
RETRY_SECONDS = 5.0


@dataclass(frozen=True)
class Request:
    """One revoke annotation value on one Secret, as the watch saw it."""

    namespace: str
    secret: str
    secret_uid: str
    value: str
    registration: str | None
    registration_uid: str | None
    serial: str | None

    @property
    def key(self) -> tuple[str, str, str]:
        return self.namespace, self.secret, self.secret_uid


def request_of(meta: dict[str, Any]) -> Request | None:
    """The pending request in a Secret's metadata, or None (none, or handled already)."""
    annotations = meta.get("annotations") or {}
    value = annotations.get(REVOKE_ANNOTATION)
    if value is None or annotations.get(REVOKE_HANDLED_ANNOTATION) == value:
        return None
    owner = next(
        (
            ref
            for ref in meta.get("ownerReferences") or []
            if ref.get("kind") == REGISTRATION_KIND
            and str(ref.get("apiVersion", "")).startswith(f"{GROUP}/")
        ),
        None,
    )
    return Request(
        namespace=str(meta["namespace"]),
        secret=str(meta["name"]),
        secret_uid=str(meta.get("uid", "")),
        value=str(value),
        registration=None if owner is None else str(owner.get("name")),
        registration_uid=None if owner is None else str(owner.get("uid")),
        serial=annotations.get(SERIAL_ANNOTATION),
    )


def _reason_name(code: int | None) -> str:
    return REVOCATION_REASONS.get(code if code is not None else 0, str(code))


def outcome_event(req: Request, outcome: RevocationOutcome) -> tuple[str, str, str]:
    """(type, reason, message) of the Event telling what the annotation did."""
    cur = outcome.current
    where = f"(annotation {REVOKE_ANNOTATION} on Secret {req.secret})"
    if outcome.refusal is None:
        assert cur is not None
        return (
            "Normal",
            "CertificateRevoked",
            f"Revoked certificate {cur.serial} for {', '.join(cur.names)} with reason "
            f"{_reason_name(cur.revocation_reason)} {where}; the CRL and OCSP answer revoked "
            "and ACME clients are told to renew",
        )
    if outcome.refusal is Refusal.ALREADY_REVOKED and cur is not None:
        when = rfc3339(cur.revoked_at) if cur.revoked_at is not None else "earlier"
        return (
            "Warning",
            "AlreadyRevoked",
            f"Certificate {cur.serial} was already revoked at {when} with reason "
            f"{_reason_name(cur.revocation_reason)}; nothing changed {where}",
        )
    if outcome.refusal is Refusal.EXPIRED and cur is not None:
        return (
            "Warning",
            "RevocationRefused",
            f"Certificate {cur.serial} expired at {rfc3339(cur.not_after)}; an expired "
            f"certificate cannot be revoked {where}",
        )
    return ("Warning", "RevocationRefused", f"{outcome.detail} {where}")


async def handle(ctx: OperatorContext, req: Request) -> None:
    """Act on one request, post its Events, record it handled. Raises on a store or API
    failure before it was recorded (the caller retries)."""
    registration = req.registration
    code = reason_from_text(req.value)
    if (
        registration is None
        or req.serial is None
        or req.secret != secret_name(registration, req.serial)
    ):
        event = (
            "Warning",
            "RevocationRefused",
            f"Secret {req.secret} is not a certificate Secret exported by acme-gateway (owner "
            f"AcmeRegistration, serial annotation and name must match); {REVOKE_ANNOTATION} "
            "is ignored here",
        )
    elif code is None:
        event = (
            "Warning",
            "InvalidRevocationReason",
            f"{REVOKE_ANNOTATION}: {req.value!r} on Secret {req.secret} is not an allowed "
            f"reason; use one of {allowed_text()} (name or code). Nothing was revoked",
        )
    else:
        outcome = await ctx.store.revoke_certificate(
            store_name(req.namespace, registration), req.serial, code
        )
        event = outcome_event(req, outcome)
        log.info("revoke annotation on Secret %s/%s: %s", req.namespace, req.secret, event[1])
    revoked = event[1] == "CertificateRevoked"
    metrics.REVOCATIONS.labels(event[1], _reason_name(code) if revoked else "none").inc()
    await _post(ctx, req, *event)
    await ctx.kube.patch_secret(
        req.namespace,
        req.secret,
        {"metadata": {"annotations": {REVOKE_HANDLED_ANNOTATION: req.value}}},
    )


async def _post(ctx: OperatorContext, req: Request, type_: str, reason: str, message: str) -> None:
    involved: list[dict[str, Any]] = [
        {
            "apiVersion": "v1",
            "kind": "Secret",
            "metadata": {"name": req.secret, "namespace": req.namespace, "uid": req.secret_uid},
        }
    ]
    if req.registration is not None:
        involved.insert(
            0,
            {
                "apiVersion": f"{GROUP}/v1alpha1",
                "kind": REGISTRATION_KIND,
                "metadata": {
                    "name": req.registration,
                    "namespace": req.namespace,
                    "uid": req.registration_uid,
                },
            },
        )
    for obj in involved:
        try:
            await ctx.kube.post_event(
                obj, type_=type_, reason=reason, message=message, component=COMPONENT
            )
        except ApiException as exc:
            log.warning("could not post an Event about %s: %s", req.secret, exc.reason)


class RevokeWatcher:
    """Lists, then watches, certificate Secrets' metadata; queues new revoke requests."""

    def __init__(self, ctx: OperatorContext) -> None:
        self._ctx = ctx
        self._queue: asyncio.Queue[Request] = asyncio.Queue()
        # Latest value seen and handled per Secret, so one request is handled once.
        self._seen: dict[tuple[str, str, str], str] = {}
        self._done: dict[tuple[str, str, str], str] = {}

    def offer(self, meta: dict[str, Any]) -> None:
        req = request_of(meta)
        if req is None or self._done.get(req.key) == req.value:
            return
        if self._seen.get(req.key) != req.value:
            self._seen[req.key] = req.value
            self._queue.put_nowait(req)

    def forget(self, meta: dict[str, Any]) -> None:
        key = (str(meta.get("namespace")), str(meta.get("name")), str(meta.get("uid", "")))
        self._seen.pop(key, None)
        self._done.pop(key, None)

    async def work(self) -> None:
        while True:
            req = await self._queue.get()
            if self._seen.get(req.key) != req.value:
                continue  # superseded by a newer value, which is queued too
            while True:
                try:
                    await handle(self._ctx, req)
                    self._done[req.key] = req.value
                    break
                except asyncio.CancelledError:
                    raise
                except Exception as exc:  # store or API down: try again
                    log.warning(
                        "revoke request on Secret %s/%s failed (retrying in %ss): %s",
                        req.namespace,
                        req.secret,
                        RETRY_SECONDS,
                        exc,
                    )
                    await asyncio.sleep(RETRY_SECONDS)

    async def watch(self, namespace: str | None) -> None:
        kube = self._ctx.kube
        while True:
            try:
                version = await self._list(namespace)
                while True:
                    async for event in kube.watch_secret_metadata(namespace, SELECTOR, version):
                        obj = event.get("object") or {}
                        if event.get("type") == "ERROR":
                            raise _Relist(str(obj.get("message", "watch error")))
                        version = str(obj.get("metadata", {}).get("resourceVersion") or version)
                        if event.get("type") in ("ADDED", "MODIFIED"):
                            self.offer(obj.get("metadata") or {})
                        elif event.get("type") == "DELETED":
                            self.forget(obj.get("metadata") or {})
            except asyncio.CancelledError:
                raise
            except _Relist as exc:
                log.debug("revoke watch restarts from a fresh list: %s", exc)
            except Exception as exc:
                log.warning("revoke watch failed (again in %ss): %s", RETRY_SECONDS, exc)
                await asyncio.sleep(RETRY_SECONDS)

    async def _list(self, namespace: str | None) -> str:
        cont: str | None = None
        while True:
            page = await self._ctx.kube.list_secret_metadata(namespace, SELECTOR, cont)
            for item in page.get("items") or []:
                meta = item.get("metadata") or {}
                meta.setdefault("namespace", namespace)
                self.offer(meta)
            cont = (page.get("metadata") or {}).get("continue")
            if not cont:
                return str(page["metadata"]["resourceVersion"])


class _Relist(Exception):
    """The watch ended with an ERROR event (e.g. 410 Gone): list again."""


def start(ctx: OperatorContext) -> list[asyncio.Task[None]]:
    """The worker and one watch per watched namespace (one for all without --namespace)."""
    watcher = RevokeWatcher(ctx)
    scopes: list[str | None] = list(ctx.config.namespaces) or [None]
    tasks = [asyncio.create_task(watcher.work(), name="revoke-worker")]
    tasks += [
        asyncio.create_task(watcher.watch(ns), name=f"revoke-watch-{ns or 'all'}") for ns in scopes
    ]
    return tasks
