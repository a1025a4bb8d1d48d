"""Two servers on one PostgreSQL store behave as one ACME server.

Each server has its own base URL (so its own `url`/`kid` prefix), but accounts, orders,
challenges and the CA are shared: an order may be worked on in both. They run with
`--nonce-scope store`, as replicas behind a load balancer do, so nonces are shared too;
with the default scope a nonce is good only on the server (any of its workers) that made it.
"""

from __future__ import annotations

import datetime
import secrets
from collections.abc import Iterator

import josepy
import pytest
from acme import challenges, errors, messages
from acme.client import ClientV2

from tests.chains import verify_chain
from tests.gateway_proc import GatewayProcess
from tests.infra.bind import BindServer
from tests.infra.postgres import PostgresServer
from tests.procs import free_port
from tests.protocol.acme_client import (
    RawClient,
    ec_key,
    http01_responder,
    make_csr,
    new_client,
    register,
)

STORE_NONCES = ("--nonce-scope", "store")


@pytest.fixture(scope="module", params=["shared-data-dir", "given-ca"])
def pair(
    request: pytest.FixtureRequest,
    tmp_path_factory: pytest.TempPathFactory,
    postgres_server: PostgresServer,
    bind_server: BindServer,
) -> Iterator[tuple[GatewayProcess, GatewayProcess]]:
    """Servers A and B on one database and one http-01 port, issuing from one CA.

    `shared-data-dir`: both use one data directory, so B loads the CA A generated.
    `given-ca`: B has a data directory of its own and gets A's issuing CA as
    `--ca-cert`/`--ca-key`, as replicas sharing a CA Secret would.
    """
    database = postgres_server.create_database()
    http01_port = free_port()
    resolvers = (bind_server.resolver_address,)
    data_a = tmp_path_factory.mktemp("gw-pair-a")
    server_a = GatewayProcess(
        data_a,
        database=database,
        http01_port=http01_port,
        dns_resolvers=resolvers,
        extra_args=STORE_NONCES,
    )
    servers = [server_a]
    try:
        server_a.start()
        extra: tuple[str, ...] = ()
        data_b = data_a
        if request.param == "given-ca":
            ca_dir = data_a / "ca"
            bundle = data_a / "issuer-bundle.pem"
            bundle.write_bytes(
                (ca_dir / "intermediate.crt").read_bytes() + (ca_dir / "root.crt").read_bytes()
            )
            extra = ("--ca-cert", str(bundle), "--ca-key", str(ca_dir / "intermediate.key"))
            data_b = tmp_path_factory.mktemp("gw-pair-b")
        extra += STORE_NONCES
        server_b = GatewayProcess(
            data_b,
            database=database,
            http01_port=http01_port,
            dns_resolvers=resolvers,
            extra_args=extra,
        )
        servers.append(server_b)
        server_b.start()
        yield server_a, server_b
    finally:
        for server in servers:
            server.stop()


def _on(gw: GatewayProcess, url: str) -> str:
    """The same resource as seen through `gw` (only the base URL differs between servers)."""
    path = url.split("/", 3)[3]
    return f"{gw.base_url}/{path}"


def _lookup_account(acme: ClientV2) -> str:
    """Find the key's existing account (no EAB, no new account) and sign with its kid."""
    try:
        acme.new_account(messages.NewRegistration(only_return_existing=True))
    except errors.ConflictError as existing:
        location = existing.location
    else:
        raise AssertionError("onlyReturnExisting created an account instead of finding it")
    acme.net.account = messages.RegistrationResource(uri=location, body=messages.Registration())
    return str(location)


def test_order_across_two_processes(pair: tuple[GatewayProcess, GatewayProcess]) -> None:
    gw_a, gw_b = pair
    assert gw_a.root_pem.read_bytes() == gw_b.root_pem.read_bytes(), "one CA for both"
    key = ec_key()
    on_a = new_client(gw_a, key)
    on_b = new_client(gw_b, key)
    account_a = register(on_a).uri
    account_b = _lookup_account(on_b)
    assert account_b == _on(gw_b, account_a)

    names = [f"multi-{secrets.token_hex(3)}.acme.test"]
    csr_pem, _ = make_csr(names)
    order = on_a.new_order(csr_pem)
    (authz_url,) = [a.uri for a in order.authorizations]

    # Read and answer the challenge through B.
    authz_b, _ = on_b.poll(
        messages.AuthorizationResource(uri=_on(gw_b, authz_url), body=order.authorizations[0].body)
    )
    chall = next(c for c in authz_b.body.challenges if isinstance(c.chall, challenges.HTTP01))
    assert chall.uri.startswith(gw_b.base_url + "/"), "B names its resources with its own base"
    response, validation = chall.response_and_validation(key)
    with http01_responder(gw_a.http01_port) as tokens:
        tokens[chall.chall.encode("token")] = validation
        on_b.answer_challenge(chall, response)
        deadline = datetime.datetime.now() + datetime.timedelta(seconds=60)
        order = on_a.poll_authorizations(order, deadline)  # polled through A
    assert all(a.body.status == messages.STATUS_VALID for a in order.authorizations)

    # Finalize on A, then wait and download through B.
    on_a.begin_finalization(order)
    order_b = order.update(uri=_on(gw_b, order.uri))
    done = on_b.poll_finalization(order_b, deadline)
    cert_url = done.body.certificate
    assert cert_url is not None and cert_url.startswith(gw_b.base_url + "/")
    verify_chain(done.fullchain_pem, gw_a.root_pem.read_bytes(), names)

    # A serves the very same certificate.
    from_a = on_a._post_as_get(_on(gw_a, cert_url)).text
    assert from_a == done.fullchain_pem


def _account_lookup_status(raw: RawClient, nonce: str) -> tuple[int, dict[str, object]]:
    resp = raw.post(
        raw.directory["newAccount"], {"onlyReturnExisting": True}, use_kid=False, nonce=nonce
    )
    return resp.status_code, resp.json()


def test_nonces_are_shared(pair: tuple[GatewayProcess, GatewayProcess]) -> None:
    gw_a, gw_b = pair
    key: josepy.JWK = ec_key()
    raw_a, raw_b = RawClient(gw_a, key), RawClient(gw_b, key)
    assert raw_a.create_account().status_code == 201

    # A nonce handed out by A is good on B.
    status, body = _account_lookup_status(raw_b, raw_a.nonce())
    assert status == 200, body
    assert body["status"] == "valid"

    # A nonce spent on A is refused on B, and one spent on B is refused on A.
    spent = raw_a.nonce()
    assert _account_lookup_status(raw_a, spent)[0] == 200
    status, body = _account_lookup_status(raw_b, spent)
    assert status == 400
    assert body["type"] == "urn:ietf:params:acme:error:badNonce", body
    spent = raw_b.nonce()
    assert _account_lookup_status(raw_b, spent)[0] == 200
    status, body = _account_lookup_status(raw_a, spent)
    assert (status, body["type"]) == (400, "urn:ietf:params:acme:error:badNonce"), body


def test_server_scoped_nonces_stay_on_their_server(
    pair: tuple[GatewayProcess, GatewayProcess],
) -> None:
    """The default scope: two servers on one store (here the pair's) share no nonces; the
    badNonce answer carries a nonce of the server that refused, which then works."""
    gw_a, _ = pair
    own = GatewayProcess(gw_a.data_dir, database=gw_a.database)  # A's CA, default nonce scope
    own.start()
    try:
        key: josepy.JWK = ec_key()
        raw_a, raw_own = RawClient(gw_a, key), RawClient(own, key)
        assert raw_a.create_account().status_code == 201
        resp = raw_own.post(
            raw_own.directory["newAccount"],
            {"onlyReturnExisting": True},
            use_kid=False,
            nonce=raw_a.nonce(),
        )
        assert resp.status_code == 400
        assert resp.json()["type"] == "urn:ietf:params:acme:error:badNonce", resp.text
        status, body = _account_lookup_status(raw_own, resp.headers["Replay-Nonce"])
        assert status == 200, body
    finally:
        own.stop()
