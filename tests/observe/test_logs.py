"""Structured logs (issue 14 item 3): a real server process with `--log-level debug
--log-format json` runs a whole ACME flow with EAB (account, order, http-01, finalize,
download, revocation, and a refused binding). Then every line of its log must be JSON,
request lines carry their request ID (the one the client got in `X-Request-Id`) and the
account, order and registration, the access log has one line per request, and no secret
the flow created or the server holds appears in any line, in any usual spelling."""

from __future__ import annotations

import base64
import json
import re
import sqlite3
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import josepy
import pytest
import requests
from cryptography import x509
from cryptography.hazmat.primitives import serialization

from tests.gateway_proc import GatewayProcess
from tests.infra.bind import BindServer
from tests.observe.support import LoggingGateway
from tests.protocol.acme_client import b64, make_csr
from tests.protocol.support import Acme, eab_binding, unique

REQUEST_ID = re.compile(r"^[0-9a-f]{16}$")


class RecordingAcme(Acme):
    """Keeps every JWS signature it made and every request ID the server gave back."""

    def __init__(self, gw: GatewayProcess) -> None:
        self.signatures: list[str] = []
        self.request_ids: list[tuple[str, int]] = []  # (request ID, status)
        super().__init__(gw)

    def signature(self, key: josepy.JWK, signing_input: bytes) -> bytes:
        sig = super().signature(key, signing_input)
        self.signatures.append(b64(sig))
        return sig

    def post(self, url: str, payload: Any = None, **kwargs: Any) -> requests.Response:
        resp = super().post(url, payload, **kwargs)
        self.request_ids.append((resp.headers["X-Request-Id"], resp.status_code))
        return resp


@pytest.fixture(scope="module")
def flow(
    tmp_path_factory: pytest.TempPathFactory, bind_server: BindServer
) -> Iterator[dict[str, Any]]:
    """Run the flow once; the tests read what it left behind."""
    gw = LoggingGateway(
        tmp_path_factory.mktemp("gw-logs"),
        log_level="debug",
        log_format="json",
        account_creation="pre-registered",
        workers=2,
        dns_resolvers=(bind_server.resolver_address,),
    )
    gw.start()
    try:
        yield _run_flow(gw)
    finally:
        gw.stop()


def _run_flow(gw: LoggingGateway) -> dict[str, Any]:
    reg = gw.create_registration("obs-logs", "--any-domain")
    acme = RecordingAcme(gw)
    binding = eab_binding(
        str(reg["kid"]), str(reg["hmac_key"]), acme.jwk(), acme.directory["newAccount"]
    )
    resp = acme.create_account({"termsOfServiceAgreed": True, "externalAccountBinding": binding})
    assert resp.status_code == 201, resp.text
    # A refused binding too: the server computes a MAC with the key here as well.
    other = RecordingAcme(gw)
    wrong = eab_binding(str(reg["kid"]), b64(b"x" * 32), other.jwk(), acme.directory["newAccount"])
    refused = other.create_account({"termsOfServiceAgreed": True, "externalAccountBinding": wrong})
    assert refused.status_code == 403, refused.text

    names = [unique("logs")]
    order_url, order = acme.ready_order(names)
    assert order["status"] == "ready", order
    key_authorizations = [
        f"{c['token']}.{acme.key_thumbprint()}"
        for _, authz in acme.authorizations(order)
        for c in authz["challenges"]
    ]
    csr_pem, cert_key = make_csr(names)
    assert acme.finalize(order, csr_pem).status_code == 200
    order = acme.wait(order_url, {"valid", "invalid"})
    assert order["status"] == "valid", order
    chain = acme.get(order["certificate"])
    assert chain.status_code == 200, chain.text
    leaf = x509.load_pem_x509_certificate(chain.content)
    der = leaf.public_bytes(serialization.Encoding.DER)
    revoked = acme.post(acme.directory["revokeCert"], {"certificate": b64(der), "reason": 4})
    assert revoked.status_code == 200, revoked.text
    gw.stop()  # flush and close the log: everything below reads a finished file
    return {
        "gw": gw,
        "reg": reg,
        "acme": acme,
        "other": other,
        "order_id": order_url.rsplit("/", 1)[1],
        "account_id": acme.account.rsplit("/", 1)[1],
        "secrets": _secrets(gw, reg, acme, other, cert_key, binding, key_authorizations),
    }


def _key_spellings(private_key: Any) -> list[str]:
    """A private key as PEM lines, base64/base64url/hex of its DER, and its raw numbers."""
    der = private_key.private_bytes(
        serialization.Encoding.DER,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    pem = private_key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    ).decode()
    out = [line for line in pem.splitlines() if "PRIVATE KEY" not in line and len(line) >= 40]
    out += [base64.b64encode(der).decode()[:60], b64(der)[:60], der.hex()[:64]]
    numbers = private_key.private_numbers()
    secret_int = getattr(numbers, "private_value", None) or getattr(numbers, "d", None)
    assert secret_int, "an EC or RSA key"
    out += [str(secret_int)[:40], format(secret_int, "x")[:40]]
    return out


def _pem_file_keys(data_dir: Path) -> list[Any]:
    """Every private key the server keeps under its data dir (CA, OCSP signer, TLS)."""
    keys = []
    for path in sorted(data_dir.rglob("*")):
        if path.is_file() and b"PRIVATE KEY" in path.read_bytes()[:200]:
            keys.append(serialization.load_pem_private_key(path.read_bytes(), password=None))
    assert len(keys) >= 3, "root, intermediate and serving keys at least"
    return keys


def _secrets(
    gw: LoggingGateway,
    reg: dict[str, Any],
    acme: RecordingAcme,
    other: RecordingAcme,
    cert_key: Any,
    binding: dict[str, str],
    key_authorizations: list[str],
) -> dict[str, str]:
    """label -> text that must appear in no log line."""
    hmac_key = str(reg["hmac_key"])
    raw = base64.urlsafe_b64decode(hmac_key + "=" * (-len(hmac_key) % 4))
    found: dict[str, str] = {
        "hmac key": hmac_key,
        "hmac key (base64)": base64.b64encode(raw).decode().rstrip("="),
        "hmac key (hex)": raw.hex(),
        "EAB MAC": binding["signature"],
    }
    with sqlite3.connect(gw.data_dir / "acme-gateway.sqlite3") as db:
        (nonce_key,) = db.execute("SELECT value FROM meta WHERE key = 'nonce_hmac_key'").fetchone()
    found["nonce MAC key"] = nonce_key
    found["nonce MAC key (base64)"] = base64.b64encode(bytes.fromhex(nonce_key)).decode()[:40]
    for i, ka in enumerate(key_authorizations):
        found[f"key authorization {i}"] = ka
    for i, sig in enumerate(acme.signatures + other.signatures):
        found[f"JWS signature {i}"] = sig
    keys = {"account key": acme.key.key, "other account key": other.key.key, "leaf key": cert_key}
    keys |= {f"server key {i}": k for i, k in enumerate(_pem_file_keys(gw.data_dir))}
    for label, key in keys.items():
        for j, text in enumerate(_key_spellings(key)):
            found[f"{label} #{j}"] = text
    return found


def _records(flow: dict[str, Any]) -> list[dict[str, Any]]:
    records = []
    for line in flow["gw"].log_lines():
        try:
            records.append(json.loads(line))
        except ValueError:
            pytest.fail(f"log line is not JSON: {line!r}")
    return records


def test_no_secret_in_any_log_line(flow: dict[str, Any]) -> None:
    lines = flow["gw"].log_lines()
    assert len(lines) > 30, "the flow must have logged (access log at least)"
    leaked = [label for label, text in flow["secrets"].items() if any(text in ln for ln in lines)]
    assert not leaked, f"secrets in the log: {leaked}"
    assert len(flow["secrets"]) > 50  # the check covered every kind of secret


def test_every_line_is_json_with_level_logger_message(flow: dict[str, Any]) -> None:
    for record in _records(flow):
        assert {"time", "level", "logger", "message"} <= record.keys(), record


def test_access_log_one_line_per_request_with_its_request_id(flow: dict[str, Any]) -> None:
    access = [r for r in _records(flow) if r["logger"] == "acme_server.access"]
    by_id = {r["request_id"]: r for r in access}
    assert len(by_id) == len(access), "a request ID is used once"
    for record in access:
        assert REQUEST_ID.match(record["request_id"]), record
        assert {"method", "route", "path", "status", "duration_ms", "bytes"} <= record.keys()
        assert record["path"].startswith("/") and record["path"] in record["message"], record
        assert "{" in record["route"] or not re.search(r"/[A-Za-z0-9_-]{20,}", record["route"])
    answered = flow["acme"].request_ids + flow["other"].request_ids
    assert len(answered) > 10
    for request_id, status in answered:
        assert request_id in by_id, f"no access line for request {request_id}"
        assert by_id[request_id]["status"] == status


def test_request_lines_carry_account_order_registration(flow: dict[str, Any]) -> None:
    records = _records(flow)
    kid = str(flow["reg"]["kid"])
    issued = [r for r in records if r["message"].startswith("issued serial")]
    assert len(issued) == 1, issued
    assert issued[0]["account"] == flow["account_id"]
    assert issued[0]["order"] == flow["order_id"]
    assert issued[0]["registration"] == kid
    assert REQUEST_ID.match(issued[0]["request_id"])
    order_lines = [
        r
        for r in records
        if r["logger"] == "acme_server.access" and r["route"] == "/acme/order/{order_id}"
    ]
    assert order_lines
    for record in order_lines:
        assert record["order"] == flow["order_id"], record
        assert record["account"] == flow["account_id"], record
        assert record["registration"] == kid, record
