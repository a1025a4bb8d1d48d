"""The HTTPS serving certificate: a leaf from our own CA, kept in `<data_dir>/tls/`.

Reused across restarts while its names match and more than a third of its lifetime is left,
so clients that pinned nothing but the root never notice.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Protocol

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.types import CertificatePublicKeyTypes

from acme_server.ca.constraints import of_certificate, permits
from acme_server.ca.errors import CAConfigError
from acme_server.ca.keys import atomic_write, private_key_pem, same_public_key
from acme_server.ca.locking import file_lock


class _Issued(Protocol):
    @property
    def chain_pem(self) -> str: ...


class Issuer(Protocol):
    """What this module needs of the CA (`authority.CertificateAuthority`), named here so the
    import goes one way only: authority -> serving."""

    @property
    def issuer_certificate(self) -> x509.Certificate: ...

    def issued_by_us(self, cert: x509.Certificate) -> bool: ...

    def issue_for_key(
        self, public_key: CertificatePublicKeyTypes, names: Sequence[str], *, validity: timedelta
    ) -> _Issued: ...


CERT_FILE = "server.crt"
KEY_FILE = "server.key"


def normalise_names(names: list[str]) -> list[str]:
    """Lower-cased DNS names without a trailing dot, IPs in canonical form, de-duplicated."""
    out: list[str] = []
    for name in names:
        try:
            value = str(ipaddress.ip_address(name.strip("[]")))
        except ValueError:
            value = name.strip().rstrip(".").lower()
        if not value:
            raise ValueError(f"invalid TLS name {name!r}")
        out.append(value)
    return list(dict.fromkeys(out))


def _san_set(cert: x509.Certificate) -> set[str] | None:
    try:
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return None
    values = {str(v).lower() for v in san.get_values_for_type(x509.DNSName)}
    values |= {str(v) for v in san.get_values_for_type(x509.IPAddress)}
    return values


def _reusable(ca: Issuer, cert_path: Path, key_path: Path, names: list[str]) -> bool:
    if not (cert_path.exists() and key_path.exists()):
        return False
    try:
        leaf = x509.load_pem_x509_certificates(cert_path.read_bytes())[0]
        key = serialization.load_pem_private_key(key_path.read_bytes(), password=None)
    except (ValueError, TypeError):
        return False
    if not ca.issued_by_us(leaf) or not same_public_key(key.public_key(), leaf.public_key()):
        return False
    if _san_set(leaf) != set(names):
        return False
    lifetime = leaf.not_valid_after_utc - leaf.not_valid_before_utc
    return leaf.not_valid_after_utc - datetime.now(UTC) > lifetime / 3


def ensure(ca: Issuer, tls_dir: Path, names: list[str], validity: timedelta) -> tuple[Path, Path]:
    wanted = normalise_names(names)
    if not wanted:
        raise ValueError("the serving certificate needs at least one name")
    constraints = of_certificate(ca.issuer_certificate)
    outside = [n for n in wanted if not permits(constraints, n)]
    if outside:
        raise CAConfigError(
            f"the serving certificate names {', '.join(outside)} are outside the CA's name "
            "constraints (a constrained built-in CA signs no IP address): pass --tls-name with names inside "
            "--ca-permitted-domain, or bring your own --tls-cert/--tls-key"
        )
    cert_path, key_path = tls_dir / CERT_FILE, tls_dir / KEY_FILE
    with file_lock(tls_dir / ".lock"):
        if not _reusable(ca, cert_path, key_path, wanted):
            key = ec.generate_private_key(ec.SECP256R1())
            issued = ca.issue_for_key(key.public_key(), wanted, validity=validity)
            # Key first: a crash in between leaves a mismatch that the next start repairs.
            atomic_write(key_path, private_key_pem(key), 0o600)
            atomic_write(cert_path, issued.chain_pem.encode("ascii"), 0o644)
    return cert_path, key_path
