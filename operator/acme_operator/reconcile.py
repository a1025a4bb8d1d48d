"""Bringing the store in line with the custom resources (the kopf-free core of the handlers).

Everything here is idempotent: running it again after a crash at any point converges.
Store writes for one registration happen under its lock (see context.py).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from kubernetes.client.exceptions import ApiException

from acme_operator import hmac_secret
from acme_operator.conditions import get_condition
from acme_operator.constants import GROUP, ROTATE_ANNOTATION
from acme_operator.context import OperatorContext, store_name
from acme_operator.domains import AllowList, DomainEntry, allow_list
from acme_operator.hmac_secret import Ownership
from acme_operator.owners import registration_owner
from acme_operator.views import ObjectView
from acme_server.store.operator_facade import (
    Registration,
    RegistrationError,
    RowSpec,
    generate_hmac_key,
)

log = logging.getLogger(__name__)

# Recorded on the HMAC Secret: the rotation request value already carried out, so a crash
# before the status patch does not rotate the key a second time.
ROTATION_DONE_ANNOTATION = f"{GROUP}/rotation-handled"


class RegistrationGone(Exception):
    """The registration a sweep was about to re-sync is being deleted or gone."""


@dataclass(frozen=True)
class RegistrationEntry:
    """What other handlers need to know about an AcmeRegistration (kopf index value)."""

    uid: str
    suspended: bool
    max_pending_orders: int | None = None
    max_pending_authorizations: int | None = None
    # The whole object as last seen (for the operator-wide sweeps); one index, not two:
    # kopf runs every index function on every watch event.
    view: ObjectView | None = None


@dataclass(frozen=True)
class SecretClaim:
    """One registration naming an HMAC Secret (kopf index value): the oldest one keeps it."""

    created: str
    name: str
    uid: str


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
    conflict: str | None = None
    rotation: str | None = None
    rotation_refused: str | None = None
    actions: list[tuple[str, str, str]] = field(default_factory=list)


@dataclass(frozen=True)
class _Row:
    """The store row a registration should have; written only when it differs."""

    kid: str
    hmac_key: str | None
    max_accounts: int | None
    suspended: bool
    allowed: AllowList
    max_pending_orders: int | None = None
    max_pending_authorizations: int | None = None
    allowed_profiles: tuple[str, ...] | None = None  # certificate profiles (issue 12)
    default_profile: str | None = None

    def matches(self, row: Registration | None) -> bool:
        return row is not None and (
            row.kid,
            row.hmac_key,
            row.max_accounts,
            row.suspended,
            set(row.domains),
            row.any_domain,
            row.max_pending_orders,
            row.max_pending_authorizations,
            row.allowed_profiles,
            row.default_profile,
            set(row.ip_ranges),
        ) == (
            self.kid,
            self.hmac_key,
            self.max_accounts,
            self.suspended,
            set(self.allowed.rules),
            self.allowed.any_domain,
            self.max_pending_orders,
            self.max_pending_authorizations,
            self.allowed_profiles,
            self.default_profile,
            set(self.allowed.ip_ranges),
        )

    async def write(self, ctx: OperatorContext, sname: str) -> None:
        assert self.hmac_key is not None
        await ctx.rows.upsert(
            RowSpec(
                name=sname,
                kid=self.kid,
                hmac_key=self.hmac_key,
                max_accounts=self.max_accounts,
                suspended=self.suspended,
                domains=tuple(self.allowed.rules),
                any_domain=self.allowed.any_domain,
                max_pending_orders=self.max_pending_orders,
                max_pending_authorizations=self.max_pending_authorizations,
                allowed_profiles=self.allowed_profiles,
                default_profile=self.default_profile,
                ip_ranges=self.allowed.ip_ranges,
            )
        )


def effective_kid(namespace: str, name: str, spec: Mapping[str, Any]) -> str:
    """Key IDs stay inside the namespace: "<ns>." is forced in front of a custom one.

    Namespace names have no dots, so no key ID of one namespace can equal one of another.
    """
    custom = str(spec.get("keyID") or "")
    if not custom:
        return f"{namespace}.{name}"
    prefix = f"{namespace}."
    return custom if custom.startswith(prefix) else prefix + custom


def limits(spec: Mapping[str, Any]) -> tuple[int | None, int | None]:
    """(max pending orders, max pending authorizations) per account; None: server default."""
    given = spec.get("limits") or {}
    return given.get("maxPendingOrders"), given.get("maxPendingAuthorizations")


def profiles(spec: Mapping[str, Any]) -> tuple[tuple[str, ...] | None, str | None]:
    """(allowed certificate profiles, default profile); None: no restriction / the server's."""
    allowed = spec.get("profiles")
    return (tuple(allowed) if allowed is not None else None), spec.get("defaultProfile")


async def _hmac_key(
    ctx: OperatorContext,
    *,
    namespace: str,
    name: str,
    uid: str,
    ref: hmac_secret.SecretRef,
    rotate_to: str | None,
    first_claim: bool,
    expect_secret: bool = True,
) -> _KeyResult:
    """The registration's HMAC key, generating or rotating the Secret when it is ours.

    A Secret marked for this registration is its own whatever else names it; any other
    Secret (or a missing one) belongs to the oldest registration naming it. Without
    `expect_secret` (a new registration) creating comes first: one request, not two.
    """
    secret = None
    if expect_secret or not first_claim:
        secret = await ctx.kube.get_secret(namespace, ref.name)
    if secret is None and not first_claim:
        return _KeyResult(None, conflict=_secret_conflict(ref))
    if secret is None:
        key = generate_hmac_key()
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

    owner = hmac_secret.ownership(secret, name, uid)
    if owner is Ownership.OTHER_REGISTRATION or (owner is Ownership.FOREIGN and not first_claim):
        return _KeyResult(None, conflict=_secret_conflict(ref))
    if owner is Ownership.ADOPTABLE:
        # Generated for an earlier registration of this very name (deleted, then re-created
        # before the garbage collector ran): adopt it, so the key survives.
        await ctx.kube.patch_secret(
            namespace,
            ref.name,
            {"metadata": {"ownerReferences": [registration_owner(name, uid)]}},
        )
        owner = Ownership.MINE
    done = (secret["metadata"].get("annotations") or {}).get(ROTATION_DONE_ANNOTATION)
    refused = None
    if rotate_to and rotate_to != done:
        if owner is Ownership.MINE:
            return await _write_new_key(ctx, namespace, ref, rotate_to, "HMACKeyRotated", secret)
        refused = (
            f"rotation {rotate_to!r} refused: Secret {ref.name} was not generated by the operator "
            "for this registration, so it is never overwritten; write a new key into it yourself "
            f"and remove the {ROTATE_ANNOTATION} annotation"
        )
    try:
        found = hmac_secret.key_from_secret(secret, ref)
    except hmac_secret.InvalidKeyError as exc:
        return _KeyResult(None, error=str(exc), rotation=done)
    if found is None:
        if owner is Ownership.MINE:
            return await _write_new_key(ctx, namespace, ref, done, "SecretRepaired", secret)
        return _KeyResult(
            None,
            error=(
                f"Secret {ref.name} has no key {ref.key!r}; add the HMAC key there as unpadded "
                "base64url text (>= 32 bytes), or point spec.hmacKeySecretRef at a Secret that "
                "does not exist yet so the operator generates it"
            ),
            rotation=done,
        )
    return _KeyResult(found, rotation=done, rotation_refused=refused)


def _secret_conflict(ref: hmac_secret.SecretRef) -> str:
    return (
        f"Secret {ref.name} already holds the EAB key of another AcmeRegistration; the "
        "operator neither shares nor adopts it. Point spec.hmacKeySecretRef at another Secret "
        "(or omit it for <name>-eab)"
    )


async def _write_new_key(
    ctx: OperatorContext,
    namespace: str,
    ref: hmac_secret.SecretRef,
    rotation: str | None,
    reason: str,
    secret: Mapping[str, Any],
) -> _KeyResult:
    """One PATCH writes the key and the handled rotation value together, conditional on the
    Secret being as read (resourceVersion): two writers (an old leader that has not stopped
    yet, a crash and retry) can never both rotate; the loser gets 409 and kopf retries, and
    then sees the rotation done."""
    key = generate_hmac_key()
    meta: dict[str, Any] = {"resourceVersion": secret["metadata"]["resourceVersion"]}
    if rotation:
        meta["annotations"] = {ROTATION_DONE_ANNOTATION: rotation}
    patch: dict[str, Any] = {"data": {ref.key: hmac_secret.encode_data(key)}, "metadata": meta}
    await ctx.kube.patch_secret(namespace, ref.name, patch)
    what = "Rotated" if reason == "HMACKeyRotated" else "Wrote a new"
    return _KeyResult(
        key,
        rotation=rotation,
        actions=[("Normal", reason, f"{what} EAB HMAC key in Secret {ref.name} (key {ref.key!r})")],
    )


async def _kid_taken(ctx: OperatorContext, kid: str, sname: str) -> bool:
    holder = await ctx.rows.kid_holder(kid)
    return holder is not None and holder != sname


def first_claim(claims: Iterable[SecretClaim], uid: str) -> bool:
    """True when no older registration names the same Secret (ties: by name)."""
    ordered = sorted(claims, key=lambda c: (c.created, c.name))
    return not ordered or ordered[0].uid == uid


async def reconcile_registration(
    ctx: OperatorContext,
    *,
    namespace: str,
    name: str,
    uid: str,
    spec: Mapping[str, Any],
    annotations: Mapping[str, str],
    domains: Iterable[DomainEntry] | Callable[[], Iterable[DomainEntry]],
    allow_rotation: bool,
    secret_claims: Iterable[SecretClaim] = (),
    expect_secret: bool = True,
    alive: Callable[[], bool] | None = None,
) -> Outcome:
    """Secret first, then the store row; the caller writes status and Events from the result."""
    kid = effective_kid(namespace, name, spec)
    ref = hmac_secret.effective_ref(name, spec)
    rotate_to = annotations.get(ROTATE_ANNOTATION) if allow_rotation else None
    sname = store_name(namespace, name)
    max_orders, max_authzs = limits(spec)
    async with ctx.lock(sname):
        if alive is not None and not alive():
            # Deleted since the caller looked (a sweep): never write its row back.
            raise RegistrationGone(sname)
        keyres = await _hmac_key(
            ctx,
            namespace=namespace,
            name=name,
            uid=uid,
            ref=ref,
            rotate_to=rotate_to or None,
            first_claim=first_claim(secret_claims, uid),
            expect_secret=expect_secret,
        )
        # Read inside the lock: an AllowedDomain indexed meanwhile is either seen here or
        # synced by its own handler after this write (which takes the same lock).
        allowed = allow_list(domains() if callable(domains) else domains)
        suspended = bool(spec.get("suspended", False))
        existing = await ctx.rows.get(sname)
        store_key = keyres.key or (existing.hmac_key if existing is not None else None)
        store_error = None
        kid_conflict = await _kid_taken(ctx, kid, sname)
        wanted = _Row(
            kid,
            store_key,
            spec.get("maxAccounts"),
            suspended,
            allowed,
            max_orders,
            max_authzs,
            *profiles(spec),
        )
        if keyres.conflict is None and not kid_conflict and store_key is not None:
            if not wanted.matches(existing):
                try:
                    await wanted.write(ctx, sname)
                    ctx.registration_written(namespace, name)
                except RegistrationError as exc:
                    # Taken in between (the store's message names the holder: not repeated).
                    kid_conflict = await _kid_taken(ctx, kid, sname)
                    store_error = None if kid_conflict else str(exc)

    out = Outcome(True, "Reconciled", "", kid, ref, keyres.rotation, keyres.actions)
    kept = " (the store keeps the previous key)" if existing is not None else ""
    if keyres.conflict is not None:
        out.ready, out.reason, out.message = False, "SecretConflict", keyres.conflict + kept
    elif keyres.error is not None:
        out.ready, out.reason, out.message = False, "InvalidHMACKey", keyres.error + kept
    elif kid_conflict:
        # Never name the other registration: it may be another tenant's.
        out.ready, out.reason = False, "KeyIDConflict"
        out.message = (
            f"key ID {kid} is already used by another registration; choose another spec.keyID "
            "(a new AcmeRegistration, since keyID is immutable)"
        )
    elif store_error is not None:
        out.ready, out.reason = False, "StoreRejected"
        out.message = f"{store_error}; choose another spec.keyID"
    elif keyres.rotation_refused is not None:
        out.ready, out.reason, out.message = False, "RotationRefused", keyres.rotation_refused
    elif suspended:
        out.ready, out.reason = False, "Suspended"
        out.message = "spec.suspended is true: accounts of this registration are refused"
    elif allowed.grants_nothing:
        out.ready, out.reason = False, "NoAllowedDomains"
        out.message = _no_grant_message(kid, allowed)
    else:
        out.message = _ready_message(kid, allowed)
    return out


def _invalid_summary(allowed: AllowList) -> str:
    return "; ".join(f"{e.name}: {e.error}" for e in allowed.invalid)


def _no_grant_message(kid: str, allowed: AllowList) -> str:
    msg = (
        f"key ID {kid} accepts ACME accounts, but no domain was granted: every order is "
        "refused until an administrator creates an AllowedDomain naming this registration "
        "(spec.domain, spec.anyDomain: true for every DNS name, or spec.ipRange for IP "
        "addresses)"
    )
    if allowed.invalid:
        msg += f"; invalid AllowedDomains: {_invalid_summary(allowed)}"
    return msg


def _ready_message(kid: str, allowed: AllowList) -> str:
    if allowed.any_domain:
        scope = "an anyDomain grant, so any DNS name may be requested"
    else:
        scope = f"{len(allowed.rules)} allowed domain(s): " + ", ".join(
            r.domain for r in allowed.rules
        )
    if allowed.ip_ranges:
        scope += f"; {len(allowed.ip_ranges)} IP range(s): " + ", ".join(allowed.ip_ranges)
    msg = f"key ID {kid} accepts ACME accounts; {scope}"
    if allowed.invalid:
        msg += f"; ignored invalid AllowedDomains ({_invalid_summary(allowed)})"
    return msg


def status_fields(out: Outcome, generation: int | None) -> dict[str, Any]:
    """The status fields (besides conditions and usage) a reconcile outcome sets."""
    return {
        "observedGeneration": generation,
        "keyID": out.kid,
        "hmacKeySecretRef": out.secret_ref.as_status(),
        "hmacKeyRotation": out.rotation,
    }


async def settled(
    ctx: OperatorContext,
    *,
    namespace: str,
    name: str,
    spec: Mapping[str, Any],
    meta: Mapping[str, Any],
    status: Mapping[str, Any],
    domains: Iterable[DomainEntry],
) -> bool:
    """True when a Ready registration's status and store row already say what the spec,
    annotations and AllowedDomains ask for: after a restart there is nothing to redo (the
    Secret is re-read by the resync sweep, not all at once on start)."""
    generation = meta.get("generation")
    ready = get_condition(status.get("conditions"), "Ready")
    if (
        ready is None
        or ready.get("status") != "True"
        or ready.get("observedGeneration") != generation
        or status.get("observedGeneration") != generation
    ):
        return False
    rotate = (meta.get("annotations") or {}).get(ROTATE_ANNOTATION)
    if rotate and rotate != status.get("hmacKeyRotation"):
        return False
    kid = effective_kid(namespace, name, spec)
    if status.get("keyID") != kid:
        return False
    row = await ctx.rows.get(store_name(namespace, name))
    if row is None:
        return False
    orders, authzs = limits(spec)
    wanted = _Row(
        kid,
        row.hmac_key,
        spec.get("maxAccounts"),
        bool(spec.get("suspended", False)),
        allow_list(domains),
        orders,
        authzs,
        *profiles(spec),
    )
    return wanted.matches(row)


async def sync_domains(
    ctx: OperatorContext,
    *,
    namespace: str,
    registration: str,
    entry: RegistrationEntry | None,
    domains: Iterable[DomainEntry],
) -> bool:
    """Rewrite one registration's grant; False when it has no store row (yet)."""
    sname = store_name(namespace, registration)
    async with ctx.lock(sname):
        existing = await ctx.rows.get(sname)
        if existing is None or entry is None:
            return False
        wanted = _Row(
            existing.kid,
            existing.hmac_key,
            existing.max_accounts,
            entry.suspended,
            allow_list(domains),
            entry.max_pending_orders,
            entry.max_pending_authorizations,
            existing.allowed_profiles,  # only the domains change here
            existing.default_profile,
        )
        if not wanted.matches(existing):
            await wanted.write(ctx, sname)
            # The registration's Ready condition names its grant: refresh it.
            ctx.registrations_dirty.add((namespace, registration))
        return True


async def delete_registration(ctx: OperatorContext, *, namespace: str, name: str) -> bool:
    sname = store_name(namespace, name)
    async with ctx.lock(sname):
        return await ctx.store.delete_registration(sname)
