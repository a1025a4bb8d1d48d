"""Run the real certbot (from PyPI, in the venv) against a test gateway, fully sandboxed."""

from __future__ import annotations

import subprocess
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509

from tests.chains import verify_chain
from tests.gateway_proc import VENV_BIN, GatewayProcess, client_env

CERTBOT = VENV_BIN / "certbot"


@dataclass
class CertbotResult:
    returncode: int
    output: str  # stdout and stderr together: certbot reports errors on stderr

    def check(self) -> CertbotResult:
        assert self.returncode == 0, f"certbot failed ({self.returncode}):\n{self.output}"
        return self


class Certbot:
    """One certbot installation (config/work/logs dirs) talking to one gateway."""

    def __init__(self, gw: GatewayProcess, home: Path, email: str = "admin@example.org") -> None:
        if not CERTBOT.exists():
            raise RuntimeError(f"certbot is not installed at {CERTBOT}: run `uv sync`")
        self.gw = gw
        self.home = home
        self.email = email
        for sub in ("config", "work", "logs"):
            (home / sub).mkdir(parents=True, exist_ok=True)

    def dirs(self) -> list[str]:
        return [
            "--config-dir",
            str(self.home / "config"),
            "--work-dir",
            str(self.home / "work"),
            "--logs-dir",
            str(self.home / "logs"),
        ]

    def run(self, subcommand: str, *args: str) -> CertbotResult:
        cmd = [
            str(CERTBOT),
            subcommand,
            "--server",
            self.gw.directory_url,
            *self.dirs(),
            "--non-interactive",
            *args,
        ]
        proc = subprocess.run(
            cmd, capture_output=True, text=True, timeout=180, env=client_env(self.gw.root_pem)
        )
        return CertbotResult(proc.returncode, proc.stdout + proc.stderr)

    def certonly(self, cert_name: str, names: list[str], *args: str) -> CertbotResult:
        domains = [a for n in names for a in ("-d", n)]
        return self.run(
            "certonly", "--agree-tos", "-m", self.email, "--cert-name", cert_name, *domains, *args
        )

    def standalone(self, cert_name: str, names: list[str], *args: str) -> CertbotResult:
        return self.certonly(
            cert_name,
            names,
            "--standalone",
            "--http-01-port",
            str(self.gw.http01_port),
            "--http-01-address",
            "127.0.0.1",
            *args,
        )

    def last_log(self) -> str:
        """certbot's debug log of its latest run (it keeps older runs as letsencrypt.log.N)."""
        return (self.home / "logs" / "letsencrypt.log").read_text(errors="replace")

    def live(self, cert_name: str) -> Path:
        return self.home / "config" / "live" / cert_name


def verify_issued(live: Path, root_pem: bytes, names: list[str]) -> x509.Certificate:
    """The chain certbot saved verifies to our root for every name, with exactly those SANs."""
    fullchain = x509.load_pem_x509_certificates((live / "fullchain.pem").read_bytes())
    leaf = x509.load_pem_x509_certificate((live / "cert.pem").read_bytes())
    intermediates = x509.load_pem_x509_certificates((live / "chain.pem").read_bytes())
    assert fullchain[0] == leaf and fullchain[1:] == intermediates
    return verify_chain(fullchain, root_pem, names)
