"""RFC 8738 IP identifiers with real clients: lego v5 (`-d 127.0.0.1`) and certbot 5
(`--ip-address`), both http-01 on the address itself, with External Account Binding.

Each also checks the refusal without an IP range grant, which a client must show as the
server's rejectedIdentifier.
"""

from __future__ import annotations

import ipaddress
import uuid
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.x509.verification import PolicyBuilder, Store

from tests.clients.certbot import Certbot
from tests.clients.test_lego import Lego, valid_challenges
from tests.gateway_proc import GatewayProcess
from tests.infra.gotools import GoToolError, ensure_lego

LOOP4 = "127.0.0.1"


@pytest.fixture(scope="module")
def lego_bin() -> Path:
    try:
        return ensure_lego()
    except GoToolError as exc:
        pytest.fail(f"cannot build lego:\n{exc}", pytrace=False)


def _registration(gw: GatewayProcess, *grant: str) -> tuple[str, str]:
    reg = gw.create_registration(f"ipc-{uuid.uuid4().hex[:8]}", *grant)
    return str(reg["kid"]), str(reg["hmac_key"])


def _verify_ip_leaf(chain: list[x509.Certificate], root_pem: bytes, address: str) -> None:
    """The chain verifies to our root for the address, whose only SAN is that iPAddress."""
    store = Store(x509.load_pem_x509_certificates(root_pem))
    verifier = (
        PolicyBuilder()
        .store(store)
        .build_server_verifier(x509.IPAddress(ipaddress.ip_address(address)))
    )
    verifier.verify(chain[0], chain[1:])
    san = chain[0].extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert san.get_values_for_type(x509.IPAddress) == [ipaddress.ip_address(address)]
    assert san.get_values_for_type(x509.DNSName) == []


def test_lego_ip_identifier_http01(
    prereg_gateway: GatewayProcess,
    lego_bin: Path,
    tmp_path: Path,
) -> None:
    gw = prereg_gateway
    http = ["--http", "--http.address", f"{LOOP4}:{gw.http01_port}"]
    kid, hmac = _registration(gw, "--domain", "acme.test")
    refused = Lego(lego_bin, gw, tmp_path / "refused", kid, hmac).run(
        "run", "--accept-tos", "-d", LOOP4, *http, check=False
    )
    output = refused.stdout + refused.stderr
    assert refused.returncode != 0
    assert "rejectedIdentifier" in output and "IP range" in output, output

    kid, hmac = _registration(gw, "--ip-range", "127.0.0.0/8")
    lego = Lego(lego_bin, gw, tmp_path / "lego", kid, hmac)
    lego.run("run", "--accept-tos", "-c", "ip", "-d", LOOP4, *http)
    _verify_ip_leaf(lego.certificate("ip"), gw.root_pem.read_bytes(), LOOP4)


def test_certbot_ip_address_standalone(prereg_gateway: GatewayProcess, tmp_path: Path) -> None:
    gw = prereg_gateway
    kid, hmac = _registration(gw, "--ip-range", "127.0.0.1/32")
    certbot = Certbot(gw, tmp_path / "certbot")
    eab = ["--eab-kid", kid, "--eab-hmac-key", hmac]
    certbot.standalone("ip", [], "--ip-address", LOOP4, *eab).check()
    live = certbot.live("ip")
    chain = x509.load_pem_x509_certificates((live / "fullchain.pem").read_bytes())
    _verify_ip_leaf(chain, gw.root_pem.read_bytes(), LOOP4)

    refused = certbot.standalone("outside", [], "--ip-address", "127.0.0.2", *eab)
    assert refused.returncode != 0
    assert "127.0.0.2" in refused.output and "IP range" in refused.output, refused.output
    assert not certbot.live("outside").exists()


def test_lego_ip_identifier_tls_alpn01(
    prereg_gateway: GatewayProcess,
    lego_bin: Path,
    tmp_path: Path,
) -> None:
    """RFC 8738 §6 + RFC 8737: lego answers only acme-tls/1 (no http-01 responder runs), so
    the address is proven with the reverse-DNS SNI and an iPAddress SAN."""
    gw = prereg_gateway
    kid, hmac = _registration(gw, "--ip-range", "127.0.0.0/8")
    lego = Lego(lego_bin, gw, tmp_path / "lego", kid, hmac)
    lego.run(
        "run", "--accept-tos", "-c", "ipalpn", "-d", LOOP4,
        "--tls", "--tls.address", f"{LOOP4}:{gw.tlsalpn01_port}",
    )  # fmt: skip
    _verify_ip_leaf(lego.certificate("ipalpn"), gw.root_pem.read_bytes(), LOOP4)
    assert (LOOP4, "tls-alpn-01") in valid_challenges(gw, [LOOP4])
