"""JOSE parsing as pure functions: one JWK and one thumbprint per key, strict JSON, crit, the
key cache. (The protocol tests run the same attacks against a real server.)"""

from __future__ import annotations

import base64
import json
import time
from typing import Any

import josepy
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa

from acme_server import jose, strict_json
from acme_server.domain.problems import AcmeProblem
from acme_server.encoding import b64url_decode, b64url_encode

P = 2**255 - 19

# RFC 7638 §3.1 and RFC 8037 §A.3: the published thumbprints of the published keys.
RFC7638_RSA = {
    "kty": "RSA",
    "n": "0vx7agoebGcQSuuPiLJXZptN9nndrQmbXEps2aiAFbWhM78LhWx4cbbfAAtVT86zwu1RK7aPFFxuhDR1L6tSoc_B"
    "JECPebWKRXjBZCiFV4n3oknjhMstn64tZ_2W-5JsGY4Hc5n9yBXArwl93lqt7_RN5w6Cf0h4QyQ5v-65YGjQR0_FDW2Q"
    "vzqY368QQMicAtaSqzs8KJZgnYb9c7d0zgdAZHzu6qMQvRL5hajrn1n91CbOpbISD08qNLyrdkt-bFTWhAI4vMQFh6We"
    "Zu0fM4lFd2NcRwr3XPksINHaQ-G_xBniIqbw0Ls1jF44-csFCur-kEgU8awapJzKnqDKgw",
    "e": "AQAB",
    "alg": "RS256",
    "kid": "2011-04-29",
}
RFC8037_OKP = {"crv": "Ed25519", "kty": "OKP", "x": "11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo"}


def _problem(call: Any, type_: str, detail: str) -> None:
    with pytest.raises(AcmeProblem) as caught:
        call()
    assert caught.value.to_json()["type"] == "urn:ietf:params:acme:error:" + type_, caught.value

    assert detail in caught.value.detail, caught.value.detail


def _respell(text: str) -> str:
    """The same bytes with other trailing bits (what a lenient decoder accepts)."""
    want = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
    for c in "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_":
        other = text[:-1] + c
        if other != text and base64.urlsafe_b64decode(other + "=" * (-len(other) % 4)) == want:
            return other
    raise AssertionError(f"{text} has no other spelling")


def test_published_thumbprints() -> None:
    assert jose.load_jwk(RFC7638_RSA).thumbprint == "NzbLsXh8uDCcd-6MNwXF4W_7noWXFZAfHkxZsRGC9Xs"
    assert jose.load_jwk(RFC8037_OKP).thumbprint == "kPrK_qmxVWaYVA9wwBF6Iuo3vVzz7TxHCTwXBygrS4k"


def test_extra_members_do_not_change_the_key() -> None:
    key = jose.load_jwk(RFC7638_RSA)
    junk = jose.load_jwk({**RFC7638_RSA, "junk": "x" * 1000, "use": "sig"})
    assert junk.thumbprint == key.thumbprint
    assert junk.jwk == {"e": "AQAB", "kty": "RSA", "n": RFC7638_RSA["n"]}


@pytest.mark.parametrize("curve", [ec.SECP256R1(), ec.SECP384R1(), ec.SECP521R1()])
def test_ec_thumbprint_matches_josepy(curve: ec.EllipticCurve) -> None:
    key = josepy.JWKEC(key=ec.generate_private_key(curve))
    jwk = key.public_key().to_partial_json()
    assert jose.load_jwk(jwk).thumbprint == b64url_encode(key.thumbprint())


def test_ed25519_non_canonical_x_refused() -> None:
    _problem(
        lambda: jose.load_jwk({**RFC8037_OKP, "x": _respell(RFC8037_OKP["x"])}),
        "malformed",
        "jwk.x is not canonical unpadded base64url",
    )
    for bad in [
        "11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo=",
        "11qYAYKxCrfVS/7TyWQHOg7hcvPapiMlrwIaaPcHURo",
    ]:
        _problem(lambda bad=bad: jose.load_jwk({**RFC8037_OKP, "x": bad}), "malformed", "jwk.x")


@pytest.mark.parametrize(
    "y_and_sign",
    [(P, 0), (P + 1, 0), (2**255 - 1, 0), (P + 5, 1), (1, 1), (P - 1, 1)],
)
def test_ed25519_non_canonical_point_refused(y_and_sign: tuple[int, int]) -> None:
    """y >= p, or a sign bit on the two points whose x is 0: a second encoding of a point."""
    y, sign = y_and_sign
    x = b64url_encode((y | sign << 255).to_bytes(32, "little"))
    _problem(
        lambda: jose.load_jwk({**RFC8037_OKP, "x": x}),
        "badPublicKey",
        "not a canonical point encoding",
    )


def test_ed25519_wrong_length_refused() -> None:
    raw = (
        ed25519.Ed25519PrivateKey.generate()
        .public_key()
        .public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    )
    _problem(
        lambda: jose.load_jwk({**RFC8037_OKP, "x": b64url_encode(raw + b"\0")}),
        "badPublicKey",
        "32 bytes",
    )


def test_rsa_leading_zero_octets_refused() -> None:
    n = b64url_decode(RFC7638_RSA["n"])
    for member, value in [("n", b"\0" + n), ("e", b"\0\x01\x00\x01")]:
        _problem(
            lambda m=member, v=value: jose.load_jwk({**RFC7638_RSA, m: b64url_encode(v)}),
            "badPublicKey",
            "minimum number of octets",
        )
    _problem(
        lambda: jose.load_jwk({**RFC7638_RSA, "n": _respell(RFC7638_RSA["n"])}),
        "malformed",
        "jwk.n is not canonical",
    )


def test_rsa_weak_or_invalid_refused() -> None:
    small = rsa.generate_private_key(65537, 1024).public_key().public_numbers()
    jwk = {"kty": "RSA", "n": b64url_encode(small.n.to_bytes(128, "big")), "e": "AQAB"}
    _problem(lambda: jose.load_jwk(jwk), "badPublicKey", "2048 to 8192 bits, got 1024")
    _problem(lambda: jose.load_jwk({**RFC7638_RSA, "e": "Ag"}), "badPublicKey", "not a valid RSA")


def test_ec_coordinates_exact_length_and_on_curve() -> None:
    jwk = josepy.JWKEC(key=ec.generate_private_key(ec.SECP256R1())).public_key().to_partial_json()
    x = b64url_decode(jwk["x"])
    _problem(
        lambda: jose.load_jwk({**jwk, "x": b64url_encode(b"\0" + x)}),
        "badPublicKey",
        "must be 32 octets",
    )
    off_curve = bytes(31) + b"\x01"
    _problem(
        lambda: jose.load_jwk({**jwk, "y": b64url_encode(off_curve)}),
        "badPublicKey",
        "not a valid EC public key",
    )
    _problem(lambda: jose.load_jwk({**jwk, "crv": "P-192"}), "badPublicKey", "unsupported EC curve")


@pytest.mark.parametrize("member", ["d", "p", "q", "dp", "dq", "qi", "k"])
def test_private_members_refused(member: str) -> None:
    _problem(
        lambda: jose.load_jwk({**RFC7638_RSA, member: "AQAB"}),
        "badPublicKey",
        "private key material",
    )


# --- strict JSON -----------------------------------------------------------------------------


def test_nesting_depth_ignores_strings() -> None:
    assert strict_json.nesting_depth(b'{"a": "[[[[{{{{", "b": ["\\"[[["]}') == 2
    assert strict_json.nesting_depth(b"[" * 100_000) == 100_000


def test_nesting_depth_is_linear_under_hostile_quoting() -> None:
    """Escaped quotes in an unterminated string: a naive scan restarts at every quote."""
    hostile = b"[" * 40 + b'"' + b'\\"' * 30_000
    start = time.perf_counter()
    assert strict_json.nesting_depth(hostile) == 40
    assert time.perf_counter() - start < 0.5


@pytest.mark.parametrize(
    ("text", "detail"),
    [
        (b"[" * 100_000, "thing is nested deeper than 32 levels"),
        (b"[" * 33 + b"]" * 33, "thing is nested deeper than 32 levels"),
        (b'{"a": 1, "a": 2}', "thing has a duplicate member name"),
        (b'{"a": NaN}', "thing is not valid JSON"),
        (b'{"a": Infinity}', "thing is not valid JSON"),
        (b"\xff\xfe\xfd", "thing is not valid JSON"),
        (b"1" * 10_000, "thing is not valid JSON"),
    ],
)
def test_strict_json_refuses(text: bytes, detail: str) -> None:
    _problem(lambda: strict_json.loads(text, "thing"), "malformed", detail)


def test_strict_json_accepts_32_levels() -> None:
    assert strict_json.loads(b"[" * 32 + b"]" * 32, "thing") is not None


# --- JWS headers and the key cache ----------------------------------------------------------


def _flattened(header: dict[str, Any], payload: bytes = b"") -> dict[str, str]:
    return {
        "protected": b64url_encode(json.dumps(header).encode()),
        "payload": b64url_encode(payload),
        "signature": b64url_encode(b"sig"),
    }


@pytest.mark.parametrize(
    ("extra", "detail"),
    [
        ({"crit": ["exp"], "exp": 1}, "critical header extension(s) 'exp' are not supported"),
        ({"b64": False, "crit": ["b64"]}, "unencoded payloads"),
        ({"b64": False}, "unencoded payloads"),
        ({"crit": []}, "non-empty list"),
        ({"crit": [1]}, "non-empty list"),
    ],
)
def test_crit_and_b64_refused(extra: dict[str, Any], detail: str) -> None:
    jws = _flattened({"alg": "ES256", **extra})
    _problem(lambda: jose.parse_flattened(jws), "malformed", detail)


def test_key_cache_is_bounded_lru() -> None:
    cache = jose.KeyCache(3)
    keys = [jose.load_jwk(_ed_jwk()) for _ in range(5)]
    for key in keys[:3]:
        cache.put(key)
    assert cache.get(keys[0].thumbprint) is keys[0]  # now most recently used
    cache.put(keys[3])
    cache.put(keys[4])
    assert len(cache) == 3
    assert cache.get(keys[1].thumbprint) is None and cache.get(keys[2].thumbprint) is None
    assert cache.get(keys[0].thumbprint) is keys[0]


def test_only_verified_keys_are_cached() -> None:
    private = ed25519.Ed25519PrivateKey.generate()
    jwk = _ed_jwk(private)
    before = len(jose.KEY_CACHE)
    for i in range(50):
        jose.load_jwk({**jwk, f"junk{i}": "x" * 100})
    assert len(jose.KEY_CACHE) == before
    header = {"alg": "EdDSA", "jwk": jwk}
    jws = _flattened(header)
    signed = {**jws, "signature": b64url_encode(private.sign(f"{jws['protected']}.".encode()))}
    parsed = jose.parse_flattened(signed)
    key = jose.load_jwk({**jwk, "junk": "y"})
    _problem(lambda: jose.verify(jose.parse_flattened(jws), key), "malformed", "signature")
    assert len(jose.KEY_CACHE) == before
    jose.verify(parsed, key)
    assert len(jose.KEY_CACHE) == before + 1
    assert jose.load_jwk({**jwk, "other": 1}) is jose.KEY_CACHE.get(key.thumbprint)


def test_eab_mac_without_a_key_never_verifies() -> None:
    jws = jose.parse_flattened(_flattened({"alg": "HS256", "kid": "k"}, b"{}"))
    assert jose.eab_mac_valid(jws, None) is False
    assert jose.eab_mac_valid(jws, "not base64!") is False


def _ed_jwk(private: ed25519.Ed25519PrivateKey | None = None) -> dict[str, str]:
    key = (private or ed25519.Ed25519PrivateKey.generate()).public_key()
    raw = key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return {"crv": "Ed25519", "kty": "OKP", "x": b64url_encode(raw)}
