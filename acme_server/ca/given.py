"""A CA given by the operator (`--ca-cert` / `--ca-key`), checked before anything is issued.

The certificate file holds the issuing certificate first, then optionally the certificates
above it in order; a self-signed certificate at the end is the root (not served to clients).
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from cryptography import x509
from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from cryptography.hazmat.primitives.asymmetric.types import CertificateIssuerPrivateKeyTypes

from acme_server.ca.errors import CAConfigError
from acme_server.ca.keys import same_public_key


@dataclass(frozen=True)
class GivenCA:
    root: x509.Certificate  # what clients must trust: the last certificate given
    issuer: x509.Certificate
    issuer_key: CertificateIssuerPrivateKeyTypes
    intermediates: tuple[x509.Certificate, ...]  # served after the leaf (no self-signed root)


def is_self_signed(cert: x509.Certificate) -> bool:
    if cert.subject != cert.issuer:
        return False
    try:
        cert.verify_directly_issued_by(cert)
    except (ValueError, TypeError, InvalidSignature):
        return False
    return True


def load_given(cert_path: Path, key_path: Path) -> GivenCA:
    chain = _read_chain(cert_path)
    key = _read_key(key_path)
    issuer = chain[0]
    if not same_public_key(key.public_key(), issuer.public_key()):
        raise CAConfigError(
            f"{key_path} does not match the first certificate in {cert_path} "
            f"({issuer.subject.rfc4514_string()})"
        )
    _check_is_issuing_ca(issuer, cert_path)
    _check_validity(issuer, cert_path)
    for position, (child, parent) in enumerate(itertools.pairwise(chain), start=1):
        try:
            child.verify_directly_issued_by(parent)
        except (ValueError, TypeError, InvalidSignature):
            raise CAConfigError(
                f"{cert_path}: certificate {position} ({child.subject.rfc4514_string()}) is "
                f"not issued by certificate {position + 1} "
                f"({parent.subject.rfc4514_string()}); list the issuing certificate first, "
                "then its issuers in order"
            ) from None
    above = chain[1:-1] if is_self_signed(chain[-1]) else chain[1:]
    return GivenCA(root=chain[-1], issuer=issuer, issuer_key=key, intermediates=tuple(above))


def _read_chain(path: Path) -> list[x509.Certificate]:
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise CAConfigError(f"cannot read CA certificate {path}: {exc.strerror}") from None
    try:
        chain = x509.load_pem_x509_certificates(data)
    except ValueError as exc:
        raise CAConfigError(f"{path}: no valid PEM certificate found ({exc})") from None
    return chain


def _read_key(path: Path) -> CertificateIssuerPrivateKeyTypes:
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise CAConfigError(f"cannot read CA key {path}: {exc.strerror}") from None
    try:
        key = serialization.load_pem_private_key(data, password=None)
    except TypeError:
        raise CAConfigError(f"{path}: the key is encrypted; give an unencrypted PEM key") from None
    except (ValueError, UnsupportedAlgorithm) as exc:
        raise CAConfigError(f"{path}: not a PEM private key ({exc})") from None
    if not isinstance(
        key, rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey | ed25519.Ed25519PrivateKey
    ):
        raise CAConfigError(
            f"{path}: {type(key).__name__} keys cannot sign certificates here "
            "(use RSA, ECDSA or Ed25519)"
        )
    return key


def _check_is_issuing_ca(cert: x509.Certificate, path: Path) -> None:
    try:
        bc = cert.extensions.get_extension_for_class(x509.BasicConstraints).value
    except x509.ExtensionNotFound:
        bc = None
    if bc is None or not bc.ca:
        raise CAConfigError(
            f"{path}: {cert.subject.rfc4514_string()} is not a CA certificate "
            "(basicConstraints CA=TRUE is missing)"
        )
    try:
        ku = cert.extensions.get_extension_for_class(x509.KeyUsage).value
    except x509.ExtensionNotFound:
        ku = None
    if ku is None or not ku.key_cert_sign:
        raise CAConfigError(
            f"{path}: {cert.subject.rfc4514_string()} may not sign certificates "
            "(keyUsage keyCertSign is missing)"
        )


def _check_validity(cert: x509.Certificate, path: Path) -> None:
    now = datetime.now(UTC)
    if now >= cert.not_valid_after_utc:
        raise CAConfigError(f"{path}: the CA certificate expired on {cert.not_valid_after_utc}")
    if now < cert.not_valid_before_utc:
        raise CAConfigError(
            f"{path}: the CA certificate is not valid before {cert.not_valid_before_utc}"
        )
