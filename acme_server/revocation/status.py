"""A certificate's revocation status as relying parties see it, read from the store."""

from __future__ import annotations

from cryptography import x509

from acme_server.revocation.ocsp import Status
from acme_server.store import certificates as cert_store
from acme_server.store.certificates import StoredCertificate
from acme_server.store.database import Database


def leaf_aki(stored: StoredCertificate) -> bytes | None:
    """The authority key identifier of a stored certificate's leaf (its issuer's key)."""
    leaf = x509.load_pem_x509_certificate(stored.chain_pem.encode())
    try:
        aki = leaf.extensions.get_extension_for_class(x509.AuthorityKeyIdentifier).value
    except x509.ExtensionNotFound:
        return None
    return aki.key_identifier


async def find(db: Database, issuer_key_id: bytes, serial: int) -> StoredCertificate | None:
    """The certificate `serial` issued under `issuer_key_id`, or None (also for another
    issuer's serial, e.g. one of a retired intermediate)."""
    if serial <= 0:
        return None
    hex_serial = format(serial, "x")
    stored = await db.read(lambda conn: cert_store.by_serial(conn, hex_serial))
    if stored is None or leaf_aki(stored) != issuer_key_id:
        return None
    return stored


async def status_of(db: Database, issuer_key_id: bytes, serial: int) -> Status:
    stored = await find(db, issuer_key_id, serial)
    if stored is None:
        return Status(known=False)
    return Status(known=True, revoked_at=stored.revoked_at, reason=stored.revocation_reason)
