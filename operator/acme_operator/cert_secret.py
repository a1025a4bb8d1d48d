"""The Secret an issued certificate is exported as (CRD contract, "Certificate Secrets").

The private key never reaches the CA, so the type cannot be kubernetes.io/tls: it is
"acme-gateway.io/certificate" with the chain in tls.crt and the CA root in ca.crt.
"""

from __future__ import annotations

import base64
from typing import Any

from acme_operator.constants import (
    CERT_SECRET_TYPE,
    GROUP,
    MANAGED_BY,
    MANAGED_BY_LABEL,
    PURPOSE_LABEL,
    REGISTRATION_LABEL,
    SERIAL_LABEL,
)
from acme_operator.labels import label_value
from acme_operator.owners import registration_owner
from acme_server.store.operator_facade import CertificateExport
from acme_server.timefmt import rfc3339

# RFC 5280 CRLReason codes, named as in the RFC.
REVOCATION_REASONS = {
    0: "unspecified",
    1: "keyCompromise",
    2: "cACompromise",
    3: "affiliationChanged",
    4: "superseded",
    5: "cessationOfOperation",
    6: "certificateHold",
    8: "removeFromCRL",
    9: "privilegeWithdrawn",
    10: "aACompromise",
}


def secret_name(registration: str, serial: str) -> str:
    """DNS-1123 subdomain, unique per serial (serials are unique per CA)."""
    prefix = registration[:200].rstrip(".-")
    return f"{prefix}-cert-{serial.lower()}"


def _b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode("ascii")


def build_secret(
    cert: CertificateExport,
    *,
    namespace: str,
    registration: str,
    registration_uid: str,
    ca_root_pem: str,
    account: str,
) -> dict[str, Any]:
    revoked = cert.revoked_at is not None
    reason = ""
    if revoked:
        code = cert.revocation_reason if cert.revocation_reason is not None else 0
        reason = REVOCATION_REASONS.get(code, str(code))
    annotations = {
        f"{GROUP}/names": ",".join(cert.names),
        f"{GROUP}/not-before": rfc3339(cert.not_before),
        f"{GROUP}/not-after": rfc3339(cert.not_after),
        f"{GROUP}/account": account,
        f"{GROUP}/revoked": "true" if revoked else "false",
        f"{GROUP}/revocation-reason": reason,
        f"{GROUP}/serial": cert.serial,
    }
    if cert.revoked_at is not None:
        annotations[f"{GROUP}/revoked-at"] = rfc3339(cert.revoked_at)
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "type": CERT_SECRET_TYPE,
        "metadata": {
            "name": secret_name(registration, cert.serial),
            "namespace": namespace,
            "labels": {
                MANAGED_BY_LABEL: MANAGED_BY,
                REGISTRATION_LABEL: label_value(registration),
                SERIAL_LABEL: label_value(cert.serial.lower()),
                PURPOSE_LABEL: "certificate",
            },
            "annotations": annotations,
            "ownerReferences": [registration_owner(registration, registration_uid)],
        },
        "data": {"tls.crt": _b64(cert.chain_pem), "ca.crt": _b64(ca_root_pem)},
    }


def same_content(existing: dict[str, Any], wanted: dict[str, Any]) -> bool:
    """Whether replacing `existing` with `wanted` would change anything we manage."""
    em, wm = existing.get("metadata", {}), wanted["metadata"]
    return (
        existing.get("type") == wanted["type"]
        and existing.get("data") == wanted["data"]
        and all((em.get("labels") or {}).get(k) == v for k, v in wm["labels"].items())
        and all((em.get("annotations") or {}).get(k) == v for k, v in wm["annotations"].items())
        and [r.get("uid") for r in em.get("ownerReferences") or []]
        == [r["uid"] for r in wm["ownerReferences"]]
    )
