"""The HTTP endpoints under generated requests: garbage, and well-signed JWS with random parts.

Properties, for every answer: never a 5xx or a traceback; every 4xx is an
`application/problem+json` document with an `urn:ietf:params:acme:error:` type and the
HTTP status; and when the answer is an error, no row of any table changed (the nonce a
request spends is the one intended write).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

import pytest
import requests
from hypothesis import assume, example, given
from hypothesis import strategies as st

from acme_server.encoding import b64url_decode, b64url_encode
from tests.fuzz.http_target import ERR, JOSE_JSON, ServerThread, Target, check_answer
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


@dataclass
class Fixture:
    target: Target
    signer: Signer  # the account's key
    kid: str
    paths: list[str]  # every resource path the account can reach


def _post(target: Target, path: str, jws: dict[str, str]) -> requests.Response:
    return target.session.post(
        target.base_url + path,
        data=json.dumps(jws),
        headers={"Content-Type": JOSE_JSON},
        timeout=30,
    )


@pytest.fixture(scope="module")
def fx(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Fixture]:
    server = ServerThread(tmp_path_factory.mktemp("fuzz-http"))
    target = server.start()
    signer = Signer()
    base = target.base_url
    header = {"alg": "ES256", "nonce": target.nonce(), "url": f"{base}/acme/new-account"}
    resp = _post(
        target,
        "/acme/new-account",
        signer.sign({**header, "jwk": signer.jwk}, b'{"termsOfServiceAgreed": true}'),
    )
    assert resp.status_code == 201, resp.text
    kid = resp.headers["Location"]
    order_body = json.dumps({"identifiers": [{"type": "dns", "value": "fuzz.example.com"}]})
    header = {"alg": "ES256", "nonce": target.nonce(), "url": f"{base}/acme/new-order", "kid": kid}
    resp = _post(target, "/acme/new-order", signer.sign(header, order_body.encode()))
    assert resp.status_code == 201, resp.text
    order = resp.json()
    paths = [kid.removeprefix(base), resp.headers["Location"].removeprefix(base)]
    paths += [order["finalize"].removeprefix(base), kid.removeprefix(base) + "/orders"]
    for authz_url in order["authorizations"]:
        paths.append(authz_url.removeprefix(base))
        header = {"alg": "ES256", "nonce": target.nonce(), "url": authz_url, "kid": kid}
        authz = _post(target, authz_url.removeprefix(base), signer.sign(header, "")).json()
        paths += [c["url"].removeprefix(base) for c in authz["challenges"]]
    paths += ["/acme/new-order", "/acme/revoke-cert", "/acme/key-change", "/acme/new-account"]
    try:
        yield Fixture(target, signer, kid, paths)
    finally:
        server.stop()


def exchange(fx: Fixture, method: str, path: str, **kwargs: Any) -> requests.Response:
    before = fx.target.snapshot()
    resp = fx.target.session.request(method, fx.target.base_url + path, timeout=30, **kwargs)
    check_answer(resp, before, fx.target.snapshot())
    return resp


# ---------------------------------------------------------------- garbage


def paths_for(fx: Fixture) -> st.SearchStrategy[str]:
    known = st.sampled_from(
        [*fx.paths, "/directory", "/acme/new-nonce", "/acme/issuer", "/acme/cert/x", "/"]
    )
    random = st.text(max_size=30).map(lambda t: "/acme/" + quote(t, safe="/"))
    return known | random | st.tuples(known, st.text(max_size=12)).map(lambda p: p[0] + quote(p[1]))


bodies = (
    st.binary(max_size=300)
    | json_values.map(lambda v: json.dumps(v).encode())
    | st.fixed_dictionaries(
        {"protected": b64_texts, "payload": b64_texts, "signature": b64_texts},
        optional={"header": json_values},
    ).map(lambda v: json.dumps(v).encode())
)
content_types = st.sampled_from([JOSE_JSON, "application/json", "text/plain", ""]) | st.text(
    alphabet="abcdefghijklmnopqrstuvwxyz/+-;=", max_size=30
)


@FUZZ
@given(data=st.data())
def test_garbage_requests(fx: Fixture, data: st.DataObject) -> None:
    method = data.draw(st.sampled_from(["POST", "POST", "POST", "GET", "HEAD", "PUT", "DELETE"]))
    path = data.draw(paths_for(fx))
    content_type = data.draw(content_types)
    body = data.draw(bodies)
    exchange(fx, method, path, data=body, headers={"Content-Type": content_type})


@budget(20)
@given(shape=nesting, where=st.sampled_from(["body", "protected"]))
@example(shape=(100_000, "list"), where="body")
def test_deeply_nested_json(fx: Fixture, shape: tuple[int, str], where: str) -> None:
    """Issue 8 item 10: deep nesting (body or protected header) must be `malformed`."""
    nested = deeply_nested(*shape)
    if where == "body":
        body = nested.encode()
    else:
        body = json.dumps(
            {"protected": b64url_encode(nested.encode()), "payload": "", "signature": ""}
        ).encode()
    exchange(fx, "POST", "/acme/new-order", data=body, headers={"Content-Type": JOSE_JSON})


# ---------------------------------------------------------------- well-signed requests


header_edits = st.dictionaries(
    st.sampled_from(["alg", "nonce", "url", "jwk", "kid", "crit", "b64", "typ", "x5u"]),
    json_values | b64_texts,
    max_size=2,
)
drops = st.lists(st.sampled_from(["alg", "nonce", "url", "jwk", "kid"]), max_size=2)


def signed_post(
    fx: Fixture,
    path: str,
    payload: bytes | str,
    *,
    use_jwk: bool = False,
    edits: dict[str, Any] | None = None,
    dropped: list[str] | None = None,
    query: str = "",
) -> requests.Response:
    url = fx.target.base_url + path + query
    header: dict[str, Any] = {"alg": "ES256", "nonce": fx.target.nonce(), "url": url}
    header.update({"jwk": fx.signer.jwk} if use_jwk else {"kid": fx.kid})
    header.update(edits or {})
    for name in dropped or ():
        header.pop(name, None)
    jws = fx.signer.sign(header, payload)
    return exchange(
        fx, "POST", path + query, data=json.dumps(jws), headers={"Content-Type": JOSE_JSON}
    )


identifiers = st.lists(
    st.fixed_dictionaries(
        {
            "type": st.sampled_from(["dns", "ip", "DNS"]) | json_values,
            "value": st.from_regex(r"\A(\*\.)?([a-z0-9-]{1,10}\.){1,3}[a-z]{2,5}\Z") | json_values,
        }
    ),
    max_size=4,
)
payloads = (
    json_values
    | jose_objects()
    | st.fixed_dictionaries(
        {},
        optional={
            "identifiers": identifiers | json_values,
            "notBefore": json_values,
            "notAfter": json_values,
            "csr": b64_texts | json_values,
            "status": st.sampled_from(["valid", "pending"]) | json_values,
            "contact": st.lists(st.text(max_size=20), max_size=2) | json_values,
            "onlyReturnExisting": json_values,
            "termsOfServiceAgreed": json_values,
            "certificate": b64_texts,
            "reason": json_values,
        },
    )
)


def _deactivates(payload: Any) -> bool:
    """Deactivating the fuzz account would end the run's coverage; it is not an error."""
    return isinstance(payload, dict) and payload.get("status") == "deactivated"


@FUZZ
@given(data=st.data())
def test_well_signed_random_payloads(fx: Fixture, data: st.DataObject) -> None:
    path = data.draw(st.sampled_from(fx.paths))
    payload = data.draw(payloads)
    assume(not _deactivates(payload))
    kind = data.draw(st.sampled_from(["json", "post-as-get", "raw"]))
    body: bytes | str = json.dumps(payload).encode() if kind == "json" else ""
    if kind == "raw":
        body = data.draw(st.binary(max_size=60))
    use_jwk = path in ("/acme/new-account", "/acme/revoke-cert") and data.draw(st.booleans())
    signed_post(fx, path, body, use_jwk=use_jwk)


@FUZZ
@given(data=st.data())
def test_well_signed_hostile_headers(fx: Fixture, data: st.DataObject) -> None:
    path = data.draw(st.sampled_from(fx.paths))
    payload = json.dumps(data.draw(payloads)).encode()
    assume(not _deactivates(json.loads(payload)))
    signed_post(
        fx,
        path,
        payload,
        use_jwk=data.draw(st.booleans()),
        edits=data.draw(header_edits),
        dropped=data.draw(drops),
    )


cursors = (
    b64_texts
    | st.tuples(st.integers() | st.floats(), st.text(max_size=10)).map(
        lambda p: b64url_encode(f"{p[0]}|{p[1]}".encode())
    )
    | st.text(max_size=20)
)


@budget(100)
@given(cursor=cursors)
@example(cursor=b64url_encode(b"1e300|x"))
def test_orders_list_cursor(fx: Fixture, cursor: str) -> None:
    """Issue 8 item 15: a garbage cursor is `malformed`, never a 500."""
    signed_post(
        fx,
        fx.kid.removeprefix(fx.target.base_url) + "/orders",
        "",
        query="?cursor=" + quote(cursor),
    )


@budget(40)
@given(
    crit=st.lists(
        st.sampled_from(["b64", "exp", "x-custom"]) | st.text(max_size=8), min_size=1, max_size=3
    ),
    b64=st.none() | st.booleans(),
)
def test_critical_extensions_are_refused(fx: Fixture, crit: list[str], b64: bool | None) -> None:
    """Issue 8 item 12 (RFC 7515 4.1.11): no extension here is understood, so `crit` fails."""
    edits: dict[str, Any] = {"crit": crit}
    if b64 is not None:
        edits["b64"] = b64
    resp = signed_post(fx, fx.kid.removeprefix(fx.target.base_url), "", edits=edits)
    assert resp.status_code >= 400, f"crit {crit} accepted: {resp.status_code}"


@budget(20)
@given(data=st.data())
def test_one_nonce_cannot_be_spent_twice_under_two_spellings(
    fx: Fixture, data: st.DataObject
) -> None:
    """Issue 8 item 11: a nonce written two ways is still one nonce."""
    nonce = fx.target.nonce()
    path = fx.kid.removeprefix(fx.target.base_url)
    url = fx.target.base_url + path
    first = signed_post(fx, path, "", edits={"nonce": nonce})
    assert first.status_code == 200, first.text
    respelled = data.draw(non_canonical_b64(b64url_decode(nonce)))
    header = {"alg": "ES256", "nonce": respelled, "url": url, "kid": fx.kid}
    second = _post(fx.target, path, fx.signer.sign(header, ""))
    assert second.status_code == 400 and second.json()["type"] == ERR + "badNonce", second.text


def test_snapshot_sees_committed_changes(fx: Fixture) -> None:
    """The control for the no-change property: a successful newOrder shows in the snapshot."""
    before = fx.target.snapshot()
    body = json.dumps({"identifiers": [{"type": "dns", "value": "control.example.com"}]})
    resp = signed_post(fx, "/acme/new-order", body.encode())
    assert resp.status_code == 201, resp.text
    after = fx.target.snapshot()
    assert (
        before["orders"] != after["orders"] and before["authorizations"] != after["authorizations"]
    )
