"""cert-manager Issuer scenarios: what a team following the README gets, and what it sees on refusal.

The objects were all applied by the `cm_world` fixture; each test waits for its own. The
order of the tests matters only at the end: the renewal and the account re-lookup run
after the initial issuances.
"""

from __future__ import annotations

import datetime as dt
import json
from typing import Any

import pytest
from cryptography import x509

from tests.certmanager import examples
from tests.certmanager.conftest import FORBIDDEN_CERT, REGISTRATION, CertManagerWorld
from tests.certmanager.support import (
    ISSUE_TIMEOUT,
    exported_secret,
    registration_status,
    verify_tls_secret,
    wait_ready,
)
from tests.kube.operator_proc import condition
from tests.polling import wait_for

# Certificate name -> its TLS Secret and names (see docs/examples/cert-manager/certificates.yaml).
CERTIFICATES = {
    "www": ("www-tls", ["www.{d}"]),
    "services": ("services-tls", ["api.{d}", "app.{d}", "admin.app.{d}"]),
    "apps-wildcard": ("apps-wildcard-tls", ["*.apps.{d}"]),
}


def _names(cm: CertManagerWorld, cert: str) -> list[str]:
    return [n.format(d=cm.domain(cm.team_ns)) for n in CERTIFICATES[cert][1]]


def test_issuer_registers_with_eab(cm: CertManagerWorld) -> None:
    issuer = wait_ready(cm, cm.team_ns, "issuer", "acme-gateway", 120)
    account_url = issuer["status"]["acme"]["uri"]
    assert account_url.startswith(cm.gateway.base_url + "/")

    def bound() -> list[dict[str, Any]] | None:
        accounts = registration_status(cm, cm.team_ns).get("accounts") or []
        return accounts if any(a.get("url") == account_url for a in accounts) else None

    accounts = wait_for("the account in the registration's status", bound, 60, 1)
    assert len(accounts) == 1 and accounts[0]["status"] == "valid"


@pytest.mark.parametrize("cert", list(CERTIFICATES))
def test_certificate_issued(cm: CertManagerWorld, cert: str) -> None:
    wait_ready(cm, cm.team_ns, "certificate", cert, ISSUE_TIMEOUT)
    secret_name = CERTIFICATES[cert][0]
    leaf = verify_tls_secret(cm, cm.team_ns, secret_name, _names(cm, cert))

    exported = exported_secret(cm, cm.team_ns, leaf.serial_number)
    annotations = exported["metadata"]["annotations"]
    assert sorted(annotations["acme-gateway.io/names"].split(",")) == sorted(_names(cm, cert))
    assert annotations["acme-gateway.io/revoked"] == "false"
    owner = exported["metadata"]["ownerReferences"][0]
    assert (owner["kind"], owner["name"]) == ("AcmeRegistration", REGISTRATION)
    ours = x509.load_pem_x509_certificates(
        cm.secret_data(cm.team_ns, exported["metadata"]["name"], "tls.crt")
    )
    assert ours[0] == leaf, "the exported chain starts with cert-manager's certificate"


def test_registration_status_counts_certificates(cm: CertManagerWorld) -> None:
    for cert in CERTIFICATES:
        wait_ready(cm, cm.team_ns, "certificate", cert, ISSUE_TIMEOUT)

    def counted() -> dict[str, Any] | None:
        status = registration_status(cm, cm.team_ns)
        exported = cm.items(cm.team_ns, "secrets", f"acme-gateway.io/registration={REGISTRATION}")
        exported = [s for s in exported if s["type"] == "acme-gateway.io/certificate"]
        issued = status.get("certificatesIssued")
        if issued is not None and issued >= len(CERTIFICATES) and issued == len(exported):
            return status
        return None

    status = wait_for("certificatesIssued to count the exported Secrets", counted, 60, 1)
    assert status["accountCount"] == 1
    assert status.get("lastIssuance")


def test_name_outside_allowed_domains_is_refused(cm: CertManagerWorld) -> None:
    forbidden = f"www.elsewhere-{cm.team_ns}.acme.test"

    def errored_order() -> dict[str, Any] | None:
        for order in cm.items(cm.team_ns, "orders"):
            if order["spec"].get("dnsNames") == [forbidden]:
                if (order.get("status") or {}).get("state") == "errored":
                    return order
        return None

    order = wait_for("the Order for the forbidden name to fail", errored_order, 120, 2)
    described = cm.kubectl("describe", "-n", cm.team_ns, "order", order["metadata"]["name"])
    assert "urn:ietf:params:acme:error:rejectedIdentifier" in described, described
    assert f"{forbidden} not allowed for pre-registration" in described, described
    assert cm.domain(cm.team_ns) in described, "the detail names the allowed domains"

    def failed_request() -> dict[str, Any] | None:
        for req in cm.items(cm.team_ns, "certificaterequests"):
            owner = (req["metadata"].get("ownerReferences") or [{}])[0]
            cond = condition(req)
            if owner.get("name") == FORBIDDEN_CERT and cond and cond["reason"] == "Failed":
                return req
        return None

    request = wait_for("the CertificateRequest to fail", failed_request, 60, 2)
    described = cm.kubectl(
        "describe", "-n", cm.team_ns, "certificaterequest", request["metadata"]["name"]
    )
    assert "rejectedIdentifier" in described, described
    cert = cm.get(cm.team_ns, "certificate", FORBIDDEN_CERT)
    assert (condition(cert) or {}).get("status") == "False"


def _trigger_renewal(cm: CertManagerWorld, namespace: str, name: str) -> None:
    """What `cmctl renew` does: set the Certificate's Issuing condition by hand."""
    now = dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    issuing = {
        "type": "Issuing",
        "status": "True",
        "reason": "ManuallyTriggered",
        "message": "Certificate re-issuance manually triggered",
        "lastTransitionTime": now,
    }
    patch = [{"op": "add", "path": "/status/conditions/-", "value": issuing}]
    cm.kubectl(
        "patch", "-n", namespace, "certificate", name, "--subresource=status",
        "--type=json", "-p", json.dumps(patch),
    )  # fmt: skip


def test_renewal_issues_a_new_certificate(cm: CertManagerWorld) -> None:
    before = wait_ready(cm, cm.team_ns, "certificate", "www", ISSUE_TIMEOUT)
    first = verify_tls_secret(cm, cm.team_ns, "www-tls", _names(cm, "www"))
    _trigger_renewal(cm, cm.team_ns, "www")

    def renewed() -> dict[str, Any] | None:
        cert = cm.get(cm.team_ns, "certificate", "www")
        status = (cert or {}).get("status") or {}
        cond = condition(cert)
        if status.get("revision", 0) > before["status"]["revision"] and cond:
            return cert if cond["status"] == "True" else None
        return None

    wait_for("the renewed certificate", renewed, ISSUE_TIMEOUT, 2)
    second = verify_tls_secret(cm, cm.team_ns, "www-tls", _names(cm, "www"))
    assert second.serial_number != first.serial_number
    exported_secret(cm, cm.team_ns, second.serial_number)
    exported_secret(cm, cm.team_ns, first.serial_number)  # the old one stays exported


def test_account_lookup_without_eab_after_registration(cm: CertManagerWorld) -> None:
    """A re-created Issuer with the same account key finds its account, no EAB needed.

    cert-manager's newAccount for a known key is answered 200, then it looks the account up
    with {"onlyReturnExisting": true} and no EAB. Here the re-created Issuer even has no
    externalAccountBinding at all: the known key alone must be enough.
    """
    first = wait_ready(cm, cm.team_ns, "issuer", "acme-gateway", 120)
    cm.kubectl("delete", "-n", cm.team_ns, "issuer", "acme-gateway")
    docs = examples.documents("issuer.yaml", **cm.values(cm.team_ns))
    issuer = next(d for d in docs if d["kind"] == "Issuer")
    del issuer["spec"]["acme"]["externalAccountBinding"]
    cm.cp.kubectl("apply", "-n", cm.team_ns, "-f", "-", input=json.dumps(issuer))

    again = wait_ready(cm, cm.team_ns, "issuer", "acme-gateway", 120)
    assert again["metadata"]["uid"] != first["metadata"]["uid"]
    assert again["status"]["acme"]["uri"] == first["status"]["acme"]["uri"]
    assert registration_status(cm, cm.team_ns)["accountCount"] == 1
