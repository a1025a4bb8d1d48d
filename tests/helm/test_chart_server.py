"""The server container the chart renders really starts: its exact arguments, the CA the
chart's hook Job generates (`ensure-ca-secret`: ECDSA P-256, the server's CA profile) and
the Service names it asks for in the serving certificate all work with the real
`acme-gateway serve`."""

from __future__ import annotations

import base64
import http.client
import json
import socket
import ssl
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from acme_operator.ca_secret import secret_body

from tests.helm.chart import Helm, Manifest, containers, flag, one
from tests.helm.operator_proc import local_args
from tests.helm.test_chart import render
from tests.helm.values_sets import FULLNAME, NAMESPACE
from tests.procs import free_port, stop_process, wait_ready

SERVER = Path(sys.executable).parent / "acme-gateway"


def _get(port: int, ca: Path, server_name: str, path: str) -> tuple[int, Any]:
    """GET over TLS to 127.0.0.1, verifying the certificate for server_name against ca."""
    ctx = ssl.create_default_context(cafile=str(ca))
    with socket.create_connection(("127.0.0.1", port), timeout=5) as raw:
        with ctx.wrap_socket(raw, server_hostname=server_name) as tls:
            tls.sendall(
                f"GET {path} HTTP/1.1\r\nHost: {server_name}\r\nConnection: close\r\n\r\n".encode()
            )
            resp = http.client.HTTPResponse(tls)
            resp.begin()
            body = resp.read()
    return resp.status, json.loads(body) if body.startswith(b"{") else body


@pytest.mark.parametrize(
    ("values", "account_creation"),
    [({}, "pre-registered"), ({"server": {"accountCreation": "open"}}, "open")],
    ids=["default", "open"],
)
def test_chart_server_args_run(
    helm: Helm, tmp_path: Path, values: dict[str, Any], account_creation: str
) -> None:
    docs: list[Manifest] = render(helm, tmp_path, "server", values)
    server = containers(one(docs, "Deployment"))["server"]
    assert flag(server, "account-creation") == [account_creation]
    # The Secret the CA hook Job creates (never rendered): built by the code the Job runs.
    job = one(docs, "Job", f"{FULLNAME}-ca-init")
    (hook,) = job["spec"]["template"]["spec"]["containers"]
    assert flag(hook, "name") == [f"{FULLNAME}-ca"]
    ca_secret = secret_body(flag(hook, "name")[0], flag(hook, "common-name")[0], {})
    # The CA files where the chart mounts them (/etc/acme-gateway/ca), moved under tmp.
    ca_dir = tmp_path / "ca"
    ca_dir.mkdir()
    for key in ("tls.crt", "tls.key"):
        (ca_dir / key).write_bytes(base64.b64decode(ca_secret["data"][key]))
    port = free_port()
    args = [
        a.replace("/etc/acme-gateway/ca/", f"{ca_dir}/")
        for a in local_args(server, tmp_path / "data", port)
    ]
    log = tmp_path / "server.log"
    with log.open("ab") as out:
        proc = subprocess.Popen(
            [str(SERVER), *args], stdout=out, stderr=subprocess.STDOUT, start_new_session=True
        )
    service = f"{FULLNAME}.{NAMESPACE}.svc"
    try:
        wait_ready(
            proc,
            "server",
            lambda: bool(_get(port, ca_dir / "tls.crt", service, "/healthz")),
            lambda: log.read_text()[-4000:],
        )
        # Every Service name verifies against the chart's CA (what caBundle holds).
        for name in flag(server, "tls-name"):
            status, _ = _get(port, ca_dir / "tls.crt", name, "/healthz")
            assert status == 200, name
        status, directory = _get(port, ca_dir / "tls.crt", service, "/directory")
        assert status == 200
        assert directory["newAccount"].startswith(f"https://{service}/"), directory
        eab = directory.get("meta", {}).get("externalAccountRequired", False)
        assert eab is (account_creation == "pre-registered"), directory
    finally:
        stop_process(proc, group=True)
