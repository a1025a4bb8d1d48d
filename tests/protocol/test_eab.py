"""External Account Binding and pre-registration lifecycle (RFC 8555 7.3.4)."""

from __future__ import annotations

import json
import secrets
import uuid
from typing import Any

import pytest

from tests.gateway_proc import GatewayProcess
from tests.protocol.acme_client import b64, new_client, register, rsa_key
from tests.protocol.support import Acme, assert_problem, eab_binding, unique


def _registration(gw: GatewayProcess, *extra: str) -> dict[str, Any]:
    """A registration granting every name explicitly (these tests are about EAB, not names)."""
    return gw.create_registration(f"reg-{uuid.uuid4().hex[:10]}", "--any-domain", *extra)


@pytest.fixture(scope="module")
def reg(prereg_gateway: GatewayProcess) -> dict[str, Any]:
    """One registration without a maximum, shared: binding more keys to it is harmless."""
    return _registration(prereg_gateway)


def _with_eab(acme: Acme, binding: Any, **extra: Any) -> Any:
    return acme.create_account(
        {"termsOfServiceAgreed": True, "externalAccountBinding": binding, **extra}
    )


def test_registration_credentials_shape(reg: dict[str, Any]) -> None:
    key = str(reg["hmac_key"])
    assert "=" not in key and "+" not in key and "/" not in key
    assert len(key) >= 43  # at least 32 bytes, unpadded base64url


def test_eab_missing(prereg_gateway: GatewayProcess) -> None:
    acme = Acme(prereg_gateway)
    resp = acme.create_account()
    assert_problem(resp, "externalAccountRequired", 403, "requires an externalAccountBinding")


def test_only_return_existing_unknown_key_needs_no_eab(prereg_gateway: GatewayProcess) -> None:
    resp = Acme(prereg_gateway).create_account({"onlyReturnExisting": True})
    assert_problem(resp, "accountDoesNotExist", 400)


def test_eab_wrong_mac(prereg_gateway: GatewayProcess, reg: dict[str, Any]) -> None:
    acme = Acme(prereg_gateway)
    wrong = b64(secrets.token_bytes(32))
    binding = eab_binding(str(reg["kid"]), wrong, acme.jwk(), acme.directory["newAccount"])
    assert_problem(_with_eab(acme, binding), "unauthorized", 403, "MAC does not verify")


def test_eab_unknown_kid(prereg_gateway: GatewayProcess, reg: dict[str, Any]) -> None:
    acme = Acme(prereg_gateway)
    binding = eab_binding(
        "no-such-kid", str(reg["hmac_key"]), acme.jwk(), acme.directory["newAccount"]
    )
    assert_problem(_with_eab(acme, binding), "unauthorized", 403, "unknown externalAccountBinding")


def test_eab_for_another_key(prereg_gateway: GatewayProcess, reg: dict[str, Any]) -> None:
    acme, other = Acme(prereg_gateway), Acme(prereg_gateway)
    binding = eab_binding(
        str(reg["kid"]), str(reg["hmac_key"]), other.jwk(), acme.directory["newAccount"]
    )
    assert_problem(_with_eab(acme, binding), "malformed", 400, "account's public key")


def test_eab_wrong_url_or_nonce(prereg_gateway: GatewayProcess, reg: dict[str, Any]) -> None:
    acme = Acme(prereg_gateway)
    binding = eab_binding(
        str(reg["kid"]), str(reg["hmac_key"]), acme.jwk(), acme.directory["newOrder"]
    )
    assert_problem(_with_eab(acme, binding), "malformed", 400, "url must be the newAccount URL")
    header = {"alg": "HS256", "kid": reg["kid"], "url": acme.directory["newAccount"], "nonce": "x"}
    binding = eab_binding(
        str(reg["kid"]), str(reg["hmac_key"]), acme.jwk(), acme.directory["newAccount"]
    )
    binding["protected"] = b64(json.dumps(header).encode())
    assert_problem(_with_eab(acme, binding), "malformed", 400, "must not carry a nonce")


def test_eab_signature_algorithm(prereg_gateway: GatewayProcess, reg: dict[str, Any]) -> None:
    acme = Acme(prereg_gateway)
    binding = eab_binding(
        str(reg["kid"]), str(reg["hmac_key"]), acme.jwk(), acme.directory["newAccount"]
    )
    header = {"alg": "ES256", "kid": reg["kid"], "url": acme.directory["newAccount"]}
    binding["protected"] = b64(json.dumps(header).encode())
    assert_problem(_with_eab(acme, binding), "badSignatureAlgorithm", 400, "HS256")


def test_eab_not_flattened(prereg_gateway: GatewayProcess, reg: dict[str, Any]) -> None:
    acme = Acme(prereg_gateway)
    resp = _with_eab(acme, "a.b.c")  # the compact serialization
    assert_problem(resp, "malformed", 400, "externalAccountBinding must be a flattened JWS")


@pytest.mark.parametrize("alg", ["HS256", "HS384", "HS512"])
def test_eab_algorithms(prereg_gateway: GatewayProcess, reg: dict[str, Any], alg: str) -> None:
    acme = Acme(prereg_gateway)
    binding = eab_binding(
        str(reg["kid"]), str(reg["hmac_key"]), acme.jwk(), acme.directory["newAccount"], alg
    )
    resp = _with_eab(acme, binding)
    assert resp.status_code == 201, resp.text
    assert resp.json()["externalAccountBinding"] == binding
    assert acme.get(acme.account).json()["externalAccountBinding"] == binding


def test_lookup_without_eab_after_creation(
    prereg_gateway: GatewayProcess, reg: dict[str, Any]
) -> None:
    """cert-manager's pattern: after a 200 it looks the account up WITHOUT an EAB."""
    acme = Acme(prereg_gateway)
    created = acme.register(reg)
    lookup = acme.create_account({"onlyReturnExisting": True})
    assert lookup.status_code == 200, lookup.text
    assert lookup.headers["Location"] == created.headers["Location"]
    again = acme.create_account({"termsOfServiceAgreed": True})
    assert again.status_code == 200 and again.headers["Location"] == acme.account
    assert "externalAccountBinding" in lookup.json()


def test_one_registration_binds_several_keys(
    prereg_gateway: GatewayProcess, reg: dict[str, Any]
) -> None:
    first, second = Acme(prereg_gateway), Acme(prereg_gateway, rsa_key())
    first.register(reg)
    second.register(reg)
    assert first.account != second.account
    for acme in (first, second):
        assert acme.order([unique()])[1]["status"] == "pending"


def test_max_accounts(prereg_gateway: GatewayProcess) -> None:
    reg = _registration(prereg_gateway, "--max-accounts", "2")
    Acme(prereg_gateway).register(reg)
    Acme(prereg_gateway).register(reg)
    third = Acme(prereg_gateway)
    binding = eab_binding(
        str(reg["kid"]), str(reg["hmac_key"]), third.jwk(), third.directory["newAccount"]
    )
    assert_problem(_with_eab(third, binding), "unauthorized", 403, "maximum of 2 account(s)")


def test_deactivation_frees_an_account_slot(prereg_gateway: GatewayProcess) -> None:
    """Issue 8 item 6: max_accounts counts live (valid) accounts only."""
    reg = _registration(prereg_gateway, "--max-accounts", "1")
    first = Acme(prereg_gateway)
    first.register(reg)
    blocked = Acme(prereg_gateway)
    binding = eab_binding(
        str(reg["kid"]), str(reg["hmac_key"]), blocked.jwk(), blocked.directory["newAccount"]
    )
    assert_problem(_with_eab(blocked, binding), "unauthorized", 403, "maximum of 1 account(s)")
    resp = first.post(first.account, {"status": "deactivated"})
    assert resp.status_code == 200 and resp.json()["status"] == "deactivated", resp.text
    second = Acme(prereg_gateway)
    created = second.register(reg)  # asserts 201
    assert created.headers["Location"] != first.account
    assert second.order([unique()])[1]["status"] == "pending"
    third = Acme(prereg_gateway)  # the freed slot is taken again
    binding = eab_binding(
        str(reg["kid"]), str(reg["hmac_key"]), third.jwk(), third.directory["newAccount"]
    )
    assert_problem(_with_eab(third, binding), "unauthorized", 403, "maximum of 1 account(s)")


def test_acme_library_registers_with_eab(
    prereg_gateway: GatewayProcess, reg: dict[str, Any]
) -> None:
    """certbot's acme library (HS256 EAB) against pre-registered mode."""
    acme = new_client(prereg_gateway)
    account = register(acme, eab=reg)
    assert account.body.status == "valid"
    assert account.uri.startswith(f"{prereg_gateway.base_url}/acme/acct/")


def test_suspend_and_resume(prereg_gateway: GatewayProcess) -> None:
    reg = _registration(prereg_gateway)
    acme = Acme(prereg_gateway)
    acme.register(reg)
    prereg_gateway.cli("registration", "suspend", str(reg["name"]))
    assert_problem(acme.new_order([unique()]), "unauthorized", 403, "suspended")
    assert_problem(acme.get(acme.account), "unauthorized", 403, "suspended")
    assert_problem(
        acme.create_account({"onlyReturnExisting": True}), "unauthorized", 403, "suspended"
    )
    newcomer = Acme(prereg_gateway)
    binding = eab_binding(
        str(reg["kid"]), str(reg["hmac_key"]), newcomer.jwk(), newcomer.directory["newAccount"]
    )
    assert_problem(_with_eab(newcomer, binding), "unauthorized", 403, "suspended")
    prereg_gateway.cli("registration", "resume", str(reg["name"]))
    assert acme.order([unique()])[1]["status"] == "pending"


def test_delete(prereg_gateway: GatewayProcess) -> None:
    reg = _registration(prereg_gateway)
    acme = Acme(prereg_gateway)
    acme.register(reg)
    prereg_gateway.cli("registration", "delete", str(reg["name"]))
    assert_problem(acme.new_order([unique()]), "unauthorized", 403, "deleted")
    assert_problem(acme.get(acme.account), "unauthorized", 403, "deleted")
    newcomer = Acme(prereg_gateway)
    binding = eab_binding(
        str(reg["kid"]), str(reg["hmac_key"]), newcomer.jwk(), newcomer.directory["newAccount"]
    )
    assert_problem(_with_eab(newcomer, binding), "unauthorized", 403, "unknown")


def test_open_mode_accepts_and_checks_eab(gateway: GatewayProcess) -> None:
    reg = _registration(gateway)
    bound = Acme(gateway)
    resp = bound.register(reg)
    assert "externalAccountBinding" in resp.json()
    wrong = Acme(gateway)
    binding = eab_binding(
        str(reg["kid"]), b64(secrets.token_bytes(32)), wrong.jwk(), wrong.directory["newAccount"]
    )
    assert_problem(_with_eab(wrong, binding), "unauthorized", 403, "MAC does not verify")
