"""`acme-gateway serve` refuses bad configurations with a message that says what to fix."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from tests.gateway_proc import GATEWAY, GatewayProcess, client_env
from tests.procs import free_port


def _serve(*args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [GATEWAY, "serve", "--listen", f"127.0.0.1:{free_port()}", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env=client_env(),
    )


def test_second_ca_on_one_store_is_refused(tmp_path: Path) -> None:
    first = GatewayProcess(tmp_path / "a").start()
    try:
        store = f"sqlite:///{tmp_path / 'a' / 'acme-gateway.sqlite3'}"
        refused = _serve("--data-dir", str(tmp_path / "b"), "--database", store)
        assert refused.returncode == 1
        assert "different CA root" in refused.stderr
        assert "--replace-ca-root" in refused.stderr
        second = GatewayProcess(
            tmp_path / "b", database=store, extra_args=("--replace-ca-root",)
        ).start()
        second.stop()
    finally:
        first.stop()


def test_unreachable_store_is_named_without_its_password(tmp_path: Path) -> None:
    result = _serve(
        "--data-dir",
        str(tmp_path),
        "--database",
        f"postgresql://acme:s3cret-pw@127.0.0.1:{free_port()}/acme",
    )
    assert result.returncode == 1
    assert "cannot open the store postgresql://acme:***@127.0.0.1" in result.stderr
    assert "s3cret-pw" not in result.stderr + result.stdout
    assert "Traceback" not in result.stderr


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("--cert-validity", "ninety"), "invalid duration"),
        (("--dns-resolver", "127.0.0.1:99999"), "port"),
        (("--account-creation", "sometimes"), "'sometimes' is not one of"),
        (("--base-url", "ftp://example"), "must be an http(s) URL"),
    ],
)
def test_bad_flags_are_explained(tmp_path: Path, args: tuple[str, ...], message: str) -> None:
    result = _serve("--data-dir", str(tmp_path), *args)
    assert result.returncode == 2
    assert message in result.stderr
    assert "Traceback" not in result.stderr
