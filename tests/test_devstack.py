"""The README's first command: `make run` (tools/devstack.py) brings the whole system up.

Runs the real dev stack (control plane, operator, ACME server on one SQLite store), applies
the README's example registration with kubectl, checks it reaches the server's store, and
checks that stopping the stack leaves nothing running.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import ssl
import subprocess
import sys
import urllib.request
from pathlib import Path

from tests.gateway_proc import GATEWAY, client_env
from tests.polling import wait_for
from tests.procs import free_port, stop_process

ROOT = Path(__file__).resolve().parent.parent


def test_make_run_brings_up_the_whole_system(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    listen = f"127.0.0.1:{free_port()}"
    env = client_env() | {
        "ACME_GATEWAY_DATA_DIR": str(data_dir),
        "ACME_GATEWAY_LISTEN": listen,
        "ACME_GATEWAY_HEALTH_LISTEN": f"127.0.0.1:{free_port()}",
    }
    log_path = tmp_path / "devstack.log"
    with log_path.open("wb") as log:
        proc = subprocess.Popen(
            [sys.executable, str(ROOT / "tools" / "devstack.py")],
            stdout=log,
            stderr=subprocess.STDOUT,
            env=env,
            cwd=ROOT,
            start_new_session=True,
        )
    try:
        wait_for(
            "the dev stack to say it is running",
            lambda: proc.poll() is None and "acme-gateway is running." in log_path.read_text(),
            timeout=180,
        )
        text = log_path.read_text()
        kubeconfig = data_dir / "kube" / "kubeconfig"
        assert f"export KUBECONFIG={kubeconfig}" in text
        assert f"https://{listen}/directory" in text

        context = ssl.create_default_context(cafile=str(data_dir / "root.pem"))
        with urllib.request.urlopen(f"https://{listen}/directory", context=context) as resp:
            assert json.load(resp)["newAccount"] == f"https://{listen}/acme/new-account"

        kubectl = [str(Path(sys.executable).parent / "kubectl"), "--kubeconfig", str(kubeconfig)]
        subprocess.run(
            [*kubectl, "apply", "-f", str(ROOT / "docs/examples/registration.yaml")],
            check=True,
            capture_output=True,
            timeout=60,
        )

        def in_store() -> dict[str, object] | None:
            out = subprocess.run(
                [GATEWAY, "registration", "list", "--data-dir", str(data_dir)],
                capture_output=True,
                text=True,
                check=True,
                env=env,
            ).stdout
            rows = [json.loads(line) for line in out.splitlines()]
            return next((r for r in rows if r["name"] == "default/team-a" and r["domains"]), None)

        row = wait_for("the example registration in the store", in_store, timeout=60)
        assert row["kid"] == "default.team-a"
        assert row["domains"] == [
            {"domain": "example.test", "include_subdomains": True, "allow_wildcard": True}
        ]
    finally:
        stop_process(proc, signal.SIGINT, timeout=60)
    # Everything the stack started is gone with it: control plane, server and operator.
    for address in (listen, env["ACME_GATEWAY_HEALTH_LISTEN"]):
        host, port = address.split(":")
        with socket.socket() as sock:
            assert sock.connect_ex((host, int(port))) != 0, f"{address} still served"
    leftovers = subprocess.run(["pgrep", "-f", str(data_dir)], capture_output=True, text=True)
    assert leftovers.stdout.strip() == "", f"left running: {leftovers.stdout}"
    assert proc.returncode == 0, log_path.read_text()[-3000:]
    assert os.path.exists(data_dir / "acme-gateway.sqlite3")
