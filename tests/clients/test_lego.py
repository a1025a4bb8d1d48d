"""lego (github.com/go-acme/lego/v5) as a second real ACME client, with External Account Binding.

http-01 with lego's own challenge server on the port the gateway validates against,
dns-01 through lego's RFC 2136 provider (`--dns rfc2136`) updating the test BIND server with
TSIG, tls-alpn-01 with lego's own `--tls` responder, and revocation with
`lego certificates revoke` (lego v5's name for `lego revoke`).
lego trusts our root through LEGO_CA_CERTIFICATES.
"""

from __future__ import annotations

import asyncio
import subprocess
import uuid
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from cryptography import x509

from acme_server.store import certificates, schema
from acme_server.store.certificates import StoredCertificate
from acme_server.store.database import Database, default_database_url
from tests.chains import verify_chain
from tests.gateway_proc import GatewayProcess, client_env
from tests.infra.bind import BindServer
from tests.infra.gotools import GoToolError, ensure_lego

EMAIL = "lego@example.com"


@pytest.fixture(scope="module")
def lego_bin() -> Path:
    try:
        return ensure_lego()
    except GoToolError as exc:
        pytest.fail(f"cannot build lego:\n{exc}", pytrace=False)


class Lego:
    """lego runs against one gateway with one account directory and one EAB credential."""

    def __init__(self, binary: Path, gateway: GatewayProcess, path: Path, kid: str, hmac: str):
        self.binary = binary
        self.gateway = gateway
        self.path = path
        self.kid = kid
        self.hmac = hmac

    def env(self, extra: dict[str, str] | None = None) -> dict[str, str]:
        env = client_env(self.gateway.root_pem)
        env["LEGO_CA_CERTIFICATES"] = str(self.gateway.root_pem)
        return {**env, **(extra or {})}

    def run(
        self, *args: str, env: dict[str, str] | None = None, check: bool = True
    ) -> subprocess.CompletedProcess[str]:
        common = ["-s", self.gateway.directory_url, "-m", EMAIL, "--path", str(self.path)]
        eab = ["--eab", "--eab.kid", self.kid, "--eab.hmac", self.hmac]
        cmd = [str(self.binary), *args, *common, *eab, "--log.format", "text"]
        proc = subprocess.run(
            cmd, capture_output=True, text=True, timeout=300, env=self.env(env), check=False
        )
        if check and proc.returncode != 0:
            raise AssertionError(
                f"lego {' '.join(args)} failed ({proc.returncode}):\n{proc.stdout}{proc.stderr}\n"
                f"--- gateway log ---\n{self.gateway.log_tail()}"
            )
        return proc

    def certificate(self, cert_name: str) -> list[x509.Certificate]:
        pem = (self.path / "certificates" / f"{cert_name}.crt").read_bytes()
        return x509.load_pem_x509_certificates(pem)


def _registration(gateway: GatewayProcess, domain: str) -> tuple[str, str]:
    reg = gateway.create_registration(f"lego-{uuid.uuid4().hex[:8]}", "--domain", domain)
    return str(reg["kid"]), str(reg["hmac_key"])


def _stored(gateway: GatewayProcess, serial: int) -> StoredCertificate | None:
    url = gateway.database or default_database_url(gateway.data_dir)

    async def go() -> StoredCertificate | None:
        db = await Database.open(url, migrate=False)
        try:

            def _unit(conn: sa.Connection) -> Any:
                return certificates.by_serial(conn, format(serial, "x"))

            return await db.write(_unit)
        finally:
            await db.close()

    return asyncio.run(go())


def test_lego_http01_with_eab_then_revoke(
    prereg_gateway: GatewayProcess, lego_bin: Path, tmp_path: Path
) -> None:
    domain = f"lego-{uuid.uuid4().hex[:6]}.acme.test"
    kid, hmac = _registration(prereg_gateway, domain)
    lego = Lego(lego_bin, prereg_gateway, tmp_path / "lego", kid, hmac)
    names = [f"www.{domain}", domain]

    lego.run(
        "run", "--accept-tos", "-c", "web", *(a for n in names for a in ("-d", n)),
        "--http", "--http.address", f"127.0.0.1:{prereg_gateway.http01_port}",
    )  # fmt: skip

    leaf = verify_chain(lego.certificate("web"), prereg_gateway.root_pem.read_bytes(), names)
    stored = _stored(prereg_gateway, leaf.serial_number)
    assert stored is not None and stored.revoked_at is None

    lego.run("certificates", "revoke", "-c", "web", "--reason", "4")

    stored = _stored(prereg_gateway, leaf.serial_number)
    assert stored is not None and stored.revoked_at is not None
    assert stored.revocation_reason == 4
    # lego archives the certificate once the server accepted the revocation.
    assert not (lego.path / "certificates" / "web.crt").exists()


def test_lego_dns01_rfc2136_wildcard_with_eab(
    prereg_gateway: GatewayProcess, bind_server: BindServer, lego_bin: Path, tmp_path: Path
) -> None:
    domain = f"lego-{uuid.uuid4().hex[:6]}.acme.test"
    kid, hmac = _registration(prereg_gateway, domain)
    lego = Lego(lego_bin, prereg_gateway, tmp_path / "lego", kid, hmac)
    names = [f"*.{domain}", domain]
    rfc2136 = {
        "RFC2136_NAMESERVER": bind_server.resolver_address,
        "RFC2136_TSIG_KEY": bind_server.key_name,
        "RFC2136_TSIG_SECRET": bind_server.key_secret,
        "RFC2136_TSIG_ALGORITHM": f"{bind_server.key_algorithm}.",
        "RFC2136_PROPAGATION_TIMEOUT": "60",
        "RFC2136_POLLING_INTERVAL": "1",
        # The wildcard and the base name share one TXT name, which lego solves one after
        # the other with this pause in between (60 s by default).
        "RFC2136_SEQUENCE_INTERVAL": "1",
    }

    lego.run(
        "run", "--accept-tos", "-c", "wild", *(a for n in names for a in ("-d", n)),
        "--dns", "rfc2136", "--dns.resolvers", bind_server.resolver_address,
        # The zone's NS record is not reachable from the tests: check through BIND only.
        "--dns.propagation.disable-ans",
        env=rfc2136,
    )  # fmt: skip

    leaf = verify_chain(lego.certificate("wild"), prereg_gateway.root_pem.read_bytes(), names)
    assert _stored(prereg_gateway, leaf.serial_number) is not None
    # lego's cleanup removed its TXT records from BIND.
    assert bind_server.query(f"_acme-challenge.{domain}", "TXT") == []


def test_lego_tls_alpn01_with_eab(
    prereg_gateway: GatewayProcess, lego_bin: Path, tmp_path: Path
) -> None:
    """RFC 8737: lego's own acme-tls/1 responder on the port the gateway validates against."""
    domain = f"lego-{uuid.uuid4().hex[:6]}.acme.test"
    kid, hmac = _registration(prereg_gateway, domain)
    lego = Lego(lego_bin, prereg_gateway, tmp_path / "lego", kid, hmac)
    names = [f"www.{domain}", domain]

    lego.run(
        "run", "--accept-tos", "-c", "alpn", *(a for n in names for a in ("-d", n)),
        "--tls", "--tls.address", f"127.0.0.1:{prereg_gateway.tlsalpn01_port}",
    )  # fmt: skip

    leaf = verify_chain(lego.certificate("alpn"), prereg_gateway.root_pem.read_bytes(), names)
    assert _stored(prereg_gateway, leaf.serial_number) is not None
    assert valid_challenges(prereg_gateway, names) == {(n, "tls-alpn-01") for n in names}


def valid_challenges(gateway: GatewayProcess, names: list[str]) -> set[tuple[str, str]]:
    """(name, challenge type) of the challenges that proved `names`, read from the store."""
    url = gateway.database or default_database_url(gateway.data_dir)

    async def go() -> set[tuple[str, str]]:
        db = await Database.open(url, migrate=False)
        try:

            def _unit(conn: sa.Connection) -> set[tuple[str, str]]:
                query = (
                    sa.select(schema.authorizations.c.identifier_value, schema.challenges.c.type)
                    .join(
                        schema.authorizations,
                        schema.authorizations.c.id == schema.challenges.c.authz_id,
                    )
                    .where(schema.authorizations.c.identifier_value.in_(names))
                    .where(schema.challenges.c.status == "valid")
                )
                return {(row[0], row[1]) for row in conn.execute(query)}

            return await db.read(_unit)
        finally:
            await db.close()

    return asyncio.run(go())


def test_lego_refused_outside_allowed_domains(
    prereg_gateway: GatewayProcess, lego_bin: Path, tmp_path: Path
) -> None:
    kid, hmac = _registration(prereg_gateway, f"lego-{uuid.uuid4().hex[:6]}.acme.test")
    lego = Lego(lego_bin, prereg_gateway, tmp_path / "lego", kid, hmac)
    proc = lego.run(
        "run", "--accept-tos", "-d", "elsewhere.acme.test",
        "--http", "--http.address", f"127.0.0.1:{prereg_gateway.http01_port}",
        check=False,
    )  # fmt: skip
    output = proc.stdout + proc.stderr
    assert proc.returncode != 0
    assert "rejectedIdentifier" in output, output
    assert "elsewhere.acme.test" in output, output
