"""How the server is reached: built-in HTTPS names, a given certificate, plain HTTP behind a proxy."""

from __future__ import annotations

import datetime as dt
import json
import socket
import ssl
import subprocess
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from tests.gateway_proc import GATEWAY, client_env
from tests.procs import free_port


@contextmanager
def _server(tmp_path: Path, *args: str) -> Iterator[int]:
    port = free_port()
    log = (tmp_path / "server.log").open("wb")
    proc = subprocess.Popen(
        [
            GATEWAY,
            "serve",
            "--listen",
            f"127.0.0.1:{port}",
            "--data-dir",
            str(tmp_path / "data"),
            *args,
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
        env=client_env(),
    )
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            assert proc.poll() is None, (tmp_path / "server.log").read_text()
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                time.sleep(0.2)
        yield port
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def _peer_certificate(port: int) -> x509.Certificate:
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    with (
        socket.create_connection(("127.0.0.1", port)) as sock,
        context.wrap_socket(sock, server_hostname="localhost") as tls,
    ):
        der = tls.getpeercert(binary_form=True)
    assert der is not None
    return x509.load_der_x509_certificate(der)


def test_builtin_serving_certificate_names(tmp_path: Path) -> None:
    with _server(tmp_path, "--tls-name", "acme.internal.test", "--tls-name", "127.0.0.1") as port:
        cert = _peer_certificate(port)
        sans = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        assert sans.get_values_for_type(x509.DNSName) == ["acme.internal.test"]
        assert [str(ip) for ip in sans.get_values_for_type(x509.IPAddress)] == ["127.0.0.1"]
        root = subprocess.run(
            [GATEWAY, "ca", "cert", "--data-dir", str(tmp_path / "data")],
            capture_output=True,
            text=True,
            check=True,
        ).stdout
        context = ssl.create_default_context(cadata=root)
        with urllib.request.urlopen(f"https://127.0.0.1:{port}/directory", context=context) as r:
            assert json.load(r)["newNonce"] == f"https://127.0.0.1:{port}/acme/new-nonce"


def test_given_serving_certificate(tmp_path: Path) -> None:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "given.example.test")])
    now = time.time()
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(dt.datetime.fromtimestamp(now - 60, dt.UTC))
        .not_valid_after(dt.datetime.fromtimestamp(now + 3600, dt.UTC))
        .sign(key, hashes.SHA256())
    )
    (tmp_path / "tls.crt").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    (tmp_path / "tls.key").write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    with _server(
        tmp_path, "--tls-cert", str(tmp_path / "tls.crt"), "--tls-key", str(tmp_path / "tls.key")
    ) as port:
        assert _peer_certificate(port).serial_number == cert.serial_number


def test_plain_http_behind_a_proxy_uses_the_base_url(tmp_path: Path) -> None:
    base = "https://acme.proxy.example.test"
    with _server(tmp_path, "--insecure-http", "--base-url", base) as port:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/directory") as response:
            directory = json.load(response)
            assert response.headers["Link"] == f'<{base}/directory>;rel="index"'
        assert directory["newAccount"] == f"{base}/acme/new-account"
        assert directory["meta"]["website"] == base
