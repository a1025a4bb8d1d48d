"""Directory, newNonce and the unauthenticated HTTP surface (RFC 8555 7.1.1, 7.2, 6.3)."""

from __future__ import annotations

import pytest
import requests

from tests.gateway_proc import GatewayProcess
from tests.infra.bind import BindServer
from tests.protocol.support import Acme, assert_acme_headers, assert_problem


def _session(gw: GatewayProcess) -> requests.Session:
    session = requests.Session()
    session.trust_env = False
    session.verify = str(gw.root_pem)
    return session


def test_directory_open_mode(gateway: GatewayProcess) -> None:
    resp = _session(gateway).get(gateway.directory_url, timeout=10)
    assert resp.status_code == 200
    assert resp.headers["Content-Type"].startswith("application/json")
    assert_acme_headers(resp)
    body = resp.json()
    base = gateway.base_url
    assert body["newNonce"] == f"{base}/acme/new-nonce"
    assert body["newAccount"] == f"{base}/acme/new-account"
    assert body["newOrder"] == f"{base}/acme/new-order"
    assert body["revokeCert"] == f"{base}/acme/revoke-cert"
    assert body["keyChange"] == f"{base}/acme/key-change"
    assert body["meta"]["externalAccountRequired"] is False
    assert body["meta"]["website"].startswith("https://")
    # ARI (RFC 9773) and profiles (draft-ietf-acme-profiles) work, so both are advertised
    # (interop notes: cert-manager keys off their presence). Without --profiles: the
    # built-ins, tlsclient not offered.
    assert body["renewalInfo"] == f"{base}/acme/renewal-info"
    assert set(body["meta"]["profiles"]) == {"default", "shortlived"}
    assert all(isinstance(d, str) and d for d in body["meta"]["profiles"].values())


def test_directory_pre_registered_mode(prereg_gateway: GatewayProcess) -> None:
    body = _session(prereg_gateway).get(prereg_gateway.directory_url, timeout=10).json()
    assert body["meta"]["externalAccountRequired"] is True
    assert body["meta"]["website"]


def test_new_nonce_head_and_get(gateway: GatewayProcess) -> None:
    session = _session(gateway)
    url = f"{gateway.base_url}/acme/new-nonce"
    head = session.head(url, timeout=10)
    get = session.get(url, timeout=10)
    assert head.status_code == 200
    assert get.status_code == 204
    for resp in (head, get):
        assert resp.headers["Cache-Control"] == "no-store"
        assert_acme_headers(resp)
    assert head.headers["Replay-Nonce"] != get.headers["Replay-Nonce"]


def test_get_on_post_resources_is_405(gateway: GatewayProcess) -> None:
    acme = Acme(gateway)
    acme.register()
    session = _session(gateway)
    for url in (
        acme.directory["newAccount"],
        acme.directory["newOrder"],
        acme.directory["revokeCert"],
        acme.directory["keyChange"],
        acme.account,
    ):
        resp = session.get(url, timeout=10)
        doc = assert_problem(resp, "malformed", 405, "POST-as-GET")
        assert "POST" in resp.headers["Allow"], resp.headers
        assert doc["status"] == 405


def test_post_to_directory_is_405(gateway: GatewayProcess) -> None:
    resp = _session(gateway).post(gateway.directory_url, data=b"{}", timeout=10)
    assert_problem(resp, "malformed", 405)
    assert "GET" in resp.headers["Allow"]


def test_unknown_path_is_404_problem(gateway: GatewayProcess) -> None:
    session = _session(gateway)
    resp = session.get(f"{gateway.base_url}/acme/no-such-thing", timeout=10)
    assert_problem(resp, "malformed", 404, "no such resource")
    resp = session.get(f"{gateway.base_url}/nowhere", timeout=10)
    assert_problem(resp, "malformed", 404, "no such resource")


def test_unknown_resource_ids_are_404(gateway: GatewayProcess) -> None:
    acme = Acme(gateway)
    acme.register()
    for kind in ("order", "authz", "chall", "cert"):
        resp = acme.get(f"{gateway.base_url}/acme/{kind}/doesnotexist")
        assert_problem(resp, "malformed", 404, "no such")


def test_terms_of_service_and_website(
    tmp_path_factory: pytest.TempPathFactory, bind_server: BindServer
) -> None:
    """meta.termsOfService / meta.website when configured; agreement then required."""
    tos, website = "https://ca.example.org/tos-v1.pdf", "https://ca.example.org/"
    server = GatewayProcess(
        tmp_path_factory.mktemp("gw-tos"),
        dns_resolvers=(bind_server.resolver_address,),
        extra_args=("--terms-of-service", tos, "--website", website),
    ).start()
    try:
        meta = _session(server).get(server.directory_url, timeout=10).json()["meta"]
        assert meta["termsOfService"] == tos
        assert meta["website"] == website
        acme = Acme(server)
        resp = acme.create_account({"contact": ["mailto:a@example.org"]})
        assert_problem(resp, "userActionRequired", 403, "terms of service")
        assert f'<{tos}>;rel="terms-of-service"' in resp.headers["Link"]
        agreed = acme.create_account({"termsOfServiceAgreed": True})
        assert agreed.status_code == 201, agreed.text
        assert agreed.json()["termsOfServiceAgreed"] is True
    finally:
        server.stop()
