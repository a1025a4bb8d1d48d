"""The operator against the real control plane: kubectl in, store rows and Secrets out.

Each test runs its own `acme-gateway-operator` subprocess (watching the test's namespace)
on its own SQLite store, and checks the store directly and the API objects via kubectl.
"""

from __future__ import annotations

import base64
import urllib.request

from tests.infra.kube import ControlPlane
from tests.kube.operator_proc import (
    OperatorProcess,
    apply,
    get_obj,
    operator_proc,
    registration,
    secret_text,
    store_registration,
    store_url,
    wait_condition,
)

__all__ = ["operator_proc", "store_url"]  # fixtures


def test_registration_generates_secret_and_store_row(
    control_plane: ControlPlane, kube_namespace: str, operator_proc: OperatorProcess, store_url: str
) -> None:
    ns, cp = kube_namespace, control_plane
    apply(cp, ns, registration("team-a", maxAccounts=3))
    reg = wait_condition(cp, ns, "acmeregistration", "team-a", "True", "Reconciled")
    status = reg["status"]
    assert status["keyID"] == f"{ns}.team-a"
    assert status["hmacKeySecretRef"] == {"name": "team-a-eab", "key": "secret"}
    assert status["observedGeneration"] == reg["metadata"]["generation"]

    secret = get_obj(cp, ns, "secret", "team-a-eab")
    assert secret is not None and secret["type"] == "Opaque"
    key = secret_text(secret, "secret")
    assert len(base64.urlsafe_b64decode(key + "=" * (-len(key) % 4))) == 32
    assert "=" not in key
    owner = secret["metadata"]["ownerReferences"][0]
    assert (owner["kind"], owner["uid"]) == ("AcmeRegistration", reg["metadata"]["uid"])

    row = store_registration(store_url, f"{ns}/team-a")
    assert row is not None
    assert (row.kid, row.hmac_key, row.max_accounts, row.suspended) == (
        f"{ns}.team-a", key, 3, False
    )
    with urllib.request.urlopen(operator_proc.health_url, timeout=5) as resp:
        assert resp.status == 200
