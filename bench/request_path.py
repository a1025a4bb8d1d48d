"""Server CPU per request, by kind: the cost of the request path itself.

Starts `acme-gateway serve --workers 1` (SQLite, or --database postgres), then for each kind
sends COUNT requests from CONCURRENCY async clients over keep-alive connections and divides
the server's CPU time (its whole process tree, from /proc) by COUNT. The kinds:
`GET newNonce` (as cheap as HEAD, which aiohttp's client does not keep alive), `GET directory`, a kid-signed POST-as-GET of the account and of an order
(the authenticated path: nonce, account, signature, one store read), and newOrder for a name
the account already holds a valid authorization for (a store write, no validation).

    .venv/bin/python bench/request_path.py [--count 2000] [--concurrency 8] [--database postgres]

Only loopback traffic; bounded in count. The client runs on the same machine: compare kinds
and commits within one run, not absolute figures across machines.
"""

from __future__ import annotations

import argparse
import asyncio
import ssl
import sys
import tempfile
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import aiohttp

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from bench.acme_client import Client, prove_control
from bench.procstat import tree_cpu_seconds
from tests.gateway_proc import GatewayProcess
from tests.infra.bind import BindServer
from tests.infra.postgres import PostgresServer


async def _measure(
    gw: GatewayProcess,
    count: int,
    clients: list[Client],
    request: Callable[[Client], Awaitable[None]],
) -> float:
    """Server CPU milliseconds per request of `request`, `count` requests in all."""
    assert gw.proc is not None
    remaining = count

    async def worker(client: Client) -> None:
        nonlocal remaining
        while remaining > 0:
            remaining -= 1
            await request(client)

    before = tree_cpu_seconds(gw.proc.pid)
    await asyncio.gather(*(worker(c) for c in clients))
    return (tree_cpu_seconds(gw.proc.pid) - before) * 1000 / count


async def run(gw: GatewayProcess, count: int, concurrency: int) -> dict[str, float]:
    ctx = ssl.create_default_context(cafile=str(gw.root_pem))
    connector = aiohttp.TCPConnector(ssl=ctx, limit=concurrency)
    async with aiohttp.ClientSession(connector=connector) as session:
        async with session.get(gw.directory_url) as r:
            directory: dict[str, Any] = await r.json()
        name = "path.acme.test"
        clients = [Client(session, directory) for _ in range(concurrency)]
        orders: dict[int, str] = {}
        for client in clients:
            resp = await client.post(directory["newAccount"], {"termsOfServiceAgreed": True})
            client.kid = resp.headers["Location"]
            await prove_control(client, name, gw)
            made = await client.post(
                directory["newOrder"], {"identifiers": [{"type": "dns", "value": name}]}
            )
            orders[id(client)] = made.headers["Location"]

        async def nonce(client: Client) -> None:
            async with session.get(directory["newNonce"]) as r:
                r.raise_for_status()
                await r.read()

        async def get_directory(client: Client) -> None:
            async with session.get(gw.directory_url) as r:
                await r.read()

        async def account(client: Client) -> None:
            assert client.kid is not None
            await client.post(client.kid, None)

        async def order(client: Client) -> None:
            await client.post(orders[id(client)], None)

        async def new_order(client: Client) -> None:
            await client.post(
                directory["newOrder"], {"identifiers": [{"type": "dns", "value": name}]}
            )

        kinds: dict[str, Callable[[Client], Awaitable[None]]] = {
            "GET newNonce": nonce,
            "GET directory": get_directory,
            "POST-as-GET account": account,
            "POST-as-GET order": order,
            "newOrder (authorization reused)": new_order,
        }
        for fn in kinds.values():  # warm up (key cache, statement caches, connections)
            await _measure(gw, len(clients) * 10, clients, fn)
        return {kind: await _measure(gw, count, clients, fn) for kind, fn in kinds.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=2000)
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--database", default=None, help="URL, or 'postgres' for a throwaway one")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp, BindServer().start(Path(tmp) / "bind") as bind:
        database = args.database
        pg: PostgresServer | None = None
        if database == "postgres":
            pg = PostgresServer().start(Path(tmp) / "pg")
            database = pg.url
        gw = GatewayProcess(
            Path(tmp) / "gw",
            database=database,
            dns_resolvers=(bind.resolver_address,),
            workers=1,
            account_cache_seconds=2.0,
            extra_args=("--max-pending-orders", str(args.count + 100)),
        )
        gw.start()
        try:
            results = asyncio.run(run(gw, args.count, args.concurrency))
        finally:
            gw.stop()
            if pg is not None:
                pg.stop()
    store = "PostgreSQL" if database else "SQLite"
    print(f"| request ({store}, {args.count} each, {args.concurrency} clients) | server CPU ms |")
    print("|---|---|")
    for kind, ms in results.items():
        print(f"| {kind} | {ms:.2f} |")


if __name__ == "__main__":
    main()
