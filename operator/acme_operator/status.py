"""Status writes outside kopf's handlers (the operator-wide sweeps): merge-patch only what
changed, and post an Event when the Ready condition's meaning changed, as handlers do."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

from kubernetes.client.exceptions import ApiException

from acme_operator.conditions import ready_conditions
from acme_operator.context import OperatorContext
from acme_operator.views import ObjectView

log = logging.getLogger(__name__)
COMPONENT = "acme-gateway-operator"


async def write_status(
    ctx: OperatorContext,
    plural: str,
    view: ObjectView,
    fields: Mapping[str, Any],
    ready: tuple[bool, str, str] | None = None,
) -> bool:
    """Patch `fields` that differ from the view's status and the Ready condition; True if
    anything was written."""
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
    if not await ctx.kube.patch_status(plural, view.namespace, view.name, patch):
        return False
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
