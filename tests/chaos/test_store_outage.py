"""While PostgreSQL is down every ACME endpoint answers 503 with `Retry-After` and a
serverInternal problem document (never a 500, no traceback in the log), and the server
recovers by itself when the database is back.

Both nonce scopes: with `store` the nonce spend is the first thing to fail; with `server`
(nonces in shared memory, accounts from the cache) the handlers' own units fail.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import requests
from cryptography import x509
from cryptography.hazmat.primitives import serialization

from tests.gateway_proc import GatewayProcess
from tests.infra.bind import BindServer
from tests.infra.postgres import PostgresServer
from tests.polling import wait_for
from tests.protocol.acme_client import b64, make_csr
from tests.protocol.support import ERR, PROBLEM_JSON, Acme, new_account, unique

pytestmark = pytest.mark.postgres


@pytest.fixture(params=["store", "server"])
def gateway(
    request: pytest.FixtureRequest,
    own_postgres: PostgresServer,
    bind_server: BindServer,
    tmp_path: Path,
) -> Iterator[GatewayProcess]:
    gw = GatewayProcess(
        tmp_path / "gw",
        database=own_postgres.create_database(),
        dns_resolvers=(bind_server.resolver_address,),
        workers=1,
        extra_args=("--nonce-scope", request.param),
    )
    gw.start()
    try:
        yield gw
    finally:
        gw.stop()


def test_every_endpoint_answers_503_while_the_database_is_down_and_recovers(
    gateway: GatewayProcess, own_postgres: PostgresServer
) -> None:
    gw, pg = gateway, own_postgres
    acme = new_account(gw)
    issued_url, issued = acme.ready_order([unique("issued")])
    csr_pem, _ = make_csr(issued["identifiers"][0]["value"].split())
    assert acme.finalize(issued, csr_pem).status_code == 200
    issued = acme.wait(issued_url, {"valid"})
    cert = acme.get(issued["certificate"])
    assert cert.status_code == 200
    der = x509.load_pem_x509_certificate(cert.content).public_bytes(serialization.Encoding.DER)
    pending_url, pending = acme.order([unique("pending")])
    authz_url = pending["authorizations"][0]
    chall_url = next(c["url"] for c in acme.get(authz_url).json()["challenges"])
    other_csr, _ = make_csr([pending["identifiers"][0]["value"]])

    calls: dict[str, Callable[[], requests.Response]] = {
        "newAccount": lambda: Acme(gw).create_account(),
        "account": lambda: acme.post(acme.account, None),
        "newOrder": lambda: acme.new_order([unique("new")]),
        "order": lambda: acme.get(pending_url),
        "authz": lambda: acme.get(authz_url),
        "challenge": lambda: acme.post(chall_url, {}),
        "finalize": lambda: acme.finalize(pending, other_csr),
        "certificate": lambda: acme.get(issued["certificate"]),
        "revokeCert": lambda: acme.post(acme.directory["revokeCert"], {"certificate": b64(der)}),
    }

    pg.stop_server()
    try:
        time.sleep(acme_cache_bound(gw))  # the account cache expires: lookups hit the store
        for what, call in calls.items():
            resp = call()
            assert resp.status_code == 503, (what, resp.status_code, resp.text)
            assert resp.headers["Content-Type"].startswith(PROBLEM_JSON), what
            assert resp.json()["type"] == ERR + "serverInternal", (what, resp.text)
            assert int(resp.headers["Retry-After"]) >= 1, what
            assert resp.headers.get("Replay-Nonce"), what  # the client can retry at once
        # Directory and nonces need no database: they keep working.
        assert requests.get(gw.directory_url, verify=str(gw.root_pem), timeout=10).ok
        assert acme.nonce()
    finally:
        pg.start_server()

    # Recovery without a restart: the pool drops dead connections and reconnects.
    def issues() -> bool:
        resp = acme.new_order([unique("after")])
        return resp.status_code == 201

    wait_for("the server to use the restarted database", issues, timeout=15, interval=0.5)
    acme.issue([unique("recovered")])  # answers http-01 itself
    log = gw.log_path.read_text(errors="replace")
    assert "Traceback" not in log, gw.log_tail(80)
    assert "store unavailable handling POST" in log


def acme_cache_bound(gw: GatewayProcess) -> float:
    return gw.account_cache_seconds + 0.2
