"""Start and stop the operator-wide sweeps (sweeps.py) with the operator."""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

import kopf

from acme_operator import metrics, reconcile, sweeps
from acme_operator.conditions import get_condition
from acme_operator.config import OperatorConfig
from acme_operator.context import from_memo
from acme_operator.domains import DomainEntry

Key = tuple[str, str]


def _ready_reasons(idx: sweeps.Indices) -> list[str | None]:
    """The reason of each registration's Ready condition as the watch last saw it."""
    out: list[str | None] = []
    for view in idx.registration_views():
        ready = get_condition(view.status.get("conditions"), "Ready")
        out.append(None if ready is None else str(ready.get("reason")))
    return out


def register(registry: kopf.OperatorRegistry, config: OperatorConfig) -> None:
    @kopf.on.startup(id="start_sweeps", registry=registry)  # type: ignore[arg-type]  # index args
    async def start_sweeps(
        memo: kopf.Memo,
        registration_index: kopf.Index[Key, reconcile.RegistrationEntry],
        secret_index: kopf.Index[Key, reconcile.SecretClaim],
        domain_index: kopf.Index[Key, DomainEntry],
        **_: Any,
    ) -> None:
        idx = sweeps.Indices(
            registration_index=registration_index,
            secret_index=secret_index,
            domain_index=domain_index,
        )
        memo["sweep_tasks"] = sweeps.start(from_memo(memo), idx)
        metrics.watch_registrations(lambda: _ready_reasons(idx))

    @kopf.on.cleanup(id="stop_sweeps", registry=registry)
    async def stop_sweeps(memo: kopf.Memo, **_: Any) -> None:
        tasks = memo.get("sweep_tasks") or []
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
