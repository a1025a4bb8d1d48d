"""certbot (from PyPI) as a real ACME client end to end, on SQLite and PostgreSQL stores."""

from __future__ import annotations

import secrets
import shutil
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from tests.clients.certbot import Certbot, verify_issued
from tests.gateway_proc import GatewayProcess
from tests.infra.bind import BindServer


def _label(prefix: str) -> str:
    return f"{prefix}-{secrets.token_hex(3)}"


@pytest.mark.parametrize("key_type", ["ecdsa", "rsa"])
def test_standalone_http01(gateway: GatewayProcess, tmp_path: Path, key_type: str) -> None:
    base = f"{_label('cb-' + key_type)}.acme.test"
    names = [base, f"www.{base}"]
    certbot = Certbot(gateway, tmp_path)
    certbot.standalone("site", names, "--key-type", key_type).check()
    leaf = verify_issued(certbot.live("site"), gateway.root_pem.read_bytes(), names)
    key = leaf.public_key()
    if key_type == "ecdsa":
        assert isinstance(key, ec.EllipticCurvePublicKey)
    else:
        assert isinstance(key, rsa.RSAPublicKey)
    # Renewal reuses the account's still-valid authorizations: a new certificate, same names.
    certbot.run(
        "renew", "--force-renewal", "--no-random-sleep-on-renew", "--cert-name", "site"
    ).check()
    assert "Performing the following challenges" not in certbot.last_log()
    renewed = verify_issued(certbot.live("site"), gateway.root_pem.read_bytes(), names)
    assert renewed.serial_number != leaf.serial_number


def test_manual_dns01_wildcard(
    gateway: GatewayProcess, bind_server: BindServer, tmp_path: Path
) -> None:
    base = f"{_label('cb-wild')}.acme.test"
    names = [f"*.{base}", base]
    auth, cleanup = bind_server.hook_scripts(tmp_path / "hooks")
    certbot = Certbot(gateway, tmp_path / "certbot")
    certbot.certonly(
        "wild",
        names,
        "--manual",
        "--preferred-challenges",
        "dns",
        "--manual-auth-hook",
        str(auth),
        "--manual-cleanup-hook",
        str(cleanup),
    ).check()
    verify_issued(certbot.live("wild"), gateway.root_pem.read_bytes(), names)


def test_eab_and_allowed_domains(prereg_gateway: GatewayProcess, tmp_path: Path) -> None:
    gw = prereg_gateway
    allowed = f"{_label('cb-eab')}.acme.test"
    reg = gw.create_registration(_label("certbot"), "--domain", allowed)
    eab = ["--eab-kid", str(reg["kid"]), "--eab-hmac-key", str(reg["hmac_key"])]

    without = Certbot(gw, tmp_path / "no-eab").standalone("x", [f"a.{allowed}"])
    assert without.returncode != 0
    # certbot reads meta.externalAccountRequired from the directory and stops before asking.
    assert "requires external account binding" in without.output, without.output

    certbot = Certbot(gw, tmp_path / "eab")
    names = [f"app.{allowed}", allowed]
    certbot.standalone("ok", names, *eab).check()
    verify_issued(certbot.live("ok"), gw.root_pem.read_bytes(), names)

    outside = f"{_label('cb-other')}.acme.test"
    refused = certbot.standalone("refused", [f"app.{allowed}", outside])
    assert refused.returncode != 0
    # certbot prints the problem's detail; its debug log has the whole problem document.
    assert f"{outside} not allowed for pre-registration" in refused.output, refused.output
    log = certbot.last_log()
    assert (f"Problem for {outside}: urn:ietf:params:acme:error:rejectedIdentifier") in log, log
    assert f"Problem for app.{allowed}" not in log, "only the refused name has a subproblem"
    assert not certbot.live("refused").exists()


def test_revoke(gateway: GatewayProcess, tmp_path: Path) -> None:
    names = [f"{_label('cb-revoke')}.acme.test"]
    certbot = Certbot(gateway, tmp_path)
    certbot.standalone("rev", names).check()
    live = certbot.live("rev")
    verify_issued(live, gateway.root_pem.read_bytes(), names)

    cert_path = str(live / "cert.pem")
    certbot.run(
        "revoke", "--cert-path", cert_path, "--reason", "keycompromise", "--no-delete-after-revoke"
    ).check()
    assert '"reason": 1' in certbot.last_log(), "keyCompromise is reason code 1"
    # Again, this time signed with the certificate's own key instead of the account key.
    again = certbot.run(
        "revoke",
        "--cert-path",
        cert_path,
        "--key-path",
        str(live / "privkey.pem"),
        "--reason",
        "keycompromise",
        "--no-delete-after-revoke",
    )
    assert again.returncode != 0
    assert "is already revoked" in again.output, again.output
    assert "urn:ietf:params:acme:error:alreadyRevoked" in certbot.last_log()


def test_account_update_and_unregister(gateway: GatewayProcess, tmp_path: Path) -> None:
    certbot = Certbot(gateway, tmp_path)
    names = [f"{_label('cb-acct')}.acme.test"]
    certbot.standalone("first", names).check()
    certbot.run("update_account", "-m", "changed@example.org").check()
    shown = certbot.run("show_account").check()
    assert "changed@example.org" in shown.output, shown.output
    accounts = certbot.home / "config" / "accounts"
    saved = tmp_path / "accounts-before-unregister"
    shutil.copytree(accounts, saved)
    certbot.run("unregister").check()
    # certbot forgets the account; bring its key back and the server must refuse it.
    shutil.rmtree(accounts)
    shutil.copytree(saved, accounts)
    refused = certbot.standalone("second", [f"{_label('cb-acct')}.acme.test"])
    assert refused.returncode != 0
    assert "account is deactivated" in refused.output, refused.output
    assert "urn:ietf:params:acme:error:unauthorized" in certbot.last_log()
