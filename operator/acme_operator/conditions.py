"""metav1.Condition lists: replace one type, keep lastTransitionTime while the status holds."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

from acme_server.timefmt import rfc3339


def now() -> str:
    return rfc3339(datetime.now(UTC))


def set_condition(
    existing: Sequence[Mapping[str, Any]] | None,
    *,
    type_: str,
    ok: bool,
    reason: str,
    message: str,
    generation: int | None,
) -> list[dict[str, Any]]:
    existing = list(existing or [])
    status = "True" if ok else "False"
    previous = next((c for c in existing if c.get("type") == type_), None)
    transition = (
        previous.get("lastTransitionTime")
        if previous is not None and previous.get("status") == status
        else None
    ) or now()
    cond: dict[str, Any] = {
        "type": type_,
        "status": status,
        "reason": reason,
        "message": message,
        "lastTransitionTime": transition,
    }
    if generation is not None:
        cond["observedGeneration"] = generation
    return [dict(c) for c in existing if c.get("type") != type_] + [cond]


def get_condition(
    conditions: Sequence[Mapping[str, Any]] | None, type_: str
) -> Mapping[str, Any] | None:
    return next((c for c in conditions or [] if c.get("type") == type_), None)
