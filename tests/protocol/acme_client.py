"""A real ACME client for protocol tests: certbot's `acme` library plus raw JWS helpers."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import josepy
import requests
from acme import client, messages
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import NameOID

from tests.gateway_proc import GatewayProcess


def rsa_key(bits: int = 2048) -> josepy.JWKRSA:
    return josepy.JWKRSA(key=rsa.generate_private_key(65537, bits))


def ec_key(curve: ec.EllipticCurve | None = None) -> josepy.JWKEC:
    return josepy.JWKEC(key=ec.generate_private_key(curve or ec.SECP256R1()))


def alg_for(key: josepy.JWK) -> josepy.JWASignature:
    if isinstance(key, josepy.JWKRSA):
        return josepy.RS256
    size = key.key.curve.key_size
    return {256: josepy.ES256, 384: josepy.ES384, 521: josepy.ES512}[size]


def new_client(gw: GatewayProcess, key: josepy.JWK | None = None) -> client.ClientV2:
    key = key or rsa_key()
    # requests (under ClientNetwork) takes a CA bundle path where the stub says bool.
    ca_bundle: Any = str(gw.root_pem)
    net = client.ClientNetwork(
        key, alg=alg_for(key), verify_ssl=ca_bundle, user_agent="acme-gateway-tests"
    )
    directory = client.ClientV2.get_directory(gw.directory_url, net)
    return client.ClientV2(directory, net)


def register(
    acme: client.ClientV2, eab: dict[str, Any] | None = None
) -> messages.RegistrationResource:
    binding = None
    if eab is not None:
        binding = messages.ExternalAccountBinding.from_data(
            account_public_key=acme.net.key.public_key(),  # type: ignore[union-attr]
            kid=eab["kid"],
            hmac_key=eab["hmac_key"],
            directory=acme.directory,
        )
    return acme.new_account(
        messages.NewRegistration.from_data(
            email="admin@example.org",
            terms_of_service_agreed=True,
            external_account_binding=binding,
        )
    )


def make_csr(names: list[str], key: Any | None = None) -> tuple[bytes, Any]:
    """PEM CSR with all names as SANs (first also as CN) and its private key."""
    key = key or ec.generate_private_key(ec.SECP256R1())
    builder = x509.CertificateSigningRequestBuilder().subject_name(
        x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, names[0])])
    )
    builder = builder.add_extension(
        x509.SubjectAlternativeName([x509.DNSName(n) for n in names]), critical=False
    )
    csr = builder.sign(key, hashes.SHA256())
    return csr.public_bytes(serialization.Encoding.PEM), key


class _TokenHandler(BaseHTTPRequestHandler):
    tokens: dict[str, str] = {}

    def do_GET(self) -> None:
        token = self.path.rsplit("/", 1)[-1]
        body = self.tokens.get(token)
        if body is None or not self.path.startswith("/.well-known/acme-challenge/"):
            self.send_response(404)
            self.end_headers()
            return
        self.send_response(200)
        self.send_header("Content-Type", "text/plain")
        self.end_headers()
        self.wfile.write(body.encode())

    def log_message(self, *args: Any) -> None:
        pass


@contextmanager
def http01_responder(port: int) -> Iterator[dict[str, str]]:
    """Serve http-01 key authorizations on 127.0.0.1:port; yields the token→body map."""
    tokens: dict[str, str] = {}
    handler = type("Handler", (_TokenHandler,), {"tokens": tokens})
    with serving(port, handler):
        yield tokens


@contextmanager
def serving(port: int, handler: type[BaseHTTPRequestHandler]) -> Iterator[None]:
    """An HTTP server with `handler` on 127.0.0.1:port, in a thread, while the block runs."""
    server = ThreadingHTTPServer(("127.0.0.1", port), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield
    finally:
        server.shutdown()
        server.server_close()
        server.server_close()


def b64(data: bytes) -> str:
    return josepy.b64encode(data).decode()


class RawClient:
    """Hand-built JWS requests, to send what a well-behaved library never would."""

    def __init__(self, gw: GatewayProcess, key: josepy.JWK | None = None) -> None:
        self.gw = gw
        self.key = key or ec_key()
        self.session = requests.Session()
        self.session.trust_env = False
        self.session.verify = str(gw.root_pem)
        self.directory: dict[str, Any] = self.session.get(gw.directory_url, timeout=10).json()
        self.kid: str | None = None

    def nonce(self) -> str:
        resp = self.session.head(self.directory["newNonce"], timeout=10)
        return str(resp.headers["Replay-Nonce"])

    def sign(
        self,
        url: str,
        payload: Any,
        *,
        key: josepy.JWK | None = None,
        use_kid: bool | None = None,
        nonce: str | bool | None = True,
        extra: dict[str, Any] | None = None,
        alg: str | None = None,
    ) -> dict[str, str]:
        key = key or self.key
        header: dict[str, Any] = {"alg": alg or self.alg_name(key), "url": url}
        if nonce is True:
            header["nonce"] = self.nonce()
        elif isinstance(nonce, str):
            header["nonce"] = nonce
        if use_kid if use_kid is not None else self.kid is not None:
            header["kid"] = self.kid
        else:
            header["jwk"] = self.public_jwk(key)
        header.update(extra or {})
        protected = b64(json.dumps(header).encode())
        body = "" if payload is None else b64(json.dumps(payload).encode())
        sig = self.signature(key, f"{protected}.{body}".encode())
        return {"protected": protected, "payload": body, "signature": b64(sig)}

    # The three key-specific steps of `sign`, apart so a subclass can sign with another kind
    # of key. The signature always follows the key, whatever `alg` the header claims.

    def alg_name(self, key: josepy.JWK) -> str:
        return str(alg_for(key).name)

    def public_jwk(self, key: josepy.JWK) -> dict[str, Any]:
        return dict(key.public_key().to_partial_json())

    def signature(self, key: josepy.JWK, signing_input: bytes) -> bytes:
        return bytes(josepy.JWASignature.from_json(alg_for(key).name).sign(key.key, signing_input))

    def post(
        self,
        url: str,
        payload: Any = None,
        *,
        content_type: str = "application/jose+json",
        body: Any = None,
        **sign_kwargs: Any,
    ) -> requests.Response:
        jws = body if body is not None else self.sign(url, payload, **sign_kwargs)
        data = jws if isinstance(jws, bytes) else json.dumps(jws).encode()
        return self.session.post(url, data=data, headers={"Content-Type": content_type}, timeout=30)

    def create_account(self, payload: dict[str, Any] | None = None) -> requests.Response:
        resp = self.post(
            self.directory["newAccount"], payload or {"termsOfServiceAgreed": True}, use_kid=False
        )
        if resp.status_code in (200, 201):
            self.kid = resp.headers["Location"]
        return resp
