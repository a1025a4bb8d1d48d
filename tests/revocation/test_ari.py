"""ACME Renewal Information (RFC 9773) against a real server: renewalInfo in the directory,
the suggested window (middle third, "now" once revoked), errors, and `replaces` in newOrder."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import requests
from cryptography import x509

from acme_server.revocation.ari import cert_id, cert_id_of
from tests.gateway_proc import GatewayProcess
from tests.protocol.acme_client import make_csr
from tests.protocol.support import Acme, assert_problem, new_account, unique
from tests.revocation.support import revoke


def _renewal_info(acme: Acme, ident: str) -> requests.Response:
    return acme.session.get(f"{acme.directory['renewalInfo']}/{ident}", timeout=10)


def _parse(text: str) -> datetime:
    return datetime.strptime(text, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC)


def test_window_is_the_middle_third_then_now_after_revocation(gateway: GatewayProcess) -> None:
    acme = new_account(gateway)
    assert acme.directory["renewalInfo"] == f"{gateway.base_url}/acme/renewal-info"
    cert, _, _ = acme.issue([unique("ari")])
    # This server runs without --crl-listen/--crl-base-url: its leaves point at nothing.
    for ext in (x509.CRLDistributionPoints, x509.AuthorityInformationAccess):
        assert not [e for e in cert.extensions if isinstance(e.value, ext)]
    resp = _renewal_info(acme, cert_id_of(cert))
    assert resp.status_code == 200, resp.text
    assert int(resp.headers["Retry-After"]) == 6 * 3600
    window = resp.json()["suggestedWindow"]
    lifetime = cert.not_valid_after_utc - cert.not_valid_before_utc
    start, end = _parse(window["start"]), _parse(window["end"])
    assert abs(start - (cert.not_valid_before_utc + lifetime / 3)) <= timedelta(seconds=1)
    assert abs(end - (cert.not_valid_before_utc + 2 * lifetime / 3)) <= timedelta(seconds=1)

    revoke(acme, cert, 1)
    window = _renewal_info(acme, cert_id_of(cert)).json()["suggestedWindow"]
    now = datetime.now(UTC)
    assert _parse(window["start"]) < _parse(window["end"]) <= now


def test_unknown_and_malformed_cert_ids(gateway: GatewayProcess) -> None:
    acme = new_account(gateway)
    cert, _, _ = acme.issue([unique("ari-bad")])
    aki = cert.extensions.get_extension_for_class(x509.AuthorityKeyIdentifier).value
    assert aki.key_identifier is not None
    unknown = cert_id(aki.key_identifier, cert.serial_number + 1)
    assert_problem(_renewal_info(acme, unknown), "malformed", 404, "no certificate")
    other_issuer = cert_id(b"\x01" * 20, cert.serial_number)
    assert_problem(_renewal_info(acme, other_issuer), "malformed", 404, "no certificate")
    good_key, good_serial = cert_id_of(cert).split(".")
    for bad in (
        "no-dot-here",
        f"{good_key}.{good_serial}.extra",
        f"{good_key}=.{good_serial}",  # padding
        f".{good_serial}",
        f"{good_key}.AH8",  # 0x007f: not minimal DER
        f"{good_key}.gA",  # 0x80: a negative serial
    ):
        assert_problem(_renewal_info(acme, bad), "malformed", 400)


def _order_replacing(acme: Acme, names: list[str], replaces: str) -> requests.Response:
    payload: dict[str, Any] = {
        "identifiers": [{"type": "dns", "value": n} for n in names],
        "replaces": replaces,
    }
    return acme.post(acme.directory["newOrder"], payload)


def test_replaces_in_new_order(gateway: GatewayProcess) -> None:
    acme = new_account(gateway)
    names = [unique("rep")]
    old, _, _ = acme.issue(names)
    ident = cert_id_of(old)

    first = _order_replacing(acme, names, ident)
    assert first.status_code == 201, first.text
    # A second live order replacing the same certificate: 409 alreadyReplaced.
    assert_problem(_order_replacing(acme, names, ident), "alreadyReplaced", 409, "already replaced")

    # Another account without authorizations for the names may not replace it ...
    stranger = new_account(gateway)
    assert_problem(_order_replacing(stranger, names, ident), "unauthorized", 403, names[0])
    # ... nor may an order that shares no name with it, nor a certificate we never issued.
    assert_problem(_order_replacing(acme, [unique("other")], ident), "malformed", 400, "shares no")
    aki = old.extensions.get_extension_for_class(x509.AuthorityKeyIdentifier).value
    assert aki.key_identifier is not None
    never = cert_id(aki.key_identifier, old.serial_number + 1)
    assert_problem(_order_replacing(acme, names, never), "malformed", 400, "did not issue")
    assert_problem(_order_replacing(acme, names, "junk"), "malformed", 400, "certID")

    # The replacing order completes; the old certificate stays replaced (a new order too).
    url = first.headers["Location"]
    acme.validate_http01(first.json())
    order = acme.wait(url, {"ready", "invalid"})
    csr_pem, _ = make_csr(names)
    assert acme.finalize(order, csr_pem).status_code == 200
    assert acme.wait(url, {"valid", "invalid"})["status"] == "valid"
    assert_problem(_order_replacing(acme, names, ident), "alreadyReplaced", 409)


def test_retry_after_is_configurable(rev_gateway: GatewayProcess) -> None:
    """`--ari-retry-after 90s` (tests/revocation/conftest.py): clients ask again that soon."""
    acme = new_account(rev_gateway)
    cert, _, _ = acme.issue([unique("ari-retry")])
    resp = _renewal_info(acme, cert_id_of(cert))
    assert resp.status_code == 200, resp.text
    assert resp.headers["Retry-After"] == "90"
