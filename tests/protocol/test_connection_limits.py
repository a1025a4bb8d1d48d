"""Limits that hold under hostile clients (issue 8, items 13 and 14): slowloris connections
are closed on time over HTTPS and plain HTTP, slow bodies get 408, a connection cap answers
503, and junk in JWKs cannot pin server memory. Each test runs its own server process with
short limits, so the attacks take seconds."""

from __future__ import annotations

import json
import re
import secrets
import socket
import subprocess
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import Any

import josepy
import pytest
import requests

from tests.gateway_proc import GATEWAY, GatewayProcess, client_env
from tests.procs import free_port, stop_process
from tests.protocol import raw_http
from tests.protocol.acme_client import b64
from tests.protocol.support import new_account

HEAD_TIMEOUT = 2.0
BODY_TIMEOUT = 3.0
SLACK = 3.0  # a loaded 2-core CI machine


@pytest.fixture(scope="module")
def strict_gw(tmp_path_factory: pytest.TempPathFactory) -> Iterator[GatewayProcess]:
    gw = GatewayProcess(
        tmp_path_factory.mktemp("gw-limits"),
        workers=1,  # the caps are per process: one process, so every connection meets them
        extra_args=(
            "--request-head-timeout",
            f"{HEAD_TIMEOUT:.0f}s",
            "--body-timeout",
            f"{BODY_TIMEOUT:.0f}s",
        ),
    )
    gw.start()
    try:
        yield gw
    finally:
        gw.stop()


def _half_head(sock: socket.socket) -> socket.socket:
    sock.sendall(b"POST /acme/new-account HTTP/1.1\r\nHost: localhost\r\nContent-Ty")
    return sock


def _all_closed(socks: list[socket.socket], deadline: float) -> list[int]:
    """Indexes of the sockets the server did NOT close by `deadline`."""
    return [i for i, sock in enumerate(socks) if not raw_http.closed_by_peer(sock, deadline)]


def test_slowloris_connections_are_closed_https(strict_gw: GatewayProcess) -> None:
    """50 TLS connections with half a request head (plus keep-alive and handshake-less
    variants) are closed within the head timeout, and a normal client is served meanwhile."""
    socks = [_half_head(raw_http.connect(strict_gw.port, strict_gw.root_pem)) for _ in range(50)]
    for _ in range(5):  # a complete first request, then half of the second
        sock = raw_http.connect(strict_gw.port, strict_gw.root_pem)
        sock.sendall(raw_http.request_head("GET", "/directory", {}))
        assert raw_http.read_response(sock).status == 200
        socks.append(_half_head(sock))
    for _ in range(5):  # TCP only: the TLS handshake never starts
        socks.append(socket.create_connection(("127.0.0.1", strict_gw.port)))
    opened = time.monotonic()
    served = requests.get(strict_gw.directory_url, verify=str(strict_gw.root_pem), timeout=5)
    assert served.status_code == 200
    try:
        # each is closed HEAD_TIMEOUT after its own connect; the last connected at `opened`
        open_after = _all_closed(socks, opened + HEAD_TIMEOUT + SLACK)
        assert not open_after, f"{len(open_after)} of {len(socks)} connections still open"
    finally:
        for sock in socks:
            sock.close()


def test_trickled_head_is_closed(strict_gw: GatewayProcess) -> None:
    """A byte every 0.2 s does not keep a request head alive: the deadline is absolute."""
    sock = raw_http.connect(strict_gw.port, strict_gw.root_pem)
    start = time.monotonic()
    head = b"POST /acme/new-account HTTP/1.1\r\nHost: localhost\r\nX-Slow: " + b"a" * 1000
    closed_at = None
    with sock:
        for byte in head:
            try:
                sock.sendall(bytes([byte]))
            except OSError:
                closed_at = time.monotonic()
                break
            if raw_http.closed_by_peer(sock, time.monotonic() + 0.2):
                closed_at = time.monotonic()
                break
    assert closed_at is not None, "the trickled head was never cut off"
    assert closed_at - start < HEAD_TIMEOUT + SLACK


def test_slow_body_gets_408(strict_gw: GatewayProcess) -> None:
    with raw_http.connect(strict_gw.port, strict_gw.root_pem) as sock:
        head = raw_http.request_head(
            "POST",
            "/acme/new-account",
            {"Content-Type": "application/jose+json", "Content-Length": "1000"},
        )
        sock.sendall(head + b'{"protected": "')
        start = time.monotonic()
        sock.settimeout(BODY_TIMEOUT + SLACK)
        resp = raw_http.read_response(sock)
        elapsed = time.monotonic() - start
        assert resp.status == 408, resp
        doc = json.loads(resp.body)
        assert doc["type"] == "urn:ietf:params:acme:error:malformed" and doc["status"] == 408
        assert "did not arrive within 3 seconds" in doc["detail"]
        assert BODY_TIMEOUT - 0.5 < elapsed < BODY_TIMEOUT + SLACK
        # the unread rest of the body is drained for 2 s at most, then the server closes
        assert raw_http.closed_by_peer(sock, time.monotonic() + 2.0 + SLACK)


def test_connection_cap_https(tmp_path: Path) -> None:
    gw = GatewayProcess(tmp_path, workers=1, extra_args=("--max-connections", "10"))
    gw.start()
    try:
        held = [raw_http.connect(gw.port, gw.root_pem) for _ in range(10)]
        time.sleep(0.5)  # the server counts a connection once its handshake completes
        busy = requests.get(
            gw.directory_url, verify=str(gw.root_pem), timeout=5, headers={"Connection": "close"}
        )
        assert busy.status_code == 503, busy.text
        assert busy.headers["Retry-After"] == "5"
        assert busy.json()["detail"] == "the server has too many open connections; retry later"
        for sock in held[:3]:
            sock.close()
        time.sleep(0.5)
        ok = requests.get(gw.directory_url, verify=str(gw.root_pem), timeout=5)
        assert ok.status_code == 200
        for sock in held[3:]:
            sock.close()
    finally:
        gw.stop()


@contextmanager
def _plain_server(tmp_path: Path, *args: str) -> Iterator[int]:
    """`serve --insecure-http` (GatewayProcess only speaks HTTPS)."""
    port = free_port()
    log_path = tmp_path / "plain.log"
    with log_path.open("wb") as log:
        proc = subprocess.Popen(
            [
                GATEWAY,
                "serve",
                "--insecure-http",
                "--listen",
                f"127.0.0.1:{port}",
                "--data-dir",
                str(tmp_path / "data"),
                "--workers",
                "1",  # the caps are per process
                *args,
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
            env=client_env(),
        )
    try:
        deadline = time.monotonic() + 60
        while True:
            assert proc.poll() is None, log_path.read_text()
            assert time.monotonic() < deadline, log_path.read_text()
            with suppress(OSError):
                urllib.request.urlopen(f"http://127.0.0.1:{port}/directory", timeout=2).close()
                break
            time.sleep(0.2)
        yield port
    finally:
        stop_process(proc)


def test_slowloris_and_cap_plain_http(tmp_path: Path) -> None:
    with _plain_server(
        tmp_path, "--request-head-timeout", f"{HEAD_TIMEOUT:.0f}s", "--max-connections", "20"
    ) as port:
        socks = [_half_head(raw_http.connect(port, None)) for _ in range(20)]
        opened = time.monotonic()
        time.sleep(0.3)
        with raw_http.connect(port, None) as extra:
            extra.sendall(raw_http.request_head("GET", "/directory", {}))
            busy = raw_http.read_response(extra)
        assert busy.status == 503, busy
        try:
            open_after = _all_closed(socks, opened + HEAD_TIMEOUT + SLACK)
            assert not open_after, f"{len(open_after)} of {len(socks)} connections still open"
        finally:
            for sock in socks:
                sock.close()
        time.sleep(0.3)
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/directory", timeout=5) as resp:
            assert resp.status == 200


# --- item 14: the key cache -------------------------------------------------------------------


def _rss_bytes(pid: int) -> int:
    status = Path(f"/proc/{pid}/status").read_text()
    match = re.search(r"VmRSS:\s+(\d+) kB", status)
    assert match, status
    return int(match.group(1)) * 1024


def _metric(gw: GatewayProcess, name: str) -> float:
    text = gw.metrics_text()  # the metrics listener, not the ACME port
    match = re.search(rf"^{name} (\S+)$", text, re.MULTILINE)
    assert match, f"{name} not in /metrics"
    return float(match.group(1))


def test_junk_jwk_members_do_not_pin_memory(tmp_path: Path) -> None:
    """2,000 newAccount lookups, each JWK with a distinct 16 KB junk member, half of them
    with a broken signature: the server's memory and key cache stay flat."""
    gw = GatewayProcess(tmp_path, metrics=True)
    gw.start()
    try:
        acme = new_account(gw)
        url = acme.directory["newAccount"]
        payload = b64(json.dumps({"onlyReturnExisting": True}).encode())
        nonce = acme.nonce()

        def junk_request(i: int) -> None:
            nonlocal nonce
            jwk: dict[str, Any] = {**acme.jwk(), f"junk{i}": secrets.token_urlsafe(12_000)}
            header = {"alg": "ES256", "nonce": nonce, "url": url, "jwk": jwk}
            protected = b64(json.dumps(header).encode())
            sig = josepy.ES256.sign(acme.key.key, f"{protected}.{payload}".encode())
            if i % 2:
                sig = bytes(32) + sig[32:]
            body = {"protected": protected, "payload": payload, "signature": b64(sig)}
            resp = acme.post(url, body=body)
            assert resp.status_code == (400 if i % 2 else 200), resp.text[:300]
            nonce = resp.headers["Replay-Nonce"]

        for i in range(200):  # warm up allocator pools before the baseline
            junk_request(i)
        assert gw.proc is not None
        before = _rss_bytes(gw.proc.pid)
        for i in range(200, 2200):
            junk_request(i)
        grown = _rss_bytes(gw.proc.pid) - before
        assert grown < 16 * 1024 * 1024, f"server RSS grew by {grown / 2**20:.1f} MiB"
        assert _metric(gw, "acme_gateway_jwk_cache_entries") <= 2
    finally:
        gw.stop()
