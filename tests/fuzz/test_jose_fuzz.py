"""JWS and JWK parsing (acme_server/jose.py) under arbitrary input.

Properties: every input either parses or raises AcmeProblem (never another exception);
what parses was written canonically; a signature verifies only when it is the real one.
"""

from __future__ import annotations

import json
from typing import Any

from hypothesis import example, given
from hypothesis import strategies as st

from acme_server.domain.problems import AcmeProblem
from acme_server.encoding import b64url_encode
from acme_server.jose import AccountKey, ParsedJWS, load_jwk, parse_flattened, verify
from tests.fuzz.strategies import (
    FUZZ,
    Signer,
    b64_texts,
    budget,
    deeply_nested,
    jose_objects,
    json_values,
    nesting,
    non_canonical_b64,
)

SIGNER = Signer()
ACCOUNT_KEY = load_jwk(SIGNER.jwk)


def parse_or_problem(obj: Any) -> ParsedJWS | None:
    try:
        return parse_flattened(obj)
    except AcmeProblem as problem:
        assert problem.type and 400 <= problem.status < 500
        return None


flattened_shapes = st.fixed_dictionaries(
    {"protected": b64_texts, "payload": b64_texts, "signature": b64_texts},
    optional={"header": json_values, "signatures": json_values, "extra": json_values},
)
encoded_headers = (jose_objects() | json_values).map(
    lambda v: b64url_encode(json.dumps(v).encode())
)


@FUZZ
@given(
    json_values
    | jose_objects()
    | flattened_shapes
    | st.fixed_dictionaries(
        {"protected": encoded_headers, "payload": b64_texts, "signature": b64_texts}
    )
)
def test_parse_flattened_parses_or_refuses(obj: Any) -> None:
    jws = parse_or_problem(obj)
    if jws is not None:
        assert isinstance(jws.protected, dict)
        assert set(obj) == {"protected", "payload", "signature"}


@budget(60)
@given(nesting, st.sampled_from(["protected", "payload-json"]))
@example((100_000, "list"), "protected")
def test_deeply_nested_json_is_malformed_not_a_crash(shape: tuple[int, str], where: str) -> None:
    """Issue 8 item 10: RecursionError in json.loads must become `malformed`."""
    text = deeply_nested(*shape).encode()
    if where == "protected":
        parse_or_problem({"protected": b64url_encode(text), "payload": "", "signature": ""})
        return
    jws = SIGNER.sign({"alg": "ES256"}, text)
    parsed = parse_flattened(jws)
    try:
        parsed.payload_json()
    except AcmeProblem as problem:
        assert problem.type == "malformed"


@budget(150)
@given(
    st.data(),
    st.binary(min_size=1, max_size=48),
    st.sampled_from(["protected", "payload", "signature"]),
)
def test_only_canonical_base64url_is_accepted(data: st.DataObject, raw: bytes, member: str) -> None:
    """Issue 8 item 11: one value, one spelling (else one nonce or key counts as several)."""
    good = SIGNER.sign({"alg": "ES256", "nonce": "n"}, b"{}")
    if member == "protected":
        raw = json.dumps({"alg": "ES256", "pad": raw.hex()}).encode()
    good[member] = data.draw(non_canonical_b64(raw))
    assert parse_or_problem(good) is None, f"non-canonical {member} {good[member]!r} accepted"


@FUZZ
@given(
    jose_objects()
    | st.fixed_dictionaries(
        {"kty": st.sampled_from(["RSA", "EC", "OKP", "oct", ""])},
        optional={
            "crv": st.sampled_from(["P-256", "P-384", "P-521", "Ed25519", "X25519", "secp256k1"]),
            "x": b64_texts,
            "y": b64_texts,
            "n": b64_texts,
            "e": b64_texts,
            "d": b64_texts,
        },
    )
)
def test_load_jwk_loads_or_refuses(obj: Any) -> None:
    try:
        key = load_jwk(obj)
    except AcmeProblem as problem:
        assert problem.type in ("malformed", "badPublicKey"), problem.type
        return
    assert isinstance(key, AccountKey) and "d" not in key.jwk


@budget(100)
@given(st.binary(min_size=32, max_size=32), st.data())
def test_ed25519_x_must_be_canonical(raw: bytes, data: st.DataObject) -> None:
    """Issue 8 item 11: two spellings of one Ed25519 key must not give two thumbprints."""
    spelled = data.draw(non_canonical_b64(raw))
    try:
        key = load_jwk({"kty": "OKP", "crv": "Ed25519", "x": spelled})
    except AcmeProblem:
        return
    raise AssertionError(f"non-canonical x {spelled!r} accepted as {key.thumbprint}")


@FUZZ
@given(json_values, st.binary(max_size=80), st.booleans())
def test_signatures_verify_only_when_real(payload: Any, forged: bytes, real: bool) -> None:
    jws = parse_flattened(
        SIGNER.sign({"alg": "ES256", "nonce": "x", "url": "u"}, json.dumps(payload).encode())
    )
    if real:
        verify(jws, ACCOUNT_KEY)
        assert jws.payload == json.dumps(payload).encode()
        return
    tampered = ParsedJWS(jws.protected, jws.protected_b64, jws.payload_b64, jws.payload, forged)
    try:
        verify(tampered, ACCOUNT_KEY)
    except AcmeProblem as problem:
        assert problem.type == "malformed"
    else:
        raise AssertionError("a forged signature verified")


@FUZZ
@given(jose_objects(), json_values)
def test_any_header_verifies_or_refuses(header: dict[str, Any], payload: Any) -> None:
    try:
        # Parsing refuses some headers itself (crit, b64: RFC 7515 §4.1.11, RFC 7797).
        verify(parse_flattened(SIGNER.sign(header, json.dumps(payload).encode())), ACCOUNT_KEY)
    except AcmeProblem as problem:
        assert problem.type in ("malformed", "badSignatureAlgorithm"), problem.type
