"""certbot (5.x, from PyPI) asks our renewalInfo in `certbot renew`: it keeps a fresh
certificate and renews a revoked one at once. certbot 5 sends no `replaces` (lego does)."""

from __future__ import annotations

import re
from pathlib import Path

import josepy
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from acme_server.revocation.ari import cert_id_of
from tests.clients.certbot import Certbot
from tests.gateway_proc import GatewayProcess
from tests.protocol.support import Acme, unique
from tests.revocation.support import revoke


def _leaf(certbot: Certbot, name: str) -> x509.Certificate:
    return x509.load_pem_x509_certificate((certbot.live(name) / "cert.pem").read_bytes())


def test_certbot_renew_follows_ari(gateway: GatewayProcess, tmp_path: Path) -> None:
    names = [unique("cb-ari")]
    certbot = Certbot(gateway, tmp_path)
    certbot.standalone("site", names).check()
    first = _leaf(certbot, "site")
    renew = ("--no-random-sleep-on-renew", "--cert-name", "site")

    result = certbot.run("renew", *renew).check()
    assert "not yet due for renewal" in result.output, result.output
    asked = f"GET /acme/renewal-info/{cert_id_of(first)} "
    assert gateway.log_path.read_text().count(asked) == 1

    key = serialization.load_pem_private_key(
        (certbot.live("site") / "privkey.pem").read_bytes(), password=None
    )
    assert isinstance(key, ec.EllipticCurvePrivateKey)  # certbot's default key type
    revoke(Acme(gateway, josepy.JWKEC(key=key)), first, 1)  # with the certificate's own key
    # certbot waits the Retry-After (6 h) before asking again; forget it, as 6 h passing would.
    conf_path = certbot.home / "config" / "renewal" / "site.conf"
    text = conf_path.read_text()
    assert "[acme_renewal_info]" in text, text  # certbot stored our Retry-After
    conf_path.write_text(re.sub(r"\[acme_renewal_info\][^\[]*", "", text))

    certbot.run("renew", *renew).check()
    assert gateway.log_path.read_text().count(asked) == 2
    second = _leaf(certbot, "site")
    assert second.serial_number != first.serial_number
