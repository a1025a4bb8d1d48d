"""docs/revocation.md: the relying-party commands it shows are run here, verbatim, before
and after a revocation; the flags it documents are the ones `serve` has."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.gateway_proc import GATEWAY, GatewayProcess
from tests.protocol.support import new_account, unique
from tests.revocation.support import issue, revoke

REPO = Path(__file__).resolve().parents[2]
DOC = REPO / "docs" / "revocation.md"
README = REPO / "README.md"
MARKER = "<!-- tested: tests/revocation/test_docs.py runs this block -->\n```sh\n"


def _block(doc: Path = DOC) -> str:
    text = doc.read_text()
    assert MARKER in text, f"{doc.name} lost its tested block"
    return text.split(MARKER, 1)[1].split("\n```", 1)[0]


def test_readme_shows_the_tested_block() -> None:
    """The README's "Revocation and renewal" commands are this very block, so running it
    (below) runs the README's too."""
    assert _block(README) == _block(DOC)


def _run_block(workdir: Path) -> str:
    for tool in ("bash", "openssl", "curl"):
        if shutil.which(tool) is None:
            pytest.fail(f"{tool} is not installed (tools/install-system-deps.sh)", pytrace=False)
    proc = subprocess.run(
        ["bash", "-c", _block()], cwd=workdir, capture_output=True, text=True, timeout=120
    )
    return proc.stdout + proc.stderr


def test_relying_party_commands(rev_gateway: GatewayProcess, tmp_path: Path) -> None:
    acme = new_account(rev_gateway)
    cert = issue(acme, [unique("doc")], tmp_path)
    shutil.copy(cert.root_pem, tmp_path / "root.pem")

    out = _run_block(tmp_path)
    assert "leaf.pem: good" in out, out
    assert "Response verify OK" in out, out
    assert out.count("leaf.pem: OK") == 2, out  # -CRLfile and -crl_download
    assert "X509 CRL" in out or "Certificate Revocation List" in out, out

    revoke(acme, cert.leaf, 1)
    out = _run_block(tmp_path)
    assert "leaf.pem: revoked" in out and "Reason: keyCompromise" in out, out
    assert out.count("certificate revoked") == 2, out
    serial = format(cert.leaf.serial_number, "X")
    serial = serial.zfill(len(serial) + len(serial) % 2)  # openssl prints whole octets
    assert f"Serial Number: {serial}" in out, out


def test_documented_flags_exist() -> None:
    help_text = subprocess.run(
        [GATEWAY, "serve", "--help"], capture_output=True, text=True, timeout=60, check=True
    ).stdout
    flags = set(re.findall(r"^\| `(--[a-z-]+)`", DOC.read_text(), re.MULTILINE))  # the table
    assert flags == {
        "--crl-listen",
        "--crl-base-url",
        "--crl-validity",
        "--ocsp-validity",
        "--ari-retry-after",
    }
    for flag in flags:
        assert flag in help_text, flag
