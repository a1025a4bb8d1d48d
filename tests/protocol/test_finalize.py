"""Finalize and certificate download (RFC 8555 7.4, 7.4.2)."""

from __future__ import annotations

import pytest
import requests
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID

from tests.chains import verify_chain
from tests.gateway_proc import GatewayProcess
from tests.protocol.acme_client import b64, make_csr
from tests.protocol.support import Acme, assert_acme_headers, assert_problem, new_account, unique


@pytest.fixture
def acme(gateway: GatewayProcess) -> Acme:
    return new_account(gateway)


def test_finalize_and_download(acme: Acme) -> None:
    names = [unique("f"), unique("g")]
    url, order = acme.ready_order(names)
    assert order["status"] == "ready"
    # A CSR missing a name, then one with an extra name: badCSR, order stays ready.
    for wrong in ([names[0]], [*names, unique("extra")]):
        csr_pem, _ = make_csr(wrong)
        assert_problem(acme.finalize(order, csr_pem), "badCSR", 400, "do not match the order")
        assert acme.get(url).json()["status"] == "ready"
    csr_pem, _ = make_csr([names[1].upper(), names[0], names[1]])  # case and duplicates ignored
    resp = acme.finalize(order, csr_pem)
    assert resp.status_code == 200, resp.text
    assert_acme_headers(resp)
    assert resp.headers["Location"] == url
    assert resp.json()["status"] in ("processing", "valid")
    done = acme.wait(url, {"valid", "invalid"})
    assert done["status"] == "valid"
    cert = acme.get(done["certificate"])
    assert cert.status_code == 200, cert.text
    assert cert.headers["Content-Type"] == "application/pem-certificate-chain"
    assert_acme_headers(cert)
    up = next(
        p for p in requests.utils.parse_header_links(cert.headers["Link"]) if p["rel"] == "up"
    )
    chain = x509.load_pem_x509_certificates(cert.content)
    assert len(chain) >= 2
    leaf = verify_chain(chain, acme.gw.root_pem.read_bytes(), names)
    eku = leaf.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert ExtendedKeyUsageOID.SERVER_AUTH in eku
    # rel="up" leads to the issuer chain, fetchable with a plain GET.
    issuer = acme.session.get(up["url"], timeout=10)
    assert issuer.status_code == 200
    assert issuer.headers["Content-Type"] == "application/pem-certificate-chain"
    assert x509.load_pem_x509_certificates(issuer.content)[0] == chain[1]
    # Finalizing again: the order is no longer ready.
    assert_problem(acme.finalize(done, csr_pem), "orderNotReady", 403, "order is valid")


def test_csr_with_account_key(acme: Acme) -> None:
    names = [unique("k")]
    url, order = acme.ready_order(names)
    csr_pem, _ = make_csr(names, key=acme.key.key._wrapped)  # the account's private key
    assert_problem(acme.finalize(order, csr_pem), "badCSR", 400, "must not be the account key")
    assert acme.get(url).json()["status"] == "ready"


def test_finalize_when_not_ready(acme: Acme) -> None:
    names = [unique("p")]
    url, order = acme.order(names)
    csr_pem, _ = make_csr(names)
    doc = assert_problem(acme.finalize(order, csr_pem), "orderNotReady", 403, "order is pending")
    assert "ready" in doc["detail"]
    assert acme.get(url).json()["status"] == "pending"


@pytest.mark.parametrize(
    ("key", "detail"),
    [
        (lambda: rsa.generate_private_key(65537, 1024), "too small"),
        (lambda: ec.generate_private_key(ec.SECP521R1()), "not allowed"),
    ],
)
def test_csr_key_policy(acme: Acme, key: object, detail: str) -> None:
    names = [unique("w")]
    url, order = acme.ready_order(names)
    csr_pem, _ = make_csr(names, key=key())  # type: ignore[operator]
    assert_problem(acme.finalize(order, csr_pem), "badCSR", 400, detail)
    assert acme.get(url).json()["status"] == "ready"


def test_csr_garbage(acme: Acme) -> None:
    names = [unique("x")]
    url, order = acme.ready_order(names)
    resp = acme.post(order["finalize"], {"csr": b64(b"definitely not DER")})
    assert_problem(resp, "badCSR", 400, "could not be parsed")
    assert_problem(acme.post(order["finalize"], {"csr": "*not base64*"}), "malformed", 400, "csr")
    assert_problem(acme.post(order["finalize"], {}), "malformed", 400, "csr")
    assert acme.get(url).json()["status"] == "ready"


def test_certificate_of_another_account(acme: Acme) -> None:
    _, _, _ = acme.issue([unique("o")])
    url = acme.get(acme.get(acme.account).json()["orders"]).json()["orders"][-1]
    cert_url = acme.get(url).json()["certificate"]
    other = new_account(acme.gw)
    assert_problem(other.get(cert_url), "malformed", 404, "no such certificate")
    assert_problem(acme.post(cert_url, {}), "malformed", 400, "POST-as-GET")
