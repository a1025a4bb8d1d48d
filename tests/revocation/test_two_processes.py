"""Two server processes on one PostgreSQL serve the same CRL bytes and the same OCSP status,
whichever of them took the revocation; the CRL number never goes backwards."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import requests
from cryptography import x509

from tests.gateway_proc import GatewayProcess
from tests.infra.bind import BindServer
from tests.infra.postgres import PostgresServer
from tests.procs import free_port
from tests.protocol.support import new_account, unique
from tests.revocation.support import issue, ocsp_status, revocation_gateway, revoke


@pytest.fixture(scope="module")
def pair(
    tmp_path_factory: pytest.TempPathFactory,
    postgres_server: PostgresServer,
    bind_server: BindServer,
) -> Iterator[tuple[GatewayProcess, GatewayProcess]]:
    database = postgres_server.create_database()
    data = tmp_path_factory.mktemp("gw-rev-pair")
    http01 = free_port()
    port_a = free_port()
    # One public CRL/OCSP URL for both (as behind a Service), each listening on its own port.
    common = ("--crl-base-url", f"http://127.0.0.1:{port_a}")
    servers = [
        revocation_gateway(
            data,
            database=database,
            resolvers=(bind_server.resolver_address,),
            crl_port=port,
            extra=common,
            http01_port=http01,
        )
        for port in (port_a, free_port())
    ]
    try:
        for server in servers:
            server.start()
        yield servers[0], servers[1]
    finally:
        for server in servers:
            server.stop()


def _crl(gw: GatewayProcess, path: str) -> tuple[bytes, x509.CertificateRevocationList]:
    resp = requests.get(f"http://127.0.0.1:{gw.crl_port}{path}", timeout=10)  # type: ignore[attr-defined]
    assert resp.status_code == 200, resp.text
    return resp.content, x509.load_der_x509_crl(resp.content)


def _number(crl: x509.CertificateRevocationList) -> int:
    return crl.extensions.get_extension_for_class(x509.CRLNumber).value.crl_number


def test_both_processes_serve_one_crl(
    pair: tuple[GatewayProcess, GatewayProcess], tmp_path: Path
) -> None:
    a, b = pair
    acme_a, acme_b = new_account(a), new_account(b)
    first = issue(acme_a, [unique("pa")], tmp_path / "first")
    second = issue(acme_b, [unique("pb")], tmp_path / "second")
    path = "/" + first.crl_url.split("/", 3)[3]
    assert second.crl_url == first.crl_url

    der_a, crl_a = _crl(a, path)
    der_b, _ = _crl(b, path)
    assert der_a == der_b
    start = _number(crl_a)

    revoke(acme_a, first.leaf, 1)  # through A; B must see it at once
    der_b, crl_b = _crl(b, path)
    der_a, crl_a = _crl(a, path)
    assert der_a == der_b
    assert crl_b.get_revoked_certificate_by_serial_number(first.leaf.serial_number) is not None
    assert _number(crl_b) > start

    revoke(acme_b, second.leaf, 5)  # through B; read from A first this time
    der_a, crl_a = _crl(a, path)
    der_b, crl_b = _crl(b, path)
    assert der_a == der_b
    for cert in (first, second):
        assert crl_a.get_revoked_certificate_by_serial_number(cert.leaf.serial_number)
    assert _number(crl_a) == _number(crl_b) > start + 1

    # OCSP from either listener: revoked (the leaves point at A; ask B directly too).
    assert f"{second.leaf_pem}: revoked" in ocsp_status(second)
    via_b = second.ocsp_url.replace(f":{a.crl_port}/", f":{b.crl_port}/")  # type: ignore[attr-defined]
    assert f"{second.leaf_pem}: revoked" in ocsp_status(second, url=via_b)
