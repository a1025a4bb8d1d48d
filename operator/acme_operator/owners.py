"""Owner references to an AcmeRegistration, so Kubernetes garbage-collects what we made for it."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from acme_operator.constants import API_VERSION, REGISTRATION_KIND


def registration_owner(name: str, uid: str) -> dict[str, Any]:
    return {
        "apiVersion": API_VERSION,
        "kind": REGISTRATION_KIND,
        "name": name,
        "uid": uid,
        "controller": True,
        "blockOwnerDeletion": True,
    }


def is_owned_by(secret: Mapping[str, Any], uid: str) -> bool:
    refs = secret.get("metadata", {}).get("ownerReferences") or []
    return any(ref.get("uid") == uid for ref in refs)
