"""newAccount with External Account Binding, on a pre-registered server, under fuzzed bindings.

Properties: the general answer properties (tests.fuzz.http_target.check_answer), and an
account is created only for a binding MACed with the registration's real key and kid.
"""

from __future__ import annotations

import hashlib
import hmac
import json
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from acme_server.encoding import b64url_decode, b64url_encode
from tests.fuzz.http_target import JOSE_JSON, ServerThread, Target, check_answer
from tests.fuzz.strategies import Signer, b64_texts, budget, jose_objects, json_values

DIGESTS = {"HS256": hashlib.sha256, "HS384": hashlib.sha384, "HS512": hashlib.sha512}


@dataclass
class EabFixture:
    target: Target
    kid: str
    hmac_key: bytes


@pytest.fixture(scope="module")
def eab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EabFixture]:
    server = ServerThread(tmp_path_factory.mktemp("fuzz-eab"), account_creation="pre-registered")
    target = server.start()
    assert server.registration is not None
    try:
        yield EabFixture(
            target, server.registration.kid, b64url_decode(server.registration.hmac_key)
        )
    finally:
        server.stop()


@st.composite
def bindings(draw: st.DrawFn, fx: EabFixture, url: str, jwk: dict[str, Any]) -> tuple[Any, bool]:
    """(externalAccountBinding, whether it is the genuine one)."""
    if draw(st.integers(0, 3)) == 0:
        return draw(json_values | jose_objects(b64_texts)), False
    alg = draw(st.sampled_from(sorted(DIGESTS)) | json_values)
    kid = draw(st.just(fx.kid) | st.text(max_size=16) | json_values)
    target_url = draw(st.just(url) | st.text(max_size=16))
    payload = draw(st.just(jwk) | jose_objects() | json_values)
    key = draw(st.just(fx.hmac_key) | st.binary(min_size=1, max_size=32))
    header: dict[str, Any] = {"alg": alg, "kid": kid, "url": target_url}
    header.update(
        draw(st.dictionaries(st.sampled_from(["nonce", "crit", "jwk"]), json_values, max_size=1))
    )
    protected = b64url_encode(json.dumps(header).encode())
    body = b64url_encode(json.dumps(payload).encode())
    digest = DIGESTS.get(alg, hashlib.sha256) if isinstance(alg, str) else hashlib.sha256
    mac = hmac.new(key, f"{protected}.{body}".encode(), digest).digest()
    genuine = (
        isinstance(alg, str)
        and alg in DIGESTS
        and kid == fx.kid
        and target_url == url
        and payload == jwk
        and key == fx.hmac_key
        and set(header) == {"alg", "kid", "url"}
    )
    return {"protected": protected, "payload": body, "signature": b64url_encode(mac)}, genuine


@budget(120)
@given(data=st.data())
def test_new_account_with_fuzzed_binding(eab: EabFixture, data: st.DataObject) -> None:
    target = eab.target
    signer = Signer()
    url = f"{target.base_url}/acme/new-account"
    binding, genuine = data.draw(bindings(eab, url, signer.jwk))
    payload = {"termsOfServiceAgreed": True, "externalAccountBinding": binding}
    header = {"alg": "ES256", "nonce": target.nonce(), "url": url, "jwk": signer.jwk}
    before = target.snapshot()
    resp = target.session.post(
        url,
        data=json.dumps(signer.sign(header, json.dumps(payload).encode())),
        headers={"Content-Type": JOSE_JSON},
        timeout=30,
    )
    check_answer(resp, before, target.snapshot())
    if resp.status_code == 201:
        assert genuine, f"account created from a forged binding {binding!r}"
