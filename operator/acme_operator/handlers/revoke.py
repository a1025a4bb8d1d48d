"""Start and stop the revoke-annotation watch (revoke.py) with the operator."""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

import kopf

from acme_operator import revoke
from acme_operator.config import OperatorConfig
from acme_operator.context import from_memo


def register(registry: kopf.OperatorRegistry, config: OperatorConfig) -> None:
    @kopf.on.startup(id="start_revoke_watch", registry=registry)
    async def start_revoke_watch(memo: kopf.Memo, **_: Any) -> None:
        memo["revoke_tasks"] = revoke.start(from_memo(memo))

    @kopf.on.cleanup(id="stop_revoke_watch", registry=registry)
    async def stop_revoke_watch(memo: kopf.Memo, **_: Any) -> None:
        tasks = memo.get("revoke_tasks") or []
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
