"""Every URL the server hands out, built from the configured external base URL.

Clients sign the URL they POST to; building all URLs from one base (never from the Host
header) keeps that check exact behind proxies and load balancers.
"""

from __future__ import annotations


class Urls:
    def __init__(self, base_url: str) -> None:
        self.base = base_url.rstrip("/")

    @property
    def directory(self) -> str:
        return f"{self.base}/directory"

    @property
    def new_nonce(self) -> str:
        return f"{self.base}/acme/new-nonce"

    @property
    def new_account(self) -> str:
        return f"{self.base}/acme/new-account"

    @property
    def new_order(self) -> str:
        return f"{self.base}/acme/new-order"

    @property
    def revoke_cert(self) -> str:
        return f"{self.base}/acme/revoke-cert"

    @property
    def key_change(self) -> str:
        return f"{self.base}/acme/key-change"

    @property
    def renewal_info(self) -> str:
        return f"{self.base}/acme/renewal-info"

    @property
    def issuer(self) -> str:
        return f"{self.base}/acme/issuer"

    def account(self, account_id: str) -> str:
        return f"{self.base}/acme/acct/{account_id}"

    def account_id_from_url(self, url: str) -> str | None:
        prefix = f"{self.base}/acme/acct/"
        if url.startswith(prefix) and "/" not in url[len(prefix) :]:
            return url[len(prefix) :] or None
        return None

    def orders(self, account_id: str) -> str:
        return f"{self.base}/acme/acct/{account_id}/orders"

    def order(self, order_id: str) -> str:
        return f"{self.base}/acme/order/{order_id}"

    def finalize(self, order_id: str) -> str:
        return f"{self.base}/acme/order/{order_id}/finalize"

    def authz(self, authz_id: str) -> str:
        return f"{self.base}/acme/authz/{authz_id}"

    def challenge(self, challenge_id: str) -> str:
        return f"{self.base}/acme/chall/{challenge_id}"

    def certificate(self, cert_id: str) -> str:
        return f"{self.base}/acme/cert/{cert_id}"

    def request_url(self, path_qs: str) -> str:
        """The URL a client must have signed for a request to `path_qs`."""
        return self.base + path_qs
