"""Issue 8, item 7: a real `acme-gateway serve` must not validate into its own network.

The challenge responder is a real HTTP server on 127.0.0.1 and every name is resolved by a
real BIND9 to 127.0.0.1. A server started without `--validation-allow-cidr` for loopback
refuses it; the shared test servers (which allow loopback explicitly) follow the same
challenge, but refuse redirects to cloud metadata and never echo what the responder said.
"""

from __future__ import annotations

import subprocess
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from typing import Any

import pytest

from tests.gateway_proc import GATEWAY, GatewayProcess, client_env
from tests.infra.bind import BindServer
from tests.procs import free_port
from tests.protocol.acme_client import serving
from tests.protocol.support import ERR, Acme, new_account, unique


class _Responder(BaseHTTPRequestHandler):
    """Answers per token: (status, headers, body); records every path it is asked for."""

    answers: dict[str, tuple[int, dict[str, str], bytes]] = {}
    seen: list[str] = []
    lock = threading.Lock()

    def do_GET(self) -> None:
        with self.lock:
            self.seen.append(self.path)
        status, headers, body = self.answers.get(
            self.path.rsplit("/", 1)[-1], (404, {}, b"not found")
        )
        self.send_response(status)
        for key, value in headers.items():
            self.send_header(key, value)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: Any) -> None:
        pass


@contextmanager
def responder(port: int) -> Iterator[type[_Responder]]:
    handler = type("Handler", (_Responder,), {"answers": {}, "seen": []})
    with serving(port, handler):
        yield handler


def _challenge(acme: Acme, name: str) -> tuple[str, dict[str, Any]]:
    """(authorization URL, its http-01 challenge) for a new order of `name`."""
    _, order = acme.order([name])
    [(authz_url, authz)] = acme.authorizations(order)
    return authz_url, next(c for c in authz["challenges"] if c["type"] == "http-01")


def _attempt(acme: Acme, authz_url: str, chall: dict[str, Any]) -> dict[str, Any]:
    """Accept the challenge; return it once its authorization is decided."""
    resp = acme.post(chall["url"], {})
    assert resp.status_code == 200, resp.text
    acme.wait(authz_url, {"valid", "invalid"})
    resp = acme.get(chall["url"])
    assert resp.status_code == 200, resp.text
    return dict(resp.json())


@pytest.fixture(scope="module")
def strict_gateway(
    tmp_path_factory: pytest.TempPathFactory, bind_server: BindServer
) -> Iterator[GatewayProcess]:
    """A server on the product's defaults: no loopback allowance."""
    server = GatewayProcess(
        tmp_path_factory.mktemp("gw-strict"),
        dns_resolvers=(bind_server.resolver_address,),
        allow_loopback=False,
    )
    server.start()
    try:
        yield server
    finally:
        server.stop()


def test_server_without_loopback_allowance_refuses_a_loopback_target(
    strict_gateway: GatewayProcess,
) -> None:
    acme = new_account(strict_gateway)
    name = unique("ssrf")
    authz_url, chall = _challenge(acme, name)
    with responder(strict_gateway.http01_port) as resp:
        resp.answers[chall["token"]] = (
            200,
            {},
            f"{chall['token']}.{acme.key_thumbprint()}".encode(),
        )
        done = _attempt(acme, authz_url, chall)
        assert resp.seen == []  # not even one request reached the loopback responder
    assert done["status"] == "invalid"
    assert done["error"]["type"] == ERR + "connection"
    assert done["error"]["detail"] == (
        f"{name} resolves only to addresses not allowed for validation (loopback)"
    )


def test_server_with_loopback_allowance_validates_the_same_challenge(
    gateway: GatewayProcess,
) -> None:
    acme = new_account(gateway)
    authz_url, chall = _challenge(acme, unique("ssrf"))
    with responder(gateway.http01_port) as resp:
        resp.answers[chall["token"]] = (
            200,
            {},
            f"{chall['token']}.{acme.key_thumbprint()}".encode(),
        )
        assert _attempt(acme, authz_url, chall)["status"] == "valid"
        assert len(resp.seen) == 1


@pytest.mark.parametrize(
    ("location", "reason"),
    [
        ("http://169.254.169.254/latest/meta-data/iam/security-credentials/", "link-local"),
        ("http://[::ffff:169.254.169.254]/latest/", "link-local"),
        ("http://[fd00:ec2::254]/latest/", "cloud metadata"),
        ("http://0.0.0.0/", "unspecified"),
    ],
)
def test_redirect_to_metadata_is_refused(
    gateway: GatewayProcess, location: str, reason: str
) -> None:
    acme = new_account(gateway)
    name = unique("ssrf")
    authz_url, chall = _challenge(acme, name)
    with responder(gateway.http01_port) as resp:
        resp.answers[chall["token"]] = (302, {"Location": location}, b"")
        done = _attempt(acme, authz_url, chall)
    assert done["status"] == "invalid"
    assert done["error"]["type"] == ERR + "connection"
    challenge_url = (
        f"http://{name}:{gateway.http01_port}/.well-known/acme-challenge/{chall['token']}"
    )
    assert done["error"]["detail"] == (
        f"redirect 1 from {challenge_url} leads to an address not allowed for validation ({reason})"
    )


def test_redirect_to_another_loopback_port_is_refused(gateway: GatewayProcess) -> None:
    acme = new_account(gateway)
    authz_url, chall = _challenge(acme, unique("ssrf"))
    other = free_port()
    with responder(gateway.http01_port) as resp, responder(other) as internal:
        internal.answers["x"] = (200, {}, f"{chall['token']}.{acme.key_thumbprint()}".encode())
        resp.answers[chall["token"]] = (302, {"Location": f"http://127.0.0.1:{other}/x"}, b"")
        done = _attempt(acme, authz_url, chall)
        assert internal.seen == []
    assert done["status"] == "invalid"
    assert done["error"]["type"] == ERR + "connection"
    assert "port is not allowed" in done["error"]["detail"]


def test_problem_detail_never_echoes_the_response(gateway: GatewayProcess) -> None:
    """Before issue 8 the first 80 characters of the body were copied into the error."""
    acme = new_account(gateway)
    name = unique("ssrf")
    authz_url, chall = _challenge(acme, name)
    secret = b"aws_secret_access_key=SECRETSECRET"
    with responder(gateway.http01_port) as resp:
        resp.answers[chall["token"]] = (200, {"X-Internal": "SECRET"}, secret)
        done = _attempt(acme, authz_url, chall)
    assert done["status"] == "invalid"
    assert done["error"]["type"] == ERR + "unauthorized"
    assert "SECRET" not in done["error"]["detail"]
    assert f"the response body ({len(secret)} bytes, from http://{name}:" in done["error"]["detail"]


@pytest.mark.parametrize("flag", ["--validation-allow-cidr", "--validation-deny-cidr"])
def test_bad_cidr_flag_is_explained(tmp_path: Path, flag: str) -> None:
    listen = f"127.0.0.1:{free_port()}"
    cidrs = [flag, "10.0.0.0/8", flag, "10.0.0.300/8"]
    result = subprocess.run(
        [GATEWAY, "serve", "--listen", listen, "--data-dir", str(tmp_path), *cidrs],
        capture_output=True,
        text=True,
        timeout=60,
        env=client_env(),
    )
    assert result.returncode == 2, result.stderr
    assert "invalid CIDR '10.0.0.300/8'" in result.stderr
