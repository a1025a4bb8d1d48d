"""Certificate profiles: what a root, an issuing intermediate and a leaf look like.

Pure functions (no files, no shared state) so issuance is safe from any thread.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from cryptography.hazmat.primitives.asymmetric.types import (
    CertificateIssuerPrivateKeyTypes,
    CertificatePublicKeyTypes,
)
from cryptography.x509.oid import AuthorityInformationAccessOID, ExtendedKeyUsageOID, NameOID

from acme_server.ca.keys import signature_hash

ROOT_LIFETIME = timedelta(days=3653)
INTERMEDIATE_LIFETIME = timedelta(days=1826)
BACKDATE = timedelta(minutes=1)
MAX_CN_LENGTH = 64


def _ca_name(common_name: str) -> x509.Name:
    return x509.Name(
        [
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "acme-gateway"),
            x509.NameAttribute(NameOID.COMMON_NAME, common_name),
        ]
    )


def _ca_key_usage() -> x509.KeyUsage:
    return x509.KeyUsage(
        digital_signature=True,
        content_commitment=False,
        key_encipherment=False,
        data_encipherment=False,
        key_agreement=False,
        key_cert_sign=True,
        crl_sign=True,
        encipher_only=False,
        decipher_only=False,
    )


def _constrained(
    builder: x509.CertificateBuilder, constraints: x509.NameConstraints | None
) -> x509.CertificateBuilder:
    """RFC 5280 4.2.1.10: name constraints MUST be critical."""
    if constraints is None:
        return builder
    return builder.add_extension(constraints, critical=True)


def build_root(
    key: CertificateIssuerPrivateKeyTypes,
    common_name: str,
    now: datetime,
    constraints: x509.NameConstraints | None = None,
) -> x509.Certificate:
    """Self-signed root, path length 1 (one intermediate below it)."""
    name = _ca_name(common_name)
    ski = x509.SubjectKeyIdentifier.from_public_key(key.public_key())
    builder = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - BACKDATE)
        .not_valid_after(now + ROOT_LIFETIME)
        .add_extension(x509.BasicConstraints(ca=True, path_length=1), critical=True)
        .add_extension(_ca_key_usage(), critical=True)
        .add_extension(ski, critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ski), critical=False
        )
    )
    return _constrained(builder, constraints).sign(key, signature_hash(key))


def build_intermediate(
    key: CertificateIssuerPrivateKeyTypes,
    common_name: str,
    issuer_cert: x509.Certificate,
    issuer_key: CertificateIssuerPrivateKeyTypes,
    now: datetime,
    constraints: x509.NameConstraints | None = None,
) -> x509.Certificate:
    """Issuing CA below the root, path length 0 (it signs only leaves)."""
    not_after = min(now + INTERMEDIATE_LIFETIME, issuer_cert.not_valid_after_utc)
    builder = (
        x509.CertificateBuilder()
        .subject_name(_ca_name(common_name))
        .issuer_name(issuer_cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - BACKDATE)
        .not_valid_after(not_after)
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(_ca_key_usage(), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .add_extension(_authority_key_id(issuer_cert), critical=False)
    )
    return _constrained(builder, constraints).sign(issuer_key, signature_hash(issuer_key))


@dataclass(frozen=True)
class RevocationPointers:
    """Where relying parties find a leaf's revocation status and its issuer (plain HTTP)."""

    crl_url: str
    ocsp_url: str
    ca_issuers_url: str

    def extensions(self) -> list[x509.ExtensionType]:
        """CRL distribution point (RFC 5280 4.2.1.13) and AIA (4.2.2.1), both non-critical."""
        point = x509.DistributionPoint(
            full_name=[x509.UniformResourceIdentifier(self.crl_url)],
            relative_name=None,
            reasons=None,
            crl_issuer=None,
        )
        access = [
            x509.AccessDescription(
                AuthorityInformationAccessOID.OCSP, x509.UniformResourceIdentifier(self.ocsp_url)
            ),
            x509.AccessDescription(
                AuthorityInformationAccessOID.CA_ISSUERS,
                x509.UniformResourceIdentifier(self.ca_issuers_url),
            ),
        ]
        return [x509.CRLDistributionPoints([point]), x509.AuthorityInformationAccess(access)]


@dataclass(frozen=True)
class LeafOptions:
    """What a certificate profile changes in a leaf (see acme_server/domain/profiles.py)."""

    server_auth: bool = True
    client_auth: bool = False
    common_name: bool = True
    revocation_info: bool = True  # CRL DP and AIA, when the CA has revocation URLs


def key_type(public_key: Any) -> str:
    """The profile's name for a key's family: rsa, ecdsa, ed25519 (else its class name)."""
    if isinstance(public_key, rsa.RSAPublicKey):
        return "rsa"
    if isinstance(public_key, ec.EllipticCurvePublicKey):
        return "ecdsa"
    if isinstance(public_key, ed25519.Ed25519PublicKey):
        return "ed25519"
    return type(public_key).__name__


def issuer_key_id(issuer_cert: x509.Certificate) -> bytes:
    """The key identifier our leaves, CRLs and OCSP responses name this issuer by (their AKI)."""
    key_id = _authority_key_id(issuer_cert).key_identifier
    assert key_id is not None
    return key_id


def _authority_key_id(issuer_cert: x509.Certificate) -> x509.AuthorityKeyIdentifier:
    """AKI copied from the issuer's SKI (so clients can match it), else derived from its key."""
    try:
        ski = issuer_cert.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value
    except x509.ExtensionNotFound:
        return x509.AuthorityKeyIdentifier.from_issuer_public_key(
            issuer_cert.public_key()  # type: ignore[arg-type]
        )
    return x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ski)


def general_name(name: str) -> x509.GeneralName:
    """An IP literal becomes an iPAddress SAN; anything else (also `*.x`) a dNSName."""
    try:
        return x509.IPAddress(ipaddress.ip_address(name))
    except ValueError:
        return x509.DNSName(name)


def _leaf_key_usage(public_key: Any) -> x509.KeyUsage:
    return x509.KeyUsage(
        digital_signature=True,
        content_commitment=False,
        key_encipherment=isinstance(public_key, rsa.RSAPublicKey),
        data_encipherment=False,
        key_agreement=False,
        key_cert_sign=False,
        crl_sign=False,
        encipher_only=False,
        decipher_only=False,
    )


def build_leaf(
    public_key: CertificatePublicKeyTypes,
    names: Sequence[str],
    issuer_cert: x509.Certificate,
    issuer_key: CertificateIssuerPrivateKeyTypes,
    not_before: datetime,
    not_after: datetime,
    *,
    client_auth: bool = False,
    server_auth: bool = True,
    common_name: bool = True,
    revocation: RevocationPointers | None = None,
) -> x509.Certificate:
    """End-entity TLS certificate for `names` (first name as CN when it fits and
    `common_name`; the certificate profile decides).

    serverAuth only unless `client_auth`: a leaf that may also log in as a TLS client is
    something the operator opts into, not a side effect of getting a server certificate.
    `revocation` adds the CRL distribution point and the AIA (OCSP, caIssuers).
    """
    usages = [ExtendedKeyUsageOID.SERVER_AUTH] if server_auth else []
    if client_auth:
        usages.append(ExtendedKeyUsageOID.CLIENT_AUTH)
    if not usages:
        raise ValueError("a leaf needs serverAuth or clientAuth")
    if not names:
        raise ValueError("a certificate needs at least one name")
    # The CN is the first DNS name; IP addresses live in iPAddress SANs only (RFC 8738,
    # CA/B BRs deprecate them in the CN), so an IP-only leaf has an empty subject.
    first = next((n for n in names if not isinstance(general_name(n), x509.IPAddress)), "")
    subject = (
        x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, first)])
        if common_name and first and len(first) <= MAX_CN_LENGTH
        else x509.Name([])
    )
    builder = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer_cert.subject)
        .public_key(public_key)
        .serial_number(x509.random_serial_number())
        .not_valid_before(not_before)
        .not_valid_after(not_after)
        .add_extension(
            x509.SubjectAlternativeName([general_name(n) for n in names]),
            # RFC 5280 4.2.1.6: critical when the subject is empty.
            critical=len(subject) == 0,
        )
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(_leaf_key_usage(public_key), critical=True)
        .add_extension(
            x509.ExtendedKeyUsage(usages),
            critical=False,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(public_key), critical=False)
        .add_extension(_authority_key_id(issuer_cert), critical=False)
    )
    for extension in revocation.extensions() if revocation else ():
        builder = builder.add_extension(extension, critical=False)
    return builder.sign(issuer_key, signature_hash(issuer_key))
