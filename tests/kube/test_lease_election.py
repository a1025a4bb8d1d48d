"""The Lease election (operator/acme_operator/leader.py) against the real kube-apiserver.

Electors run in the test process with short durations; "cannot renew" is a real network
partition: the holder talks to the API server through a loopback TCP relay the test cuts.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid
from typing import Any

import kubernetes.client
import kubernetes.config
import pytest
from acme_operator import leader
from acme_operator.kube import KubeClient

from tests.infra.kube import ControlPlane

LEASE = 3.0
RENEW = 2.0
RETRY = 0.4
# Scheduling slack on a loaded 2-CPU machine.
SLACK = 2.0


def kube_config(cp: ControlPlane, host: str | None = None) -> kubernetes.client.Configuration:
    cfg = kubernetes.client.Configuration()
    kubernetes.config.load_kube_config(config_file=str(cp.kubeconfig), client_configuration=cfg)
    if host is not None:
        cfg.host = host
    return cfg


class Candidate:
    """One elector plus a record of when it lost and why."""

    def __init__(self, cfg: kubernetes.client.Configuration, ns: str, name: str, who: str):
        self.lost_at: float | None = None
        self.reason: str | None = None
        settings = leader.LeaseSettings(
            name=name,
            namespace=ns,
            identity=who,
            lease_duration=LEASE,
            renew_deadline=RENEW,
            retry_period=RETRY,
        )
        self.elector = leader.Elector(leader.LeaseApi(cfg, ns, name), settings, self._lost)
        self.hold: asyncio.Task[str] | None = None
        self.won_at: float | None = None

    def _lost(self, reason: str) -> None:
        self.lost_at, self.reason = time.monotonic(), reason

    async def lead(self) -> None:
        await self.elector.acquire()
        self.won_at = time.monotonic()
        self.hold = asyncio.create_task(self.elector.hold())

    async def close(self) -> None:
        if self.hold is not None:
            self.hold.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self.hold
        await self.elector.api.aclose()


class Relay:
    """A loopback TCP relay to the API server that the test can cut (a partition)."""

    def __init__(self, target_host: str, target_port: int) -> None:
        self.target = (target_host, target_port)
        self.cut = asyncio.Event()
        self.server: asyncio.Server | None = None
        self.port = 0
        self.tasks: set[asyncio.Task[Any]] = set()

    async def start(self) -> None:
        self.server = await asyncio.start_server(self._conn, "127.0.0.1", 0)
        self.port = self.server.sockets[0].getsockname()[1]

    async def _conn(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self.tasks.add(task)
        up_r, up_w = await asyncio.open_connection(*self.target)

        async def pipe(src: asyncio.StreamReader, dst: asyncio.StreamWriter) -> None:
            with contextlib.suppress(Exception):
                while data := await src.read(65536):
                    if self.cut.is_set():
                        await asyncio.sleep(3600)  # swallow: nothing gets through any more
                    dst.write(data)
                    await dst.drain()

        await asyncio.gather(pipe(reader, up_w), pipe(up_r, writer))

    async def close(self) -> None:
        if self.server is not None:
            self.server.close()
        for task in self.tasks:
            task.cancel()
        await asyncio.gather(*self.tasks, return_exceptions=True)


@pytest.fixture
def lease_name() -> str:
    return f"lease-{uuid.uuid4().hex[:8]}"


async def lease_spec(cfg: kubernetes.client.Configuration, ns: str, name: str) -> dict[str, Any]:
    api = leader.LeaseApi(cfg, ns, name)
    try:
        got = await api.get()
    finally:
        await api.aclose()
    assert got is not None
    spec: dict[str, Any] = got["spec"]
    return spec


async def test_one_wins_and_the_other_takes_over_after_the_lease_duration(
    control_plane: ControlPlane, kube_namespace: str, lease_name: str
) -> None:
    cfg = kube_config(control_plane)
    a = Candidate(cfg, kube_namespace, lease_name, "a")
    b = Candidate(cfg, kube_namespace, lease_name, "b")
    try:
        await a.lead()
        b_task = asyncio.create_task(b.lead())
        await asyncio.sleep(LEASE + 3 * RETRY)  # b keeps trying while a renews
        assert not b_task.done(), "b took a lease a kept renewing"
        assert b.elector.holder == "a"
        assert a.elector.acting() and not b.elector.acting()
        spec = await lease_spec(cfg, kube_namespace, lease_name)
        assert spec["holderIdentity"] == "a" and spec["leaseDurationSeconds"] == 3

        # a stops renewing without releasing (what a SIGKILL looks like to b).
        assert a.hold is not None
        a.hold.cancel()
        stopped = time.monotonic()
        a_deadline = a.elector.deadline
        await asyncio.wait_for(b_task, LEASE + RETRY * 1.2 + SLACK)
        assert b.won_at is not None
        assert b.won_at >= a_deadline, "b acted while a could still act"
        assert b.won_at - stopped <= LEASE + RETRY * 1.2 + SLACK
        spec = await lease_spec(cfg, kube_namespace, lease_name)
        assert spec["holderIdentity"] == "b"
        assert spec["leaseTransitions"] == 1

        # A clean stop hands the lease back: a takes it at its next attempt.
        assert b.hold is not None
        b.hold.cancel()
        await b.elector.release()
        released = time.monotonic()
        a.hold = None
        a.elector.leading = False
        await asyncio.wait_for(a.lead(), RETRY * 1.2 + SLACK)
        assert a.won_at is not None and a.won_at - released < RETRY * 1.2 + SLACK
    finally:
        await a.close()
        await b.close()


async def test_a_holder_that_cannot_renew_stops_before_the_lease_expires(
    control_plane: ControlPlane, kube_namespace: str, lease_name: str
) -> None:
    direct = kube_config(control_plane)
    host, port = direct.host.removeprefix("https://").rsplit(":", 1)
    relay = Relay(host, int(port))
    await relay.start()
    via_relay = kube_config(control_plane, f"https://{host}:{relay.port}")
    a = Candidate(via_relay, kube_namespace, lease_name, "a")
    b = Candidate(direct, kube_namespace, lease_name, "b")
    fenced = KubeClient(via_relay, [leader.fence_trace(a.elector.acting)])
    try:
        await a.lead()
        await asyncio.sleep(2 * RETRY)
        # While it leads, the fence lets a's writes through.
        secret = {"metadata": {"name": "fence-ok"}, "stringData": {"k": "v"}}
        await fenced.create_secret(kube_namespace, secret)
        b_task = asyncio.create_task(b.lead())

        relay.cut.set()
        cut = time.monotonic()
        last_deadline = a.elector.deadline
        await asyncio.wait_for(b_task, LEASE + RENEW + SLACK)
        assert a.lost_at is not None, "a never noticed it could not renew"
        assert b.won_at is not None
        # a stopped by its own deadline (last renewal sent + RENEW), before b took over.
        assert a.lost_at <= last_deadline + 0.5
        assert a.lost_at < b.won_at
        assert b.won_at - cut <= LEASE + RETRY * 1.2 + SLACK
        assert a.reason is not None and "renew" in a.reason
        assert not a.elector.acting()
        # Past its deadline a sends no write at all.
        with pytest.raises(leader.NotLeader):
            await fenced.create_secret(kube_namespace, {"metadata": {"name": "fence-no"}})
    finally:
        await fenced.aclose()
        await a.close()
        await b.close()
        await relay.close()


async def test_a_holder_whose_lease_was_taken_stops_at_its_next_renewal(
    control_plane: ControlPlane, kube_namespace: str, lease_name: str
) -> None:
    cfg = kube_config(control_plane)
    a = Candidate(cfg, kube_namespace, lease_name, "a")
    try:
        await a.lead()
        api = leader.LeaseApi(cfg, kube_namespace, lease_name)
        try:
            lease = await api.get()
            assert lease is not None
            lease["spec"]["holderIdentity"] = "intruder"
            await api.replace(lease)
        finally:
            await api.aclose()
        taken = time.monotonic()
        assert a.hold is not None
        reason = await asyncio.wait_for(a.hold, RETRY * 1.2 + SLACK)
        assert "intruder" in reason
        assert a.lost_at is not None and a.lost_at - taken <= RETRY + SLACK
        assert not a.elector.acting()
    finally:
        await a.close()
