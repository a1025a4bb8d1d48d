"""Checks shared by the cert-manager scenarios: Ready objects, TLS Secrets, exported Secrets."""

from __future__ import annotations

from typing import Any

from cryptography import x509

from tests.certmanager.conftest import REGISTRATION, CertManagerWorld
from tests.chains import verify_chain
from tests.kube.operator_proc import condition
from tests.polling import wait_for

ISSUE_TIMEOUT = 420  # seconds: cert-manager's 60 s dns-01 wait plus a loaded 2-core machine


def wait_ready(
    world: CertManagerWorld, namespace: str | None, kind: str, name: str, timeout: float
) -> dict[str, Any]:
    """The object once its Ready condition is True (failing fast on nothing)."""

    def probe() -> dict[str, Any] | None:
        obj = world.get(namespace, kind, name)
        cond = condition(obj)
        return obj if cond and cond["status"] == "True" else None

    found: dict[str, Any] = wait_for(f"{kind} {namespace}/{name} Ready", probe, timeout, 2)
    return found


def verify_tls_secret(
    world: CertManagerWorld, namespace: str, secret: str, names: list[str]
) -> x509.Certificate:
    """The Secret's chain verifies against our root for every name and holds exactly `names`."""
    chain = world.secret_data(namespace, secret, "tls.crt")
    leaf = verify_chain(chain, world.gateway.root_pem.read_bytes(), names)
    assert world.secret_data(namespace, secret, "tls.key"), "cert-manager stored no private key"
    return leaf


def exported_secret(world: CertManagerWorld, namespace: str, serial: int) -> dict[str, Any]:
    """The operator's Secret for the certificate with this serial (waits for the export)."""

    def probe() -> dict[str, Any] | None:
        found = world.items(namespace, "secrets", f"acme-gateway.io/registration={REGISTRATION}")
        for secret in found:
            label = secret["metadata"].get("labels", {}).get("acme-gateway.io/serial", "")
            if label and int(label, 16) == serial:
                return secret
        return None

    found: dict[str, Any] = wait_for(
        f"exported Secret for serial {serial:x} in {namespace}", probe, 60, 0.5
    )
    return found


def registration_status(world: CertManagerWorld, namespace: str) -> dict[str, Any]:
    reg = world.get(namespace, "acmeregistration", REGISTRATION)
    assert reg is not None
    status: dict[str, Any] = reg.get("status") or {}
    return status
