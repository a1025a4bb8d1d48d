"""Accounts (RFC 8555 7.3): creation, lookup, update, deactivation, access, keyChange."""

from __future__ import annotations

from typing import Any

import pytest

from tests.gateway_proc import GatewayProcess
from tests.protocol.acme_client import rsa_key
from tests.protocol.support import Acme, assert_acme_headers, assert_problem, new_account, unique


def test_create_account(gateway: GatewayProcess) -> None:
    acme = Acme(gateway)
    resp = acme.create_account(
        {"termsOfServiceAgreed": True, "contact": ["mailto:ops@example.org"]}
    )
    assert resp.status_code == 201, resp.text
    assert_acme_headers(resp)
    location = resp.headers["Location"]
    assert location.startswith(f"{gateway.base_url}/acme/acct/")
    body = resp.json()
    assert body["status"] == "valid"
    assert body["contact"] == ["mailto:ops@example.org"]
    assert body["orders"] == f"{location}/orders"
    assert body["termsOfServiceAgreed"] is True
    assert "externalAccountBinding" not in body


def test_same_key_returns_existing_account(gateway: GatewayProcess) -> None:
    acme = new_account(gateway)
    again = acme.create_account({"termsOfServiceAgreed": True})
    assert again.status_code == 200, again.text
    assert again.headers["Location"] == acme.account
    lookup = acme.create_account({"onlyReturnExisting": True})
    assert lookup.status_code == 200, lookup.text
    assert lookup.headers["Location"] == acme.account
    assert lookup.json()["status"] == "valid"


def test_only_return_existing_for_unknown_key(gateway: GatewayProcess) -> None:
    acme = Acme(gateway)
    resp = acme.create_account({"onlyReturnExisting": True})
    assert_problem(resp, "accountDoesNotExist", 400, "no account exists for this key")


def test_post_as_get_account(gateway: GatewayProcess) -> None:
    acme = new_account(gateway)
    resp = acme.get(acme.account)
    assert resp.status_code == 200
    assert resp.headers["Location"] == acme.account
    assert resp.json()["orders"] == f"{acme.account}/orders"


def test_update_contact(gateway: GatewayProcess) -> None:
    acme = new_account(gateway)
    resp = acme.post(acme.account, {"contact": ["mailto:new@example.org", "mailto:b@example.org"]})
    assert resp.status_code == 200, resp.text
    assert resp.json()["contact"] == ["mailto:new@example.org", "mailto:b@example.org"]
    assert acme.get(acme.account).json()["contact"] == [
        "mailto:new@example.org",
        "mailto:b@example.org",
    ]
    cleared = acme.post(acme.account, {"contact": []})
    assert cleared.json()["contact"] == []


@pytest.mark.parametrize(
    ("contact", "type_", "detail"),
    [
        (["tel:+15551234"], "unsupportedContact", "only mailto"),
        (["https://example.org"], "unsupportedContact", "only mailto"),
        (["mailto:nobody"], "invalidContact", "not a single plain email"),
        (["mailto:a@example.org,b@example.org"], "invalidContact", "not a single plain email"),
        (["mailto:a@example.org?subject=x"], "invalidContact", "not a single plain email"),
        ("mailto:a@example.org", "invalidContact", "list of strings"),
        ([f"mailto:a{i}@example.org" for i in range(11)], "invalidContact", "at most 10"),
    ],
)
def test_invalid_contact(gateway: GatewayProcess, contact: Any, type_: str, detail: str) -> None:
    fresh = Acme(gateway)
    resp = fresh.create_account({"termsOfServiceAgreed": True, "contact": contact})
    assert_problem(resp, type_, 400, detail)
    assert fresh.kid is None
    acme = new_account(gateway)
    resp = acme.post(acme.account, {"contact": contact})
    assert_problem(resp, type_, 400, detail)


def test_status_other_than_deactivated_refused(gateway: GatewayProcess) -> None:
    acme = new_account(gateway)
    resp = acme.post(acme.account, {"status": "revoked"})
    assert_problem(resp, "malformed", 400, "deactivated")


def test_deactivation(gateway: GatewayProcess) -> None:
    acme = new_account(gateway)
    resp = acme.post(acme.account, {"status": "deactivated"})
    assert resp.status_code == 200, resp.text
    assert resp.json()["status"] == "deactivated"
    assert_problem(acme.get(acme.account), "unauthorized", 403, "deactivated")
    assert_problem(acme.new_order([unique()]), "unauthorized", 403, "deactivated")
    assert_problem(acme.post(acme.account, {"status": "deactivated"}), "unauthorized", 403)
    lookup = acme.create_account({"onlyReturnExisting": True})
    assert_problem(lookup, "unauthorized", 403, "deactivated")


def test_another_accounts_url_refused(gateway: GatewayProcess) -> None:
    alice, bob = new_account(gateway), new_account(gateway)
    assert_problem(alice.get(bob.account), "unauthorized", 403, "different account")
    assert_problem(
        alice.post(bob.account, {"contact": []}), "unauthorized", 403, "different account"
    )
    assert_problem(alice.get(f"{bob.account}/orders"), "unauthorized", 403, "different account")
    # Bob's account is untouched.
    assert bob.get(bob.account).json()["status"] == "valid"


def _key_change(
    acme: Acme,
    new: Acme,
    *,
    inner_extra: dict[str, Any] | None = None,
    inner_nonce: str | bool | None = False,
    inner_url: str | None = None,
    payload: dict[str, Any] | None = None,
) -> Any:
    url = acme.directory["keyChange"]
    inner = new.sign(
        inner_url or url,
        payload or {"account": acme.account, "oldKey": acme.jwk()},
        use_kid=False,
        nonce=inner_nonce,
        extra=inner_extra,
    )
    return acme.post(url, inner)


def test_key_change(gateway: GatewayProcess) -> None:
    acme = new_account(gateway)
    old_key = acme.key
    new = Acme(gateway, rsa_key())
    resp = _key_change(acme, new)
    assert resp.status_code == 200, resp.text
    assert resp.headers["Location"] == acme.account
    # The old key no longer authenticates the account, nor finds it.
    refused = acme.get(acme.account)
    assert_problem(refused, "badSignatureAlgorithm", 400, "does not match")  # ES256 vs RSA key
    old = Acme(gateway, old_key)
    assert_problem(old.create_account({"onlyReturnExisting": True}), "accountDoesNotExist", 400)
    # The new key does, under the same account URL.
    new.kid = acme.account
    assert new.get(acme.account).json()["status"] == "valid"
    found = new.create_account({"onlyReturnExisting": True})
    assert found.status_code == 200 and found.headers["Location"] == acme.account
    assert new.order([unique()])[1]["status"] == "pending"


def test_key_change_old_key_same_type_refused(gateway: GatewayProcess) -> None:
    acme = new_account(gateway)
    new = Acme(gateway)  # also ES256
    assert _key_change(acme, new).status_code == 200
    assert_problem(acme.get(acme.account), "malformed", 400, "signature is invalid")


def test_key_change_to_key_in_use(gateway: GatewayProcess) -> None:
    acme, other = new_account(gateway), new_account(gateway)
    resp = _key_change(acme, other)
    assert_problem(resp, "malformed", 409, "already in use")
    assert resp.headers["Location"] == other.account
    assert acme.get(acme.account).status_code == 200  # nothing changed


def test_key_change_inner_with_nonce(gateway: GatewayProcess) -> None:
    acme = new_account(gateway)
    resp = _key_change(acme, Acme(gateway), inner_nonce=True)
    assert_problem(resp, "malformed", 400, "must not carry a nonce")


def test_key_change_inner_wrong_url(gateway: GatewayProcess) -> None:
    acme = new_account(gateway)
    resp = _key_change(acme, Acme(gateway), inner_url=acme.directory["newAccount"])
    assert_problem(resp, "malformed", 400, "url must equal the outer url")


def test_key_change_inner_with_kid(gateway: GatewayProcess) -> None:
    acme = new_account(gateway)
    resp = _key_change(acme, Acme(gateway), inner_extra={"kid": acme.account})
    assert_problem(resp, "malformed", 400, "new key as jwk")


def test_key_change_wrong_account_or_old_key(gateway: GatewayProcess) -> None:
    acme, other = new_account(gateway), new_account(gateway)
    resp = _key_change(
        acme, Acme(gateway), payload={"account": other.account, "oldKey": acme.jwk()}
    )
    assert_problem(resp, "malformed", 400, "account does not match")
    resp = _key_change(
        acme, Acme(gateway), payload={"account": acme.account, "oldKey": other.jwk()}
    )
    assert_problem(resp, "malformed", 400, "oldKey is not the account's current key")


def test_key_change_inner_bad_signature(gateway: GatewayProcess) -> None:
    acme = new_account(gateway)
    new = Acme(gateway)
    url = acme.directory["keyChange"]
    inner = new.sign(
        url, {"account": acme.account, "oldKey": acme.jwk()}, use_kid=False, nonce=False
    )
    inner["signature"] = acme.sign(url, None, nonce=False)["signature"]
    assert_problem(acme.post(url, inner), "malformed", 400, "signature is invalid")


def test_key_change_must_use_kid(gateway: GatewayProcess) -> None:
    acme = new_account(gateway)
    new = Acme(gateway)
    url = acme.directory["keyChange"]
    inner = new.sign(
        url, {"account": acme.account, "oldKey": acme.jwk()}, use_kid=False, nonce=False
    )
    resp = acme.post(url, inner, use_kid=False)
    assert_problem(resp, "malformed", 400, "account kid")
