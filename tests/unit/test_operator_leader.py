"""leader.py's decisions without an API server: an in-memory Lease store (resourceVersion
conflicts like the API server's) and a hand-moved clock. The real API: tests/kube."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import aiohttp
import pytest
from acme_operator import leader
from aiohttp import web


class MemoryLeases:
    """One Lease with optimistic concurrency, shared by several electors."""

    def __init__(self) -> None:
        self.lease: dict[str, Any] | None = None
        self.version = 0

    def api(self) -> Any:
        store = self

        class Api:
            async def get(self) -> dict[str, Any] | None:
                return None if store.lease is None else _copy(store.lease)

            async def create(self, body: dict[str, Any]) -> dict[str, Any]:
                if store.lease is not None:
                    raise leader.LeaseConflict()
                return store._write(body)

            async def replace(self, body: dict[str, Any]) -> dict[str, Any]:
                assert store.lease is not None
                if (
                    body["metadata"].get("resourceVersion")
                    != store.lease["metadata"]["resourceVersion"]
                ):
                    raise leader.LeaseConflict()
                return store._write(body)

            async def aclose(self) -> None:
                pass

        return Api()

    def _write(self, body: dict[str, Any]) -> dict[str, Any]:
        self.version += 1
        lease = _copy(body)
        lease["metadata"]["resourceVersion"] = str(self.version)
        self.lease = lease
        return _copy(lease)


def _copy(obj: dict[str, Any]) -> dict[str, Any]:
    return {k: (_copy(v) if isinstance(v, dict) else v) for k, v in obj.items()}


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def _elector(store: MemoryLeases, who: str, clock: Clock, lost: list[str]) -> leader.Elector:
    settings = leader.LeaseSettings("l", "ns", who, 15, 10, 2)
    return leader.Elector(store.api(), settings, lost.append, clock=clock)


async def test_standby_waits_a_full_lease_duration_of_silence_on_its_own_clock() -> None:
    store, clock = MemoryLeases(), Clock()
    lost: list[str] = []
    a, b = _elector(store, "a", clock, lost), _elector(store, "b", clock, lost)
    assert await a.try_acquire_or_renew()
    assert a.deadline == 1000.0 + 10  # acts until the renewal it sent + renew deadline
    assert not await b.try_acquire_or_renew()  # first sight of a's record: clock starts
    clock.now += 14
    assert await a.try_acquire_or_renew()  # a renews: the record changed
    assert not await b.try_acquire_or_renew()  # b sees the change now (t = 1014)
    clock.now += 14
    assert not await b.try_acquire_or_renew()  # 14 s since b saw the change: not yet
    assert b.holder == "a"
    clock.now += 1.5
    assert await b.try_acquire_or_renew()  # 15.5 s of silence: b takes over
    assert store.lease is not None
    assert store.lease["spec"]["holderIdentity"] == "b"
    assert store.lease["spec"]["leaseTransitions"] == 1
    # a's own deadline passed long before b could take over.
    assert a.deadline < clock.now
    assert not await a.try_acquire_or_renew()  # b holds it, freshly renewed
    assert a.holder == "b"


async def test_a_released_lease_is_taken_at_once() -> None:
    store, clock = MemoryLeases(), Clock()
    lost: list[str] = []
    a, b = _elector(store, "a", clock, lost), _elector(store, "b", clock, lost)
    assert await a.try_acquire_or_renew()
    a.leading = True
    await a.release()
    assert not a.acting()
    assert store.lease is not None and store.lease["spec"]["holderIdentity"] is None
    assert await b.try_acquire_or_renew()


async def test_two_candidates_racing_on_one_version_give_one_winner() -> None:
    store, clock = MemoryLeases(), Clock()
    lost: list[str] = []
    a, b = _elector(store, "a", clock, lost), _elector(store, "b", clock, lost)
    won = await asyncio.gather(a.try_acquire_or_renew(), b.try_acquire_or_renew())
    assert sorted(won) == [False, True]


def test_settings_need_retry_below_renew_below_lease() -> None:
    with pytest.raises(ValueError, match="retry period < renew deadline < lease duration"):
        leader.LeaseSettings("l", "ns", "me", lease_duration=10, renew_deadline=10)
    with pytest.raises(ValueError):
        leader.LeaseSettings("l", "ns", "me", renew_deadline=5, retry_period=5)


def test_watchdog_stops_the_holder_at_its_deadline_once() -> None:
    lost: list[str] = []
    e = leader.Elector(MemoryLeases().api(), leader.LeaseSettings("l", "ns", "me"), lost.append)
    e.leading, e.deadline = True, time.monotonic() + 0.3
    dog = leader.Watchdog(e, interval=0.02)
    dog.start()
    dog.join(5)
    assert not dog.is_alive()
    assert len(lost) == 1 and "deadline" in lost[0]
    assert not e.acting()
    e.lose("again")  # idempotent: on_lost ran once
    assert len(lost) == 1


async def test_fence_refuses_writes_but_not_reads_when_not_acting() -> None:
    seen: list[str] = []

    async def handler(request: web.Request) -> web.Response:
        seen.append(request.method)
        return web.json_response({})

    app = web.Application()
    app.router.add_route("*", "/x", handler)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    acting = [True]
    url = f"http://127.0.0.1:{port}/x"
    try:
        async with aiohttp.ClientSession(
            trace_configs=[leader.fence_trace(lambda: acting[0])],
            timeout=aiohttp.ClientTimeout(total=5),
        ) as session:
            async with session.post(url, json={}) as resp:
                assert resp.status == 200
            acting[0] = False
            async with session.get(url) as resp:
                assert resp.status == 200
            for method in ("POST", "PUT", "PATCH", "DELETE"):
                with pytest.raises(leader.NotLeader):
                    async with session.request(method, url, json={}):
                        pass
    finally:
        await runner.cleanup()
    assert seen == ["POST", "GET"]  # nothing refused ever reached the server
