"""cert-manager with `ACMEUseARI` renews a certificate revoked through the Kubernetes
annotation by itself (issue 12 item 5), and what bounds how soon it notices.

The controller of `cm_world` runs with `--feature-gates=ACMEUseARI=true`. cert-manager
v1.21.2 asks renewalInfo when a certificate is new and then at `status.acme.ari.nextCheck`,
which it sets to Retry-After clamped to [1 h, 7 d] with ±10 % jitter
(pkg/controller/certificates/readiness: minARIPoll, computeNextCheck): however short our
Retry-After, it notices a revocation only ~54-66 minutes after its last ARI check. The test
asserts that bound, then stands in for that hour by removing `status.acme.ari.nextCheck`
(status only: the Certificate's spec and generation stay untouched), and shows that
cert-manager alone then sees the revoked window, renews, and stores a new serial in a new
Secret revision, its order replacing the revoked certificate (RFC 9773 `replaces`).
"""

from __future__ import annotations

import datetime as dt
import json
from typing import Any

from cryptography import x509

from tests.certmanager.conftest import CertManagerWorld
from tests.certmanager.support import ISSUE_TIMEOUT, exported_secret, wait_ready
from tests.polling import wait_for

CERT = "ari-revoked"
SECRET = f"{CERT}-tls"


def _parse(text: str) -> dt.datetime:
    return dt.datetime.fromisoformat(text.replace("Z", "+00:00"))


def _leaf(cm: CertManagerWorld) -> x509.Certificate:
    return x509.load_pem_x509_certificates(cm.secret_data(cm.team_ns, SECRET, "tls.crt"))[0]


def test_revoked_by_annotation_cert_manager_renews_by_itself(cm: CertManagerWorld) -> None:
    ns = cm.team_ns
    name = f"ari.{cm.domain(ns)}"
    certificate = {
        "apiVersion": "cert-manager.io/v1",
        "kind": "Certificate",
        "metadata": {"name": CERT},
        "spec": {
            "secretName": SECRET,
            "dnsNames": [name],
            "issuerRef": {"kind": "Issuer", "name": "acme-gateway"},
        },
    }
    cm.cp.kubectl("apply", "-n", ns, "-f", "-", input=json.dumps(certificate))
    wait_ready(cm, ns, "certificate", CERT, ISSUE_TIMEOUT)
    first = _leaf(cm)

    # The gate is on: cert-manager asked renewalInfo and keeps the window in status.
    def ari_status() -> dict[str, Any] | None:
        crt = cm.get(ns, "certificate", CERT) or {}
        ari = ((crt.get("status") or {}).get("acme") or {}).get("ari") or {}
        return ari if ari.get("suggestedWindow") and ari.get("nextCheck") else None

    ari = wait_for("cert-manager's ARI status", ari_status, 60, 1)
    lifetime = first.not_valid_after_utc - first.not_valid_before_utc
    start = _parse(ari["suggestedWindow"]["start"])
    assert abs(start - (first.not_valid_before_utc + lifetime / 3)) < dt.timedelta(minutes=1)
    # The bound on noticing a revocation: cert-manager's next ARI check is >= ~54 min away.
    poll = _parse(ari["nextCheck"]) - _parse(ari["lastChecked"])
    assert poll >= dt.timedelta(minutes=54), ari
    before = cm.get(ns, "certificate", CERT) or {}
    generation = before["metadata"]["generation"]
    revision = before["status"]["revision"]

    # Revoke through the annotation on the operator's exported Secret.
    exported = exported_secret(cm, ns, first.serial_number)["metadata"]["name"]
    cm.kubectl("annotate", "-n", ns, "secret", exported, "acme-gateway.io/revoke=keyCompromise")
    wait_for(
        "the exported Secret to show the revocation",
        lambda: (
            (cm.get(ns, "secret", exported) or {})["metadata"]["annotations"].get(
                "acme-gateway.io/revoked"
            )
            == "true"
        ),
        60,
        1,
    )

    # Stand in for cert-manager's 1 h ARI poll interval: drop its nextCheck (status only).
    cm.kubectl(
        "patch", "-n", ns, "certificate", CERT, "--subresource=status", "--type=merge",
        "-p", json.dumps({"status": {"acme": {"ari": {"nextCheck": None}}}}),
    )  # fmt: skip

    def renewed() -> x509.Certificate | None:
        crt = cm.get(ns, "certificate", CERT) or {}
        status = crt.get("status") or {}
        if status.get("revision", 0) <= revision:
            return None
        leaf = _leaf(cm)
        return leaf if leaf.serial_number != first.serial_number else None

    second = wait_for("cert-manager to renew by itself", renewed, ISSUE_TIMEOUT, 2)
    assert second.not_valid_before_utc >= first.not_valid_before_utc
    after = cm.get(ns, "certificate", CERT) or {}
    assert after["metadata"]["generation"] == generation  # nobody touched the spec
    assert after["status"]["revision"] == revision + 1
    events = cm.items(ns, "events")
    renewals = [
        e
        for e in events
        if e["involvedObject"].get("name") == CERT and e["reason"] in ("Renewing", "Issuing")
    ]
    assert renewals, [e["reason"] for e in events if e["involvedObject"].get("name") == CERT]
    cm.kubectl("delete", "-n", ns, "certificate", CERT, "--wait=false")
