"""lego v5 (a real client) with our profiles: `--profile shortlived` gets a 7-day leaf,
`--not-after` is honoured, and a registration not allowed a profile gets invalidProfile."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

from tests.chains import verify_chain
from tests.clients.test_lego import Lego, lego_bin  # noqa: F401
from tests.gateway_proc import GatewayProcess


def _lego(gw: GatewayProcess, binary: Path, tmp_path: Path, *flags: str) -> tuple[Lego, str]:
    domain = f"lego-prof-{uuid.uuid4().hex[:6]}.acme.test"
    reg = gw.create_registration(f"lego-{uuid.uuid4().hex[:8]}", "--domain", domain, *flags)
    return Lego(binary, gw, tmp_path / "lego", str(reg["kid"]), str(reg["hmac_key"])), domain


def _http(gw: GatewayProcess) -> tuple[str, ...]:
    return ("--http", "--http.address", f"127.0.0.1:{gw.http01_port}")


def test_lego_profile_shortlived(
    prereg_gateway: GatewayProcess,
    lego_bin: Path,  # noqa: F811
    tmp_path: Path,
) -> None:
    lego, domain = _lego(prereg_gateway, lego_bin, tmp_path)
    lego.run(
        "run", "--accept-tos", "-c", "short", "-d", domain, "--profile", "shortlived",
        *_http(prereg_gateway),
    )  # fmt: skip
    leaf = verify_chain(lego.certificate("short"), prereg_gateway.root_pem.read_bytes(), [domain])
    lifetime = leaf.not_valid_after_utc - leaf.not_valid_before_utc
    assert timedelta(days=7) <= lifetime <= timedelta(days=7, minutes=2), lifetime


def test_lego_not_after(
    prereg_gateway: GatewayProcess,
    lego_bin: Path,  # noqa: F811
    tmp_path: Path,
) -> None:
    lego, domain = _lego(prereg_gateway, lego_bin, tmp_path)
    not_after = datetime.now(UTC).replace(microsecond=0) + timedelta(days=20)
    lego.run(
        "run", "--accept-tos", "-c", "na", "-d", domain,
        "--not-after", not_after.isoformat().replace("+00:00", "Z"), *_http(prereg_gateway),
    )  # fmt: skip
    assert lego.certificate("na")[0].not_valid_after_utc == not_after


def test_lego_profile_not_allowed(
    prereg_gateway: GatewayProcess,
    lego_bin: Path,  # noqa: F811
    tmp_path: Path,
) -> None:
    lego, domain = _lego(prereg_gateway, lego_bin, tmp_path, "--profiles", "default")
    proc = lego.run(
        "run", "--accept-tos", "-c", "no", "-d", domain, "--profile", "shortlived",
        *_http(prereg_gateway), check=False,
    )  # fmt: skip
    output = proc.stdout + proc.stderr
    assert proc.returncode != 0
    assert "invalidProfile" in output, output
    assert "'shortlived' is not allowed for this account's registration" in output, output
