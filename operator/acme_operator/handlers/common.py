"""Small helpers shared by the kopf handler modules."""

from __future__ import annotations

from collections.abc import Hashable, Mapping
from typing import Any, TypeVar

import kopf

from acme_operator.conditions import ready_conditions


def not_deleting(meta: Mapping[str, Any], **_: Any) -> bool:
    """Index filter: objects being deleted drop out of the indices at once."""
    return not meta.get("deletionTimestamp")


K = TypeVar("K", bound=Hashable)
V = TypeVar("V")


def namespaced(namespace: str | None) -> str:
    """Our CRDs are namespaced; kopf's handler types also cover cluster-scoped resources."""
    if namespace is None:
        raise kopf.PermanentError("acme-gateway resources are namespaced")
    return namespace


def index_values(index: kopf.Index[K, V], key: K) -> list[V]:
    """The values indexed under `key` (none when no object produced that key)."""
    return list(index[key]) if key in index else []


def apply_ready(
    *,
    body: kopf.Body,
    status: Mapping[str, Any],
    patch: kopf.Patch,
    ok: bool,
    reason: str,
    message: str,
    generation: int | None,
) -> bool:
    """Patch the Ready condition when it changed; post an Event when its meaning changed."""
    conditions, changed_meaning = ready_conditions(
        status, ok=ok, reason=reason, message=message, generation=generation
    )
    if conditions is None:
        return False
    patch.status["conditions"] = conditions
    if changed_meaning:
        if ok:
            kopf.info(body, reason=reason, message=message)
        else:
            kopf.warn(body, reason=reason, message=message)
    return True
