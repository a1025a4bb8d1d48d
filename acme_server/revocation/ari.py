"""ACME Renewal Information (RFC 9773): certificate identifiers, the suggested renewal
window, and the `replaces` check of newOrder. No HTTP here; handlers call these."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

import sqlalchemy as sa
from cryptography import x509

from acme_server.domain.problems import AcmeProblem, ProblemType
from acme_server.encoding import b64url_decode, b64url_encode
from acme_server.revocation.status import leaf_aki
from acme_server.store import certificates as cert_store
from acme_server.store import orders as order_store
from acme_server.store.certificates import StoredCertificate


@dataclass(frozen=True)
class CertId:
    key_id: bytes
    serial: int


@dataclass(frozen=True)
class Window:
    start: datetime
    end: datetime


def _serial_bytes(serial: int) -> bytes:
    """The DER INTEGER content octets of a positive serial (a leading 0 when the top bit is set)."""
    return serial.to_bytes(serial.bit_length() // 8 + 1, "big")


def cert_id(key_id: bytes, serial: int) -> str:
    """`base64url(AKI keyIdentifier) "." base64url(serial DER content)` (RFC 9773 4.1)."""
    return f"{b64url_encode(key_id)}.{b64url_encode(_serial_bytes(serial))}"


def cert_id_of(cert: x509.Certificate) -> str:
    aki = cert.extensions.get_extension_for_class(x509.AuthorityKeyIdentifier).value
    assert aki.key_identifier is not None
    return cert_id(aki.key_identifier, cert.serial_number)


def parse_cert_id(text: object) -> CertId:
    """A certID as clients send it; `malformed` for anything else, with what is wrong."""
    if not isinstance(text, str) or text.count(".") != 1:
        raise AcmeProblem(
            ProblemType.MALFORMED,
            "a certID is two base64url parts joined by '.': the AKI keyIdentifier and the serial",
        )
    key_part, serial_part = text.split(".")
    try:
        key_id = b64url_decode(key_part)
        serial_der = b64url_decode(serial_part)
    except ValueError as exc:
        raise AcmeProblem(ProblemType.MALFORMED, f"certID is not base64url: {exc}") from None
    if not key_id or not serial_der:
        raise AcmeProblem(ProblemType.MALFORMED, "certID has an empty AKI or serial")
    serial = int.from_bytes(serial_der, "big", signed=True)
    if serial <= 0 or _serial_bytes(serial) != serial_der:
        raise AcmeProblem(
            ProblemType.MALFORMED,
            "certID's serial is not the DER encoding of a positive integer (minimal octets)",
        )
    return CertId(key_id, serial)


def find_certificate(conn: sa.Connection, ident: CertId) -> StoredCertificate | None:
    """The certificate named by a certID: the serial, issued under that key identifier."""
    stored = cert_store.by_serial(conn, format(ident.serial, "x"))
    if stored is None or leaf_aki(stored) != ident.key_id:
        return None
    return stored


def suggested_window(stored: StoredCertificate, now: datetime) -> Window:
    """The middle third of the lifetime (as Let's Encrypt); for a revoked certificate a
    window already past, so clients renew at once (RFC 9773 4.2)."""
    if stored.revoked_at is not None:
        # Past, yet after notBefore: cert-manager (v1.21) ignores a window that starts at or
        # before the certificate's notBefore (it takes it for an older certificate's).
        start = min(max(now - timedelta(hours=1), stored.not_before + timedelta(seconds=1)),
                    now - timedelta(seconds=1))  # fmt: skip
        return Window(start, min(start + timedelta(minutes=30), now))
    third = (stored.not_after - stored.not_before) / 3
    return Window(stored.not_before + third, stored.not_before + 2 * third)


def record_replacement(
    conn: sa.Connection,
    replaces: object,
    *,
    account_id: str,
    names: list[str],
    order_id: str,
    now: datetime,
) -> None:
    """newOrder's `replaces` (RFC 9773 5): the certificate must be ours, issued to this
    account or for names it holds valid authorizations for, and not already replaced."""
    ident = parse_cert_id(replaces)
    stored = find_certificate(conn, ident)
    if stored is None:
        raise AcmeProblem(
            ProblemType.MALFORMED,
            f"replaces names certificate {replaces} that this CA did not issue",
        )
    if not set(stored.names) & set(names):
        raise AcmeProblem(
            ProblemType.MALFORMED,
            f"the order shares no identifier with certificate {replaces}, which it replaces",
        )
    if stored.account_id != account_id:
        held = order_store.valid_authz_names(conn, account_id, now)
        missing = [n for n in stored.names if (n[2:] if n.startswith("*.") else n) not in held]
        if missing:
            raise AcmeProblem(
                ProblemType.UNAUTHORIZED,
                "replaces names a certificate of another account, and this account holds no "
                f"valid authorizations for {', '.join(missing)}",
            )
    if not cert_store.mark_replaced(conn, stored.id, order_id, now):
        raise AcmeProblem(
            ProblemType.ALREADY_REPLACED,
            f"certificate {replaces} is already replaced by another order; "
            "finalize that order or let it expire",
        )
