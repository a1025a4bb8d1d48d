"""revokeCert (RFC 8555 7.6) with the seed product's rules: who may revoke, and why."""

from __future__ import annotations

import time
from datetime import UTC, datetime
from typing import Any

import josepy
import pytest
import requests
from cryptography import x509
from cryptography.hazmat.primitives import serialization

from tests.gateway_proc import GatewayProcess
from tests.infra.bind import BindServer
from tests.protocol.acme_client import b64, ec_key
from tests.protocol.support import Acme, assert_acme_headers, assert_problem, new_account, unique


@pytest.fixture
def acme(gateway: GatewayProcess) -> Acme:
    return new_account(gateway)


def _der(cert: x509.Certificate) -> str:
    return b64(cert.public_bytes(serialization.Encoding.DER))


def _revoke(
    client: Acme, cert: x509.Certificate, reason: int | None = None, **sign: Any
) -> requests.Response:
    payload: dict[str, Any] = {"certificate": _der(cert)}
    if reason is not None:
        payload["reason"] = reason
    return client.post(client.directory["revokeCert"], payload, **sign)


def test_revoke_by_issuing_account(acme: Acme) -> None:
    cert, _, _ = acme.issue([unique("r")])
    resp = _revoke(acme, cert, 4)
    assert resp.status_code == 200, resp.text
    assert_acme_headers(resp)
    assert_problem(_revoke(acme, cert), "alreadyRevoked", 400, "already revoked")


def test_revoke_by_unrelated_account_refused(acme: Acme) -> None:
    cert, _, _ = acme.issue([unique("r")])
    other = new_account(acme.gw)
    assert_problem(_revoke(other, cert), "unauthorized", 403, "neither issued this certificate")
    assert _revoke(acme, cert).status_code == 200  # still revocable by its owner


def test_revoke_by_account_with_authorizations(acme: Acme) -> None:
    names = [unique("a"), unique("b")]
    cert, _, _ = acme.issue(names)
    other = new_account(acme.gw)
    other.ready_order(names[:1])
    doc = assert_problem(_revoke(other, cert), "unauthorized", 403, "missing")
    assert names[1] in doc["detail"] and names[0] not in doc["detail"]
    other.ready_order(names[1:])
    resp = _revoke(other, cert, 5)
    assert resp.status_code == 200, resp.text


def test_revoke_with_certificate_key(acme: Acme) -> None:
    cert, cert_key, _ = acme.issue([unique("k")])
    signer = Acme(acme.gw, josepy.JWKEC(key=cert_key))
    resp = _revoke(signer, cert, 1, use_kid=False)
    assert resp.status_code == 200, resp.text
    assert_problem(_revoke(acme, cert), "alreadyRevoked", 400)


def test_revoke_with_unrelated_jwk_refused(acme: Acme) -> None:
    cert, _, _ = acme.issue([unique("u")])
    stranger = Acme(acme.gw, ec_key())
    assert_problem(
        _revoke(stranger, cert, use_kid=False), "unauthorized", 403, "not the certificate's key"
    )
    # Even the issuing account's key is refused when sent as jwk: only kid names the account.
    assert_problem(
        _revoke(acme, cert, use_kid=False), "unauthorized", 403, "not the certificate's key"
    )


@pytest.fixture(scope="module")
def issued(gateway: GatewayProcess) -> tuple[Acme, x509.Certificate]:
    """One certificate and its owner, for cases that must revoke nothing."""
    owner = new_account(gateway)
    return owner, owner.issue([unique("reason")])[0]


@pytest.mark.parametrize("reason", [2, 6, 7, 8, 9, 10, -1, "1", True])
def test_bad_revocation_reason(issued: tuple[Acme, x509.Certificate], reason: Any) -> None:
    owner, cert = issued
    resp = owner.post(owner.directory["revokeCert"], {"certificate": _der(cert), "reason": reason})
    assert_problem(resp, "badRevocationReason", 400, "not allowed")


def test_revoke_unknown_certificate(acme: Acme) -> None:
    cert, _, _ = acme.issue([unique("z")])
    foreign = x509.load_pem_x509_certificate(acme.gw.root_pem.read_bytes())
    assert_problem(_revoke(acme, foreign), "malformed", 404, "not issued by this server")
    resp = acme.post(acme.directory["revokeCert"], {"certificate": b64(b"junk")})
    assert_problem(resp, "malformed", 400, "not a DER X.509 certificate")
    assert cert is not None


def test_revoked_certificate_still_downloadable(acme: Acme) -> None:
    names = [unique("d")]
    cert, _, chain = acme.issue(names)
    assert _revoke(acme, cert, 0).status_code == 200
    orders = acme.get(acme.get(acme.account).json()["orders"]).json()["orders"]
    cert_url = acme.get(orders[-1]).json()["certificate"]
    again = acme.get(cert_url)
    assert again.status_code == 200 and again.text == chain


def test_expired_certificate_cannot_be_revoked(
    tmp_path_factory: pytest.TempPathFactory, bind_server: BindServer
) -> None:
    """Rule one: only a still-valid certificate may be revoked (own server, 3 s leaves)."""
    server = GatewayProcess(
        tmp_path_factory.mktemp("gw-short-validity"),
        dns_resolvers=(bind_server.resolver_address,),
        extra_args=("--cert-validity", "3s"),
    ).start()
    try:
        acme = new_account(server)
        cert, _, _ = acme.issue([unique("exp")])
        wait = (cert.not_valid_after_utc - datetime.now(UTC)).total_seconds() + 0.5
        time.sleep(max(wait, 0))
        assert_problem(_revoke(acme, cert), "unauthorized", 403, "expired")
    finally:
        server.stop()
