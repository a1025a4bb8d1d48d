"""The server under hostile input (issue 8, items 9-12, 15, 16): bodies in pieces, deep JSON,
other spellings of one nonce or key, critical header extensions, garbage cursors, EAB probing.
Every attack gets an RFC 8555 problem document, never a 500."""

from __future__ import annotations

import base64
import json
import secrets
import uuid
from typing import Any

import josepy
import pytest
import requests

from tests.gateway_proc import GatewayProcess
from tests.protocol import raw_http
from tests.protocol.acme_client import b64, rsa_key
from tests.protocol.support import (
    ERR,
    Acme,
    Ed25519Acme,
    assert_problem,
    eab_binding,
    new_account,
)

B64_ALPHABET = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"


@pytest.fixture
def acme(gateway: GatewayProcess) -> Acme:
    return new_account(gateway)


def _decode(text: str) -> bytes:
    """Lenient decoding on purpose: it finds the spellings a lenient server would accept."""
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def other_spellings(canonical: str) -> list[str]:
    """Other texts a lenient base64url decoder maps to the bytes of `canonical`: other
    trailing bits first, then padding, the standard alphabet and whitespace."""
    want = _decode(canonical)
    out = [canonical[:-1] + c for c in B64_ALPHABET if _decode(canonical[:-1] + c) == want]
    out += [canonical + "=", canonical + "==", canonical + "\n", " " + canonical]
    out.append(canonical.replace("-", "+").replace("_", "/"))
    return [s for s in dict.fromkeys(out) if s != canonical]


# --- item 9: a body in several TCP reads ------------------------------------------------


def _raw_post(gw: GatewayProcess, path: str, body: bytes, pieces: int, pause: float) -> Any:
    with raw_http.connect(gw.port, gw.root_pem) as sock:
        head = raw_http.request_head(
            "POST",
            path,
            {
                "Content-Type": "application/jose+json",
                "Content-Length": str(len(body)),
                "Connection": "close",
            },
        )
        sock.sendall(head)
        raw_http.send_in_pieces(sock, body, pieces, pause)
        return raw_http.read_response(sock)


def test_body_in_pieces_is_read_whole(acme: Acme) -> None:
    """A 60 KB JWS sent in five writes with pauses is one request, not 'not JSON'."""
    url = acme.directory["newAccount"]
    jws = acme.sign(url, {"onlyReturnExisting": True, "pad": "x" * 44_000}, use_kid=False)
    body = json.dumps(jws).encode()
    assert 58_000 < len(body) < 64 * 1024
    resp = _raw_post(acme.gw, "/acme/new-account", body, pieces=5, pause=0.3)
    assert resp.status == 200, resp.body[:300]
    assert resp.headers["location"] == acme.account


def test_many_large_posts_all_parse(acme: Acme) -> None:
    """The issue's reproduction: 20 single-write 60 KB POSTs, none refused as 'not JSON'."""
    url = acme.directory["newAccount"]
    for _ in range(20):
        jws = acme.sign(url, {"onlyReturnExisting": True, "pad": "y" * 44_000}, use_kid=False)
        resp = acme.post(url, body=jws)
        assert resp.status_code == 200, resp.text[:300]


def test_body_over_the_limit_in_pieces_is_413(acme: Acme) -> None:
    """No Content-Length (chunked), 70 KB in pieces: refused at the limit, as a problem."""
    with raw_http.connect(acme.gw.port, acme.gw.root_pem) as sock:
        head = raw_http.request_head(
            "POST",
            "/acme/new-account",
            {"Content-Type": "application/jose+json", "Transfer-Encoding": "chunked"},
        )
        sock.sendall(head)
        for _ in range(7):
            piece = b"x" * 10_000
            sock.sendall(f"{len(piece):x}\r\n".encode() + piece + b"\r\n")
        sock.sendall(b"0\r\n\r\n")
        resp = raw_http.read_response(sock)
    assert resp.status == 413, resp.body
    doc = json.loads(resp.body)
    assert doc["type"] == ERR + "malformed" and doc["status"] == 413
    assert "exceeds 65536 bytes" in doc["detail"]


def test_declared_length_over_the_limit_is_413(acme: Acme) -> None:
    resp = acme.post(acme.directory["newAccount"], body=b"{" + b" " * (70 * 1024) + b"}")
    assert_problem(resp, "malformed", 413, "exceeds 65536 bytes")


# --- item 10: deep JSON ------------------------------------------------------------------


def test_deeply_nested_body_is_malformed(acme: Acme) -> None:
    resp = acme.post(acme.directory["newAccount"], body=b"[" * 60_000)
    assert_problem(resp, "malformed", 400, "request body is nested deeper than")


def test_deeply_nested_protected_header_is_malformed(acme: Acme) -> None:
    protected = b64(b'{"alg":"ES256","x":' + b"[" * 30_000)
    body = {"protected": protected, "payload": "", "signature": b64(b"sig")}
    resp = acme.post(acme.account, body=body)
    assert_problem(resp, "malformed", 400, "protected header is nested deeper than")


def test_deeply_nested_signed_payload_is_malformed(acme: Acme) -> None:
    header = {
        "alg": "ES256",
        "nonce": acme.nonce(),
        "url": acme.directory["newOrder"],
        "kid": acme.account,
    }
    protected = b64(json.dumps(header).encode())
    payload = b64(b"[" * 20_000 + b"]" * 20_000)
    sig = josepy.ES256.sign(acme.key.key, f"{protected}.{payload}".encode())
    body = {"protected": protected, "payload": payload, "signature": b64(sig)}
    resp = acme.post(acme.directory["newOrder"], body=body)
    assert_problem(resp, "malformed", 400, "JWS payload is nested deeper than")


def test_duplicate_header_member_is_malformed(acme: Acme) -> None:
    """Two `url` members: one reader might check the first, another use the last."""
    header = json.dumps({"alg": "ES256", "nonce": acme.nonce(), "kid": acme.account})
    text = header[:-1] + f', "url": "{acme.account}", "url": "{acme.directory["newOrder"]}"}}'
    protected = b64(text.encode())
    sig = josepy.ES256.sign(acme.key.key, f"{protected}.".encode())
    resp = acme.post(
        acme.account, body={"protected": protected, "payload": "", "signature": b64(sig)}
    )
    assert_problem(resp, "malformed", 400, "duplicate member name")


# --- item 11: one spelling per nonce and per key ----------------------------------------


def test_nonce_spent_once_whatever_its_spelling(acme: Acme) -> None:
    nonce = acme.nonce()
    spellings = other_spellings(nonce)
    assert len(spellings) >= 17, spellings
    for spelling in spellings:
        resp = acme.post(acme.account, None, nonce=spelling)
        assert_problem(resp, "badNonce", 400, "not canonical unpadded base64url")
    assert acme.post(acme.account, None, nonce=nonce).status_code == 200
    assert_problem(acme.post(acme.account, None, nonce=nonce), "badNonce", 400, "already been used")


class _SameEd25519Key(Ed25519Acme):
    """Another client holding `original`'s Ed25519 key, optionally spelling `x` differently."""

    def __init__(self, gw: GatewayProcess, original: Ed25519Acme, x: str | None = None) -> None:
        super().__init__(gw)
        self.ed_key = original.ed_key
        self.x = x

    def jwk(self) -> dict[str, Any]:
        jwk = super().jwk()
        return {**jwk, "x": self.x} if self.x else jwk


def test_ed25519_key_spelled_twice_is_one_account(gateway: GatewayProcess) -> None:
    first = Ed25519Acme(gateway)
    assert first.create_account().status_code == 201
    x = first.jwk()["x"]
    for spelling in other_spellings(x)[:3]:  # the other trailing bits
        resp = _SameEd25519Key(gateway, first, spelling).create_account()
        assert_problem(resp, "malformed", 400, "jwk.x is not canonical unpadded base64url")
    again = _SameEd25519Key(gateway, first).create_account({"onlyReturnExisting": True})
    assert again.status_code == 200 and again.headers["Location"] == first.account


class _RespelledRSA(Acme):
    def __init__(self, gw: GatewayProcess, key: josepy.JWK, change: dict[str, str]) -> None:
        super().__init__(gw, key)
        self.change = change

    def public_jwk(self, key: josepy.JWK) -> dict[str, Any]:
        return {**super().public_jwk(key), **self.change}


def test_rsa_key_spelled_twice_is_one_account(gateway: GatewayProcess) -> None:
    key = rsa_key()
    first = Acme(gateway, key)
    assert first.create_account().status_code == 201
    jwk = first.jwk()
    n, e = _decode(jwk["n"]), _decode(jwk["e"])
    cases = {
        "n": (b64(b"\0" + n), "minimum number of octets"),
        "e": (b64(b"\0" + e), "minimum number of octets"),
    }
    for member, (value, detail) in cases.items():
        resp = _RespelledRSA(gateway, key, {member: value}).create_account()
        assert_problem(resp, "badPublicKey", 400, detail)
    for spelling in other_spellings(jwk["n"])[:3]:
        resp = _RespelledRSA(gateway, key, {"n": spelling}).create_account()
        assert_problem(resp, "malformed", 400, "jwk.n is not canonical")


# --- item 12: crit and b64 -----------------------------------------------------------------


@pytest.mark.parametrize(
    ("extra", "detail"),
    [
        ({"crit": ["exp"], "exp": 1}, "critical header extension(s) 'exp' are not supported"),
        ({"crit": ["b64"], "b64": False}, "unencoded payloads"),
        ({"b64": False}, "unencoded payloads"),
        ({"crit": []}, "crit header must be a non-empty list"),
        ({"crit": "exp"}, "crit header must be a non-empty list"),
    ],
)
def test_critical_extensions_refused(acme: Acme, extra: dict[str, Any], detail: str) -> None:
    resp = acme.post(acme.account, None, extra=extra)
    assert_problem(resp, "malformed", 400, detail)


# --- item 15: orders-list cursors --------------------------------------------------------


@pytest.mark.parametrize(
    "cursor",
    [
        b64(b"1e300|abc"),
        b64(b"inf|abc"),
        b64(b"nan|abc"),
        b64(b"-1e20|abc"),
        b64(b"99999999999999|abc"),
        b64(b"1700000000.0|ab\0c"),
        b64(b"1700000000.0|" + b"a" * 100),
        b64(b"\xff\xfe\xfd"),
        "!!!",
        "QQ=",
        "a" * 5000,
    ],
)
def test_garbage_orders_cursor_is_malformed(acme: Acme, cursor: str) -> None:
    orders = acme.get(acme.account).json()["orders"]
    url = f"{orders}?cursor={cursor}"
    resp = acme.post(url, None)
    assert_problem(resp, "malformed", 400, "invalid orders cursor")


# --- item 16: EAB probing -------------------------------------------------------------------


def test_eab_refusal_does_not_reveal_key_ids(prereg_gateway: GatewayProcess) -> None:
    reg = prereg_gateway.create_registration(f"reg-{uuid.uuid4().hex[:10]}", "--any-domain")
    docs = []
    for kid, key in [
        ("no-such-kid", str(reg["hmac_key"])),
        (str(reg["kid"]), b64(secrets.token_bytes(32))),
    ]:
        client = Acme(prereg_gateway)
        binding = eab_binding(kid, key, client.jwk(), client.directory["newAccount"])
        resp = client.create_account(
            {"termsOfServiceAgreed": True, "externalAccountBinding": binding}
        )
        docs.append(assert_problem(resp, "unauthorized", 403))
    assert docs[0] == docs[1]
    assert reg["kid"] not in docs[1]["detail"]


def test_no_request_here_answers_500(acme: Acme) -> None:
    """A few more shapes in one place; each is a problem document with status < 500."""
    url = acme.directory["newAccount"]
    bodies: list[Any] = [
        b'{"protected": "e30", "payload": "", "signature": "", "protected": "e30"}',
        {"protected": b64(b'{"alg": NaN}'), "payload": "", "signature": ""},
        {"protected": b64(b"\xff\xfe"), "payload": "", "signature": ""},
        {"protected": "e30=", "payload": "", "signature": ""},
        {"protected": 5, "payload": "", "signature": ""},
    ]
    for body in bodies:
        resp: requests.Response = acme.post(url, body=body)
        doc = assert_problem(resp, "malformed", 400)
        assert doc["detail"], doc
