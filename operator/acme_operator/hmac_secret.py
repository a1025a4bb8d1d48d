"""The EAB HMAC key Secret: where it is, what a valid one holds, and the one we generate.

cert-manager's `externalAccountBinding.keySecretRef` reads data[key] verbatim and decodes it
as unpadded base64url, so that is the only form accepted here; the messages say how to fix it.
"""

from __future__ import annotations

import base64
import binascii
import enum
import string
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from acme_operator.constants import (
    DEFAULT_HMAC_SECRET_KEY,
    GROUP,
    MANAGED_BY,
    MANAGED_BY_LABEL,
    PURPOSE_LABEL,
    REGISTRATION_KIND,
    REGISTRATION_LABEL,
)
from acme_operator.labels import label_value
from acme_operator.owners import is_owned_by, registration_owner
from acme_server.encoding import b64url_decode
from acme_server.store.operator_facade import HMAC_KEY_BYTES

# Only for a precise message; decoding itself is the project's one codec (b64url_decode).
_B64URL_CHARS = frozenset(string.ascii_letters + string.digits + "-_")


class InvalidKeyError(ValueError):
    """A Secret's HMAC key no client could use; the message says what to fix."""


@dataclass(frozen=True)
class SecretRef:
    name: str
    key: str

    def as_status(self) -> dict[str, str]:
        return {"name": self.name, "key": self.key}


def effective_ref(registration_name: str, spec: Mapping[str, Any]) -> SecretRef:
    """The Secret the registration names, or "<name>-eab" / "secret" by default."""
    ref = spec.get("hmacKeySecretRef") or {}
    return SecretRef(
        name=ref.get("name") or f"{registration_name}-eab",
        key=ref.get("key") or DEFAULT_HMAC_SECRET_KEY,
    )


def key_from_secret(secret: Mapping[str, Any], ref: SecretRef) -> str | None:
    """The key text in data[ref.key], validated; None when the Secret has no such key."""
    data = secret.get("data") or {}
    encoded = data.get(ref.key)
    if encoded is None:
        return None
    try:
        raw = base64.b64decode(encoded, validate=True)
        text = raw.decode("ascii")
    except (binascii.Error, ValueError):
        raise InvalidKeyError(
            f"Secret {ref.name} key {ref.key!r} is not ASCII text; store the HMAC key as "
            "unpadded base64url text, e.g. kubectl create secret generic NAME "
            f"--from-literal={ref.key}=KEY"
        ) from None
    return check_key_text(text, ref)


def check_key_text(text: str, ref: SecretRef) -> str:
    where = f"Secret {ref.name} key {ref.key!r}"
    if text != text.strip():
        raise InvalidKeyError(
            f"{where} has leading/trailing whitespace (a newline?); clients read it verbatim. "
            "Write it without a newline (printf, or kubectl create secret --from-literal)"
        )
    if text.endswith("="):
        raise InvalidKeyError(f"{where} is padded with '='; store unpadded base64url text")
    if not text or not set(text) <= _B64URL_CHARS:
        raise InvalidKeyError(f"{where} is not base64url text (only A-Z a-z 0-9 - _ are allowed)")
    try:
        raw = b64url_decode(text)
    except ValueError as exc:
        raise InvalidKeyError(f"{where} is not valid base64url ({exc})") from None
    if len(raw) < HMAC_KEY_BYTES:
        raise InvalidKeyError(
            f"{where} decodes to {len(raw)} bytes; use at least {HMAC_KEY_BYTES} random bytes, "
            "or delete the Secret to have the operator generate one"
        )
    return text


def encode_data(hmac_key: str) -> str:
    """Secret `data` holds base64 of the value; the value is the base64url key text itself."""
    return base64.b64encode(hmac_key.encode("ascii")).decode("ascii")


def build_secret(
    *, namespace: str, registration: str, uid: str, ref: SecretRef, hmac_key: str
) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "type": "Opaque",
        "metadata": {
            "name": ref.name,
            "namespace": namespace,
            "labels": {
                MANAGED_BY_LABEL: MANAGED_BY,
                REGISTRATION_LABEL: label_value(registration),
                PURPOSE_LABEL: "eab-hmac-key",
            },
            "ownerReferences": [registration_owner(registration, uid)],
        },
        "data": {ref.key: encode_data(hmac_key)},
    }


class Ownership(enum.Enum):
    """Whose HMAC Secret this is, as far as one registration is concerned."""

    MINE = "mine"  # owned by this registration (uid): the operator may rewrite it
    ADOPTABLE = "adoptable"  # generated for a deleted registration of the same name
    OTHER_REGISTRATION = "other"  # generated for, or owned by, another registration
    FOREIGN = "foreign"  # provided by someone else: read, never written


def ownership(secret: Mapping[str, Any], name: str, uid: str) -> Ownership:
    """Only our own marker for this registration identity (namespace + name) allows adoption."""
    if is_owned_by(secret, uid):
        return Ownership.MINE
    meta = secret.get("metadata") or {}
    owners = [
        ref
        for ref in meta.get("ownerReferences") or []
        if ref.get("kind") == REGISTRATION_KIND
        and str(ref.get("apiVersion", "")).startswith(f"{GROUP}/")
    ]
    if any(ref.get("name") != name for ref in owners):
        return Ownership.OTHER_REGISTRATION
    labels = meta.get("labels") or {}
    if labels.get(MANAGED_BY_LABEL) == MANAGED_BY and labels.get(PURPOSE_LABEL) == "eab-hmac-key":
        if labels.get(REGISTRATION_LABEL) == label_value(name):
            return Ownership.ADOPTABLE
        return Ownership.OTHER_REGISTRATION
    return Ownership.FOREIGN
