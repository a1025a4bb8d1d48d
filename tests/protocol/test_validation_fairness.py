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
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from typing import Any

import pytest

from tests.gateway_fixtures import database_for, running
from tests.gateway_proc import GatewayProcess
from tests.infra.bind import BindServer
from tests.protocol.acme_client import serving
from tests.protocol.support import Acme, new_account, unique

A_NAMES = 60
BOUND_SECONDS = 5.0


class _Tarpit(BaseHTTPRequestHandler):
    """Replies only for known tokens; any other request is held open until released."""

    answers: dict[str, str] = {}
    release = threading.Event()
    held: list[float] = []  # monotonic time each held request arrived
    tokens: set[str] = set()  # distinct challenges that reached the tarpit
    lock = threading.Lock()

    def do_GET(self) -> None:
        body = self.answers.get(self.path.rsplit("/", 1)[-1])
        if body is None:
            with self.lock:
                self.held.append(time.monotonic())
                self.tokens.add(self.path.rsplit("/", 1)[-1])
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
    server = GatewayProcess(
        tmp_path_factory.mktemp(f"gw-fair-{request.param}"),
        database=database_for(request.param, request),
        dns_resolvers=(bind_server.resolver_address,),
        workers=1,  # the caps are per process: one process validates everything
    )
    yield from running(server, request)


@contextmanager
def tarpit(port: int) -> Iterator[type[_Tarpit]]:
    handler: type[_Tarpit] = type(
        "Tarpit",
        (_Tarpit,),
        {"answers": {}, "release": threading.Event(), "held": [], "tokens": set()},
    )
    with serving(port, handler):
        try:
            yield handler
        finally:
            handler.release.set()


def _flood(acme: Acme, count: int, label: str) -> None:
    """Order `count` names and accept every http-01 challenge (the tarpit never answers)."""
    _, order = acme.order([unique(label) for _ in range(count)])
    for _, authz in acme.authorizations(order):
        chall = next(c for c in authz["challenges"] if c["type"] == "http-01")
        assert acme.post(chall["url"], {}).status_code == 200


def _wait_held(handler: type[_Tarpit], count: int) -> None:
    deadline = time.monotonic() + 10
    while len(handler.held) < count and time.monotonic() < deadline:
        time.sleep(0.1)
    assert len(handler.held) >= count, "the flood's validations never reached the tarpit"


def _time_single_validation(acme: Acme, handler: type[_Tarpit]) -> float:
    """Seconds from accepting one answered challenge to its authorization being valid."""
    _, order = acme.order([unique("b")])
    [(authz_url, authz)] = acme.authorizations(order)
    chall = next(c for c in authz["challenges"] if c["type"] == "http-01")
    handler.answers[chall["token"]] = f"{chall['token']}.{acme.key_thumbprint()}"
    started = time.monotonic()
    assert acme.post(chall["url"], {}).status_code == 200
    done = acme.wait(authz_url, {"valid", "invalid"}, timeout=60)
    assert done["status"] == "valid", done
    return time.monotonic() - started


def _started_before_first_timeout(handler: type[_Tarpit]) -> int:
    """Held requests that began before the first one could time out (10 s): no retries yet."""
    first = handler.held[0]
    return len([t for t in handler.held if t < first + 9])


def test_one_account_cannot_starve_another(busy_gateway: GatewayProcess) -> None:
    with tarpit(busy_gateway.http01_port) as handler:
        _flood(new_account(busy_gateway), A_NAMES, "a")
        _wait_held(handler, 5)
        elapsed = _time_single_validation(new_account(busy_gateway), handler)
        assert elapsed < BOUND_SECONDS, f"account B waited {elapsed:.1f}s behind account A"
        # A is held to its cap (default 5 per process), not to the global 20.
        assert _started_before_first_timeout(handler) == 5, handler.held
        # ... and its waiting challenges are not stranded: when the first five time out,
        # the next ones are taken (before any retry, being due earlier).
        deadline = time.monotonic() + 30
        while len(handler.tokens) < 10 and time.monotonic() < deadline:
            time.sleep(0.2)
        assert len(handler.tokens) >= 10, handler.tokens


def test_one_registration_cannot_starve_another(tmp_path: Path, bind_server: BindServer) -> None:
    """Three accounts of one registration share its cap (4 here), below 3 x 5 per account."""
    gw = GatewayProcess(
        tmp_path,
        account_creation="pre-registered",
        dns_resolvers=(bind_server.resolver_address,),
        workers=1,  # the caps are per process: one process validates everything
        extra_args=("--validation-concurrency-per-registration", "4"),
    ).start()
    try:
        crowd = gw.create_registration("crowd", "--domain", "acme.test")
        other = gw.create_registration("other", "--domain", "acme.test")
        with tarpit(gw.http01_port) as handler:
            for i in range(3):
                acme = Acme(gw)
                acme.register(crowd)
                _flood(acme, 20, f"crowd{i}")
            _wait_held(handler, 4)
            b = Acme(gw)
            b.register(other)
            elapsed = _time_single_validation(b, handler)
            assert elapsed < BOUND_SECONDS, f"registration B waited {elapsed:.1f}s"
            assert _started_before_first_timeout(handler) == 4, handler.held
    finally:
        gw.stop()
