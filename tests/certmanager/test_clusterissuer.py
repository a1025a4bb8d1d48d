"""The ClusterIssuer variant: Secrets in cert-manager's cluster resource namespace, a
Certificate in another namespace."""

from __future__ import annotations

from typing import Any

from tests.certmanager.conftest import CertManagerWorld
from tests.certmanager.support import (
    ISSUE_TIMEOUT,
    exported_secret,
    registration_status,
    verify_tls_secret,
    wait_ready,
)
from tests.polling import wait_for


def test_clusterissuer_issues_for_any_namespace(cm: CertManagerWorld) -> None:
    issuer = wait_ready(cm, None, "clusterissuer", "acme-gateway", 120)
    assert issuer["status"]["acme"]["uri"].startswith(cm.gateway.base_url + "/")
    # cert-manager keeps a ClusterIssuer's account key in the cluster resource namespace.
    assert cm.get(cm.cluster_ns, "secret", "acme-gateway-cluster-account-key") is not None

    wait_ready(cm, cm.portal_ns, "certificate", "portal", ISSUE_TIMEOUT)
    names = [f"portal.{cm.domain(cm.cluster_ns)}"]
    leaf = verify_tls_secret(cm, cm.portal_ns, "portal-tls", names)

    # Our side: exported next to the registration (cluster resource namespace), counted.
    exported = exported_secret(cm, cm.cluster_ns, leaf.serial_number)
    assert exported["metadata"]["annotations"]["acme-gateway.io/names"] == names[0]

    def counted() -> dict[str, Any] | None:
        status = registration_status(cm, cm.cluster_ns)
        return status if status.get("certificatesIssued", 0) >= 1 else None

    status = wait_for("the registration to count the certificate", counted, 60, 1)
    assert status["accountCount"] == 1
