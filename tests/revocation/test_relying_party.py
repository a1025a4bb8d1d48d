"""What a relying party sees, with real openssl against a real server process: leaves point
at CRL, OCSP and the issuer; OCSP and the CRL say `good` before and `revoked` (with reason
and time) after an ACME revokeCert."""

from __future__ import annotations

import base64
from datetime import UTC, datetime, timedelta
from pathlib import Path
from urllib.parse import quote

import pytest
import requests
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.x509 import ocsp
from cryptography.x509.oid import ExtendedKeyUsageOID

from tests.gateway_proc import GatewayProcess
from tests.protocol.support import new_account, unique
from tests.revocation.support import (
    Issued,
    fetch_crl,
    issue,
    ocsp_status,
    revoke,
    run,
    verify_with_crl,
)


def _ocsp_request(cert: Issued, *, nonce: bytes | None = None) -> bytes:
    issuer = x509.load_pem_x509_certificate(cert.issuer_pem.read_bytes())
    builder = ocsp.OCSPRequestBuilder().add_certificate(cert.leaf, issuer, hashes.SHA1())
    if nonce is not None:
        builder = builder.add_extension(x509.OCSPNonce(nonce), critical=False)
    return builder.build().public_bytes(serialization.Encoding.DER)


def _post(
    url: str, der: bytes, content_type: str = "application/ocsp-request"
) -> requests.Response:
    resp = requests.post(url, data=der, headers={"Content-Type": content_type}, timeout=10)
    assert resp.status_code == 200, resp.text
    assert resp.headers["Content-Type"] == "application/ocsp-response"
    return resp


def test_before_and_after_revocation(rev_gateway: GatewayProcess, tmp_path: Path) -> None:
    acme = new_account(rev_gateway)
    cert = issue(acme, [unique("rp")], tmp_path)
    base = f"http://127.0.0.1:{rev_gateway.crl_port}"  # type: ignore[attr-defined]
    assert cert.ocsp_url == f"{base}/ocsp"
    assert cert.crl_url.startswith(f"{base}/crl/") and cert.crl_url.endswith(".crl")

    # caIssuers serves the issuing certificate in DER.
    got = requests.get(cert.ca_issuers_url, timeout=10)
    assert got.status_code == 200 and got.headers["Content-Type"] == "application/pkix-cert"
    assert got.content == x509.load_pem_x509_certificate(cert.issuer_pem.read_bytes()).public_bytes(
        serialization.Encoding.DER
    )

    out = ocsp_status(cert)
    assert f"{cert.leaf_pem}: good" in out, out
    crl_pem = tmp_path / "crl.pem"
    crl_before, _ = fetch_crl(cert.crl_url, crl_pem)
    verified = verify_with_crl(cert, crl_pem)
    assert verified.returncode == 0 and "OK" in verified.stdout, verified.stdout + verified.stderr

    revoked_after = datetime.now(UTC).replace(microsecond=0)
    revoke(acme, cert.leaf, 1)

    out = ocsp_status(cert)
    assert f"{cert.leaf_pem}: revoked" in out, out
    assert "Reason: keyCompromise" in out, out

    crl, _ = fetch_crl(cert.crl_url, crl_pem)
    entry = crl.get_revoked_certificate_by_serial_number(cert.leaf.serial_number)
    assert entry is not None
    assert entry.extensions.get_extension_for_class(x509.CRLReason).value.reason == (
        x509.ReasonFlags.key_compromise
    )
    assert revoked_after - timedelta(seconds=1) <= entry.revocation_date_utc
    assert entry.revocation_date_utc <= datetime.now(UTC)
    number = crl.extensions.get_extension_for_class(x509.CRLNumber).value.crl_number
    before = crl_before.extensions.get_extension_for_class(x509.CRLNumber).value.crl_number
    assert number > before
    verified = verify_with_crl(cert, crl_pem)
    assert verified.returncode != 0
    assert "certificate revoked" in verified.stdout + verified.stderr


def test_crl_shape(rev_gateway: GatewayProcess, tmp_path: Path) -> None:
    acme = new_account(rev_gateway)
    cert = issue(acme, [unique("shape")], tmp_path)
    crl, _ = fetch_crl(cert.crl_url, tmp_path / "crl.pem")
    issuer = x509.load_pem_x509_certificate(cert.issuer_pem.read_bytes())
    assert crl.is_signature_valid(issuer.public_key())  # type: ignore[arg-type]
    assert crl.issuer == issuer.subject
    ski = issuer.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value.digest
    aki = crl.extensions.get_extension_for_class(x509.AuthorityKeyIdentifier).value
    assert aki.key_identifier == ski
    assert crl.next_update_utc is not None
    assert timedelta(hours=23) < crl.next_update_utc - crl.last_update_utc <= timedelta(hours=24)
    # The leaf's CDP and AIA are not critical; the CRL URL names the issuer's key.
    for ext_type in (x509.CRLDistributionPoints, x509.AuthorityInformationAccess):
        assert not cert.leaf.extensions.get_extension_for_class(ext_type).critical
    assert ski.hex() in cert.crl_url
    # A CRL of another issuer is not here.
    assert requests.get(cert.crl_url.replace(ski.hex(), "00" * 20), timeout=10).status_code == 404


def test_ocsp_get_post_nonce_unknown_and_caching(
    rev_gateway: GatewayProcess, tmp_path: Path
) -> None:
    acme = new_account(rev_gateway)
    cert = issue(acme, [unique("o")], tmp_path)
    issuer = x509.load_pem_x509_certificate(cert.issuer_pem.read_bytes())

    # POST with a nonce: echoed; signed by a delegated responder the issuer certified.
    resp = _post(cert.ocsp_url, _ocsp_request(cert, nonce=b"0123456789abcdef"))
    answer = ocsp.load_der_ocsp_response(resp.content)
    assert answer.response_status == ocsp.OCSPResponseStatus.SUCCESSFUL
    assert answer.certificate_status == ocsp.OCSPCertStatus.GOOD
    assert answer.serial_number == cert.leaf.serial_number
    nonce = answer.extensions.get_extension_for_class(x509.OCSPNonce).value.nonce
    assert nonce == b"0123456789abcdef"
    (responder,) = answer.certificates
    responder.verify_directly_issued_by(issuer)
    eku = responder.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert list(eku) == [ExtendedKeyUsageOID.OCSP_SIGNING]
    responder.extensions.get_extension_for_class(x509.OCSPNoCheck)
    assert (
        answer.responder_key_hash
        == responder.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value.digest
    )
    assert answer.next_update_utc is not None
    max_age = int(resp.headers["Cache-Control"].split("max-age=")[1].split(",")[0])
    expected = (answer.next_update_utc - datetime.now(UTC)).total_seconds()
    assert abs(max_age - expected) <= 5, (max_age, expected)
    assert "Last-Modified" in resp.headers and "Expires" in resp.headers

    # GET (RFC 6960 A.1), no nonce: same status, URL-encoded base64 in the path.
    encoded = base64.b64encode(_ocsp_request(cert)).decode()
    got = requests.get(f"{cert.ocsp_url}/{quote(encoded, safe='')}", timeout=10)
    assert got.status_code == 200
    answer = ocsp.load_der_ocsp_response(got.content)
    assert answer.certificate_status == ocsp.OCSPCertStatus.GOOD
    with pytest.raises(x509.ExtensionNotFound):
        answer.extensions.get_extension_for_class(x509.OCSPNonce)

    # A serial this CA never issued: unknown.
    never = (
        ocsp.OCSPRequestBuilder()
        .add_certificate_by_hash(
            answer.issuer_name_hash,
            answer.issuer_key_hash,
            x509.random_serial_number(),
            hashes.SHA1(),
        )
        .build()
        .public_bytes(serialization.Encoding.DER)
    )
    answer = ocsp.load_der_ocsp_response(_post(cert.ocsp_url, never).content)
    assert answer.certificate_status == ocsp.OCSPCertStatus.UNKNOWN

    # SHA-256 CertIDs are answered too.
    sha256 = (
        ocsp.OCSPRequestBuilder()
        .add_certificate(cert.leaf, issuer, hashes.SHA256())
        .build()
        .public_bytes(serialization.Encoding.DER)
    )
    answer = ocsp.load_der_ocsp_response(_post(cert.ocsp_url, sha256).content)
    assert answer.certificate_status == ocsp.OCSPCertStatus.GOOD


@pytest.mark.parametrize(
    ("body", "content_type"),
    [
        (b"not an OCSP request", "application/ocsp-request"),
        (b"", "application/ocsp-request"),
        (b"\x30\x03\x02\x01\x01", "application/ocsp-request"),
        (b"0" * 9000, "application/ocsp-request"),
    ],
)
def test_ocsp_malformed(rev_gateway: GatewayProcess, body: bytes, content_type: str) -> None:
    url = f"http://127.0.0.1:{rev_gateway.crl_port}/ocsp"  # type: ignore[attr-defined]
    answer = ocsp.load_der_ocsp_response(_post(url, body, content_type).content)
    assert answer.response_status == ocsp.OCSPResponseStatus.MALFORMED_REQUEST
    got = requests.get(f"{url}/%%%not-base64", timeout=10)
    assert got.status_code == 200
    answer = ocsp.load_der_ocsp_response(got.content)
    assert answer.response_status == ocsp.OCSPResponseStatus.MALFORMED_REQUEST


def test_ocsp_for_another_issuer_is_unauthorized(
    rev_gateway: GatewayProcess, tmp_path: Path
) -> None:
    acme = new_account(rev_gateway)
    cert = issue(acme, [unique("x")], tmp_path)
    request = (
        ocsp.OCSPRequestBuilder()
        .add_certificate_by_hash(b"\x01" * 20, b"\x02" * 20, cert.leaf.serial_number, hashes.SHA1())
        .build()
        .public_bytes(serialization.Encoding.DER)
    )
    answer = ocsp.load_der_ocsp_response(_post(cert.ocsp_url, request).content)
    assert answer.response_status == ocsp.OCSPResponseStatus.UNAUTHORIZED


def test_openssl_verify_downloads_the_crl(rev_gateway: GatewayProcess, tmp_path: Path) -> None:
    """`openssl verify -crl_download` follows the leaf's CDP itself, as a relying party does."""
    acme = new_account(rev_gateway)
    cert = issue(acme, [unique("dl")], tmp_path)
    args = ("verify", "-crl_check", "-crl_download", "-CAfile", str(cert.root_pem))
    ok = run(*args, "-untrusted", str(cert.issuer_pem), str(cert.leaf_pem))
    assert ok.returncode == 0, ok.stdout + ok.stderr
    revoke(acme, cert.leaf, 4)
    bad = run(*args, "-untrusted", str(cert.issuer_pem), str(cert.leaf_pem))
    assert bad.returncode != 0 and "certificate revoked" in bad.stdout + bad.stderr
