"""`serve --workers N`: several processes on one port act as one server.

Connections are spread by the kernel (SO_REUSEPORT); each test opens fresh connections so
requests land on different workers, and checks that the workers really share the load.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import josepy
import pytest
import requests

from tests.gateway_proc import GATEWAY, GatewayProcess, client_env
from tests.polling import wait_for
from tests.protocol.acme_client import RawClient, ec_key
from tests.protocol.support import Acme, assert_problem

WORKERS = 2


@pytest.fixture(scope="module")
def gateway(tmp_path_factory: pytest.TempPathFactory) -> Iterator[GatewayProcess]:
    # A long account cache: what must take effect at once here does so by the shared
    # change counter, not because an entry happened to expire.
    gw = GatewayProcess(
        tmp_path_factory.mktemp("gw-workers"), workers=WORKERS, account_cache_seconds=60
    )
    gw.start()
    yield gw
    gw.stop()


def _workers(gw: GatewayProcess) -> list[int]:
    assert gw.proc is not None
    children = Path(f"/proc/{gw.proc.pid}/task/{gw.proc.pid}/children").read_text().split()
    return [int(pid) for pid in children]


def _established_to(port: int) -> set[int]:
    """Socket inodes of established TCP connections whose local port is `port`."""
    inodes = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for line in Path(table).read_text().splitlines()[1:]:
            fields = line.split()
            if int(fields[1].rsplit(":", 1)[1], 16) == port and fields[3] == "01":
                inodes.add(int(fields[9]))
    return inodes


def _sockets_of(pid: int) -> set[int]:
    out = set()
    for fd in Path(f"/proc/{pid}/fd").iterdir():
        try:
            target = os.readlink(fd)
        except OSError:
            continue
        if target.startswith("socket:["):
            out.add(int(target[8:-1]))
    return out


def _fresh(gw: GatewayProcess, key: josepy.JWK | None = None, kid: str | None = None) -> RawClient:
    """A client on a new connection (so possibly another worker)."""
    raw = RawClient(gw, key)
    raw.session.headers["Connection"] = "close"
    raw.kid = kid
    return raw


def test_every_worker_serves(gateway: GatewayProcess) -> None:
    workers = _workers(gateway)
    assert len(workers) == WORKERS, workers
    sessions = []
    for _ in range(24):
        session = requests.Session()
        session.trust_env = False
        session.verify = str(gateway.root_pem)
        assert session.get(gateway.directory_url, timeout=10).status_code == 200
        sessions.append(session)  # kept open: the connection stays with its worker
    established = _established_to(gateway.port)
    held = {pid: len(_sockets_of(pid) & established) for pid in workers}
    for session in sessions:
        session.close()
    assert all(count > 0 for count in held.values()), f"connections per worker: {held}"
    assert sum(held.values()) >= 24


def test_a_nonce_is_good_once_on_any_worker(gateway: GatewayProcess) -> None:
    key = ec_key()
    first = _fresh(gateway, key)
    assert first.create_account().status_code == 201
    for _ in range(12):
        nonce = _fresh(gateway).nonce()
        spend = _fresh(gateway, key, first.kid)
        ok = spend.post(spend.kid or "", None, nonce=nonce)
        assert ok.status_code == 200, ok.text
        again = _fresh(gateway, key, first.kid).post(first.kid or "", None, nonce=nonce)
        assert_problem(again, "badNonce", 400, "already been used")


def test_account_changes_reach_every_worker_at_once(gateway: GatewayProcess) -> None:
    acme = Acme(gateway)
    acme.register()
    for _ in range(8):  # warm every worker's cache with the account
        assert _fresh(gateway, acme.key, acme.account).post(acme.account, None).status_code == 200
    new_key = ec_key()
    rolled = acme.post(
        acme.directory["keyChange"],
        acme.sign(
            acme.directory["keyChange"],
            {"account": acme.account, "oldKey": acme.jwk()},
            key=new_key,
            use_kid=False,
            nonce=None,
        ),
    )
    assert rolled.status_code == 200, rolled.text
    for _ in range(8):  # the old key is refused by every worker, the new one accepted
        old = _fresh(gateway, acme.key, acme.account).post(acme.account, None)
        assert old.status_code in (400, 403), old.text
        new = _fresh(gateway, new_key, acme.account).post(acme.account, None)
        assert new.status_code == 200, new.text
    gone = _fresh(gateway, new_key, acme.account).post(acme.account, {"status": "deactivated"})
    assert gone.status_code == 200, gone.text
    for _ in range(8):
        refused = _fresh(gateway, new_key, acme.account).post(acme.account, None)
        assert_problem(refused, "unauthorized", 403, "deactivated")


def test_a_dead_worker_is_replaced(gateway: GatewayProcess) -> None:
    victim = _workers(gateway)[0]
    os.kill(victim, signal.SIGKILL)
    replaced = wait_for(
        "the supervisor to start a new worker",
        lambda: (pids := _workers(gateway)) and victim not in pids and len(pids) == WORKERS,
        timeout=30,
        interval=0.2,
    )
    assert replaced
    for _ in range(10):
        assert _fresh(gateway).session.get(gateway.directory_url, timeout=10).ok


def test_sigterm_to_the_supervisor_stops_every_worker(tmp_path: Path) -> None:
    gw = GatewayProcess(tmp_path, workers=WORKERS)
    gw.start()
    assert gw.proc is not None
    workers = _workers(gw)
    gw.proc.send_signal(signal.SIGTERM)  # the supervisor alone, not its process group
    assert gw.proc.wait(timeout=40) == 0
    gw.proc = None
    for pid in workers:
        assert not Path(f"/proc/{pid}").exists() or "zombie" in _state(pid), pid


def _state(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/status").read_text().lower()
    except OSError:
        return "zombie"


def test_a_port_taken_by_another_program_fails_the_start(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        gw = GatewayProcess(tmp_path, workers=WORKERS, port=port)
        started = time.monotonic()
        result = subprocess.run(
            gw.command(), capture_output=True, text=True, timeout=120, env=client_env()
        )
    assert result.returncode != 0
    assert "while starting" in result.stderr, result.stderr
    assert "address already in use" in result.stderr.lower(), result.stderr
    assert time.monotonic() - started < 60
    assert GATEWAY in gw.command()
