"""External Account Binding parsing and MAC checks (jose.verify_eab / eab_mac_valid).

Properties: any binding either yields (kid, jws) or raises AcmeProblem; a MAC is valid
only with the right key over the exact bytes; nothing else ever escapes.
"""

from __future__ import annotations

import hashlib
import hmac
import json
from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from acme_server.domain.problems import AcmeProblem
from acme_server.encoding import b64url_encode
from acme_server.jose import eab_mac_valid, load_jwk, verify_eab
from tests.fuzz.strategies import FUZZ, Signer, b64_texts, jose_objects, json_values

URL = "https://acme.test/acme/new-account"
SIGNER = Signer()
OUTER = load_jwk(SIGNER.jwk)
DIGESTS = {"HS256": hashlib.sha256, "HS384": hashlib.sha384, "HS512": hashlib.sha512}


def binding(header: Any, payload: Any, key: bytes, alg: str = "HS256") -> dict[str, str]:
    protected = b64url_encode(json.dumps(header).encode())
    body = b64url_encode(json.dumps(payload).encode())
    digest = DIGESTS.get(alg, hashlib.sha256)
    mac = hmac.new(key, f"{protected}.{body}".encode(), digest).digest()
    return {"protected": protected, "payload": body, "signature": b64url_encode(mac)}


headers = st.fixed_dictionaries(
    {},
    optional={
        "alg": st.sampled_from(["HS256", "HS384", "HS512", "none", "ES256"]) | json_values,
        "kid": st.text(max_size=20) | json_values,
        "url": st.just(URL) | st.text(max_size=20),
        "nonce": st.text(max_size=8),
    },
)
payloads = st.just(SIGNER.jwk) | jose_objects() | json_values


@FUZZ
@given(headers, payloads, st.binary(min_size=1, max_size=64))
def test_verify_eab_accepts_or_refuses(header: Any, payload: Any, key: bytes) -> None:
    alg = header.get("alg") if isinstance(header.get("alg"), str) else "HS256"
    try:
        kid, jws = verify_eab(binding(header, payload, key, alg), outer_key=OUTER, url=URL)
    except AcmeProblem as problem:
        assert problem.type in ("malformed", "badSignatureAlgorithm", "badPublicKey"), problem.type
        return
    assert kid == header["kid"] and header["url"] == URL and "nonce" not in header
    assert eab_mac_valid(jws, b64url_encode(key))


@FUZZ
@given(jose_objects(b64_texts) | json_values)
def test_verify_eab_garbage_is_refused(eab: Any) -> None:
    try:
        verify_eab(eab, outer_key=OUTER, url=URL)
    except AcmeProblem:
        return
    raise AssertionError(f"garbage binding {eab!r} accepted")


@FUZZ
@given(
    st.sampled_from(sorted(DIGESTS)),
    st.binary(min_size=1, max_size=64),
    st.binary(min_size=1, max_size=64),
    st.text(min_size=1, max_size=16),
)
def test_mac_valid_only_with_the_right_key(alg: str, key: bytes, other: bytes, kid: str) -> None:
    eab = binding({"alg": alg, "kid": kid, "url": URL}, SIGNER.jwk, key, alg)
    _, jws = verify_eab(eab, outer_key=OUTER, url=URL)
    assert eab_mac_valid(jws, b64url_encode(key))
    assert eab_mac_valid(jws, b64url_encode(other)) == (other == key)


@FUZZ
@given(b64_texts)
def test_mac_check_with_a_garbage_stored_key_refuses(stored: str) -> None:
    eab = binding({"alg": "HS256", "kid": "k", "url": URL}, SIGNER.jwk, b"k" * 32)
    _, jws = verify_eab(eab, outer_key=OUTER, url=URL)
    try:
        eab_mac_valid(jws, stored)
    except AcmeProblem as problem:
        assert problem.type == "malformed"
