"""Building a CRL (RFC 5280 section 5): pure, so it may run on an executor thread."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.types import CertificateIssuerPrivateKeyTypes

from acme_server.ca.keys import signature_hash
from acme_server.ca.profile import issuer_key_id

# RFC 5280 5.3.1 codes by number (ACME's revokeCert reasons are the same numbers).
REASONS: dict[int, x509.ReasonFlags] = {
    0: x509.ReasonFlags.unspecified,
    1: x509.ReasonFlags.key_compromise,
    2: x509.ReasonFlags.ca_compromise,
    3: x509.ReasonFlags.affiliation_changed,
    4: x509.ReasonFlags.superseded,
    5: x509.ReasonFlags.cessation_of_operation,
    6: x509.ReasonFlags.certificate_hold,
    8: x509.ReasonFlags.remove_from_crl,
    9: x509.ReasonFlags.privilege_withdrawn,
    10: x509.ReasonFlags.aa_compromise,
}


def reason_flag(code: int | None) -> x509.ReasonFlags | None:
    """The CRL/OCSP reason for an ACME reason code; None for 0 (RFC 5280 5.3.1: an
    unspecified reason SHOULD be conveyed by omitting the extension)."""
    if not code:
        return None
    return REASONS.get(code)


def build_crl(
    issuer: x509.Certificate,
    issuer_key: CertificateIssuerPrivateKeyTypes,
    entries: Iterable[tuple[int, datetime, int | None]],
    *,
    number: int,
    this_update: datetime,
    next_update: datetime,
) -> bytes:
    """DER CRL v2 signed by `issuer`: CRL number, AKI, one entry per (serial, time, reason)."""
    builder = (
        x509.CertificateRevocationListBuilder()
        .issuer_name(issuer.subject)
        .last_update(this_update)
        .next_update(next_update)
        .add_extension(x509.CRLNumber(number), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier(issuer_key_id(issuer), None, None), critical=False
        )
    )
    for serial, revoked_at, reason in entries:
        entry = x509.RevokedCertificateBuilder().serial_number(serial).revocation_date(revoked_at)
        flag = reason_flag(reason)
        if flag is not None:
            entry = entry.add_extension(x509.CRLReason(flag), critical=False)
        builder = builder.add_revoked_certificate(entry.build())
    crl = builder.sign(issuer_key, signature_hash(issuer_key))
    return crl.public_bytes(serialization.Encoding.DER)
