"""Request authentication (RFC 8555 6.2-6.5): JWS shape, nonce, url, jwk/kid, algorithms."""

from __future__ import annotations

import json

import josepy
import pytest
from cryptography.hazmat.primitives.asymmetric import ec

from tests.gateway_proc import GatewayProcess
from tests.protocol.acme_client import b64, ec_key, rsa_key
from tests.protocol.support import Acme, Ed25519Acme, assert_problem, new_account, unique


@pytest.fixture
def acme(gateway: GatewayProcess) -> Acme:
    return new_account(gateway)


def test_bad_nonce_then_fresh_nonce_works(acme: Acme) -> None:
    resp = acme.post(acme.account, None, nonce="bm90LWEtbm9uY2U")
    assert_problem(resp, "badNonce", 400, "not issued by this server")
    fresh = resp.headers["Replay-Nonce"]
    again = acme.post(acme.account, None, nonce=fresh)
    assert again.status_code == 200, again.text


def test_garbage_nonce(acme: Acme) -> None:
    resp = acme.post(acme.account, None, nonce="!!not base64!!")
    assert_problem(resp, "badNonce", 400, "nonce")


def test_replayed_nonce(acme: Acme) -> None:
    nonce = acme.nonce()
    assert acme.post(acme.account, None, nonce=nonce).status_code == 200
    resp = acme.post(acme.account, None, nonce=nonce)
    assert_problem(resp, "badNonce", 400, "already been used")
    assert resp.headers["Replay-Nonce"] != nonce


def test_missing_nonce(acme: Acme) -> None:
    resp = acme.post(acme.account, None, nonce=None)
    assert_problem(resp, "badNonce", 400, "no anti-replay nonce")


def test_wrong_url_header(acme: Acme) -> None:
    jws = acme.sign(acme.directory["newOrder"], None)
    resp = acme.post(acme.account, body=jws)
    assert_problem(resp, "unauthorized", 403, "does not match")


def test_url_of_another_host_refused(acme: Acme) -> None:
    other = acme.account.replace("https://localhost", "https://127.0.0.1")
    resp = acme.post(acme.account, body=acme.sign(other, None))
    assert_problem(resp, "unauthorized", 403, "url header")


@pytest.mark.parametrize("content_type", ["application/json", "text/plain"])
def test_wrong_content_type(acme: Acme, content_type: str) -> None:
    resp = acme.post(acme.account, None, content_type=content_type)
    assert_problem(resp, "malformed", 415, "Content-Type must be application/jose+json")


def test_both_jwk_and_kid(acme: Acme) -> None:
    resp = acme.post(acme.account, None, extra={"jwk": acme.jwk()})
    assert_problem(resp, "malformed", 400, "exactly one of jwk or kid")


def test_neither_jwk_nor_kid(acme: Acme) -> None:
    header = {"alg": "ES256", "nonce": acme.nonce(), "url": acme.account}
    resp = acme.post(acme.account, body=acme.sign_header(header, None))
    assert_problem(resp, "malformed", 400, "exactly one of jwk or kid")


def test_kid_of_unknown_account(gateway: GatewayProcess) -> None:
    acme = Acme(gateway)
    acme.kid = f"{gateway.base_url}/acme/acct/no-such-account"
    resp = acme.new_order([unique()])
    assert_problem(resp, "accountDoesNotExist", 400, "no account")


def test_kid_not_an_account_url(gateway: GatewayProcess) -> None:
    acme = Acme(gateway)
    acme.kid = "https://elsewhere.example/acct/1"
    resp = acme.new_order([unique()])
    assert_problem(resp, "malformed", 400, "not an account URL")


@pytest.mark.parametrize("alg", ["HS256", "none", "PS256", "ES256K"])
def test_unsupported_algorithm(acme: Acme, alg: str) -> None:
    resp = acme.post(acme.account, None, alg=alg)
    doc = assert_problem(resp, "badSignatureAlgorithm", 400, "unsupported JWS algorithm")
    assert "ES256" in doc["algorithms"] and "RS256" in doc["algorithms"]


def test_algorithm_not_matching_key(acme: Acme) -> None:
    resp = acme.post(acme.account, None, alg="RS256")
    assert_problem(resp, "badSignatureAlgorithm", 400, "does not match")


def test_bad_signature(acme: Acme) -> None:
    jws = acme.sign(acme.account, None)
    sig = bytearray(josepy.b64decode(jws["signature"]))
    sig[5] ^= 0xFF
    jws["signature"] = b64(bytes(sig))
    resp = acme.post(acme.account, body=jws)
    assert_problem(resp, "malformed", 400, "signature is invalid")


def test_signature_by_another_key(acme: Acme) -> None:
    """A kid request signed by some other key fails verification against the account key."""
    other = Acme(acme.gw)
    other.kid = acme.account
    resp = other.post(acme.account, None)
    assert_problem(resp, "malformed", 400, "signature is invalid")


def test_general_serialization_refused(acme: Acme) -> None:
    jws = acme.sign(acme.account, None)
    body = {
        "payload": jws["payload"],
        "signatures": [{"protected": jws["protected"], "signature": jws["signature"]}],
    }
    resp = acme.post(acme.account, body=body)
    assert_problem(resp, "malformed", 400, "flattened")


def test_unprotected_header_refused(acme: Acme) -> None:
    jws = acme.sign(acme.account, None)
    resp = acme.post(acme.account, body={**jws, "header": {"kid": acme.account}})
    assert_problem(resp, "malformed", 400, "unprotected")


def test_compact_serialization_refused(acme: Acme) -> None:
    jws = acme.sign(acme.account, None)
    compact = f"{jws['protected']}.{jws['payload']}.{jws['signature']}".encode()
    resp = acme.post(acme.account, body=compact)
    assert_problem(resp, "malformed", 400, "request body is not valid JSON")


def test_body_not_an_object(acme: Acme) -> None:
    resp = acme.post(acme.account, body=json.dumps([1, 2]).encode())
    assert_problem(resp, "malformed", 400, "flattened JWS")


def test_oversized_body(acme: Acme) -> None:
    jws = acme.sign(acme.directory["newOrder"], {"identifiers": [], "pad": "x" * 70_000})
    resp = acme.post(acme.directory["newOrder"], body=jws)
    assert_problem(resp, "malformed", 413, "exceeds 65536 bytes")


def test_jwk_where_kid_is_due(acme: Acme) -> None:
    """cert-manager does this after a badNonce: answer malformed, never crash."""
    resp = acme.post(
        acme.directory["newOrder"],
        {"identifiers": [{"type": "dns", "value": unique()}]},
        use_kid=False,
    )
    assert_problem(resp, "malformed", 400, "must be signed with the account kid")


def test_kid_where_jwk_is_due(acme: Acme) -> None:
    resp = acme.post(acme.directory["newAccount"], {"termsOfServiceAgreed": True}, use_kid=True)
    assert_problem(resp, "malformed", 400, "embedded jwk")


def test_payload_not_json(acme: Acme) -> None:
    header = {
        "alg": "ES256",
        "nonce": acme.nonce(),
        "url": acme.directory["newOrder"],
        "kid": acme.account,
    }
    jws = acme.sign_header(header, None)
    protected = jws["protected"]
    payload = b64(b"not json")
    sig = josepy.ES256.sign(acme.key.key, f"{protected}.{payload}".encode())
    resp = acme.post(
        acme.directory["newOrder"],
        body={"protected": protected, "payload": payload, "signature": b64(sig)},
    )
    assert_problem(resp, "malformed", 400, "payload is not valid JSON")


def test_weak_rsa_key_refused(gateway: GatewayProcess) -> None:
    acme = Acme(gateway, rsa_key(1024))
    resp = acme.create_account()
    assert_problem(resp, "badPublicKey", 400, "2048")


def test_private_jwk_refused(gateway: GatewayProcess) -> None:
    acme = Acme(gateway)
    private = acme.key.to_partial_json()
    resp = acme.post(
        acme.directory["newAccount"],
        {"termsOfServiceAgreed": True},
        use_kid=False,
        extra={"jwk": private},
    )
    assert_problem(resp, "badPublicKey", 400, "private")


@pytest.mark.parametrize(
    "make_key",
    [
        pytest.param(lambda: ec_key(ec.SECP256R1()), id="ES256"),
        pytest.param(lambda: ec_key(ec.SECP384R1()), id="ES384"),
        pytest.param(lambda: ec_key(ec.SECP521R1()), id="ES512"),
        pytest.param(lambda: rsa_key(2048), id="RS256"),
    ],
)
def test_account_key_algorithms(gateway: GatewayProcess, make_key: object) -> None:
    acme = Acme(gateway, make_key())  # type: ignore[operator]
    acme.register()
    assert acme.get(acme.account).json()["status"] == "valid"
    location, order = acme.order([unique()])
    assert order["status"] == "pending"
    assert acme.get(location).status_code == 200


def test_eddsa_account_issues(gateway: GatewayProcess) -> None:
    """Ed25519 end to end: account, http-01 key authorization thumbprint, issuance."""
    acme = Ed25519Acme(gateway)
    acme.register()
    assert acme.get(acme.account).json()["status"] == "valid"
    leaf, _, _ = acme.issue([unique("ed")])
    assert leaf.serial_number > 0
    # Same key again: the existing account.
    again = acme.create_account()
    assert again.status_code == 200 and again.headers["Location"] == acme.account


def test_rs256_account_issues(gateway: GatewayProcess) -> None:
    """cert-manager's account key type end to end."""
    acme = Acme(gateway, rsa_key(2048))
    acme.register()
    leaf, _, _ = acme.issue([unique("rsa")])
    assert leaf.serial_number > 0
