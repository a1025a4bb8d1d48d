"""lego v5 uses our ARI (RFC 9773): it asks renewalInfo before renewing, keeps a certificate
whose window is weeks away, renews at once when the window moves to "now" after a
revocation, and sends `replaces` so the old certificate is recorded as replaced."""

from __future__ import annotations

import uuid
from pathlib import Path

import josepy
from cryptography import x509
from cryptography.hazmat.primitives import serialization

from acme_server.revocation.ari import cert_id_of
from tests.clients.test_lego import Lego, _registration, _stored, lego_bin  # noqa: F401
from tests.gateway_proc import GatewayProcess
from tests.protocol.support import Acme
from tests.revocation.support import revoke


def _renewal_info_asked(gateway: GatewayProcess, cert: x509.Certificate) -> int:
    needle = f"GET /acme/renewal-info/{cert_id_of(cert)} "
    return gateway.log_path.read_text().count(needle)


def test_lego_renews_through_ari(
    prereg_gateway: GatewayProcess,
    lego_bin: Path,  # noqa: F811
    tmp_path: Path,
) -> None:
    domain = f"lego-ari-{uuid.uuid4().hex[:6]}.acme.test"
    kid, hmac = _registration(prereg_gateway, domain)
    lego = Lego(lego_bin, prereg_gateway, tmp_path / "lego", kid, hmac)
    http = ("--http", "--http.address", f"127.0.0.1:{prereg_gateway.http01_port}")
    lego.run("run", "--accept-tos", "-c", "web", "-d", domain, *http)
    first = lego.certificate("web")[0]

    # A fresh 90-day certificate: the window is a month away; lego asked and keeps it.
    lego.run("run", "-c", "web", "-d", domain, "--no-random-sleep", *http)
    assert lego.certificate("web")[0].serial_number == first.serial_number
    assert _renewal_info_asked(prereg_gateway, first) >= 1

    # Revoked with the certificate's own key (RFC 8555 7.6): the window is now "now".
    key = serialization.load_pem_private_key(
        (lego.path / "certificates" / "web.key").read_bytes(), password=None
    )
    holder = Acme(prereg_gateway, josepy.JWKEC(key=key))
    revoke(holder, first, 4)

    lego.run("run", "-c", "web", "-d", domain, "--no-random-sleep", *http)
    second = lego.certificate("web")[0]
    assert second.serial_number != first.serial_number
    assert _renewal_info_asked(prereg_gateway, first) >= 2
    old = _stored(prereg_gateway, first.serial_number)
    assert old is not None and old.replaced_by_order_id is not None, "lego sent no replaces"
    new = _stored(prereg_gateway, second.serial_number)
    assert new is not None and new.order_id == old.replaced_by_order_id
