"""Graceful shutdown (issue 14 item 6) of real server processes: on SIGTERM the server stops
accepting at once, a request in flight still gets its normal answer, one that outlives
`--shutdown-timeout` is cut off so the process exits 0 within the bound, and a validation
in flight hands its lease back so the next server validates it at once."""

from __future__ import annotations

import json
import signal
import socket
import sqlite3
import ssl
import threading
import time
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from typing import Any

import pytest

from tests.gateway_proc import GatewayProcess
from tests.infra.bind import BindServer
from tests.observe.support import samples, value
from tests.polling import wait_for
from tests.procs import free_port
from tests.protocol import raw_http
from tests.protocol.acme_client import http01_responder, serving
from tests.protocol.support import Acme, new_account, unique

SLACK = 5.0  # a loaded 2-core machine


def _signed_new_account(gw: GatewayProcess) -> bytes:
    acme = Acme(gw)
    jws = acme.sign(acme.directory["newAccount"], {"termsOfServiceAgreed": True}, use_kid=False)
    return json.dumps(jws).encode()


def _start_slow_post(gw: GatewayProcess, body: bytes) -> ssl.SSLSocket:
    """A newAccount POST whose body is half sent: once this returns, its handler is in
    flight, reading (the server's in-flight gauge says so)."""
    sock = raw_http.connect(gw.port, gw.root_pem, timeout=30)
    assert isinstance(sock, ssl.SSLSocket)
    head = raw_http.request_head(
        "POST",
        "/acme/new-account",
        {"Content-Type": "application/jose+json", "Content-Length": str(len(body))},
    )
    sock.sendall(head + body[: len(body) // 2])
    wait_for(
        "the request to be in its handler",
        lambda: value(samples(gw.metrics_text()), "acme_gateway_http_requests_in_flight") >= 1,
        timeout=20,
        interval=0.1,
    )
    return sock


def _refused(port: int) -> bool:
    with socket.socket() as probe:
        probe.settimeout(2)
        return probe.connect_ex(("127.0.0.1", port)) != 0


def _wait_refused(gw: GatewayProcess, within: float) -> float:
    """Seconds until a new connection is refused (fails after `within`)."""
    start = time.monotonic()
    while not _refused(gw.port):
        assert time.monotonic() - start < within, "new connections are still accepted"
        time.sleep(0.05)
    return time.monotonic() - start


def _terminate(gw: GatewayProcess) -> tuple[Any, float]:
    """SIGTERM to the main process only (with --workers, the supervisor forwards it)."""
    assert gw.proc is not None
    proc = gw.proc
    proc.send_signal(signal.SIGTERM)
    return proc, time.monotonic()


@pytest.mark.parametrize("workers", [1, 2])
def test_in_flight_request_finishes_and_the_server_exits_0(tmp_path: Path, workers: int) -> None:
    gw = GatewayProcess(
        tmp_path, workers=workers, metrics=True, extra_args=("--shutdown-timeout", "15s")
    )
    gw.start()
    try:
        body = _signed_new_account(gw)
        sock = _start_slow_post(gw, body)
        proc, sent = _terminate(gw)
        _wait_refused(gw, within=5)
        assert proc.poll() is None, "the server exited with a request in flight"
        sock.sendall(body[len(body) // 2 :])
        answer = raw_http.read_response(sock)
        sock.close()
        assert answer.status == 201, answer
        assert json.loads(answer.body)["status"] == "valid"
        assert answer.headers.get("replay-nonce")
        assert proc.wait(timeout=15 + SLACK) == 0, gw.log_tail()
        assert time.monotonic() - sent < 15, "it waited for nothing once the request finished"
        assert "stopped accepting" in gw.log_path.read_text()
    finally:
        gw.stop()


@pytest.mark.parametrize("workers", [1, 2])
def test_a_request_that_never_finishes_is_cut_at_the_bound(tmp_path: Path, workers: int) -> None:
    timeout = 3.0
    gw = GatewayProcess(
        tmp_path, workers=workers, metrics=True, extra_args=("--shutdown-timeout", "3s")
    )
    gw.start()
    try:
        sock = _start_slow_post(gw, _signed_new_account(gw))  # the rest never comes
        proc, sent = _terminate(gw)
        _wait_refused(gw, within=5)
        assert proc.wait(timeout=timeout + 2 + SLACK) == 0, gw.log_tail()
        elapsed = time.monotonic() - sent
        assert timeout - 0.5 <= elapsed, f"exited after {elapsed:.1f}s: did not wait for it"
        assert raw_http.closed_by_peer(sock, time.monotonic() + 2)
        sock.close()
    finally:
        gw.stop()


def _hanging_responder(arrived: threading.Event) -> type[BaseHTTPRequestHandler]:
    """An http-01 responder that never answers: the validation stays in flight."""

    class Hanging(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            arrived.set()
            time.sleep(30)

        def log_message(self, *args: Any) -> None:
            pass

    return Hanging


def test_a_validation_in_flight_hands_its_lease_back(
    tmp_path: Path, bind_server: BindServer
) -> None:
    resolvers = (bind_server.resolver_address,)
    gw = GatewayProcess(
        tmp_path, workers=1, dns_resolvers=resolvers, extra_args=("--shutdown-timeout", "3s")
    )
    gw.start()
    try:
        acme = new_account(gw)
        order_url, order = acme.order([unique("drain")])
        ((authz_url, authz),) = acme.authorizations(order)
        chall = next(c for c in authz["challenges"] if c["type"] == "http-01")
        arrived = threading.Event()
        with serving(gw.http01_port, _hanging_responder(arrived)):
            assert acme.post(chall["url"], {}).status_code == 200
            assert arrived.wait(15), "the validation never reached the responder"
            proc, _ = _terminate(gw)
            assert proc.wait(timeout=3 + 2 + SLACK) == 0, gw.log_tail()
    finally:
        gw.stop()
    challenge_id = chall["url"].rsplit("/", 1)[1]
    with sqlite3.connect(tmp_path / "acme-gateway.sqlite3") as db:
        status, lease = db.execute(
            "SELECT status, lease_until FROM challenges WHERE id = ?", (challenge_id,)
        ).fetchone()
    assert status == "processing" and lease is None, (status, lease)
    # The next server validates it at once (no 30 s lease to wait out).
    again = GatewayProcess(
        tmp_path, workers=1, dns_resolvers=resolvers, port=gw.port, http01_port=gw.http01_port
    )
    again.start()
    try:
        with http01_responder(gw.http01_port) as tokens:
            tokens[chall["token"]] = f"{chall['token']}.{acme.key_thumbprint()}"
            started = time.monotonic()
            assert acme.wait(authz_url, {"valid", "invalid"}, timeout=20)["status"] == "valid"
            assert time.monotonic() - started < 15
        assert acme.wait(order_url, {"ready"})["status"] == "ready"
    finally:
        again.stop()


def test_the_relying_party_listener_stops_with_the_acme_listener(tmp_path: Path) -> None:
    """CRL/OCSP (`--crl-listen`) is drained with the ACME port, not left accepting while
    ACME requests finish and then closed on its own schedule."""
    crl_port = free_port()
    gw = GatewayProcess(
        tmp_path,
        workers=1,
        metrics=True,
        extra_args=("--shutdown-timeout", "15s", "--crl-listen", f"127.0.0.1:{crl_port}"),
    )
    gw.start()
    try:
        assert not _refused(crl_port)
        body = _signed_new_account(gw)
        sock = _start_slow_post(gw, body)
        proc, _ = _terminate(gw)
        _wait_refused(gw, within=5)
        assert _refused(crl_port), "the CRL listener still accepts during the drain"
        assert proc.poll() is None, "the server exited with a request in flight"
        sock.sendall(body[len(body) // 2 :])
        answer = raw_http.read_response(sock)
        sock.close()
        assert answer.status == 201, answer
        assert proc.wait(timeout=15 + SLACK) == 0, gw.log_tail()
    finally:
        gw.stop()
