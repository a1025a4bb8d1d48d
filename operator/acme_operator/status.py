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


async def write_status(
    ctx: OperatorContext,
    plural: str,
    view: ObjectView,
    fields: Mapping[str, Any],
    ready: tuple[bool, str, str] | None = None,
) -> bool:
    """Patch `fields` that differ from the view's status and the Ready condition; True if
    anything was written."""
    key = (plural, view.namespace, view.name)
    if _lagging(key, view):
        return False
    patch = {k: v for k, v in fields.items() if view.status.get(k) != v}
    meaning = False
    if ready is not None:
        ok, reason, message = ready
        conditions, meaning = ready_conditions(
            view.status, ok=ok, reason=reason, message=message, generation=view.generation
        )
        if conditions is not None:
            patch["conditions"] = conditions
    if not patch:
        return False
    version = await ctx.kube.patch_status(plural, view.namespace, view.name, patch)
    if version is None:
        return False
    _written[key] = (version, time.monotonic())
    if meaning and ready is not None:
        ok, reason, message = ready
        try:
            await ctx.kube.post_event(
                view.involved(),
                type_="Normal" if ok else "Warning",
                reason=reason,
                message=message,
                component=COMPONENT,
            )
        except ApiException as exc:
            log.warning("could not post an Event about %s: %s", view.name, exc.reason)
    return True
