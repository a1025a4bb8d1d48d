"""An ACME client for the load-balancer chaos test that retries as a real client does, and
records every HTTP response it gets.

It retries a request answered with 503 (after `Retry-After`, capped) or `badNonce` (at
once, with the nonce that came with the error), keeps the `Replay-Nonce` of each answer for
its next request (so a nonce issued by one replica is spent on another) and fetches a new
one only when an answer carried none (HAProxy's own error pages). Anything else is handed
back to the flow, which fails on what it does not expect.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import requests
from cryptography import x509
from cryptography.hazmat.primitives import serialization

from tests.protocol.acme_client import alg_for, b64, ec_key, make_csr
from tests.protocol.support import eab_binding, thumbprint

ERR = "urn:ietf:params:acme:error:"
MAX_RETRY_SLEEP = 2.0
POLL_SECONDS = 0.3


@dataclass(frozen=True)
class Response:
    """One HTTP answer (status 0: the request failed below HTTP)."""

    at: float
    wall: float  # time.time(), to find the request in the server and HAProxy logs
    worker: int
    method: str
    path: str
    status: int
    problem: str | None
    retry_after: str | None
    detail: str


@dataclass
class Recorder:
    responses: list[Response] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def add(self, response: Response) -> None:
        with self.lock:
            self.responses.append(response)

    def snapshot(self) -> list[Response]:
        with self.lock:
            return list(self.responses)


@dataclass
class OrderResult:
    name: str
    url: str = ""
    challenge_token: str = ""
    finalize_status: int | None = None  # of the last finalize attempt
    finalize_retried: bool = False  # an attempt got a 503 or no answer, and was repeated
    status: str = ""
    certificate_pem: str = ""
    serial_hex: str = ""
    finished_at: float = 0.0


class ChaosClient:
    def __init__(
        self,
        directory_url: str,
        root_pem: Path,
        recorder: Recorder,
        worker: int,
        deadline: float,
        tokens: dict[str, str],
    ) -> None:
        self.recorder = recorder
        self.worker = worker
        self.deadline = deadline
        self.tokens = tokens  # the http-01 responders' token -> key authorization map
        self.key = ec_key()
        self.kid: str | None = None
        self.session = requests.Session()
        self.session.trust_env = False
        self.session.verify = str(root_pem)
        self._nonce: str | None = None
        resp = self._until_ok(lambda: self._send("GET", directory_url))
        self.directory: dict[str, Any] = resp.json()

    # -- transport -----------------------------------------------------------------------

    def _send(self, method: str, url: str, body: bytes | None = None) -> requests.Response | None:
        headers = {"Content-Type": "application/jose+json"} if body is not None else {}
        try:
            resp = self.session.request(method, url, data=body, headers=headers, timeout=30)
        except requests.RequestException as exc:
            self._record(method, url, 0, None, None, f"{type(exc).__name__}: {exc}")
            return None
        problem = None
        if resp.headers.get("Content-Type", "").startswith("application/problem+json"):
            problem = str(resp.json().get("type", ""))
        detail = resp.text[:300] if resp.status_code >= 300 else ""
        self._record(
            method, url, resp.status_code, problem, resp.headers.get("Retry-After"), detail
        )
        if "Replay-Nonce" in resp.headers:
            self._nonce = resp.headers["Replay-Nonce"]
        return resp

    def _record(
        self,
        method: str,
        url: str,
        status: int,
        problem: str | None,
        retry_after: str | None,
        detail: str,
    ) -> None:
        self.recorder.add(
            Response(
                time.monotonic(),
                time.time(),
                self.worker,
                method,
                urlsplit(url).path,
                status,
                problem,
                retry_after,
                detail,
            )
        )

    def _until_ok(self, send: Callable[[], requests.Response | None]) -> requests.Response:
        """Repeat `send` while the answer is retryable; return the first one that is not."""
        while True:
            if time.monotonic() > self.deadline:
                raise TimeoutError(f"worker {self.worker}: out of time retrying")
            resp = send()
            if resp is None:
                time.sleep(0.5)
                continue
            if resp.status_code == 503:
                wait = float(resp.headers.get("Retry-After") or MAX_RETRY_SLEEP)
                time.sleep(min(wait, MAX_RETRY_SLEEP))
                continue
            if resp.status_code == 400 and _problem_type(resp) == ERR + "badNonce":
                continue
            return resp

    def _fresh_nonce(self) -> str:
        nonce, self._nonce = self._nonce, None
        while nonce is None:
            self._until_ok(lambda: self._send("HEAD", self.directory["newNonce"]))
            nonce, self._nonce = self._nonce, None
        return nonce

    def post(self, url: str, payload: Any, *, use_jwk: bool = False) -> requests.Response:
        """A signed POST (payload None: POST-as-GET), retried as a client retries."""
        return self._until_ok(lambda: self._send("POST", url, self._jws(url, payload, use_jwk)))

    def _jws(self, url: str, payload: Any, use_jwk: bool) -> bytes:
        header: dict[str, Any] = {
            "alg": alg_for(self.key).name,
            "url": url,
            "nonce": self._fresh_nonce(),
        }
        if use_jwk or self.kid is None:
            header["jwk"] = self.jwk()
        else:
            header["kid"] = self.kid
        protected = b64(json.dumps(header).encode())
        body = "" if payload is None else b64(json.dumps(payload).encode())
        sig = alg_for(self.key).sign(self.key.key, f"{protected}.{body}".encode())
        return json.dumps({"protected": protected, "payload": body, "signature": b64(sig)}).encode()

    def jwk(self) -> dict[str, Any]:
        return dict(self.key.public_key().to_partial_json())

    # -- flows ---------------------------------------------------------------------------

    def register(self, eab: dict[str, str]) -> None:
        url = self.directory["newAccount"]
        binding = eab_binding(eab["kid"], eab["hmac_key"], self.jwk(), url)
        payload = {"termsOfServiceAgreed": True, "externalAccountBinding": binding}
        resp = self.post(url, payload, use_jwk=True)
        # 200: a first attempt landed although its answer was lost (a retried newAccount).
        assert resp.status_code in (200, 201), resp.text
        self.kid = resp.headers["Location"]

    def new_order(self, name: str) -> requests.Response:
        return self.post(
            self.directory["newOrder"], {"identifiers": [{"type": "dns", "value": name}]}
        )

    def wait(self, url: str, done: set[str]) -> dict[str, Any]:
        while True:
            resp = self.post(url, None)
            assert resp.status_code == 200, resp.text
            body: dict[str, Any] = resp.json()
            if body["status"] in done:
                return body
            if time.monotonic() > self.deadline:
                raise TimeoutError(f"{url} stuck in {body}")
            time.sleep(POLL_SECONDS)

    def issue(self, name: str) -> OrderResult:
        """One full flow for `name` over http-01: order, challenge, finalize, download."""
        result = OrderResult(name)
        resp = self.new_order(name)
        assert resp.status_code == 201, resp.text
        result.url, order = resp.headers["Location"], resp.json()
        authz_url = order["authorizations"][0]
        authz = self.post(authz_url, None)
        assert authz.status_code == 200, authz.text
        chall = next(c for c in authz.json()["challenges"] if c["type"] == "http-01")
        result.challenge_token = chall["token"]
        self.tokens[chall["token"]] = f"{chall['token']}.{thumbprint(self.key)}"
        accepted = self.post(chall["url"], {})
        assert accepted.status_code == 200, accepted.text
        assert self.wait(authz_url, {"valid", "invalid"})["status"] == "valid"
        order = self.wait(result.url, {"ready", "invalid"})
        assert order["status"] == "ready", order
        csr_pem, _ = make_csr([name])
        der = x509.load_pem_x509_csr(csr_pem).public_bytes(serialization.Encoding.DER)
        final = self._finalize(order["finalize"], {"csr": b64(der)}, result)
        if final.status_code != 200:
            # Only after a repeat: an earlier attempt was committed although its answer was lost.
            assert result.finalize_retried, final.text
            assert _problem_type(final) == ERR + "orderNotReady", final.text
        order = self.wait(result.url, {"valid", "invalid"})
        result.status = order["status"]
        assert order["status"] == "valid", order
        cert = self.post(order["certificate"], None)
        assert cert.status_code == 200, cert.text
        result.certificate_pem = cert.text
        leaf = x509.load_pem_x509_certificate(cert.content)
        result.serial_hex = f"{leaf.serial_number:x}"
        result.finished_at = time.monotonic()
        return result

    def _finalize(self, url: str, payload: Any, result: OrderResult) -> requests.Response:
        def send() -> requests.Response | None:
            resp = self._send("POST", url, self._jws(url, payload, False))
            if resp is None or resp.status_code == 503:
                result.finalize_retried = True
            return resp

        resp = self._until_ok(send)
        result.finalize_status = resp.status_code
        return resp


def _problem_type(resp: requests.Response) -> str | None:
    if not resp.headers.get("Content-Type", "").startswith("application/problem+json"):
        return None
    return str(resp.json().get("type"))
