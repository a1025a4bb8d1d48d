"""The delegated OCSP responder certificate (RFC 6960 4.2.2.2): issued by the CA to a key
kept only in memory, so the CA key signs once per rotation instead of once per response.

Each process has its own; relying parties accept any, as all chain to the issuer.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.types import CertificateIssuerPrivateKeyTypes
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from acme_server.ca.keys import signature_hash
from acme_server.ca.profile import BACKDATE, issuer_key_id

RESPONDER_LIFETIME = timedelta(days=4)


@dataclass(frozen=True)
class Responder:
    certificate: x509.Certificate
    key: ec.EllipticCurvePrivateKey

    def due(self, now: datetime) -> bool:
        """Rotate when less than a third of the lifetime is left (responses end before it)."""
        cert = self.certificate
        lifetime = cert.not_valid_after_utc - cert.not_valid_before_utc
        return cert.not_valid_after_utc - now < lifetime / 3


def build_responder(
    issuer: x509.Certificate,
    issuer_key: CertificateIssuerPrivateKeyTypes,
    now: datetime,
    lifetime: timedelta = RESPONDER_LIFETIME,
) -> Responder:
    """A P-256 key and its certificate: id-kp-OCSPSigning and id-pkix-ocsp-nocheck (so
    clients do not ask for the responder's own status), digitalSignature only."""
    key = ec.generate_private_key(ec.SECP256R1())
    not_after = min(now + lifetime, issuer.not_valid_after_utc)
    name = x509.Name(
        [
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "acme-gateway"),
            x509.NameAttribute(NameOID.COMMON_NAME, f"OCSP responder {now:%Y%m%d%H%M%S}"),
        ]
    )
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(issuer.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - BACKDATE)
        .not_valid_after(not_after)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=False,
                crl_sign=False,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.OCSP_SIGNING]), critical=False)
        .add_extension(x509.OCSPNoCheck(), critical=False)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier(issuer_key_id(issuer), None, None), critical=False
        )
        .sign(issuer_key, signature_hash(issuer_key))
    )
    return Responder(cert, key)


class ResponderHolder:
    """The current responder, replaced before it expires; safe from any thread."""

    def __init__(
        self,
        issuer: x509.Certificate,
        issuer_key: CertificateIssuerPrivateKeyTypes,
        lifetime: timedelta = RESPONDER_LIFETIME,
    ) -> None:
        self._issuer = issuer
        self._issuer_key = issuer_key
        self._lifetime = lifetime
        self._lock = threading.Lock()
        self._current: Responder | None = None

    def peek(self) -> Responder | None:
        """The responder made so far, without making or rotating one (for metrics)."""
        return self._current

    def current(self, now: datetime | None = None) -> Responder:
        now = now or datetime.now(UTC)
        with self._lock:
            if self._current is None or self._current.due(now):
                self._current = build_responder(self._issuer, self._issuer_key, now, self._lifetime)
            return self._current
