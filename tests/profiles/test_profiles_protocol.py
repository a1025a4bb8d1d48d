"""Profiles and notBefore/notAfter over real ACME requests (draft-ietf-acme-profiles,
RFC 8555 7.4), with registrations made by the admin CLI."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import ExtendedKeyUsageOID

from tests.gateway_proc import GatewayProcess
from tests.protocol.acme_client import make_csr
from tests.protocol.support import Acme, assert_problem, unique


def _account(gw: GatewayProcess, *flags: str) -> Acme:
    reg = gw.create_registration(unique("reg"), "--any-domain", *flags)
    acme = Acme(gw)
    acme.register(eab=reg)
    return acme


def _order(acme: Acme, names: list[str], **extra: Any) -> Any:
    payload = {"identifiers": [{"type": "dns", "value": n} for n in names], **extra}
    return acme.post(acme.directory["newOrder"], payload)


def _issue(acme: Acme, names: list[str], key: Any = None, **extra: Any) -> x509.Certificate:
    resp = _order(acme, names, **extra)
    assert resp.status_code == 201, resp.text
    url, order = resp.headers["Location"], resp.json()
    acme.validate_http01(order)
    order = acme.wait(url, {"ready", "invalid"})
    csr_pem, _ = make_csr(names, key=key)
    done = acme.finalize(order, csr_pem)
    assert done.status_code == 200, done.text
    order = acme.wait(url, {"valid", "invalid"})
    assert order["status"] == "valid", order
    cert = acme.get(order["certificate"])
    return x509.load_pem_x509_certificate(cert.content)


def _lifetime(cert: x509.Certificate) -> timedelta:
    return cert.not_valid_after_utc - cert.not_valid_before_utc


def _has(cert: x509.Certificate, kind: type[x509.ExtensionType]) -> bool:
    try:
        cert.extensions.get_extension_for_class(kind)
    except x509.ExtensionNotFound:
        return False
    return True


def _ekus(cert: x509.Certificate) -> set[x509.ObjectIdentifier]:
    return set(cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value)


def test_directory_lists_the_offered_profiles(profile_gateway: GatewayProcess) -> None:
    acme = Acme(profile_gateway)
    meta = acme.directory["meta"]["profiles"]
    assert set(meta) == {"default", "shortlived", "tlsclient", "nocn"}
    assert "7 days" in meta["shortlived"]
    assert meta["nocn"] == "ECDSA only, no subject common name, at most 2 names"


def test_shortlived_and_default(profile_gateway: GatewayProcess) -> None:
    acme = _account(profile_gateway)
    name = unique("short")
    resp = _order(acme, [name], profile="shortlived")
    assert resp.status_code == 201, resp.text
    assert resp.json()["profile"] == "shortlived"
    short = _issue(acme, [name], profile="shortlived")
    assert timedelta(days=7) <= _lifetime(short) <= timedelta(days=7, minutes=2)
    # Like Let's Encrypt's short-lived profile: no CRL/OCSP pointers.
    assert not _has(short, x509.CRLDistributionPoints)
    assert not _has(short, x509.AuthorityInformationAccess)
    assert _ekus(short) == {ExtendedKeyUsageOID.SERVER_AUTH}
    plain = _issue(acme, [unique("plain")])
    assert _lifetime(plain) >= timedelta(days=90)
    assert _has(plain, x509.CRLDistributionPoints)
    assert _ekus(plain) == {ExtendedKeyUsageOID.SERVER_AUTH}


def test_order_without_profile_shows_the_default(profile_gateway: GatewayProcess) -> None:
    acme = _account(profile_gateway, "--default-profile", "shortlived")
    resp = _order(acme, [unique("dflt")])
    assert resp.status_code == 201, resp.text
    assert resp.json()["profile"] == "shortlived"


def test_unknown_and_not_allowed_profiles(profile_gateway: GatewayProcess) -> None:
    acme = _account(profile_gateway, "--profiles", "default")
    assert_problem(
        _order(acme, [unique("u")], profile="gold"), "invalidProfile", 400, "'gold' is not offered"
    )
    assert_problem(
        _order(acme, [unique("n")], profile="shortlived"),
        "invalidProfile",
        400,
        "'shortlived' is not allowed for this account's registration (allowed: default)",
    )
    # tlsclient is enabled on this server, but only for registrations that list it.
    open_acme = _account(profile_gateway)
    assert_problem(
        _order(open_acme, [unique("c")], profile="tlsclient"),
        "invalidProfile",
        400,
        "must be granted explicitly",
    )


def test_tlsclient_when_granted(profile_gateway: GatewayProcess) -> None:
    acme = _account(profile_gateway, "--profiles", "default,tlsclient")
    cert = _issue(acme, [unique("client")], profile="tlsclient")
    assert _ekus(cert) == {ExtendedKeyUsageOID.CLIENT_AUTH}


def test_registration_update_changes_profiles(profile_gateway: GatewayProcess) -> None:
    name = unique("upd")
    reg = profile_gateway.create_registration(name, "--any-domain", "--profiles", "default")
    assert reg["profiles"] == ["default"] and reg["default_profile"] is None
    acme = Acme(profile_gateway)
    acme.register(eab=reg)
    assert _order(acme, [unique("x")], profile="shortlived").status_code == 400
    out = profile_gateway.cli("registration", "update", name, "--profiles", "any")
    assert '"profiles": null' in out
    assert _order(acme, [unique("x")], profile="shortlived").status_code == 201
    bad = profile_gateway.cli(
        "registration",
        "update",
        name,
        "--profiles",
        "default",
        "--default-profile",
        "nocn",
        check=False,
    )
    assert "default profile 'nocn' is not among the allowed profiles" in bad


def test_profile_key_types_names_and_common_name(profile_gateway: GatewayProcess) -> None:
    acme = _account(profile_gateway)
    assert_problem(
        _order(acme, [unique("a"), unique("b"), unique("c")], profile="nocn"),
        "rejectedIdentifier",
        400,
        "at most 2 identifiers",
    )
    names = [unique("nocn")]
    cert = _issue(acme, names, profile="nocn")
    assert len(cert.subject) == 0
    assert cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).critical
    assert timedelta(days=30) <= _lifetime(cert) <= timedelta(days=30, minutes=2)
    resp = _order(acme, names, profile="nocn")
    url, order = resp.headers["Location"], resp.json()
    order = acme.wait(url, {"ready", "invalid"})
    csr_pem, _ = make_csr(names, key=rsa.generate_private_key(65537, 2048))
    assert_problem(acme.finalize(order, csr_pem), "badCSR", 400, "does not allow rsa keys")


def test_not_before_not_after(profile_gateway: GatewayProcess) -> None:
    acme = _account(profile_gateway)
    now = datetime.now(UTC).replace(microsecond=0)
    not_after = now + timedelta(days=3)
    stamp = not_after.isoformat().replace("+00:00", "Z")
    resp = _order(acme, [unique("na")], profile="shortlived", notAfter=stamp)
    assert resp.status_code == 201, resp.text
    assert resp.json()["notAfter"] == stamp
    cert = _issue(acme, [unique("na")], profile="shortlived", notAfter=stamp)
    assert cert.not_valid_after_utc == not_after
    start = now + timedelta(hours=1)
    cert = _issue(
        acme,
        [unique("nb")],
        notBefore=start.isoformat(),
        notAfter=(start + timedelta(days=10)).isoformat(),
    )
    assert (cert.not_valid_before_utc, cert.not_valid_after_utc) == (
        start,
        start + timedelta(days=10),
    )
    too_long = (now + timedelta(days=8)).isoformat()
    assert_problem(
        _order(acme, [unique("nl")], profile="shortlived", notAfter=too_long),
        "malformed",
        400,
        "allows 1 hours to 7 days",
    )


@pytest.mark.parametrize("value", ["tomorrow", 12])
def test_not_after_must_be_a_timestamp(profile_gateway: GatewayProcess, value: object) -> None:
    acme = _account(profile_gateway)
    assert_problem(_order(acme, [unique("ts")], notAfter=value), "malformed", 400, "RFC 3339")
