"""Built-in certificate authority: CA lifecycle, leaf issuance, CSR checks."""

from acme_server.ca.authority import (
    CAConfigError,
    CertificateAuthority,
    IssuedCertificate,
    spki_sha256,
    spki_sha256_of_jwk,
)
from acme_server.ca.csr import CSRError, check_csr, parse_csr

__all__ = [
    "CAConfigError",
    "CSRError",
    "CertificateAuthority",
    "IssuedCertificate",
    "check_csr",
    "parse_csr",
    "spki_sha256",
    "spki_sha256_of_jwk",
]
