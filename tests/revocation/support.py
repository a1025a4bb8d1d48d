"""Relying-party helpers: a gateway with the revocation listener, and the real `openssl`
commands a relying party runs (docs/revocation.md shows the same ones)."""

from __future__ import annotations

import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import requests
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.x509.oid import AuthorityInformationAccessOID

from tests.gateway_proc import GatewayProcess
from tests.procs import free_port
from tests.protocol.acme_client import b64
from tests.protocol.support import Acme


def revocation_gateway(
    data_dir: Path,
    *,
    database: str | None,
    resolvers: tuple[str, ...],
    crl_port: int | None = None,
    extra: tuple[str, ...] = (),
    **kwargs: Any,
) -> GatewayProcess:
    """A server with `--crl-listen` on a port of its own (base URL derived from it)."""
    port = crl_port or free_port()
    gw = GatewayProcess(
        data_dir,
        database=database,
        dns_resolvers=resolvers,
        extra_args=("--crl-listen", f"127.0.0.1:{port}", *extra),
        **kwargs,
    )
    gw.crl_port = port  # type: ignore[attr-defined]
    return gw


def openssl() -> str:
    path = shutil.which("openssl")
    if path is None:
        pytest.fail("openssl is not installed (tools/install-system-deps.sh)", pytrace=False)
    return path


def run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [openssl(), *args], capture_output=True, text=True, timeout=60, check=False
    )


@dataclass
class Issued:
    """One certificate as a relying party holds it: leaf, issuer and root as PEM files."""

    leaf: x509.Certificate
    leaf_pem: Path
    issuer_pem: Path
    root_pem: Path

    @property
    def ocsp_url(self) -> str:
        aia = self.leaf.extensions.get_extension_for_class(x509.AuthorityInformationAccess).value
        return next(
            str(d.access_location.value)
            for d in aia
            if d.access_method == AuthorityInformationAccessOID.OCSP
        )

    @property
    def ca_issuers_url(self) -> str:
        aia = self.leaf.extensions.get_extension_for_class(x509.AuthorityInformationAccess).value
        return next(
            str(d.access_location.value)
            for d in aia
            if d.access_method == AuthorityInformationAccessOID.CA_ISSUERS
        )

    @property
    def crl_url(self) -> str:
        cdp = self.leaf.extensions.get_extension_for_class(x509.CRLDistributionPoints).value
        full_name = cdp[0].full_name
        assert full_name is not None
        return str(full_name[0].value)


def issue(acme: Acme, names: list[str], out: Path) -> Issued:
    leaf, _, chain = acme.issue(names)
    certs = x509.load_pem_x509_certificates(chain.encode())
    out.mkdir(parents=True, exist_ok=True)
    leaf_pem, issuer_pem = out / "leaf.pem", out / "issuer.pem"
    leaf_pem.write_bytes(certs[0].public_bytes(serialization.Encoding.PEM))
    issuer_pem.write_bytes(certs[1].public_bytes(serialization.Encoding.PEM))
    return Issued(leaf, leaf_pem, issuer_pem, acme.gw.root_pem)


def ocsp_status(cert: Issued, url: str | None = None) -> str:
    """`openssl ocsp` as docs/revocation.md shows it; its whole output (checked verified)."""
    result = run(
        "ocsp",
        "-issuer",
        str(cert.issuer_pem),
        "-cert",
        str(cert.leaf_pem),
        "-url",
        url or cert.ocsp_url,
        "-CAfile",
        str(cert.root_pem),
        "-timeout",
        "10",
    )
    out = result.stdout + result.stderr
    assert result.returncode == 0, out
    assert "Response verify OK" in out, out
    return out


def verify_with_crl(cert: Issued, crl_pem: Path) -> subprocess.CompletedProcess[str]:
    return run(
        "verify",
        "-crl_check",
        "-CAfile",
        str(cert.root_pem),
        "-untrusted",
        str(cert.issuer_pem),
        "-CRLfile",
        str(crl_pem),
        str(cert.leaf_pem),
    )


def fetch_crl(url: str, out: Path) -> tuple[x509.CertificateRevocationList, bytes]:
    resp = requests.get(url, timeout=10)
    assert resp.status_code == 200, resp.text
    assert resp.headers["Content-Type"] == "application/pkix-crl"
    crl = x509.load_der_x509_crl(resp.content)
    out.write_bytes(crl.public_bytes(serialization.Encoding.PEM))
    return crl, resp.content


def revoke(acme: Acme, cert: x509.Certificate, reason: int) -> None:
    der = b64(cert.public_bytes(serialization.Encoding.DER))
    resp = acme.post(acme.directory["revokeCert"], {"certificate": der, "reason": reason})
    assert resp.status_code == 200, resp.text
