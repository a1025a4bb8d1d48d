"""Metrics (issue 14 item 1) from real `serve --workers 2` processes: only on the metrics
listener, the whole server's numbers whichever worker answers a scrape (also after a worker
was killed), every family the issue asks for moving with a real ACME flow, and a bounded
number of series however many distinct names, paths, IDs and methods clients send."""

from __future__ import annotations

import os
import signal
import socket
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
from cryptography import x509
from cryptography.hazmat.primitives import serialization

from tests.gateway_proc import GatewayProcess
from tests.infra.bind import BindServer
from tests.observe.support import samples, value
from tests.polling import wait_for
from tests.protocol.acme_client import b64, make_csr
from tests.protocol.support import Acme, assert_problem, new_account, unique

WORKERS = 2


def _gateway(tmp: Path, bind_server: BindServer) -> GatewayProcess:
    return GatewayProcess(
        tmp,
        workers=WORKERS,
        metrics=True,
        dns_resolvers=(bind_server.resolver_address,),
    )


@pytest.fixture(scope="module")
def gw(tmp_path_factory: pytest.TempPathFactory, bind_server: BindServer) -> Iterator[Any]:
    server = _gateway(tmp_path_factory.mktemp("gw-metrics"), bind_server)
    server.start()
    try:
        yield server
    finally:
        server.stop()


def _workers(gw: GatewayProcess) -> list[int]:
    assert gw.proc is not None
    children = Path(f"/proc/{gw.proc.pid}/task/{gw.proc.pid}/children").read_text().split()
    return [int(pid) for pid in children]


def _session(gw: GatewayProcess) -> requests.Session:
    session = requests.Session()
    session.trust_env = False
    session.verify = str(gw.root_pem)
    return session


def test_metrics_are_not_on_the_acme_port(gw: GatewayProcess) -> None:
    resp = _session(gw).get(f"{gw.base_url}/metrics", timeout=10)
    assert_problem(resp, "malformed", 404, "no such resource")
    assert "acme_gateway_" not in resp.text
    text = gw.metrics_text()
    assert "# TYPE acme_gateway_http_requests_total counter" in text


def test_every_scrape_is_the_whole_server(gw: GatewayProcess) -> None:
    """24 connections held open at once land on both workers (checked in /proc); every
    scrape, whichever worker answers it, counts all their requests and connections."""
    before = value(
        samples(gw.metrics_text()), "acme_gateway_http_requests_total", route="/directory"
    )
    sessions = [_session(gw) for _ in range(24)]
    for session in sessions:
        assert session.get(gw.directory_url, timeout=10).status_code == 200
    try:
        held = {pid: _connections_of(pid, gw.port) for pid in _workers(gw)}
        assert len(held) == WORKERS and all(held.values()), f"connections per worker: {held}"
        wait_for(
            "the open-connections gauge to add up both workers",
            lambda: value(samples(gw.metrics_text()), "acme_gateway_open_connections") >= 24,
            timeout=15,
        )
        for _ in range(8):  # fresh connections: the kernel picks the worker each time
            found = samples(_scrape_fresh(gw))
            count = value(found, "acme_gateway_http_requests_total", route="/directory")
            assert count == before + 24, (count, before)
    finally:
        for session in sessions:
            session.close()


def test_a_killed_workers_counts_stay_and_its_gauges_go(gw: GatewayProcess) -> None:
    before = samples(gw.metrics_text())
    requests_before = value(before, "acme_gateway_http_requests_total")
    victim = _workers(gw)[0]
    os.kill(victim, signal.SIGKILL)
    wait_for(
        "the supervisor to restart the killed worker",
        lambda: len(_workers(gw)) == WORKERS and victim not in _workers(gw),
        timeout=30,
    )
    wait_for("the restarted worker to serve", lambda: _directory_ok(gw), timeout=30)
    after = samples(gw.metrics_text())
    assert value(after, "acme_gateway_http_requests_total") >= requests_before
    # One open-connections value per live worker: the dead one's file was dropped.
    directory = _metrics_dir(gw)
    live_gauges = sorted(p.name for p in directory.glob("gauge_livesum_*.db"))
    assert f"gauge_livesum_{victim}.db" not in live_gauges, live_gauges


def test_every_family_moves_with_a_real_flow(gw: GatewayProcess) -> None:
    acme = new_account(gw)
    names = [unique("metrics")]
    order_url, order = acme.ready_order(names)
    csr_pem, _ = make_csr(names)
    assert acme.finalize(order, csr_pem).status_code == 200
    order = acme.wait(order_url, {"valid"})
    chain = acme.get(order["certificate"])
    der = x509.load_pem_x509_certificate(chain.content).public_bytes(serialization.Encoding.DER)
    revoke = acme.post(acme.directory["revokeCert"], {"certificate": b64(der), "reason": 1})
    assert revoke.status_code == 200, revoke.text
    found = samples(gw.metrics_text())
    assert value(found, "acme_gateway_certificates_issued_total") == 1
    assert value(found, "acme_gateway_issuance_duration_seconds_count") == 1
    assert value(found, "acme_gateway_revocations_total", reason="keyCompromise") == 1
    assert value(found, "acme_gateway_validations_total", type="http-01", outcome="valid") == 1
    assert (
        value(
            found, "acme_gateway_validation_duration_seconds_count", type="http-01", outcome="valid"
        )
        == 1
    )
    finalize = "/acme/order/{order_id}/finalize"
    assert value(found, "acme_gateway_http_requests_total", route=finalize, status="200") == 1
    assert value(found, "acme_gateway_http_request_duration_seconds_count", route=finalize) == 1
    assert value(found, "acme_gateway_store_unit_duration_seconds_count", kind="write") > 0
    assert value(found, "acme_gateway_store_unit_duration_seconds_count", kind="read") > 0
    assert value(found, "acme_gateway_nonces_issued_total") > 10
    names_found = {name for name, _, _ in found}
    for family in (
        "acme_gateway_store_unit_errors_total",
        "acme_gateway_validation_queue_depth",
        "acme_gateway_spent_nonces",
        "acme_gateway_jwk_cache_entries",
        "acme_gateway_open_connections",
    ):
        assert family in names_found, family


def test_queue_depth_and_retries_of_a_validation_that_waits(gw: GatewayProcess) -> None:
    """No responder on the http-01 port: the attempt fails transiently and is retried, so
    the challenge waits in the queue; the sampled depth shows it."""
    acme = new_account(gw)
    _, order = acme.order([unique("queue")])
    ((_, authz),) = acme.authorizations(order)
    chall = next(c for c in authz["challenges"] if c["type"] == "http-01")
    assert acme.post(chall["url"], {}).status_code == 200
    wait_for(
        "a retried attempt and a queue depth of at least 1",
        lambda: _retry_and_depth(gw),
        timeout=30,
    )


def _retry_and_depth(gw: GatewayProcess) -> bool:
    found = samples(gw.metrics_text())
    return (
        value(found, "acme_gateway_validations_total", outcome="retry") >= 1
        and value(found, "acme_gateway_validation_queue_depth") >= 1
    )


def test_series_stay_bounded_however_many_distinct_requests(
    tmp_path: Path, bind_server: BindServer
) -> None:
    server = _gateway(tmp_path, bind_server)
    server.start()
    try:
        acme = new_account(server)
        seen: list[str] = []
        _distinct_requests(server, acme, 8, seen, ODD_METHODS[:1])
        first = samples(server.metrics_text())
        _distinct_requests(server, acme, 40, seen, ODD_METHODS[1:])
        second = samples(server.metrics_text())
    finally:
        server.stop()
    series = lambda found: {(n, tuple(sorted(lbl.items()))) for n, lbl, _ in found}  # noqa: E731
    assert series(second) == series(first), series(second) ^ series(first)
    labels = {v for _, lbl, _ in second for v in lbl.values()}
    assert not labels & set(ODD_METHODS), labels & set(ODD_METHODS)
    assert not any(token in label for label in labels for token in seen)


# Methods HTTP parsers accept but no route has (each would be a series if methods were
# labels as sent).
ODD_METHODS = ("PUT", "DELETE", "PATCH", "OPTIONS", "PROPFIND", "MKCOL", "LOCK", "MOVE")


def _distinct_requests(
    gw: GatewayProcess, acme: Acme, count: int, seen: list[str], methods: tuple[str, ...]
) -> None:
    """Per round: a new name ordered, an unknown path, an unknown order ID, an odd method."""
    session = _session(gw)
    for i in range(count):
        token = uuid.uuid4().hex[:12]
        seen.append(token)
        assert acme.new_order([f"card-{token}.acme.test"]).status_code == 201
        assert session.get(f"{gw.base_url}/x-{token}", timeout=10).status_code == 404
        assert acme.get(f"{gw.base_url}/acme/order/o{token}").status_code == 404
        odd = session.request(methods[i % len(methods)], gw.directory_url, timeout=10)
        assert odd.status_code == 405, odd.status_code


def _scrape_fresh(gw: GatewayProcess) -> str:
    session = requests.Session()
    session.trust_env = False
    session.headers["Connection"] = "close"
    resp = session.get(f"http://127.0.0.1:{gw.metrics_port}/metrics", timeout=10)
    assert resp.status_code == 200
    return resp.text


def _directory_ok(gw: GatewayProcess) -> bool:
    try:
        return _session(gw).get(gw.directory_url, timeout=5).status_code == 200
    except requests.RequestException:
        return False


def _connections_of(pid: int, port: int) -> int:
    """Established connections to `port` that process `pid` holds."""
    inodes = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for line in Path(table).read_text().splitlines()[1:]:
            fields = line.split()
            if int(fields[1].rsplit(":", 1)[1], 16) == port and fields[3] == "01":
                inodes.add(int(fields[9]))
    held = 0
    for fd in Path(f"/proc/{pid}/fd").iterdir():
        try:
            target = os.readlink(fd)
        except OSError:
            continue
        if target.startswith("socket:[") and int(target[8:-1]) in inodes:
            held += 1
    return held


def _metrics_dir(gw: GatewayProcess) -> Path:
    """The supervisor's private metrics directory, found through a worker's mapped files."""
    for pid in _workers(gw):
        for line in Path(f"/proc/{pid}/maps").read_text().splitlines():
            path = line.split(maxsplit=5)[-1] if len(line.split()) >= 6 else ""
            if "acme-gateway-metrics-" in path:
                return Path(path).parent
    raise AssertionError("no worker maps a metrics file")


def test_metrics_dir_is_private_and_removed_on_exit(
    tmp_path: Path, bind_server: BindServer
) -> None:
    server = _gateway(tmp_path, bind_server)
    server.start()
    try:
        _directory_ok(server)
        directory = _metrics_dir(server)
        assert directory.stat().st_mode & 0o777 == 0o700
    finally:
        server.stop()
    assert not directory.exists()
    with socket.socket() as probe:  # and the listener is gone with it
        assert probe.connect_ex(("127.0.0.1", server.metrics_port or 0)) != 0
