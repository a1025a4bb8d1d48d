"""Revocation building blocks without a server: CRL, OCSP responses, the delegated
responder and its rotation, ARI certIDs and windows, the serve flags."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509 import ocsp as x509_ocsp
from cryptography.x509.oid import AuthorityInformationAccessOID, ExtendedKeyUsageOID

from acme_server.ca import CertificateAuthority
from acme_server.ca.ocsp_responder import ResponderHolder
from acme_server.cli.revocation_options import revocation_settings
from acme_server.domain.problems import AcmeProblem
from acme_server.revocation import ari, ocsp
from acme_server.store.certificates import StoredCertificate

NOW = datetime(2026, 11, 30, 12, 0, tzinfo=UTC)


@pytest.fixture(scope="module")
def ca(tmp_path_factory: pytest.TempPathFactory) -> CertificateAuthority:
    return CertificateAuthority.load_or_create(
        tmp_path_factory.mktemp("ca"), revocation_base_url="http://crl.example:8080/"
    )


def _leaf(ca: CertificateAuthority) -> x509.Certificate:
    key = ec.generate_private_key(ec.SECP256R1())
    issued = ca.issue_for_key(
        key.public_key(), ["a.example"], validity=timedelta(days=90), revocation=ca._pointers
    )
    return x509.load_pem_x509_certificate(issued.leaf_pem.encode())


def test_leaf_points_at_crl_ocsp_and_issuer(ca: CertificateAuthority, tmp_path: Path) -> None:
    key_id = ca.issuer_key_id.hex()
    csr = (
        x509.CertificateSigningRequestBuilder()
        .subject_name(x509.Name([]))
        .sign(ec.generate_private_key(ec.SECP256R1()), hashes.SHA256())
    )
    leaf = x509.load_pem_x509_certificate(
        ca.issue(csr, ["a.example"], validity=timedelta(days=1)).leaf_pem.encode()
    )
    cdp = leaf.extensions.get_extension_for_class(x509.CRLDistributionPoints)
    assert not cdp.critical
    assert cdp.value[0].full_name == [
        x509.UniformResourceIdentifier(f"http://crl.example:8080/crl/{key_id}.crl")
    ]
    aia = {
        d.access_method: d.access_location.value
        for d in leaf.extensions.get_extension_for_class(x509.AuthorityInformationAccess).value
    }
    assert aia == {
        AuthorityInformationAccessOID.OCSP: "http://crl.example:8080/ocsp",
        AuthorityInformationAccessOID.CA_ISSUERS: f"http://crl.example:8080/issuer/{key_id}.der",
    }
    # Default (no --crl-base-url): no pointers at information nobody serves.
    plain = CertificateAuthority.load_or_create(tmp_path)
    bare = x509.load_pem_x509_certificate(
        plain.issue(csr, ["a.example"], validity=timedelta(days=1)).leaf_pem.encode()
    )
    for ext in (x509.CRLDistributionPoints, x509.AuthorityInformationAccess):
        with pytest.raises(x509.ExtensionNotFound):
            bare.extensions.get_extension_for_class(ext)


def test_crl_entries_reasons_number_aki(ca: CertificateAuthority) -> None:
    der = ca.sign_crl(
        [(11, NOW - timedelta(hours=2), 1), (12, NOW - timedelta(hours=1), 0), (13, NOW, 5)],
        number=7,
        this_update=NOW,
        next_update=NOW + timedelta(days=1),
    )
    crl = x509.load_der_x509_crl(der)
    assert crl.is_signature_valid(ca.issuer_certificate.public_key())  # type: ignore[arg-type]
    assert crl.extensions.get_extension_for_class(x509.CRLNumber).value.crl_number == 7
    aki = crl.extensions.get_extension_for_class(x509.AuthorityKeyIdentifier).value
    assert aki.key_identifier == ca.issuer_key_id
    assert crl.next_update_utc == NOW + timedelta(days=1)
    reasons: dict[int, x509.ReasonFlags | None] = {}
    for entry in crl:
        try:
            reasons[entry.serial_number] = entry.extensions.get_extension_for_class(
                x509.CRLReason
            ).value.reason
        except x509.ExtensionNotFound:
            reasons[entry.serial_number] = None  # RFC 5280: unspecified is left out
    assert reasons == {
        11: x509.ReasonFlags.key_compromise,
        12: None,
        13: x509.ReasonFlags.cessation_of_operation,
    }
    first = crl.get_revoked_certificate_by_serial_number(11)
    assert first is not None and first.revocation_date_utc == NOW - timedelta(hours=2)


def test_responder_certificate_and_rotation(ca: CertificateAuthority) -> None:
    holder = ResponderHolder(ca.issuer_certificate, ca._issuer_key, timedelta(days=3))
    first = holder.current(NOW)
    cert = first.certificate
    cert.verify_directly_issued_by(ca.issuer_certificate)
    eku = cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert list(eku) == [ExtendedKeyUsageOID.OCSP_SIGNING]
    cert.extensions.get_extension_for_class(x509.OCSPNoCheck)
    bc = cert.extensions.get_extension_for_class(x509.BasicConstraints).value
    assert bc.ca is False
    assert holder.current(NOW + timedelta(days=1)) is first  # two thirds left: kept
    later = holder.current(NOW + timedelta(days=2, hours=1))  # under a third: rotated
    assert later is not first
    assert later.certificate.not_valid_after_utc > cert.not_valid_after_utc


def _request(ca: CertificateAuthority, leaf: x509.Certificate, nonce: bytes | None) -> bytes:
    builder = x509_ocsp.OCSPRequestBuilder().add_certificate(
        leaf, ca.issuer_certificate, hashes.SHA1()
    )
    if nonce:
        builder = builder.add_extension(x509.OCSPNonce(nonce), critical=False)
    return builder.build().public_bytes(serialization.Encoding.DER)


def test_ocsp_answers(ca: CertificateAuthority) -> None:
    leaf = _leaf(ca)
    responder = ca.ocsp_responders.current()
    ids = ocsp.IssuerIds(ca.issuer_certificate, responder.certificate)
    request = ocsp.parse_request(_request(ca, leaf, b"nonce-1234567890"))
    assert request is not None and ids.matches(request)

    good = x509_ocsp.load_der_ocsp_response(
        ocsp.sign(request, ocsp.Status(True), responder, validity=timedelta(hours=12)).der
    )
    assert good.certificate_status == x509_ocsp.OCSPCertStatus.GOOD
    assert good.extensions.get_extension_for_class(x509.OCSPNonce).value.nonce == (
        b"nonce-1234567890"
    )
    # Signed by the responder, which the issuer certified.
    public_key = responder.certificate.public_key()
    assert isinstance(public_key, ec.EllipticCurvePublicKey)
    public_key.verify(good.signature, good.tbs_response_bytes, ec.ECDSA(hashes.SHA256()))

    when = NOW - timedelta(minutes=5)
    revoked = x509_ocsp.load_der_ocsp_response(
        ocsp.sign(request, ocsp.Status(True, when, 4), responder, validity=timedelta(hours=12)).der
    )
    assert revoked.certificate_status == x509_ocsp.OCSPCertStatus.REVOKED
    assert revoked.revocation_time_utc == when
    assert revoked.revocation_reason == x509.ReasonFlags.superseded

    unknown = ocsp.sign(request, ocsp.Status(False), responder, validity=timedelta(days=30))
    parsed = x509_ocsp.load_der_ocsp_response(unknown.der)
    assert parsed.certificate_status == x509_ocsp.OCSPCertStatus.UNKNOWN
    # nextUpdate never outlives the responder certificate.
    assert unknown.next_update == responder.certificate.not_valid_after_utc


@pytest.mark.parametrize("der", [b"", b"junk", b"\x30\x00", b"\x30\x03\x02\x01\x01"])
def test_malformed_ocsp_requests(der: bytes) -> None:
    assert ocsp.parse_request(der) is None
    answer = ocsp.unsuccessful(x509_ocsp.OCSPResponseStatus.MALFORMED_REQUEST)
    parsed = x509_ocsp.load_der_ocsp_response(answer.der)
    assert parsed.response_status == x509_ocsp.OCSPResponseStatus.MALFORMED_REQUEST


def test_cert_id_round_trip(ca: CertificateAuthority) -> None:
    leaf = _leaf(ca)
    ident = ari.parse_cert_id(ari.cert_id_of(leaf))
    assert ident == ari.CertId(ca.issuer_key_id, leaf.serial_number)
    # RFC 9773 appendix example: serial 0x00 87 65 43 21 (top bit set: a leading zero).
    assert ari.cert_id(
        b"\x69\x88\x5b\x6b\x87\x46\x40\x41\xe1\xb3\x7b\x84\x7b\xa0\xae\x2c\xde\x01\xc8\xd4",
        0x87654321,
    ) == ("aYhba4dGQEHhs3uEe6CuLN4ByNQ.AIdlQyE")
    for bad in ("", "a", "a.b.c", "aYhb.AAE", "aYhb.gQ", "aYh=.AQ", "aYhb."):
        with pytest.raises(AcmeProblem):
            ari.parse_cert_id(bad)


def _stored(not_before: datetime, days: int, revoked: datetime | None) -> StoredCertificate:
    return StoredCertificate(
        "id", "1", None, "acct", None, ["a.example"], "", "", not_before,
        not_before + timedelta(days=days), revoked, 1 if revoked else None,
    )  # fmt: skip


def test_suggested_window() -> None:
    window = ari.suggested_window(_stored(NOW, 90, None), NOW)
    assert (window.start, window.end) == (NOW + timedelta(days=30), NOW + timedelta(days=60))
    window = ari.suggested_window(_stored(NOW, 90, NOW), NOW + timedelta(days=1))
    assert window.start < window.end <= NOW + timedelta(days=1)


def test_revocation_flags() -> None:
    base = {"crl_validity": "24h", "ocsp_validity": "12h", "ari_retry_after": "6h"}
    off = revocation_settings({**base, "crl_listen": None, "crl_base_url": None})
    assert off["crl_listen"] is None and off["crl_base_url"] is None
    assert off["ari_retry_after"] == timedelta(hours=6)
    derived = revocation_settings({**base, "crl_listen": "127.0.0.1", "crl_base_url": None})
    assert derived["crl_listen"] == ("127.0.0.1", 14080)
    assert derived["crl_base_url"] == "http://127.0.0.1:14080"
    given = revocation_settings(
        {**base, "crl_listen": "0.0.0.0:8080", "crl_base_url": "http://pki.example/"}
    )
    assert given["crl_base_url"] == "http://pki.example"
    with pytest.raises(ValueError, match="plain http"):
        revocation_settings({**base, "crl_listen": None, "crl_base_url": "https://pki.example"})
    with pytest.raises(ValueError, match="needs --crl-base-url"):
        revocation_settings({**base, "crl_listen": "0.0.0.0:8080", "crl_base_url": None})
