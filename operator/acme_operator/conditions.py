"""metav1.Condition lists: replace one type, keep lastTransitionTime while the status holds."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

from acme_server.timefmt import rfc3339

# Waiting states that resolve by themselves: no Event when entering or leaving them.
ROUTINE_REASONS = frozenset({"RegistrationNotReady"})


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


def ready_conditions(
    status: Mapping[str, Any],
    *,
    ok: bool,
    reason: str,
    message: str,
    generation: int | None,
) -> tuple[list[dict[str, Any]] | None, bool]:
    """(new conditions or None when unchanged, whether the change is worth an Event).

    An Event tells an admin something happened: a failure, or a recovery from one. Becoming
    Ready for the first time, and waiting for a registration being reconciled, are routine
    (the condition says so): at 10,000 objects those Events were a third of all API writes.
    """
    old = get_condition(status.get("conditions"), "Ready")
    changed_meaning = old is None or (
        old.get("status"),
        old.get("reason"),
        old.get("message"),
    ) != ("True" if ok else "False", reason, message)
    routine = reason in ROUTINE_REASONS or (
        ok and (old is None or old.get("reason") in ROUTINE_REASONS)
    )
    same_generation = old is not None and old.get("observedGeneration") == generation
    if not changed_meaning and (generation is None or same_generation):
        return None, False
    conditions = set_condition(
        status.get("conditions"),
        type_="Ready",
        ok=ok,
        reason=reason,
        message=message,
        generation=generation,
    )
    return conditions, changed_meaning and not routine
