"""Status writes outside kopf's handlers (the operator-wide sweeps): merge-patch only what
changed, and post an Event when the Ready condition's meaning changed, as handlers do.

The sweeps judge from kopf's index, which lags behind our own writes by one watch event:
an object we patched is skipped until the index shows that write (or STALE_AFTER passed),
so a lagging index never causes the same patch twice.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from kubernetes.client.exceptions import ApiException

from acme_operator.conditions import ready_conditions
from acme_operator.context import OperatorContext
from acme_operator.views import ObjectView

log = logging.getLogger(__name__)
COMPONENT = "acme-gateway-operator"
STALE_AFTER = 30.0
# (plural, namespace, name) -> (resourceVersion our last patch produced, when).
_written: dict[tuple[str, str, str], tuple[str, float]] = {}


def _lagging(key: tuple[str, str, str], view: ObjectView) -> bool:
    """The index has not seen our last write of this object yet."""
    last = _written.get(key)
    if last is None:
        return False
    version, at = last
    seen = view.resource_version
    # resourceVersions are opaque, but etcd's are increasing integers: a newer one than
    # ours (another writer after us) also means the index caught up.
    caught_up = seen == version or (
        seen.isdigit() and version.isdigit() and int(seen) > int(version)
    )
    if caught_up or time.monotonic() - at > STALE_AFTER:
        del _written[key]
        return False
    return True


@dataclass(frozen=True)
class StatusWrite:
    """A status patch that is due, and the Event (if any) that goes with it."""

    plural: str
    view: ObjectView
    patch: dict[str, Any]
    event: tuple[str, str, str] | None  # (type, reason, message)


def due(
    plural: str,
    view: ObjectView,
    fields: Mapping[str, Any],
    ready: tuple[bool, str, str] | None = None,
) -> StatusWrite | None:
    """What to patch: `fields` that differ from the view's status and the Ready condition;
    None when nothing (or when the index has not seen our last write yet)."""
    if _lagging((plural, view.namespace, view.name), view):
        return None
    patch = {k: v for k, v in fields.items() if view.status.get(k) != v}
    event = None
    if ready is not None:
        ok, reason, message = ready
        conditions, meaning = ready_conditions(
            view.status, ok=ok, reason=reason, message=message, generation=view.generation
        )
        if conditions is not None:
            patch["conditions"] = conditions
        if meaning:
            event = ("Normal" if ok else "Warning", reason, message)
    return StatusWrite(plural, view, patch, event) if patch else None


async def send(ctx: OperatorContext, write: StatusWrite) -> bool:
    """Apply a due status write (and post its Event); False when the object is gone."""
    view = write.view
    version = await ctx.kube.patch_status(write.plural, view.namespace, view.name, write.patch)
    if version is None:
        return False
    _written[(write.plural, view.namespace, view.name)] = (version, time.monotonic())
    if write.event is not None:
        type_, reason, message = write.event
        try:
            await ctx.kube.post_event(
                view.involved(), type_=type_, reason=reason, message=message, component=COMPONENT
            )
        except ApiException as exc:
            log.warning("could not post an Event about %s: %s", view.name, exc.reason)
    return True


async def write_status(
    ctx: OperatorContext,
    plural: str,
    view: ObjectView,
    fields: Mapping[str, Any],
    ready: tuple[bool, str, str] | None = None,
) -> bool:
    """`due` then `send`: True if anything was written."""
    write = due(plural, view, fields, ready)
    return write is not None and await send(ctx, write)
