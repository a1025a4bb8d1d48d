"""Issue 8, item 8: one account's never-answering validations must not starve another's.

A real server process (SQLite and PostgreSQL), real BIND9 answering 127.0.0.1 for every
name, and one real TCP responder on the http-01 port that answers account B's token and
holds every other request open without a byte of reply. Before the per-account cap, account
A's 60 challenges took every validation slot for a full timeout, several times over, and B's
single challenge waited 10-30 s.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler
from typing import Any

import pytest

from tests.gateway_proc import GatewayProcess
from tests.infra.bind import BindServer
from tests.infra.postgres import PostgresServer
from tests.protocol.acme_client import serving
from tests.protocol.support import new_account, unique

A_NAMES = 60
BOUND_SECONDS = 5.0


class _Tarpit(BaseHTTPRequestHandler):
    """Replies only for known tokens; any other request is held open until released."""

    answers: dict[str, str] = {}
    release = threading.Event()
    held: list[float] = []  # monotonic time each held request arrived
    lock = threading.Lock()

    def do_GET(self) -> None:
        body = self.answers.get(self.path.rsplit("/", 1)[-1])
        if body is None:
            with self.lock:
                self.held.append(time.monotonic())
            self.release.wait(120)
            return
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body.encode())

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture(params=["sqlite", "postgres"])
def busy_gateway(
    request: pytest.FixtureRequest,
    tmp_path_factory: pytest.TempPathFactory,
    bind_server: BindServer,
) -> Iterator[GatewayProcess]:
    """A server of its own: the hanging validations must not slow other tests down."""
    database = None
    if request.param == "postgres":
        postgres: PostgresServer = request.getfixturevalue("postgres_server")
        database = postgres.create_database()
    server = GatewayProcess(
        tmp_path_factory.mktemp(f"gw-fair-{request.param}"),
        database=database,
        dns_resolvers=(bind_server.resolver_address,),
    )
    server.start()
    try:
        yield server
    finally:
        server.stop()


def test_one_account_cannot_starve_another(busy_gateway: GatewayProcess) -> None:
    gw = busy_gateway
    handler = type("Tarpit", (_Tarpit,), {"answers": {}, "release": threading.Event(), "held": []})
    with serving(gw.http01_port, handler):
        try:
            a = new_account(gw)
            _, order = a.order([unique("a") for _ in range(A_NAMES)])
            for _, authz in a.authorizations(order):
                chall = next(c for c in authz["challenges"] if c["type"] == "http-01")
                assert a.post(chall["url"], {}).status_code == 200
            deadline = time.monotonic() + 10
            while len(handler.held) < 5 and time.monotonic() < deadline:
                time.sleep(0.1)
            assert len(handler.held) >= 5, "account A's validations never reached the tarpit"

            b = new_account(gw)
            _, order_b = b.order([unique("b")])
            [(authz_url, authz)] = b.authorizations(order_b)
            chall = next(c for c in authz["challenges"] if c["type"] == "http-01")
            handler.answers[chall["token"]] = f"{chall['token']}.{b.key_thumbprint()}"
            started = time.monotonic()
            assert b.post(chall["url"], {}).status_code == 200
            done = b.wait(authz_url, {"valid", "invalid"}, timeout=60)
            elapsed = time.monotonic() - started
            assert done["status"] == "valid", done
            assert elapsed < BOUND_SECONDS, f"account B waited {elapsed:.1f}s behind account A"
            # A is held to its cap (default 5 per process), not to the global 20: before the
            # first attempts time out (10 s), no more than 5 of A's requests ever started.
            first = handler.held[0]
            assert len([t for t in handler.held if t < first + 9]) == 5, handler.held
        finally:
            handler.release.set()
