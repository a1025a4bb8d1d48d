"""`acme-gateway-operator ensure-ca-secret`: create the chart's CA Secret once, at runtime.

The Helm chart runs this as a pre-install/pre-upgrade hook Job instead of generating the CA
in a template: a template would make a new CA on every `helm template`/`--dry-run`/GitOps
render and put the CA private key into every Helm release Secret. Here the key is made in
the Job's memory and written only into the CA Secret, which is created when absent and never
rewritten (create-only; an existing Secret is left exactly as it is).
"""

from __future__ import annotations

import base64
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import kubernetes.client
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from kubernetes.client.exceptions import ApiException

from acme_operator.constants import MANAGED_BY, MANAGED_BY_LABEL, PURPOSE_LABEL
from acme_operator.kube import TIMEOUT
from acme_server.ca.keys import private_key_pem
from acme_server.ca.profile import build_root

REQUIRED_KEYS = ("tls.crt", "tls.key")


class CASecretError(RuntimeError):
    """The CA Secret exists but cannot serve as one; the message says what to fix."""


@dataclass(frozen=True)
class Result:
    created: bool
    message: str


def generate_ca(common_name: str) -> tuple[bytes, bytes]:
    """(certificate PEM, private key PEM) of a new self-signed ECDSA P-256 issuing CA."""
    key = ec.generate_private_key(ec.SECP256R1())
    cert = build_root(key, common_name, datetime.now(UTC).replace(microsecond=0))
    return cert.public_bytes(serialization.Encoding.PEM), private_key_pem(key)


def secret_body(name: str, common_name: str, labels: dict[str, str]) -> dict[str, Any]:
    cert_pem, key_pem = generate_ca(common_name)
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "type": "kubernetes.io/tls",
        "metadata": {
            "name": name,
            "labels": {
                **labels,
                MANAGED_BY_LABEL: MANAGED_BY,
                PURPOSE_LABEL: "ca",
            },
        },
        "data": {
            "tls.crt": base64.b64encode(cert_pem).decode("ascii"),
            "tls.key": base64.b64encode(key_pem).decode("ascii"),
        },
    }


def ensure_ca_secret(
    core: kubernetes.client.CoreV1Api,
    namespace: str,
    name: str,
    common_name: str,
    labels: dict[str, str] | None = None,
) -> Result:
    """Create Secret `name` with a new CA unless it exists; check an existing one is complete."""
    body: Any = secret_body(name, common_name, dict(labels or {}))
    try:
        core.create_namespaced_secret(namespace, body, _request_timeout=TIMEOUT)
    except ApiException as exc:
        if exc.status != 409:
            raise
    else:
        return Result(True, f"created CA Secret {namespace}/{name} ({common_name})")
    existing = core.read_namespaced_secret(name, namespace, _request_timeout=TIMEOUT)
    missing = [k for k in REQUIRED_KEYS if not (existing.data or {}).get(k)]
    if missing:
        raise CASecretError(
            f"Secret {namespace}/{name} exists but lacks {', '.join(missing)}; delete it to have "
            "a new CA generated, or fill it with your CA's PEM certificate and key"
        )
    return Result(False, f"CA Secret {namespace}/{name} exists; left unchanged")
