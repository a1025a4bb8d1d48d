"""Operator scale: N AcmeRegistrations + N AllowedDomains at once, then N certificate exports.

Starts the test control plane (tests/infra/kube.py) and one `acme-gateway-operator` on a fresh
SQLite store (as tests/kube does), creates N registrations and N AllowedDomains (one each,
created in parallel over HTTP/1.1 with bounded concurrency), and measures the time until all
of them are Ready and every registration is in the store with its domain. Then it inserts N
issued certificates straight into the store (as the tests' helpers do, in one transaction)
and measures the time until all are exported as Secrets. With --restart, the operator is
SIGKILLed halfway through each phase and started again; the bench then checks that nothing
finished before the kill was redone (no HMAC Secret or certificate Secret rewritten, no store
key changed). Reports the operator's peak RSS (VmHWM). Loopback only; bounded by --timeout.

    .venv/bin/python bench/operator_scale.py --count 1000 [--restart] [--timeout 600]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import datetime as dt
import json
import secrets
import shutil
import ssl
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import aiohttp
import sqlalchemy as sa

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from acme_server.store import schema
from acme_server.store.database import Database
from tests.infra.kube import ControlPlane, build_binaries
from tests.kube.operator_proc import OperatorProcess, ensure_ca_root, self_signed_pem

GROUP_PATH = "/apis/acme-gateway.io/v1alpha1"
PURPOSE = "acme-gateway.io/purpose"


class Api:
    """A tiny async client of the control plane as its admin (bench-side only)."""

    def __init__(self, cp: ControlPlane, concurrency: int) -> None:
        assert cp.pki is not None and cp.server is not None
        ctx = ssl.create_default_context(cafile=str(cp.pki.ca_cert))
        ctx.load_cert_chain(str(cp.pki.admin_cert), str(cp.pki.admin_key))
        self.server = cp.server
        self.session = aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(ssl=ctx, limit=concurrency + 4),
            timeout=aiohttp.ClientTimeout(total=120, connect=10),
        )
        self.sem = asyncio.Semaphore(concurrency)

    async def close(self) -> None:
        await self.session.close()

    async def create(self, path: str, body: dict[str, Any]) -> None:
        async with self.sem:
            for attempt in range(20):
                async with self.session.post(self.server + path, json=body) as resp:
                    if resp.status in (200, 201):
                        return
                    if resp.status == 429 or resp.status >= 500:
                        await asyncio.sleep(0.2 * (attempt + 1))
                        continue
                    raise RuntimeError(f"POST {path}: {resp.status} {await resp.text()}")
            raise RuntimeError(f"POST {path}: still refused after retries")

    async def list_all(self, path: str, selector: str = "") -> list[dict[str, Any]]:
        items: list[dict[str, Any]] = []
        cont = ""
        while True:
            params = {"limit": "1000"}
            if selector:
                params["labelSelector"] = selector
            if cont:
                params["continue"] = cont
            async with self.session.get(self.server + path, params=params) as resp:
                resp.raise_for_status()
                page = await resp.json()
            items += page["items"]
            cont = page["metadata"].get("continue") or ""
            if not cont:
                return items


def _ready(obj: dict[str, Any]) -> bool:
    for cond in (obj.get("status") or {}).get("conditions") or []:
        if cond.get("type") == "Ready":
            return bool(cond.get("status") == "True")
    return False


class ReadyWatch:
    """Which objects of one kind are Ready, kept current by a watch (no polling LISTs)."""

    def __init__(self, api: Api, path: str) -> None:
        self.api, self.path = api, path
        self.ready: set[str] = set()
        self.task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        items = await self.api.list_all(self.path)
        for obj in items:
            if _ready(obj):
                self.ready.add(obj["metadata"]["name"])
        async with self.api.session.get(self.api.server + self.path, params={"limit": "1"}) as r:
            rv = (await r.json())["metadata"]["resourceVersion"]
        self.task = asyncio.create_task(self._watch(rv))

    async def _watch(self, rv: str) -> None:
        while True:
            params = {"watch": "1", "resourceVersion": rv, "allowWatchBookmarks": "true"}
            params["timeoutSeconds"] = "240"
            timeout = aiohttp.ClientTimeout(total=None, sock_read=300)
            url = self.api.server + self.path
            async with self.api.session.get(url, params=params, timeout=timeout) as resp:
                async for line in resp.content:
                    event = json.loads(line)
                    obj = event["object"]
                    rv = obj["metadata"].get("resourceVersion", rv)
                    if event["type"] in ("ADDED", "MODIFIED"):
                        name = obj["metadata"]["name"]
                        (self.ready.add if _ready(obj) else self.ready.discard)(name)
                    elif event["type"] == "DELETED":
                        self.ready.discard(obj["metadata"]["name"])

    async def stop(self) -> None:
        if self.task is not None:
            self.task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self.task


class Store:
    """Synchronous reads/writes of the operator's SQLite store, run off the event loop."""

    def __init__(self, url: str, namespace: str) -> None:
        self.engine = sa.create_engine(url, connect_args={"timeout": 60})
        self.prefix = namespace + "/%"

    def _count_registrations(self) -> int:
        r, d = schema.registrations, schema.allowed_domains
        has = sa.exists().where(d.c.registration_id == r.c.id)
        with self.engine.connect() as conn:
            q = sa.select(sa.func.count()).where(r.c.name.like(self.prefix), has)
            return int(conn.execute(q).scalar_one())

    async def registrations_with_domain(self) -> int:
        return await asyncio.to_thread(self._count_registrations)

    def _keys(self) -> dict[str, str]:
        r = schema.registrations
        with self.engine.connect() as conn:
            rows = conn.execute(sa.select(r.c.name, r.c.hmac_key).where(r.c.name.like(self.prefix)))
            return {row.name: row.hmac_key for row in rows}

    async def hmac_keys(self) -> dict[str, str]:
        return await asyncio.to_thread(self._keys)

    def _exported(self) -> int:
        c = schema.certificates
        with self.engine.connect() as conn:
            q = sa.select(sa.func.count()).where(c.c.exported_revision >= c.c.revision)
            return int(conn.execute(q).scalar_one())

    async def exported(self) -> int:
        return await asyncio.to_thread(self._exported)

    def insert_certificates(self, count: int) -> None:
        """One account, order and certificate per registration, in one transaction."""
        r = schema.registrations
        pem, _ = self_signed_pem(["bench.example"])
        now = dt.datetime.now(dt.UTC)
        with self.engine.begin() as conn:
            regs = list(conn.execute(sa.select(r.c.id, r.c.kid).where(r.c.name.like(self.prefix))))
            regs = regs[:count]
            accounts, orders, certs = [], [], []
            for i, reg in enumerate(regs):
                acct, order, cert = f"acct-b{i}", f"ord-b{i}", f"crt-b{i}"
                accounts.append(
                    {
                        "id": acct,
                        "key_thumbprint": "tp-" + secrets.token_hex(16),
                        "jwk": {"kty": "EC"},
                        "status": "valid",
                        "contact": [],
                        "tos_agreed": True,
                        "registration_id": reg.id,
                        "eab_kid": reg.kid,
                        "eab_binding": None,
                        "created_at": now,
                    }
                )
                orders.append(
                    {
                        "id": order,
                        "account_id": acct,
                        "status": "valid",
                        "identifiers": [{"type": "dns", "value": f"r{i}.bench.example"}],
                        "certificate_id": cert,
                        "expires_at": now + dt.timedelta(days=1),
                        "created_at": now,
                    }
                )
                certs.append(
                    {
                        "id": cert,
                        "serial": secrets.token_hex(16),
                        "order_id": order,
                        "account_id": acct,
                        "registration_id": reg.id,
                        "names": [f"r{i}.bench.example"],
                        "chain_pem": pem,
                        "spki_sha256": secrets.token_hex(32),
                        "not_before": now,
                        "not_after": now + dt.timedelta(days=30),
                        "created_at": now,
                        "revision": 1,
                        "exported_revision": 0,
                    }
                )
            conn.execute(schema.accounts.insert(), accounts)
            conn.execute(schema.orders.insert(), orders)
            conn.execute(schema.certificates.insert(), certs)


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a live process (children not included)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / 100  # utime, stime in clock ticks (100 Hz)


def peak_rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


async def wait_until(
    what: str, done: Callable[[], Any], deadline: float, on_tick: Callable[[], Any] | None = None
) -> float:
    """Poll `done` (async) every 0.5 s; the monotonic time it first held."""
    while time.monotonic() < deadline:
        if await done():
            return time.monotonic()
        if on_tick is not None:
            await on_tick()
        await asyncio.sleep(0.5)
    raise TimeoutError(f"timed out waiting for {what}")


async def secret_versions(api: Api, ns: str, purpose: str) -> dict[str, str]:
    items = await api.list_all(f"/api/v1/namespaces/{ns}/secrets", f"{PURPOSE}={purpose}")
    return {s["metadata"]["name"]: s["metadata"]["resourceVersion"] for s in items}


class Bench:
    def __init__(self, args: argparse.Namespace, cp: ControlPlane, op: OperatorProcess) -> None:
        self.args, self.cp, self.op = args, cp, op
        self.n: int = args.count
        self.ns = "bench"
        self.rows: list[tuple[str, str]] = []
        self.rss = 0.0
        self.op_cpu_before = 0.0  # CPU of operator processes killed so far

    def add(self, rows: list[tuple[str, str]]) -> None:
        for what, value in rows:
            self.rows.append((what, value))
            print(f"{what}: {value}", file=sys.stderr, flush=True)

    def cpu(self) -> dict[str, float]:
        """CPU seconds so far of the operator and of each control-plane process."""
        out = {p.name: cpu_seconds(p.popen.pid) for p in self.cp._procs}
        if self.op.proc is not None and self.op.proc.poll() is None:
            out["operator"] = cpu_seconds(self.op.proc.pid) + self.op_cpu_before
        return out

    def cpu_rows(self, phase: str, before: dict[str, float]) -> list[tuple[str, str]]:
        now = self.cpu()
        spent = {k: now[k] - before.get(k, 0.0) for k in now}
        shown = ", ".join(f"{k} {v:.0f}" for k, v in sorted(spent.items()))
        return [(f"CPU seconds during {phase}", shown)]

    def note_rss(self) -> None:
        if self.op.proc is not None and self.op.proc.poll() is None:
            self.rss = max(self.rss, peak_rss_mib(self.op.proc.pid))

    async def restart(self) -> float:
        self.note_rss()
        self.op_cpu_before = self.cpu().get("operator", 0.0)
        self.op.kill()
        t = time.monotonic()
        await asyncio.to_thread(self.op.start, 120)
        return time.monotonic() - t

    async def warm_up(self, api: Api) -> None:
        """One registration in another namespace until Ready: the operator is watching."""
        base = f"{GROUP_PATH}/namespaces/warmup"
        watch = ReadyWatch(api, base + "/acmeregistrations")
        await watch.start()
        await api.create(
            base + "/alloweddomains",
            {
                "apiVersion": "acme-gateway.io/v1alpha1",
                "kind": "AllowedDomain",
                "metadata": {"name": "warm"},
                "spec": {"registrationName": "warm", "domain": "warm.bench.example"},
            },
        )
        await api.create(
            base + "/acmeregistrations",
            {
                "apiVersion": "acme-gateway.io/v1alpha1",
                "kind": "AcmeRegistration",
                "metadata": {"name": "warm"},
                "spec": {},
            },
        )

        async def ready() -> bool:
            return "warm" in watch.ready

        await wait_until("warm-up registration Ready", ready, time.monotonic() + 120)
        await watch.stop()

    async def run(self, store: Store) -> None:
        api = Api(self.cp, self.args.concurrency)
        try:
            await self.warm_up(api)
            await self._registrations(api, store)
            await self._exports(api, store)
        finally:
            await api.close()
        self.note_rss()
        self.add([("operator peak RSS (VmHWM)", f"{self.rss:.0f} MiB")])

    async def _registrations(self, api: Api, store: Store) -> None:
        ns, n = self.ns, self.n
        base = f"{GROUP_PATH}/namespaces/{ns}"
        regs, doms = (
            ReadyWatch(api, base + "/acmeregistrations"),
            ReadyWatch(api, base + "/alloweddomains"),
        )
        await regs.start()
        await doms.start()
        deadline = time.monotonic() + self.args.timeout
        cpu0 = self.cpu()
        t0 = time.monotonic()

        def registration(i: int) -> dict[str, Any]:
            return {
                "apiVersion": "acme-gateway.io/v1alpha1",
                "kind": "AcmeRegistration",
                "metadata": {"name": f"r{i:05d}"},
                "spec": {},
            }

        def domain(i: int) -> dict[str, Any]:
            return {
                "apiVersion": "acme-gateway.io/v1alpha1",
                "kind": "AllowedDomain",
                "metadata": {"name": f"d{i:05d}"},
                "spec": {"registrationName": f"r{i:05d}", "domain": f"r{i:05d}.bench.example"},
            }

        # Interleaved (as in one manifest listing each registration with its domain).
        jobs = []
        for i in range(n):
            jobs.append(api.create(base + "/acmeregistrations", registration(i)))
            jobs.append(api.create(base + "/alloweddomains", domain(i)))
        await asyncio.gather(*jobs)
        t_applied = time.monotonic()
        restarted = None
        keys_before: dict[str, str] = {}
        hmac_before: dict[str, str] = {}
        if self.args.restart:
            await wait_until("half Ready", self._half(regs), deadline)
            keys_before = await store.hmac_keys()
            hmac_before = await secret_versions(api, ns, "eab-hmac-key")
            restarted = await self.restart()

        last_report = [time.monotonic()]

        async def all_done() -> bool:
            in_store = await store.registrations_with_domain()
            if time.monotonic() - last_report[0] >= 5:
                last_report[0] = time.monotonic()
                print(
                    f"  {time.monotonic() - t0:5.1f}s: {len(regs.ready)} registrations and "
                    f"{len(doms.ready)} domains Ready, {in_store} in the store",
                    file=sys.stderr,
                    flush=True,
                )
            return len(regs.ready) >= n and len(doms.ready) >= n and in_store >= n

        t_ready = await wait_until("all Ready", all_done, deadline, self._tick)
        await regs.stop()
        await doms.stop()
        self.add(
            [
                (f"create {n} + {n} objects (bench client)", f"{t_applied - t0:.1f} s"),
                (f"all {2 * n} Ready and {n} in the store", f"{t_ready - t0:.1f} s"),
                ("registrations/s (from first create)", f"{n / (t_ready - t0):.0f}"),
                *self.cpu_rows("registrations", cpu0),
            ]
        )
        if restarted is not None:
            keys_after = await store.hmac_keys()
            hmac_after = await secret_versions(api, ns, "eab-hmac-key")
            changed_keys = sum(1 for k, v in keys_before.items() if keys_after.get(k) != v)
            rewritten = sum(1 for k, v in hmac_before.items() if hmac_after.get(k) != v)
            self.add(
                [
                    ("operator restart (kill -> healthy)", f"{restarted:.1f} s"),
                    (
                        f"HMAC Secrets rewritten after restart (of {len(hmac_before)})",
                        str(rewritten),
                    ),
                    (
                        f"store keys changed after restart (of {len(keys_before)})",
                        str(changed_keys),
                    ),
                ]
            )

    def _half(self, watch: ReadyWatch) -> Callable[[], Any]:
        async def probe() -> bool:
            return len(watch.ready) >= self.n // 2

        return probe

    async def _tick(self) -> None:
        self.note_rss()

    async def _exports(self, api: Api, store: Store) -> None:
        n = self.n
        await asyncio.to_thread(ensure_ca_root, self.op.database_url)  # the server's job
        await asyncio.to_thread(store.insert_certificates, n)
        deadline = time.monotonic() + self.args.timeout
        cpu0 = self.cpu()
        t0 = time.monotonic()
        restarted = None
        before: dict[str, str] = {}
        if self.args.restart:

            async def half() -> bool:
                return await store.exported() >= n // 2

            await wait_until("half exported", half, deadline)
            self.note_rss()
            self.op_cpu_before = self.cpu().get("operator", 0.0)
            self.op.kill()
            before = await secret_versions(api, self.ns, "certificate")
            t = time.monotonic()
            await asyncio.to_thread(self.op.start, 120)
            restarted = time.monotonic() - t

        async def all_exported() -> bool:
            return await store.exported() >= n

        t_done = await wait_until("all exported", all_exported, deadline, self._tick)
        after = await secret_versions(api, self.ns, "certificate")
        self.add(
            [
                (f"{n} certificates exported to Secrets", f"{t_done - t0:.1f} s"),
                ("certificate Secrets present", str(len(after))),
                *self.cpu_rows("exports", cpu0),
            ]
        )
        if restarted is not None:
            rewritten = sum(1 for k, v in before.items() if after.get(k) != v)
            self.add(
                [
                    ("operator restart during export (kill -> healthy)", f"{restarted:.1f} s"),
                    (
                        f"certificate Secrets rewritten after restart (of {len(before)})",
                        str(rewritten),
                    ),
                ]
            )


async def migrate(url: str) -> None:
    db = await Database.open(url)
    await db.close()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=1000, help="registrations (= domains)")
    parser.add_argument("--restart", action="store_true", help="kill the operator halfway")
    parser.add_argument("--concurrency", type=int, default=16, help="parallel creates")
    parser.add_argument("--timeout", type=float, default=600, help="seconds per phase")
    parser.add_argument("--keep", action="store_true", help="keep the work directory")
    args = parser.parse_args()

    workdir = Path(tempfile.mkdtemp(prefix="acme-gw-opbench-"))
    binaries = build_binaries()
    cp = ControlPlane(binaries)
    op: OperatorProcess | None = None
    try:
        cp.start(workdir / "kube")
        cp.kubectl("create", "namespace", "bench")
        cp.kubectl("create", "namespace", "warmup")
        url = f"sqlite:///{workdir / 'store.sqlite3'}"
        asyncio.run(migrate(url))
        assert cp.kubeconfig is not None
        # Production intervals (the CLI defaults), not the tests' short ones.
        op = OperatorProcess(
            cp.kubeconfig,
            url,
            workdir,
            namespaces=("bench", "warmup"),
            export_interval=2.0,
            resync_interval=30,
            status_interval=10,
        ).start()
        bench = Bench(args, cp, op)
        asyncio.run(bench.run(Store(url, "bench")))
    except BaseException:
        if op is not None:
            print(op.logs(40), file=sys.stderr)
        raise
    finally:
        if op is not None:
            op.stop()
        cp.stop()
        if not args.keep:
            shutil.rmtree(workdir, ignore_errors=True)
    label = f"N={args.count}" + (", operator restarted mid-way" if args.restart else "")
    print(f"\n### Operator scale, {label}\n")
    print("| measure | value |\n|---|---|")
    for what, value in bench.rows:
        print(f"| {what} | {value} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
