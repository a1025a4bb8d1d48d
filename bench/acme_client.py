"""A minimal async ACME client for the bench scripts: signed POSTs with nonce reuse, and
proving control of a name once over http-01 so later orders reuse the authorization."""

from __future__ import annotations

import asyncio
import base64
import json
from typing import Any

import aiohttp
import josepy
from cryptography.hazmat.primitives.asymmetric import ec

from tests.gateway_proc import GatewayProcess
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
