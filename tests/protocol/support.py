"""Shared helpers for the protocol tests: problem assertions, raw ACME flows, EAB and Ed25519.

Built on RawClient so every request is a hand-made JWS the tests fully control; the flows
here (order, http-01, finalize, download) are what the error tests need to reach a state.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
import uuid
from typing import Any

import josepy
import requests
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519

from tests.gateway_proc import GatewayProcess
from tests.protocol.acme_client import RawClient, alg_for, b64, http01_responder, make_csr

ERR = "urn:ietf:params:acme:error:"
PROBLEM_JSON = "application/problem+json"


def unique(label: str = "t", zone: str = "acme.test") -> str:
    """A DNS name no other test uses (the tests share one server per backend)."""
    return f"{label}-{uuid.uuid4().hex[:12]}.{zone}"


def assert_acme_headers(resp: requests.Response) -> None:
    """Every ACME response carries a fresh nonce and the directory as rel=index."""
    assert resp.headers.get("Replay-Nonce"), f"no Replay-Nonce on {resp.status_code} {resp.url}"
    assert 'rel="index"' in resp.headers.get("Link", ""), resp.headers.get("Link")


def assert_problem(
    resp: requests.Response, type_: str, status: int, detail: str | None = None
) -> dict[str, Any]:
    """Check an RFC 8555 problem document: type, HTTP status, detail substring, headers."""
    assert resp.status_code == status, f"{resp.status_code} {resp.text}"
    assert resp.headers["Content-Type"].split(";")[0] == PROBLEM_JSON, resp.headers
    doc: dict[str, Any] = resp.json()
    assert doc["type"] == ERR + type_, doc
    assert doc.get("status") == status, doc
    if detail is not None:
        assert detail.lower() in doc["detail"].lower(), doc
    assert_acme_headers(resp)
    return doc


def subproblem_values(doc: dict[str, Any]) -> dict[str, str]:
    """identifier value → subproblem type (without the URN prefix)."""
    out = {}
    for sub in doc.get("subproblems", []):
        assert sub["identifier"]["type"] == "dns", sub
        out[sub["identifier"]["value"]] = sub["type"].removeprefix(ERR)
    return out


def thumbprint(key: josepy.JWK) -> str:
    return b64(key.thumbprint())


def eab_binding(
    kid: str, hmac_key: str, jwk: dict[str, Any], url: str, alg: str = "HS256"
) -> dict[str, str]:
    """An externalAccountBinding JWS (RFC 8555 7.3.4) built by hand, for any HS* alg."""
    digest = {"HS256": hashlib.sha256, "HS384": hashlib.sha384, "HS512": hashlib.sha512}[alg]
    protected = b64(json.dumps({"alg": alg, "kid": kid, "url": url}).encode())
    payload = b64(json.dumps(jwk).encode())
    key = base64.urlsafe_b64decode(hmac_key + "=" * (-len(hmac_key) % 4))
    mac = hmac.new(key, f"{protected}.{payload}".encode(), digest).digest()
    return {"protected": protected, "payload": payload, "signature": b64(mac)}


class Acme(RawClient):
    """RawClient plus the flows the tests need to reach each state."""

    @property
    def account(self) -> str:
        """The account URL (kid); only after registering."""
        assert self.kid is not None, "no account registered yet"
        return self.kid

    def jwk(self) -> dict[str, Any]:
        return dict(self.key.public_key().to_partial_json())

    def key_thumbprint(self) -> str:
        return thumbprint(self.key)

    def register(self, eab: dict[str, Any] | None = None, alg: str = "HS256") -> requests.Response:
        payload: dict[str, Any] = {"termsOfServiceAgreed": True}
        if eab is not None:
            payload["externalAccountBinding"] = eab_binding(
                str(eab["kid"]), str(eab["hmac_key"]), self.jwk(), self.directory["newAccount"], alg
            )
        resp = self.create_account(payload)
        assert resp.status_code == 201, resp.text
        return resp

    def sign_header(self, header: dict[str, Any], payload: Any) -> dict[str, str]:
        """A JWS with exactly `header` as protected header, signed with the account key."""
        protected = b64(json.dumps(header).encode())
        body = "" if payload is None else b64(json.dumps(payload).encode())
        alg = josepy.JWASignature.from_json(alg_for(self.key).name)
        sig = alg.sign(self.key.key, f"{protected}.{body}".encode())
        return {"protected": protected, "payload": body, "signature": b64(sig)}

    def get(self, url: str) -> requests.Response:
        """POST-as-GET."""
        return self.post(url, None)

    def new_order(self, names: list[str]) -> requests.Response:
        return self.post(
            self.directory["newOrder"],
            {"identifiers": [{"type": "dns", "value": n} for n in names]},
        )

    def order(self, names: list[str]) -> tuple[str, dict[str, Any]]:
        resp = self.new_order(names)
        assert resp.status_code == 201, resp.text
        return resp.headers["Location"], resp.json()

    def authorizations(self, order: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
        out = []
        for url in order["authorizations"]:
            resp = self.get(url)
            assert resp.status_code == 200, resp.text
            out.append((url, resp.json()))
        return out

    def wait(self, url: str, done: set[str], timeout: float = 30.0) -> dict[str, Any]:
        """Poll a resource (POST-as-GET) until its status is in `done`."""
        deadline = time.monotonic() + timeout
        while True:
            resp = self.get(url)
            assert resp.status_code == 200, resp.text
            body: dict[str, Any] = resp.json()
            if body["status"] in done:
                return body
            assert time.monotonic() < deadline, f"{url} stuck in {body}"
            time.sleep(0.2)

    def validate_http01(self, order: dict[str, Any]) -> None:
        """Answer every pending authorization of the order with http-01 and wait for it."""
        with http01_responder(self.gw.http01_port) as tokens:
            pending = []
            for url, authz in self.authorizations(order):
                if authz["status"] != "pending":
                    continue
                chall = next(c for c in authz["challenges"] if c["type"] == "http-01")
                tokens[chall["token"]] = f"{chall['token']}.{self.key_thumbprint()}"
                resp = self.post(chall["url"], {})
                assert resp.status_code == 200, resp.text
                pending.append(url)
            for url in pending:
                assert self.wait(url, {"valid", "invalid"})["status"] == "valid"

    def ready_order(self, names: list[str]) -> tuple[str, dict[str, Any]]:
        url, order = self.order(names)
        self.validate_http01(order)
        return url, self.wait(url, {"ready", "invalid"})

    def finalize(self, order: dict[str, Any], csr_pem: bytes) -> requests.Response:
        der = x509.load_pem_x509_csr(csr_pem).public_bytes(serialization.Encoding.DER)
        return self.post(order["finalize"], {"csr": b64(der)})

    def issue(self, names: list[str]) -> tuple[x509.Certificate, Any, str]:
        """A certificate for `names`: (leaf, its private key, chain PEM)."""
        url, order = self.ready_order(names)
        assert order["status"] == "ready", order
        csr_pem, cert_key = make_csr(names)
        resp = self.finalize(order, csr_pem)
        assert resp.status_code == 200, resp.text
        order = self.wait(url, {"valid", "invalid"})
        assert order["status"] == "valid", order
        cert = self.get(order["certificate"])
        assert cert.status_code == 200, cert.text
        return x509.load_pem_x509_certificate(cert.content), cert_key, cert.text


def new_account(gw: GatewayProcess, key: josepy.JWK | None = None) -> Acme:
    acme = Acme(gw, key)
    acme.register()
    return acme


class Ed25519Acme(Acme):
    """EdDSA (RFC 8037) signing, which josepy lacks: the JWS is built with `cryptography`."""

    def __init__(self, gw: GatewayProcess) -> None:
        self.ed_key = ed25519.Ed25519PrivateKey.generate()
        super().__init__(gw)

    def jwk(self) -> dict[str, Any]:
        raw = self.ed_key.public_key().public_bytes(
            serialization.Encoding.Raw, serialization.PublicFormat.Raw
        )
        return {"crv": "Ed25519", "kty": "OKP", "x": b64(raw)}

    def key_thumbprint(self) -> str:
        canonical = json.dumps(self.jwk(), separators=(",", ":"), sort_keys=True).encode()
        return b64(hashlib.sha256(canonical).digest())

    def sign(
        self, url: str, payload: Any, *, key: josepy.JWK | None = None, **kwargs: Any
    ) -> dict[str, str]:
        assert key is None, "Ed25519Acme signs only with its own key"
        return super().sign(url, payload, **kwargs)

    def alg_name(self, key: josepy.JWK) -> str:
        return "EdDSA"

    def public_jwk(self, key: josepy.JWK) -> dict[str, Any]:
        return self.jwk()

    def signature(self, key: josepy.JWK, signing_input: bytes) -> bytes:
        return self.ed_key.sign(signing_input)
