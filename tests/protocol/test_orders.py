"""Orders, authorizations and challenges (RFC 8555 7.1.3-7.1.4, 7.4-7.5)."""

from __future__ import annotations

import re
from typing import Any

import pytest

from tests.gateway_proc import GatewayProcess
from tests.protocol.acme_client import http01_responder
from tests.protocol.support import (
    ERR,
    Acme,
    assert_acme_headers,
    assert_problem,
    new_account,
    subproblem_values,
    unique,
)


@pytest.fixture
def acme(gateway: GatewayProcess) -> Acme:
    return new_account(gateway)


def test_new_order_shape(acme: Acme) -> None:
    names = [unique("a"), unique("b")]
    resp = acme.new_order(names)
    assert resp.status_code == 201, resp.text
    assert_acme_headers(resp)
    location = resp.headers["Location"]
    assert location.startswith(f"{acme.gw.base_url}/acme/order/")
    order = resp.json()
    assert order["status"] == "pending"
    assert order["identifiers"] == [{"type": "dns", "value": n} for n in names]
    assert len(order["authorizations"]) == 2
    assert order["finalize"] == f"{location}/finalize"
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", order["expires"])
    assert acme.get(location).json() == order
    for (_, authz), name in zip(acme.authorizations(order), names, strict=True):
        assert authz["identifier"] == {"type": "dns", "value": name}
        assert authz["status"] == "pending"
        assert not authz.get("wildcard", False)
        assert sorted(c["type"] for c in authz["challenges"]) == [
            "dns-01",
            "http-01",
            "tls-alpn-01",
        ]
        for chall in authz["challenges"]:
            assert chall["status"] == "pending"
            assert len(chall["token"]) >= 43 and re.fullmatch(r"[A-Za-z0-9_-]+", chall["token"])


@pytest.mark.parametrize(
    ("value", "detail"),
    [
        ("127.0.0.1", "IP address"),
        ("trailing.acme.test.", "must not end with a dot"),
        ("", "non-empty"),
        ("bad_label.acme.test", "not a valid DNS name"),
        ("-dash.acme.test", "hyphen"),
        ("*.*.acme.test", "single leading"),
        ("a.*.acme.test", "single leading"),
        ("localhost", "at least two labels"),
        ("x" * 64 + ".acme.test", "not a valid DNS name"),
        (" space.acme.test", "whitespace"),
    ],
)
def test_invalid_dns_identifier(acme: Acme, value: str, detail: str) -> None:
    doc = assert_problem(acme.new_order([value]), "rejectedIdentifier", 400, detail)
    assert subproblem_values(doc) == {value: "rejectedIdentifier"}
    assert detail.lower() in doc["subproblems"][0]["detail"].lower()


def test_unsupported_identifier_type(acme: Acme) -> None:
    # "ip" is supported since RFC 8738 support (tests/protocol/test_ip_identifiers.py).
    resp = acme.post(
        acme.directory["newOrder"], {"identifiers": [{"type": "email", "value": "a@acme.test"}]}
    )
    doc = assert_problem(resp, "unsupportedIdentifier", 400, "only dns and ip")
    assert [(s["identifier"], s["type"]) for s in doc["subproblems"]] == [
        ({"type": "email", "value": "a@acme.test"}, ERR + "unsupportedIdentifier")
    ]


def test_several_bad_identifiers(acme: Acme) -> None:
    good = unique()
    resp = acme.post(
        acme.directory["newOrder"],
        {
            "identifiers": [
                {"type": "dns", "value": good},
                {"type": "dns", "value": "10.1.2.3"},
                {"type": "email", "value": "a@acme.test"},
                {"type": "dns", "value": "*.*.acme.test"},
            ]
        },
    )
    doc = assert_problem(resp, "rejectedIdentifier", 400, "3 identifier(s)")
    assert [(s["identifier"], s["type"].removeprefix(ERR)) for s in doc["subproblems"]] == [
        ({"type": "dns", "value": "10.1.2.3"}, "rejectedIdentifier"),
        ({"type": "email", "value": "a@acme.test"}, "unsupportedIdentifier"),
        ({"type": "dns", "value": "*.*.acme.test"}, "rejectedIdentifier"),
    ]


@pytest.mark.parametrize(
    "payload",
    [
        {},
        {"identifiers": []},
        {"identifiers": "x.acme.test"},
        {"identifiers": [{"type": "dns"}]},
        {"identifiers": ["x.acme.test"]},
    ],
)
def test_malformed_identifiers(acme: Acme, payload: dict[str, Any]) -> None:
    assert_problem(acme.post(acme.directory["newOrder"], payload), "malformed", 400, "identifier")


def test_not_before_refused(acme: Acme) -> None:
    resp = acme.post(
        acme.directory["newOrder"],
        {"identifiers": [{"type": "dns", "value": unique()}], "notBefore": "2030-01-01T00:00:00Z"},
    )
    assert_problem(resp, "malformed", 400, "notBefore")


def test_wildcard_authorization(acme: Acme) -> None:
    base = unique("w")
    _, order = acme.order([f"*.{base}", base])
    (_, wild), (_, plain) = acme.authorizations(order)
    assert wild["identifier"] == {"type": "dns", "value": base}
    assert wild["wildcard"] is True
    assert [c["type"] for c in wild["challenges"]] == ["dns-01"]
    assert plain["identifier"] == {"type": "dns", "value": base}
    assert not plain.get("wildcard", False)
    assert sorted(c["type"] for c in plain["challenges"]) == ["dns-01", "http-01", "tls-alpn-01"]


def test_order_list_paging(acme: Acme) -> None:
    created = [acme.order([unique("p")])[0] for _ in range(51)]
    orders_url = acme.get(acme.account).json()["orders"]
    first = acme.get(orders_url)
    assert first.status_code == 200, first.text
    assert_acme_headers(first)
    page1 = first.json()["orders"]
    assert len(page1) == 50
    match = re.search(r'<([^>]+)>;\s*rel="next"', first.headers["Link"])
    assert match, first.headers["Link"]
    second = acme.get(match.group(1))
    assert second.status_code == 200, second.text
    page2 = second.json()["orders"]
    assert 'rel="next"' not in second.headers.get("Link", "")
    assert sorted(page1 + page2) == sorted(created)
    assert page1 + page2 == created  # oldest first, stable


def test_order_list_bad_cursor(acme: Acme) -> None:
    orders_url = acme.get(acme.account).json()["orders"]
    assert_problem(acme.get(f"{orders_url}?cursor=!!"), "malformed", 400, "cursor")


def test_order_list_requires_post_as_get(acme: Acme) -> None:
    orders_url = acme.get(acme.account).json()["orders"]
    assert_problem(acme.post(orders_url, {}), "malformed", 400, "POST-as-GET")


def test_order_requires_post_as_get(acme: Acme) -> None:
    url, _ = acme.order([unique()])
    assert_problem(acme.post(url, {}), "malformed", 400, "POST-as-GET")


def test_authorization_reuse(acme: Acme) -> None:
    name = unique("reuse")
    _, first = acme.ready_order([name])
    assert first["status"] == "ready"
    _url, second = acme.order([name])
    assert second["status"] == "ready"
    assert second["authorizations"] == first["authorizations"]
    # Mixed: the reused name is valid, the new one pending, so the order is pending.
    _, mixed = acme.order([name, unique("new")])
    assert mixed["status"] == "pending"
    assert mixed["authorizations"][0] == first["authorizations"][0]
    # Another account never sees this account's authorizations.
    other = new_account(acme.gw)
    _, theirs = other.order([name])
    assert theirs["status"] == "pending"
    assert theirs["authorizations"] != first["authorizations"]


def test_authorization_deactivation_invalidates_order(acme: Acme) -> None:
    url, order = acme.order([unique("d1"), unique("d2")])
    authz_url = order["authorizations"][0]
    resp = acme.post(authz_url, {"status": "deactivated"})
    assert resp.status_code == 200, resp.text
    assert resp.json()["status"] == "deactivated"
    assert acme.get(url).json()["status"] == "invalid"
    assert_problem(
        acme.post(authz_url, {"status": "deactivated"}),
        "malformed",
        400,
        "deactivated authorization",
    )


def test_valid_authorization_deactivation(acme: Acme) -> None:
    name = unique("vd")
    url, order = acme.ready_order([name])
    authz_url = order["authorizations"][0]
    assert acme.post(authz_url, {"status": "deactivated"}).json()["status"] == "deactivated"
    # Like Boulder: a ready order whose authorization was given up can no longer be finalized.
    assert acme.get(url).json()["status"] == "invalid"
    assert acme.order([name])[1]["status"] == "pending"  # no longer reusable


def test_authorization_update_other_than_deactivate(acme: Acme) -> None:
    _, order = acme.order([unique()])
    resp = acme.post(order["authorizations"][0], {"status": "valid"})
    assert_problem(resp, "malformed", 400, "only be updated to deactivated")


def test_challenge_response_and_validation(acme: Acme) -> None:
    url, order = acme.order([unique("c")])
    ((authz_url, authz),) = acme.authorizations(order)
    chall = next(c for c in authz["challenges"] if c["type"] == "http-01")
    with http01_responder(acme.gw.http01_port) as tokens:
        tokens[chall["token"]] = f"{chall['token']}.{acme.key_thumbprint()}"
        resp = acme.post(chall["url"], {})
        assert resp.status_code == 200, resp.text
        assert_acme_headers(resp)
        body = resp.json()
        assert body["status"] in ("processing", "valid")
        assert body["url"] == chall["url"] and body["token"] == chall["token"]
        assert f'<{authz_url}>;rel="up"' in resp.headers["Link"]
        if body["status"] == "processing":
            assert int(resp.headers["Retry-After"]) > 0
        done = acme.wait(authz_url, {"valid", "invalid"})
    assert done["status"] == "valid"
    assert [c["type"] for c in done["challenges"]] == ["http-01"]
    chall_now = acme.get(chall["url"]).json()
    assert chall_now["status"] == "valid" and "validated" in chall_now
    assert acme.get(url).json()["status"] == "ready"
    # Responding again to a finished challenge changes nothing.
    assert_problem(acme.post(chall["url"], {}), "malformed", 400, "authorization is valid")


def test_failed_http01(acme: Acme) -> None:
    name = unique("fail")
    url, order = acme.order([name])
    ((authz_url, authz),) = acme.authorizations(order)
    chall = next(c for c in authz["challenges"] if c["type"] == "http-01")
    with http01_responder(acme.gw.http01_port):  # serves no key authorization: HTTP 404
        assert acme.post(chall["url"], {}).status_code == 200
        done = acme.wait(authz_url, {"valid", "invalid"})
    assert done["status"] == "invalid"
    failed = acme.get(chall["url"]).json()
    assert failed["status"] == "invalid"
    error = failed["error"]
    assert error["type"] == ERR + "unauthorized"
    assert "HTTP 404" in error["detail"] and chall["token"] in error["detail"]
    assert error["identifier"] == {"type": "dns", "value": name}
    final = acme.get(url).json()
    assert final["status"] == "invalid"
    assert final["error"]["type"] == ERR + "unauthorized"
    assert "HTTP 404" in final["error"]["detail"]


def test_wrong_key_authorization(acme: Acme) -> None:
    url, order = acme.order([unique("wrong")])
    ((authz_url, authz),) = acme.authorizations(order)
    chall = next(c for c in authz["challenges"] if c["type"] == "http-01")
    with http01_responder(acme.gw.http01_port) as tokens:
        tokens[chall["token"]] = f"{chall['token']}.not-the-thumbprint"
        acme.post(chall["url"], {})
        assert acme.wait(authz_url, {"valid", "invalid"})["status"] == "invalid"
    error = acme.get(chall["url"]).json()["error"]
    assert error["type"] == ERR + "unauthorized"
    assert "did not match" in error["detail"]
    assert acme.get(url).json()["status"] == "invalid"


def test_other_accounts_resources_are_hidden(acme: Acme) -> None:
    url, order = acme.order([unique()])
    ((authz_url, authz),) = acme.authorizations(order)
    other = new_account(acme.gw)
    assert_problem(other.get(url), "malformed", 404, "no such order")
    assert_problem(other.get(authz_url), "malformed", 404, "no such authorization")
    assert_problem(
        other.post(authz["challenges"][0]["url"], {}), "malformed", 404, "no such challenge"
    )
    assert_problem(other.post(authz_url, {"status": "deactivated"}), "malformed", 404)
    assert acme.get(authz_url).json()["status"] == "pending"
