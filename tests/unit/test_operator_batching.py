"""The operator's coalescer: concurrent callers share one flush, each gets its own result."""

from __future__ import annotations

import asyncio

import pytest
from acme_operator.batching import Coalescer


async def test_concurrent_calls_share_batches_and_keep_their_results() -> None:
    batches: list[list[int]] = []

    async def flush(items: list[int]) -> list[int | BaseException]:
        batches.append(items)
        await asyncio.sleep(0.01)
        return [ValueError(f"odd {i}") if i % 2 else i * 10 for i in items]

    square = Coalescer(flush, max_batch=4)

    async def call(i: int) -> int | str:
        try:
            return await square(i)
        except ValueError as exc:
            return str(exc)

    results = await asyncio.gather(*(call(i) for i in range(10)))
    assert results == [0, "odd 1", 20, "odd 3", 40, "odd 5", 60, "odd 7", 80, "odd 9"]
    assert len(batches) == 3 and all(len(b) <= 4 for b in batches)
    assert sorted(i for b in batches for i in b) == list(range(10))


async def test_a_failed_flush_fails_its_callers_only() -> None:
    calls = 0

    async def flush(items: list[int]) -> list[int]:
        nonlocal calls
        calls += 1
        if calls == 1:
            raise RuntimeError("store down")
        return items

    echo = Coalescer(flush)
    with pytest.raises(RuntimeError, match="store down"):
        await echo(1)
    assert await echo(2) == 2
