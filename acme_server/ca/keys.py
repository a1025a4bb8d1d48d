"""Key helpers shared by the CA, the CSR checks and JOSE: the RSA size policy, the SPKI
fingerprint, signature hashes, key files."""

from __future__ import annotations

import contextlib
import hashlib
import os
import secrets
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed448, ed25519
from cryptography.hazmat.primitives.asymmetric.types import CertificateIssuerPrivateKeyTypes

# One RSA size policy for account keys (JWK) and certificate keys (CSR).
RSA_MIN_BITS = 2048
RSA_MAX_BITS = 8192


def spki_sha256(public_key: Any) -> str:
    """Hex SHA-256 of the DER SubjectPublicKeyInfo: a key identity independent of encoding."""
    der = public_key.public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return hashlib.sha256(der).hexdigest()


def spki_sha256_of_jwk(jwk: Any) -> str:
    """SPKI hash of a josepy JWK (its `.key` may be a private or a wrapped public key)."""
    key = jwk.key
    if hasattr(key, "private_bytes"):
        key = key.public_key()
    return spki_sha256(key)


def signature_hash(
    key: CertificateIssuerPrivateKeyTypes,
) -> hashes.SHA256 | hashes.SHA384 | hashes.SHA512 | None:
    """The hash to sign with: matched to the curve strength; None for EdDSA (hash built in)."""
    if isinstance(key, ec.EllipticCurvePrivateKey):
        size = key.curve.key_size
        if size > 384:
            return hashes.SHA512()
        if size > 256:
            return hashes.SHA384()
        return hashes.SHA256()
    if isinstance(key, ed25519.Ed25519PrivateKey | ed448.Ed448PrivateKey):
        return None
    return hashes.SHA256()


def same_public_key(a: Any, b: Any) -> bool:
    """True when two public keys are the same key (compared as DER SPKI)."""
    return spki_sha256(a) == spki_sha256(b)


def private_key_pem(key: CertificateIssuerPrivateKeyTypes) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def atomic_write(path: Path, data: bytes, mode: int) -> None:
    """Write `data` to `path` so readers see either the old file or the whole new one.

    The temporary file is created with O_EXCL and its final mode, so a private key is never
    readable by others, not even for a moment.
    """
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
        raise
    dir_fd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)
