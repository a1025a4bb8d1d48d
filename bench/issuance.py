"""Issuance throughput of one local server: newOrder + finalize + download per certificate.

Starts `acme-gateway serve` on SQLite (or --database URL), proves control of one name once
over http-01 (authorizations are then reused), and runs CONCURRENCY async clients issuing
COUNT certificates in total. Only loopback traffic; bounded in count. Prints orders/s and
latency percentiles.

    .venv/bin/python bench/issuance.py [--count 300] [--concurrency 8] [--database URL|postgres]
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import ssl
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import aiohttp
import josepy
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from tests.gateway_proc import GatewayProcess
from tests.infra.bind import BindServer
from tests.infra.postgres import PostgresServer
from tests.protocol.acme_client import http01_responder


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


class Client:
    def __init__(self, session: aiohttp.ClientSession, directory: dict[str, Any]) -> None:
        self.session = session
        self.directory = directory
        self.key = josepy.JWKEC(key=ec.generate_private_key(ec.SECP256R1()))
        self.kid: str | None = None
        self.nonce: str | None = None

    async def post(self, url: str, payload: Any) -> aiohttp.ClientResponse:
        if self.nonce is None:
            async with self.session.head(self.directory["newNonce"]) as r:
                self.nonce = r.headers["Replay-Nonce"]
        header: dict[str, Any] = {"alg": "ES256", "url": url, "nonce": self.nonce}
        if self.kid:
            header["kid"] = self.kid
        else:
            header["jwk"] = self.key.public_key().to_partial_json()
        protected = b64(json.dumps(header).encode())
        body = "" if payload is None else b64(json.dumps(payload).encode())
        sig = josepy.ES256.sign(self.key.key, f"{protected}.{body}".encode())
        resp = await self.session.post(
            url,
            data=json.dumps({"protected": protected, "payload": body, "signature": b64(sig)}),
            headers={"Content-Type": "application/jose+json"},
        )
        self.nonce = resp.headers.get("Replay-Nonce")
        await resp.read()
        if resp.status >= 400:
            raise RuntimeError(f"{url}: {resp.status} {await resp.text()}")
        return resp


async def run(gw: GatewayProcess, count: int, concurrency: int) -> None:
    ctx = ssl.create_default_context(cafile=str(gw.root_pem))
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(ssl=ctx)) as session:
        async with session.get(gw.directory_url) as r:
            directory = await r.json()
        name = "bench.acme.test"
        csr_key = ec.generate_private_key(ec.SECP256R1())
        csr = (
            x509.CertificateSigningRequestBuilder()
            .subject_name(x509.Name([]))
            .add_extension(x509.SubjectAlternativeName([x509.DNSName(name)]), critical=False)
            .sign(csr_key, hashes.SHA256())
        )
        csr_b64 = b64(csr.public_bytes(serialization.Encoding.DER))
        clients = [Client(session, directory) for _ in range(concurrency)]
        for client in clients:
            resp = await client.post(directory["newAccount"], {"termsOfServiceAgreed": True})
            client.kid = resp.headers["Location"]
            await prove_control(client, name, gw)
        latencies: list[float] = []
        remaining = count

        async def worker(client: Client) -> None:
            nonlocal remaining
            while remaining > 0:
                remaining -= 1
                start = time.perf_counter()
                order = await client.post(
                    directory["newOrder"], {"identifiers": [{"type": "dns", "value": name}]}
                )
                body = await order.json()
                done = await client.post(body["finalize"], {"csr": csr_b64})
                cert_url = (await done.json())["certificate"]
                await client.post(cert_url, None)
                latencies.append(time.perf_counter() - start)

        began = time.perf_counter()
        await asyncio.gather(*(worker(c) for c in clients))
        elapsed = time.perf_counter() - began
    q = statistics.quantiles(latencies, n=100)
    print(
        f"{len(latencies)} certificates in {elapsed:.1f}s: {len(latencies) / elapsed:.1f}/s "
        f"(concurrency {concurrency}); latency p50 {q[49] * 1000:.0f} ms, "
        f"p95 {q[94] * 1000:.0f} ms, p99 {q[98] * 1000:.0f} ms"
    )


async def prove_control(client: Client, name: str, gw: GatewayProcess) -> None:
    order = await (
        await client.post(
            client.directory["newOrder"], {"identifiers": [{"type": "dns", "value": name}]}
        )
    ).json()
    if order["status"] == "ready":
        return
    authz = await (await client.post(order["authorizations"][0], None)).json()
    chall = next(c for c in authz["challenges"] if c["type"] == "http-01")
    thumb = b64(client.key.thumbprint())
    with http01_responder(gw.http01_port) as tokens:
        tokens[chall["token"]] = f"{chall['token']}.{thumb}"
        await client.post(chall["url"], {})
        for _ in range(100):
            status = (await (await client.post(order["authorizations"][0], None)).json())["status"]
            if status == "valid":
                return
            await asyncio.sleep(0.1)
    raise RuntimeError("http-01 validation did not complete")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--count", type=int, default=300)
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument(
        "--database",
        default=None,
        help="store URL, or 'postgres' to start a throwaway PostgreSQL (default: SQLite)",
    )
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp, BindServer() as bind, PostgresServer() as pg:
        bind.start(Path(tmp) / "bind")
        database = args.database
        if database == "postgres":
            database = pg.start(Path(tmp) / "pg").url
        gw = GatewayProcess(
            Path(tmp) / "gw", database=database, dns_resolvers=(bind.resolver_address,)
        )
        gw.start()
        try:
            asyncio.run(run(gw, args.count, args.concurrency))
        finally:
            gw.stop()


if __name__ == "__main__":
    main()
