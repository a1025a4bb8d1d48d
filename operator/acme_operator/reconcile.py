"""Bringing the store in line with the custom resources (the kopf-free core of the handlers).

Everything here is idempotent: running it again after a crash at any point converges.
Store writes for one registration happen under its lock (see context.py).
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from kubernetes.client.exceptions import ApiException

from acme_operator import hmac_secret
from acme_operator.constants import (
    GROUP,
    MANAGED_BY,
    MANAGED_BY_LABEL,
    PURPOSE_LABEL,
    ROTATE_ANNOTATION,
)
from acme_operator.context import OperatorContext, store_name
from acme_operator.domains import AllowList, DomainEntry, allow_list
from acme_operator.owners import is_owned_by, registration_owner
from acme_server.store import registrations
from acme_server.store.registrations import RegistrationError

log = logging.getLogger(__name__)

# Recorded on the HMAC Secret: the rotation request value already carried out, so a crash
# before the status patch does not rotate the key a second time.
ROTATION_DONE_ANNOTATION = f"{GROUP}/rotation-handled"


@dataclass(frozen=True)
class RegistrationEntry:
    """What other handlers need to know about an AcmeRegistration (kopf index value)."""

    uid: str
    suspended: bool


@dataclass
class Outcome:
    ready: bool
    reason: str
    message: str
    kid: str
    secret_ref: hmac_secret.SecretRef
    rotation: str | None
    # (type, reason, message) of things that happened: always worth an Event.
    actions: list[tuple[str, str, str]] = field(default_factory=list)


@dataclass
class _KeyResult:
    key: str | None
    error: str | None = None
    rotation: str | None = None
    actions: list[tuple[str, str, str]] = field(default_factory=list)


@dataclass(frozen=True)
class _Row:
    """The store row a registration should have; written only when it differs."""

    kid: str
    hmac_key: str | None
    max_accounts: int | None
    suspended: bool
    allowed: AllowList

    def matches(self, row: registrations.Registration | None) -> bool:
        return row is not None and (
            row.kid,
            row.hmac_key,
            row.max_accounts,
            row.suspended,
            set(row.domains),
        ) == (self.kid, self.hmac_key, self.max_accounts, self.suspended, set(self.allowed.rules))

    async def write(self, ctx: OperatorContext, sname: str) -> None:
        assert self.hmac_key is not None
        await registrations.upsert(
            ctx.db,
            sname,
            kid=self.kid,
            hmac_key=self.hmac_key,
            max_accounts=self.max_accounts,
            suspended=self.suspended,
            domains=self.allowed.rules,
        )


def effective_kid(namespace: str, name: str, spec: Mapping[str, Any]) -> str:
    return str(spec.get("keyID") or f"{namespace}.{name}")


async def _hmac_key(
    ctx: OperatorContext,
    *,
    namespace: str,
    name: str,
    uid: str,
    ref: hmac_secret.SecretRef,
    rotate_to: str | None,
) -> _KeyResult:
    """The registration's HMAC key, generating or rotating the Secret when asked to."""
    secret = await ctx.kube.get_secret(namespace, ref.name)
    if secret is None:
        key = registrations.generate_hmac_key()
        body = hmac_secret.build_secret(
            namespace=namespace, registration=name, uid=uid, ref=ref, hmac_key=key
        )
        if rotate_to:
            body["metadata"]["annotations"] = {ROTATION_DONE_ANNOTATION: rotate_to}
        try:
            await ctx.kube.create_secret(namespace, body)
        except ApiException as exc:
            if exc.status != 409:
                raise
            secret = await ctx.kube.get_secret(namespace, ref.name)
            if secret is None:
                raise
        else:
            return _KeyResult(
                key,
                rotation=rotate_to,
                actions=[
                    (
                        "Normal",
                        "SecretCreated",
                        f"Generated an EAB HMAC key into Secret {ref.name} (key {ref.key!r})",
                    )
                ],
            )

    if _ours(secret) and not is_owned_by(secret, uid):
        # Left by an earlier registration of this name (deleted, then re-created before the
        # garbage collector ran): adopt it, so the key survives and the new owner cleans up.
        await ctx.kube.patch_secret(
            namespace,
            ref.name,
            {"metadata": {"ownerReferences": [registration_owner(name, uid)]}},
        )
    done = (secret["metadata"].get("annotations") or {}).get(ROTATION_DONE_ANNOTATION)
    if rotate_to and rotate_to != done:
        return await _write_new_key(ctx, namespace, ref, rotate_to, "HMACKeyRotated")
    try:
        found = hmac_secret.key_from_secret(secret, ref)
    except hmac_secret.InvalidKeyError as exc:
        return _KeyResult(None, error=str(exc), rotation=done)
    if found is None:
        if _ours(secret) or is_owned_by(secret, uid):
            return await _write_new_key(ctx, namespace, ref, done, "SecretRepaired")
        return _KeyResult(
            None,
            error=(
                f"Secret {ref.name} has no key {ref.key!r}; add the HMAC key there as unpadded "
                "base64url text (>= 32 bytes), or point spec.hmacKeySecretRef at a Secret that "
                "does not exist yet so the operator generates it"
            ),
            rotation=done,
        )
    return _KeyResult(found, rotation=done)


def _ours(secret: Mapping[str, Any]) -> bool:
    labels = secret["metadata"].get("labels") or {}
    return bool(
        labels.get(MANAGED_BY_LABEL) == MANAGED_BY and labels.get(PURPOSE_LABEL) == "eab-hmac-key"
    )


async def _write_new_key(
    ctx: OperatorContext,
    namespace: str,
    ref: hmac_secret.SecretRef,
    rotation: str | None,
    reason: str,
) -> _KeyResult:
    key = registrations.generate_hmac_key()
    patch: dict[str, Any] = {"data": {ref.key: hmac_secret.encode_data(key)}}
    if rotation:
        patch["metadata"] = {"annotations": {ROTATION_DONE_ANNOTATION: rotation}}
    await ctx.kube.patch_secret(namespace, ref.name, patch)
    what = "Rotated" if reason == "HMACKeyRotated" else "Wrote a new"
    return _KeyResult(
        key,
        rotation=rotation,
        actions=[("Normal", reason, f"{what} EAB HMAC key in Secret {ref.name} (key {ref.key!r})")],
    )


async def reconcile_registration(
    ctx: OperatorContext,
    *,
    namespace: str,
    name: str,
    uid: str,
    spec: Mapping[str, Any],
    annotations: Mapping[str, str],
    domains: Iterable[DomainEntry],
    allow_rotation: bool,
) -> Outcome:
    """Secret first, then the store row; the caller writes status and Events from the result."""
    kid = effective_kid(namespace, name, spec)
    ref = hmac_secret.effective_ref(name, spec)
    rotate_to = annotations.get(ROTATE_ANNOTATION) if allow_rotation else None
    sname = store_name(namespace, name)
    async with ctx.lock(sname):
        keyres = await _hmac_key(
            ctx, namespace=namespace, name=name, uid=uid, ref=ref, rotate_to=rotate_to or None
        )
        allowed = allow_list(domains)
        suspended = bool(spec.get("suspended", False))
        existing = await registrations.get(ctx.db, sname)
        store_key = keyres.key or (existing.hmac_key if existing is not None else None)
        store_error = None
        wanted = _Row(
            kid, store_key, spec.get("maxAccounts"), suspended or allowed.all_invalid, allowed
        )
        if store_key is not None and not wanted.matches(existing):
            try:
                await wanted.write(ctx, sname)
            except RegistrationError as exc:
                store_error = str(exc)

    out = Outcome(True, "Reconciled", "", kid, ref, keyres.rotation, keyres.actions)
    if keyres.error is not None:
        out.ready, out.reason = False, "InvalidHMACKey"
        kept = " (the store keeps the previous key)" if existing is not None else ""
        out.message = keyres.error + kept
    elif store_error is not None:
        out.ready, out.reason = False, "StoreRejected"
        out.message = f"{store_error}; choose another spec.keyID"
    elif allowed.all_invalid:
        out.ready, out.reason = False, "InvalidDomains"
        out.message = (
            f"every AllowedDomain is invalid ({_invalid_summary(allowed)}); accounts are "
            "refused until one is fixed"
        )
    elif suspended:
        out.ready, out.reason = False, "Suspended"
        out.message = "spec.suspended is true: accounts of this registration are refused"
    else:
        out.message = _ready_message(kid, allowed)
    return out


def _invalid_summary(allowed: AllowList) -> str:
    return "; ".join(f"{e.name}: {e.error}" for e in allowed.invalid)


def _ready_message(kid: str, allowed: AllowList) -> str:
    if not allowed.rules:
        scope = "no AllowedDomains, so any DNS name may be requested"
    else:
        scope = f"{len(allowed.rules)} allowed domain(s): " + ", ".join(
            r.domain for r in allowed.rules
        )
    msg = f"key ID {kid} accepts ACME accounts; {scope}"
    if allowed.invalid:
        msg += f"; ignored invalid AllowedDomains ({_invalid_summary(allowed)})"
    return msg


async def sync_domains(
    ctx: OperatorContext,
    *,
    namespace: str,
    registration: str,
    entry: RegistrationEntry | None,
    domains: Iterable[DomainEntry],
) -> bool:
    """Rewrite one registration's allow-list; False when it has no store row (yet)."""
    sname = store_name(namespace, registration)
    async with ctx.lock(sname):
        existing = await registrations.get(ctx.db, sname)
        if existing is None or entry is None:
            return False
        allowed = allow_list(domains)
        wanted = _Row(
            existing.kid,
            existing.hmac_key,
            existing.max_accounts,
            entry.suspended or allowed.all_invalid,
            allowed,
        )
        if not wanted.matches(existing):
            await wanted.write(ctx, sname)
        return True


async def delete_registration(ctx: OperatorContext, *, namespace: str, name: str) -> bool:
    sname = store_name(namespace, name)
    async with ctx.lock(sname):
        return await registrations.delete(ctx.db, sname)
