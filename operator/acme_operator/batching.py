"""Coalescing many concurrent store calls into one transaction.

Thousands of objects are reconciled at once when the operator starts or a big manifest is
applied; one transaction per read and per write made the store the bottleneck. Callers await
their own item as if alone; items that arrive while a batch runs go into the next one.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from typing import Generic, TypeVar

K = TypeVar("K")
R = TypeVar("R")

Flush = Callable[[list[K]], Awaitable[Sequence[R | BaseException]]]


class Coalescer(Generic[K, R]):
    """`await c(item)` -> its result; `flush(items)` returns one result (or exception) per item."""

    def __init__(self, flush: Flush[K, R], *, max_batch: int = 500) -> None:
        self._flush = flush
        self._max = max_batch
        self._pending: list[tuple[K, asyncio.Future[R]]] = []
        self._task: asyncio.Task[None] | None = None

    async def __call__(self, item: K) -> R:
        fut: asyncio.Future[R] = asyncio.get_running_loop().create_future()
        self._pending.append((item, fut))
        if self._task is None or self._task.done():
            self._task = asyncio.create_task(self._drain())
        return await fut

    async def _drain(self) -> None:
        await asyncio.sleep(0)  # let the callers woken with this one queue up too
        while self._pending:
            batch, self._pending = self._pending[: self._max], self._pending[self._max :]
            live = [(k, f) for k, f in batch if not f.done()]
            if not live:
                continue
            try:
                results = await self._flush([k for k, _ in live])
            except Exception as exc:  # the whole batch failed: every caller sees why
                for _, fut in live:
                    if not fut.done():
                        fut.set_exception(exc)
                continue
            for (_, fut), result in zip(live, results, strict=True):
                if fut.done():
                    continue
                if isinstance(result, BaseException):
                    fut.set_exception(result)
                else:
                    fut.set_result(result)
