"""The CA generated on first start into `<data_dir>/ca/` and loaded unchanged afterwards.

Layout: root.crt / root.key (self-signed, ~10 years), intermediate.crt / intermediate.key
(the issuing CA, ~5 years), previous/*.crt (retired intermediates, still recognised for
revocation). Everything happens under a file lock, and every file is replaced atomically,
so processes starting together on one data directory end with one CA.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.types import CertificateIssuerPrivateKeyTypes

from acme_server.ca.constraints import NameConstraintsSpec, check_matches, of_certificate
from acme_server.ca.errors import CAConfigError
from acme_server.ca.keys import atomic_write, private_key_pem, same_public_key
from acme_server.ca.locking import file_lock
from acme_server.ca.profile import build_intermediate, build_root

# Replace the intermediate when less than this is left (leaves are clamped to its notAfter).
INTERMEDIATE_RENEW_BEFORE = timedelta(days=365)


@dataclass(frozen=True)
class GeneratedCA:
    root: x509.Certificate
    issuer: x509.Certificate
    issuer_key: CertificateIssuerPrivateKeyTypes
    previous_issuers: tuple[x509.Certificate, ...]


def load_or_create(ca_dir: Path, constraints: NameConstraintsSpec | None = None) -> GeneratedCA:
    """Load the CA in `ca_dir`, creating (or completing, or renewing) it under a lock.

    `constraints`, when given, go into a new root and intermediate; an existing CA must
    already carry exactly them (CAConfigError otherwise). Without them an existing CA is
    used as it is, and a renewed intermediate copies the root's constraints.
    """
    ca_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    with file_lock(ca_dir / ".lock"):
        now = datetime.now(UTC).replace(microsecond=0)
        root, root_key = _load_or_create_root(ca_dir, now, constraints)
        if constraints is not None:
            check_matches(root, constraints, f"the CA in {ca_dir} (root.crt)")
        issuer, issuer_key = _load_or_create_intermediate(ca_dir, root, root_key, now)
        if constraints is not None:
            check_matches(issuer, constraints, f"the CA in {ca_dir} (intermediate.crt)")
        previous = _load_previous(ca_dir)
    return GeneratedCA(root, issuer, issuer_key, previous)


def _read_cert(path: Path) -> x509.Certificate:
    try:
        return x509.load_pem_x509_certificate(path.read_bytes())
    except ValueError as exc:
        raise CAConfigError(f"{path}: not a PEM certificate ({exc})") from None


def _read_key(path: Path) -> CertificateIssuerPrivateKeyTypes:
    try:
        key = serialization.load_pem_private_key(path.read_bytes(), password=None)
    except (ValueError, TypeError) as exc:
        raise CAConfigError(f"{path}: not an unencrypted PEM private key ({exc})") from None
    if not isinstance(key, ec.EllipticCurvePrivateKey):
        raise CAConfigError(f"{path}: expected an ECDSA key, found {type(key).__name__}")
    return key


def _load_or_create_root(
    ca_dir: Path, now: datetime, constraints: NameConstraintsSpec | None
) -> tuple[x509.Certificate, CertificateIssuerPrivateKeyTypes | None]:
    cert_path, key_path = ca_dir / "root.crt", ca_dir / "root.key"
    if cert_path.exists():
        root = _read_cert(cert_path)
        # The root key is needed only to renew the intermediate; its absence is not fatal.
        key = _read_key(key_path) if key_path.exists() else None
        if key is not None and not same_public_key(key.public_key(), root.public_key()):
            raise CAConfigError(f"{key_path} does not belong to {cert_path}")
        return root, key
    # No root certificate yet means nobody can trust this CA yet: (re)create it.
    key = ec.generate_private_key(ec.SECP384R1())
    extension = constraints.extension() if constraints else None
    root = build_root(key, f"acme-gateway Root CA {secrets.token_hex(4)}", now, extension)
    atomic_write(key_path, private_key_pem(key), 0o600)
    atomic_write(cert_path, root.public_bytes(serialization.Encoding.PEM), 0o644)
    return root, key


def _usable_intermediate(
    ca_dir: Path, root: x509.Certificate
) -> tuple[x509.Certificate, CertificateIssuerPrivateKeyTypes] | None:
    cert_path, key_path = ca_dir / "intermediate.crt", ca_dir / "intermediate.key"
    if not (cert_path.exists() and key_path.exists()):
        return None
    cert, key = _read_cert(cert_path), _read_key(key_path)
    if not same_public_key(key.public_key(), cert.public_key()):
        return None  # interrupted renewal: new key written, certificate not yet
    try:
        cert.verify_directly_issued_by(root)
    except (ValueError, TypeError, InvalidSignature):
        raise CAConfigError(f"{cert_path} is not issued by {ca_dir / 'root.crt'}") from None
    return cert, key


def _load_or_create_intermediate(
    ca_dir: Path,
    root: x509.Certificate,
    root_key: CertificateIssuerPrivateKeyTypes | None,
    now: datetime,
) -> tuple[x509.Certificate, CertificateIssuerPrivateKeyTypes]:
    found = _usable_intermediate(ca_dir, root)
    if found is not None:
        cert, key = found
        due = cert.not_valid_after_utc - now < INTERMEDIATE_RENEW_BEFORE
        can_renew = (
            root_key is not None and root.not_valid_after_utc - now > INTERMEDIATE_RENEW_BEFORE
        )
        if not (due and can_renew):
            return found
        _retire(ca_dir, cert)
    if root_key is None:
        raise CAConfigError(
            f"{ca_dir / 'root.key'} is missing: cannot create the issuing intermediate"
        )
    key = ec.generate_private_key(ec.SECP256R1())
    cert = build_intermediate(
        key,
        f"acme-gateway Issuing CA {secrets.token_hex(4)}",
        root,
        root_key,
        now,
        of_certificate(root),  # the root's constraints are the CA's, also after renewal
    )
    atomic_write(ca_dir / "intermediate.key", private_key_pem(key), 0o600)
    atomic_write(ca_dir / "intermediate.crt", cert.public_bytes(serialization.Encoding.PEM), 0o644)
    return cert, key


def _retire(ca_dir: Path, cert: x509.Certificate) -> None:
    previous = ca_dir / "previous"
    previous.mkdir(mode=0o700, exist_ok=True)
    atomic_write(
        previous / f"{cert.serial_number:x}.crt",
        cert.public_bytes(serialization.Encoding.PEM),
        0o644,
    )


def _load_previous(ca_dir: Path) -> tuple[x509.Certificate, ...]:
    previous = ca_dir / "previous"
    if not previous.is_dir():
        return ()
    return tuple(_read_cert(p) for p in sorted(previous.glob("*.crt")))
