"""The outbox poller: one operator-wide task, started and stopped with the operator."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Any

import kopf

from acme_operator.config import OperatorConfig
from acme_operator.context import OperatorContext, from_memo
from acme_operator.exporter import BATCH, export_batch
from acme_operator.reconcile import RegistrationEntry
from acme_server.store.operator_facade import log_failure

Key = tuple[str, str]

log = logging.getLogger(__name__)


async def export_loop(ctx: OperatorContext, owners: kopf.Index[Key, RegistrationEntry]) -> None:
    def owner_uid(namespace: str, name: str) -> str | None:
        key = (namespace, name)
        entries = list(owners[key]) if key in owners else []
        return entries[0].uid if entries else None

    while True:
        try:
            exported = await export_batch(ctx, owner_uid)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            log_failure(
                log, f"certificate export failed; retrying in {ctx.config.export_interval}s", exc
            )
            exported = 0
        if exported < BATCH:  # a full batch means more may wait: go on at once
            await asyncio.sleep(ctx.config.export_interval)


def register(registry: kopf.OperatorRegistry, config: OperatorConfig) -> None:
    @kopf.on.startup(id="start_exporter", registry=registry)  # type: ignore[arg-type]  # index args
    async def start_exporter(
        memo: kopf.Memo, registration_index: kopf.Index[Key, RegistrationEntry], **_: Any
    ) -> None:
        memo["export_task"] = asyncio.create_task(
            export_loop(from_memo(memo), registration_index), name="exporter"
        )

    @kopf.on.cleanup(id="stop_exporter", registry=registry)
    async def stop_exporter(memo: kopf.Memo, **_: Any) -> None:
        task = memo.get("export_task")
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
