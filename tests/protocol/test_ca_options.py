"""The CA options on a real server process: clientAuth opt-in and X.509 name constraints."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
from acme import messages
from cryptography import x509
from cryptography.x509.oid import ExtendedKeyUsageOID

from tests.chains import verify_chain
from tests.gateway_proc import GATEWAY, GatewayProcess, client_env
from tests.infra.bind import BindServer
from tests.procs import free_port
from tests.protocol.acme_client import make_csr, new_client, register
from tests.protocol.support import new_account, unique

CONSTRAINED = ("--ca-permitted-domain", "acme.test", "--ca-permitted-domain", "localhost")


def _gateway(data_dir: Path, bind_server: BindServer, *extra: str) -> GatewayProcess:
    return GatewayProcess(
        data_dir, dns_resolvers=(bind_server.resolver_address,), extra_args=extra
    ).start()


def _issue(gateway: GatewayProcess, names: list[str]) -> x509.Certificate:
    _, _, chain_pem = new_account(gateway).issue(names)
    return verify_chain(chain_pem, gateway.root_pem.read_bytes(), names)


def _eku(leaf: x509.Certificate) -> list[x509.ObjectIdentifier]:
    return list(leaf.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value)


def test_client_auth_eku_is_opt_in(tmp_path: Path, bind_server: BindServer) -> None:
    default = _gateway(tmp_path / "default", bind_server)
    try:
        assert _eku(_issue(default, [unique("eku")])) == [ExtendedKeyUsageOID.SERVER_AUTH]
    finally:
        default.stop()
    granted = _gateway(tmp_path / "granted", bind_server, "--client-auth-eku")
    try:
        assert _eku(_issue(granted, [unique("eku")])) == [
            ExtendedKeyUsageOID.SERVER_AUTH,
            ExtendedKeyUsageOID.CLIENT_AUTH,
        ]
    finally:
        granted.stop()


def _serve(data_dir: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [
            GATEWAY,
            "serve",
            "--listen",
            f"127.0.0.1:{free_port()}",
            "--data-dir",
            str(data_dir),
            *args,
        ],
        capture_output=True,
        text=True,
        timeout=60,
        env=client_env(),
    )


def test_name_constrained_ca_on_a_real_server(tmp_path: Path, bind_server: BindServer) -> None:
    data_dir = tmp_path / "constrained"
    gateway = _gateway(data_dir, bind_server, *CONSTRAINED, "--tls-name", "localhost")
    try:
        leaf = _issue(gateway, [unique("nc")])  # verify_chain: accepted by a real verifier
        root = x509.load_pem_x509_certificate(gateway.root_pem.read_bytes())
        nc = root.extensions.get_extension_for_class(x509.NameConstraints)
        assert nc.critical
        assert set(nc.value.permitted_subtrees or ()) == {
            x509.DNSName("acme.test"),
            x509.DNSName("localhost"),
        }
        assert leaf.issuer != root.subject  # issued by the (also constrained) intermediate
    except BaseException:
        gateway.stop()
        raise

    # A name outside the constraints is refused at newOrder, not signed and then distrusted.
    acme = new_client(gateway)
    register(acme)
    with pytest.raises(messages.Error) as refused:
        acme.new_order(make_csr(["www.example.com", unique("nc")])[0])
    assert refused.value.typ == "urn:ietf:params:acme:error:rejectedIdentifier"
    assert "www.example.com is outside the name constraints of this CA" in str(refused.value.detail)
    subproblems = refused.value.subproblems or ()
    assert [sub.identifier.value for sub in subproblems if sub.identifier] == ["www.example.com"]
    gateway.stop()

    # The same CA asked for other constraints: refused, one line, naming what to do.
    other = _serve(data_dir, "--ca-permitted-domain", "example.com", "--tls-name", "localhost")
    assert other.returncode == 1, other.stderr
    lines = other.stderr.strip().splitlines()
    assert len(lines) == 1, other.stderr
    assert "permitted acme.test,localhost" in lines[0]
    assert "permitted example.com" in lines[0]
    assert "--data-dir" in lines[0]

    # Without the flags the existing constrained CA is used as it is.
    again = _gateway(data_dir, bind_server, "--tls-name", "localhost")
    again.stop()


def test_constraints_on_an_existing_unconstrained_ca_are_refused(tmp_path: Path) -> None:
    GatewayProcess(tmp_path).start().stop()
    refused = _serve(tmp_path, *CONSTRAINED, "--tls-name", "localhost")
    assert refused.returncode == 1
    assert "no name constraints" in refused.stderr
    assert "Traceback" not in refused.stderr


def test_serving_names_outside_the_constraints_are_refused(tmp_path: Path) -> None:
    # The default serving names include 127.0.0.1, which a constrained CA never signs.
    refused = _serve(tmp_path, *CONSTRAINED)
    assert refused.returncode == 1
    assert "127.0.0.1" in refused.stderr and "--tls-name" in refused.stderr
    assert "Traceback" not in refused.stderr


def test_bad_constraint_flag_is_explained(tmp_path: Path) -> None:
    result = _serve(tmp_path, "--ca-permitted-domain", "*.example.com")
    assert result.returncode == 2
    assert "give a domain such as example.com" in result.stderr


def test_ca_cert_creates_the_constrained_ca_serve_then_uses(tmp_path: Path) -> None:
    def ca_cert(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [GATEWAY, "ca", "cert", "--data-dir", str(tmp_path), *args],
            capture_output=True,
            text=True,
            timeout=60,
            env=client_env(),
        )

    created = ca_cert(*CONSTRAINED)
    assert created.returncode == 0, created.stderr
    root = x509.load_pem_x509_certificate(created.stdout.encode())
    assert root.extensions.get_extension_for_class(x509.NameConstraints).critical
    assert ca_cert().stdout == created.stdout  # no flags: the CA as it is
    refused = ca_cert("--ca-permitted-domain", "example.com")
    assert refused.returncode == 1 and "permitted acme.test,localhost" in refused.stderr
