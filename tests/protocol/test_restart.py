"""Validation survives a server restart: nothing about pending work lives only in memory.

One order, two names, stopped in the two states background validation can be in:
- dns-01 *between attempts*: the TXT record is missing, the attempt failed and a retry is
  scheduled (backoff) when the server stops; the record appears while it is down.
- http-01 *during an attempt*: the responder accepted the connection and holds the answer
  when the server stops, so the dead process still holds the challenge's lease.
After SIGTERM the lease is handed back and the new process validates at once; after SIGKILL
nobody can hand it back, so the new process waits for it to run out (30 s) and then
validates exactly once more. Either way the order completes and issues.
"""

from __future__ import annotations

import asyncio
import datetime
import secrets
import signal
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from acme import challenges, messages
from acme.client import ClientV2
from cryptography import x509
from cryptography.x509 import DNSName

from acme_server.store.database import Database, default_database_url
from acme_server.store.schema import challenges as challenge_table
from tests.gateway_proc import GatewayProcess
from tests.infra.bind import BindServer
from tests.polling import wait_for
from tests.protocol.acme_client import ec_key, make_csr, new_client, register, serving

LEASE_SECONDS = 30  # acme_server.validation.scheduler.LEASE


@dataclass
class HeldResponder:
    """Answers one http-01 token, but only once `release` is set; counts every request."""

    token: str
    body: str
    release: threading.Event = field(default_factory=threading.Event)
    hits: list[float] = field(default_factory=list)
    hit: threading.Event = field(default_factory=threading.Event)


@contextmanager
def held_http01_responder(port: int, responder: HeldResponder) -> Iterator[HeldResponder]:
    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            if self.path != f"/.well-known/acme-challenge/{responder.token}":
                self.send_response(404)
                self.end_headers()
                return
            responder.hits.append(time.monotonic())
            responder.hit.set()
            responder.release.wait(120)
            try:
                self.send_response(200)
                self.send_header("Content-Type", "text/plain")
                self.end_headers()
                self.wfile.write(responder.body.encode())
            except OSError:
                pass  # the validating server died while we held the answer

        def log_message(self, *args: Any) -> None:
            pass

    with serving(port, Handler):
        try:
            yield responder
        finally:
            responder.release.set()  # before the server shuts down: a held request ends


def _get(acme: ClientV2, url: str) -> dict[str, Any]:
    return dict(acme._post_as_get(url).json())


def _lease_of(gw: GatewayProcess, challenge_url: str) -> datetime.datetime | None:
    """The challenge's lease as the store has it (read while no server runs)."""

    async def read() -> datetime.datetime | None:
        db = await Database.open(gw.database or default_database_url(gw.data_dir), migrate=False)
        try:

            def _unit(conn: sa.Connection) -> Any:
                query = sa.select(challenge_table.c.lease_until).where(
                    challenge_table.c.id == challenge_url.rsplit("/", 1)[1]
                )
                value = (conn.execute(query)).scalar_one()
                return value

            value = await db.write(_unit)
        finally:
            await db.close()
        if value is not None and value.tzinfo is None:
            value = value.replace(tzinfo=datetime.UTC)
        return value

    return asyncio.run(read())


def _client_for(gw: GatewayProcess, key: Any, account: messages.RegistrationResource) -> ClientV2:
    acme = new_client(gw, key)
    acme.net.account = account
    return acme


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGKILL], ids=["sigterm", "sigkill"])
def test_validation_resumes_after_restart(
    tmp_path: Path,
    bind_server: BindServer,
    store_backend: str,
    request: pytest.FixtureRequest,
    sig: signal.Signals,
) -> None:
    database = None
    if store_backend == "postgres":
        database = request.getfixturevalue("postgres_server").create_database()
    gw = GatewayProcess(
        tmp_path / "gw", database=database, dns_resolvers=(bind_server.resolver_address,)
    )
    gw.start()
    try:
        _restart_during_validation(gw, bind_server, sig)
    except BaseException:
        print(f"--- {gw.log_path} ---\n{gw.log_tail(120)}")
        raise
    finally:
        gw.stop()


def _restart_during_validation(gw: GatewayProcess, bind: BindServer, sig: signal.Signals) -> None:
    label = secrets.token_hex(3)
    dns_name, http_name = f"dns-{label}.acme.test", f"http-{label}.acme.test"
    key = ec_key()
    acme = new_client(gw, key)
    account = register(acme)
    order = acme.new_order(make_csr([dns_name, http_name])[0])
    by_name = {a.body.identifier.value: a for a in order.authorizations}

    def pick(name: str, kind: type) -> messages.ChallengeBody:
        return next(c for c in by_name[name].body.challenges if isinstance(c.chall, kind))

    dns_chall, http_chall = pick(dns_name, challenges.DNS01), pick(http_name, challenges.HTTP01)
    _, dns_value = dns_chall.response_and_validation(key)
    _, http_body = http_chall.response_and_validation(key)
    responder = HeldResponder(http_chall.chall.encode("token"), http_body)

    with held_http01_responder(gw.http01_port, responder):
        # dns-01 first: no TXT record yet, so the first attempt fails and a retry is due later.
        acme.answer_challenge(dns_chall, dns_chall.response(key))
        failed = wait_for(
            "the first dns-01 attempt to fail",
            lambda: (c := _get(acme, dns_chall.uri)).get("error") and c,
            timeout=20,
            interval=0.25,
        )
        assert failed["status"] == "processing", failed
        assert "No TXT record" in failed["error"]["detail"], failed
        # http-01 next: the responder takes the request and holds the answer.
        acme.answer_challenge(http_chall, http_chall.response(key))
        assert responder.hit.wait(20), "the server never fetched the http-01 token"
        claimed_at = responder.hits[0]
        assert _get(acme, http_chall.uri)["status"] == "processing"

        gw.stop(sig)
        lease = _lease_of(gw, http_chall.uri)
        if sig == signal.SIGKILL:
            assert lease is not None and lease > datetime.datetime.now(datetime.UTC), lease
        else:
            assert lease is None, f"SIGTERM left the in-flight challenge leased until {lease}"
        bind.nsupdate_add_txt(f"_acme-challenge.{dns_name}", dns_value)
        responder.release.set()
        gw.start()
        restarted_at = time.monotonic()
        acme = _client_for(gw, key, account)

        order_url = order.uri
        ready = wait_for(
            "the order to become ready after the restart",
            lambda: (o := _get(acme, order_url))["status"] != "pending" and o,
            timeout=LEASE_SECONDS + 45,
            interval=0.25,
        )
        assert ready["status"] == "ready", ready
        valid_at = time.monotonic()

    assert _get(acme, dns_chall.uri)["status"] == "valid"
    http_state = _get(acme, http_chall.uri)
    assert http_state["status"] == "valid" and "error" not in http_state, http_state
    # One fetch before the stop and exactly one after it: never validated twice at once.
    assert len(responder.hits) == 2, responder.hits
    refetch_delay = responder.hits[1] - claimed_at
    if sig == signal.SIGKILL:
        assert refetch_delay >= LEASE_SECONDS - 2, (
            f"a dead process's lease was taken over after {refetch_delay:.1f}s, before it expired"
        )
    else:
        after_restart = responder.hits[1] - restarted_at
        assert after_restart < 10, (
            f"the released challenge was refetched only {after_restart:.1f}s after the restart"
        )
    assert valid_at - claimed_at < LEASE_SECONDS + 40

    done = acme.finalize_order(
        order.update(body=messages.Order.from_json(ready)),
        datetime.datetime.now() + datetime.timedelta(seconds=30),
    )
    leaf = x509.load_pem_x509_certificates(done.fullchain_pem.encode())[0]
    sans = leaf.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert sorted(sans.get_values_for_type(DNSName)) == sorted([dns_name, http_name])
    bind.nsupdate_delete_txt(f"_acme-challenge.{dns_name}")
