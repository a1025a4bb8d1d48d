"""The plain-HTTP URLs of revocation information (`--crl-base-url`), one layout for the
extensions written into leaves and the routes that serve them."""

from __future__ import annotations

from acme_server.ca.profile import RevocationPointers

CRL_PATH = "/crl/{key_id}.crl"
OCSP_PATH = "/ocsp"
ISSUER_PATH = "/issuer/{key_id}.der"


class RevocationUrls:
    def __init__(self, base_url: str) -> None:
        self.base = base_url.rstrip("/")

    def crl(self, key_id_hex: str) -> str:
        return self.base + CRL_PATH.format(key_id=key_id_hex)

    @property
    def ocsp(self) -> str:
        return self.base + OCSP_PATH

    def issuer(self, key_id_hex: str) -> str:
        return self.base + ISSUER_PATH.format(key_id=key_id_hex)

    def pointers(self, key_id_hex: str) -> RevocationPointers:
        return RevocationPointers(
            crl_url=self.crl(key_id_hex), ocsp_url=self.ocsp, ca_issuers_url=self.issuer(key_id_hex)
        )
