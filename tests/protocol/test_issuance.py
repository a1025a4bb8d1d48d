"""Full RFC 8555 issuance flows over real HTTPS with certbot's acme library."""

from __future__ import annotations

import datetime

from acme import challenges

from tests.chains import verify_chain
from tests.gateway_proc import GatewayProcess
from tests.infra.bind import BindServer
from tests.protocol.acme_client import http01_responder, make_csr, new_client, register


def test_http01_issuance(gateway: GatewayProcess) -> None:
    acme = new_client(gateway)
    register(acme)
    names = ["web.acme.test", "www.web.acme.test"]
    csr_pem, _ = make_csr(names)
    order = acme.new_order(csr_pem)
    with http01_responder(gateway.http01_port) as tokens:
        for authz in order.authorizations:
            chall = next(c for c in authz.body.challenges if isinstance(c.chall, challenges.HTTP01))
            response, validation = chall.response_and_validation(acme.net.key)
            tokens[chall.chall.encode("token")] = validation
            acme.answer_challenge(chall, response)
        order = acme.poll_and_finalize(
            order, deadline=datetime.datetime.now() + datetime.timedelta(seconds=60)
        )
    verify_chain(order.fullchain_pem, gateway.root_pem.read_bytes(), names)


def test_dns01_wildcard_issuance(gateway: GatewayProcess, bind_server: BindServer) -> None:
    acme = new_client(gateway)
    register(acme)
    names = ["*.wild.acme.test", "wild.acme.test"]
    csr_pem, _ = make_csr(names)
    order = acme.new_order(csr_pem)
    added = []
    for authz in order.authorizations:
        kinds = {type(c.chall) for c in authz.body.challenges}
        if authz.body.wildcard:
            assert kinds == {challenges.DNS01}, "wildcards must only offer dns-01"
        chall = next(c for c in authz.body.challenges if isinstance(c.chall, challenges.DNS01))
        response, validation = chall.response_and_validation(acme.net.key)
        record = f"_acme-challenge.{authz.body.identifier.value}"
        bind_server.nsupdate_add_txt(record, validation)
        added.append(record)
        acme.answer_challenge(chall, response)
    order = acme.poll_and_finalize(
        order, deadline=datetime.datetime.now() + datetime.timedelta(seconds=60)
    )
    verify_chain(order.fullchain_pem, gateway.root_pem.read_bytes(), names)
    for record in set(added):
        bind_server.nsupdate_delete_txt(record)
