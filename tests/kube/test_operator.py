"""The operator against the real control plane: kubectl in, store rows and Secrets out.

Each test runs its own `acme-gateway-operator` subprocess (watching the test's namespace)
on its own SQLite store, and checks the store directly and the API objects via kubectl.
"""

from __future__ import annotations

import base64
import json
import os
import time
import urllib.request
from typing import Any

from acme_server.policy import DomainRule
from tests.infra.kube import ControlPlane
from tests.kube.operator_proc import (
    OperatorProcess,
    allowed_domain,
    apply,
    condition,
    events_for,
    get_obj,
    operator_proc,
    registration,
    secret_text,
    store_registration,
    store_url,
    wait_condition,
    wait_for,
)

ROTATE = "acme-gateway.io/rotate-hmac-key"

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
        f"{ns}.team-a",
        key,
        3,
        False,
    )
    with urllib.request.urlopen(operator_proc.health_url, timeout=5) as resp:
        assert resp.status == 200


def test_suspend_rotate_and_delete_registration(
    control_plane: ControlPlane, kube_namespace: str, operator_proc: OperatorProcess, store_url: str
) -> None:
    ns, cp = kube_namespace, control_plane
    name = f"{ns}/team-b"
    apply(cp, ns, registration("team-b"))
    wait_condition(cp, ns, "acmeregistration", "team-b", "True")

    apply(cp, ns, registration("team-b", suspended=True))
    cond = condition(wait_condition(cp, ns, "acmeregistration", "team-b", "False", "Suspended"))
    assert cond is not None and "refused" in cond["message"]
    assert wait_for("store suspended", lambda: _suspended(store_url, name) is True)
    apply(cp, ns, registration("team-b", suspended=False))
    wait_condition(cp, ns, "acmeregistration", "team-b", "True", "Reconciled")
    assert wait_for("store unsuspended", lambda: _suspended(store_url, name) is False)

    old_key = secret_text(_get(cp, ns, "secret", "team-b-eab"), "secret")
    cp.kubectl("annotate", "-n", ns, "acmeregistration", "team-b", f"{ROTATE}=1")

    def rotated() -> dict[str, Any] | None:
        obj = _get(cp, ns, "acmeregistration", "team-b")
        return obj if obj["status"].get("hmacKeyRotation") == "1" else None

    wait_for("rotation recorded in status", rotated)
    new_key = secret_text(_get(cp, ns, "secret", "team-b-eab"), "secret")
    assert new_key != old_key
    row = store_registration(store_url, name)
    assert row is not None and row.hmac_key == new_key
    # The timer re-syncs without rotating again.
    time.sleep(operator_proc.resync_interval + 1)
    assert secret_text(_get(cp, ns, "secret", "team-b-eab"), "secret") == new_key
    reasons = [e["reason"] for e in events_for(cp, ns, "team-b")]
    assert "SecretCreated" in reasons and "HMACKeyRotated" in reasons

    cp.kubectl("delete", "-n", ns, "acmeregistration", "team-b", "--wait=false")
    wait_for("store row deleted", lambda: store_registration(store_url, name) is None)
    wait_for("finalizer released", lambda: get_obj(cp, ns, "acmeregistration", "team-b") is None)
    wait_for("Secret garbage-collected", lambda: get_obj(cp, ns, "secret", "team-b-eab") is None)


def test_allowed_domains_follow_objects(
    control_plane: ControlPlane, kube_namespace: str, operator_proc: OperatorProcess, store_url: str
) -> None:
    ns, cp = kube_namespace, control_plane
    name = f"{ns}/web"
    # The domain exists before its registration: it says so, then takes effect.
    apply(cp, ns, allowed_domain("example", "web", "Example.COM"))
    cond = condition(
        wait_condition(cp, ns, "alloweddomain", "example", "False", "RegistrationNotFound")
    )
    assert cond is not None and "fix spec.registrationName" in cond["message"]
    assert "RegistrationNotFound" in [e["reason"] for e in events_for(cp, ns, "example")]

    apply(cp, ns, registration("web"))
    wait_condition(cp, ns, "alloweddomain", "example", "True", "Active")
    assert _domains(store_url, name) == {DomainRule("example.com", True, True)}

    apply(
        cp,
        ns,
        allowed_domain("exact", "web", "exact.test", includeSubdomains=False, allowWildcard=False),
    )
    wait_for(
        "second domain in store",
        lambda: (
            _domains(store_url, name)
            == {DomainRule("example.com", True, True), DomainRule("exact.test", False, False)}
        ),
    )
    wait_condition(cp, ns, "alloweddomain", "exact", "True", "Active")
    # The registration's periodic re-sync brings its message up to date.
    wait_for(
        "registration message lists both domains",
        lambda: (
            "exact.test"
            in (condition(get_obj(cp, ns, "acmeregistration", "web")) or {}).get("message", "")
        ),
        timeout=operator_proc.resync_interval * 3 + 10,
    )

    cp.kubectl("delete", "-n", ns, "alloweddomain", "exact")
    wait_for(
        "domain removed from store",
        lambda: _domains(store_url, name) == {DomainRule("example.com", True, True)},
    )

    # Accepted by the API server's rules, refused by the store's: reported, and never
    # widening the allow-list to "anything".
    cp.kubectl("delete", "-n", ns, "alloweddomain", "example")
    wait_for("allow-list empty", lambda: _domains(store_url, name) == set())
    apply(cp, ns, allowed_domain("numeric", "web", "host.123"))
    cond = condition(wait_condition(cp, ns, "alloweddomain", "numeric", "False", "InvalidDomain"))
    assert cond is not None and "example.com" in cond["message"]
    wait_condition(cp, ns, "acmeregistration", "web", "False", "InvalidDomains")
    assert wait_for("held suspended", lambda: _suspended(store_url, name) is True)
    cp.kubectl("delete", "-n", ns, "alloweddomain", "numeric")
    wait_condition(cp, ns, "acmeregistration", "web", "True", "Reconciled")
    assert _suspended(store_url, name) is False


def test_admin_provided_secret(
    control_plane: ControlPlane, kube_namespace: str, operator_proc: OperatorProcess, store_url: str
) -> None:
    ns, cp = kube_namespace, control_plane
    good = base64.urlsafe_b64encode(os.urandom(40)).rstrip(b"=").decode()
    short = base64.urlsafe_b64encode(os.urandom(16)).rstrip(b"=").decode()
    cp.kubectl("create", "secret", "generic", "-n", ns, "given", f"--from-literal=hmac={short}")
    apply(
        cp,
        ns,
        registration("ops", keyID="ops-kid", hmacKeySecretRef={"name": "given", "key": "hmac"}),
    )
    cond = condition(wait_condition(cp, ns, "acmeregistration", "ops", "False", "InvalidHMACKey"))
    assert cond is not None and "at least 32" in cond["message"]
    warnings = [e for e in events_for(cp, ns, "ops") if e["type"] == "Warning"]
    assert any(e["reason"] == "InvalidHMACKey" for e in warnings)
    assert store_registration(store_url, f"{ns}/ops") is None  # nothing usable to store

    # The admin fixes the Secret; the periodic re-read picks it up (no CR change).
    patch = {"data": {"hmac": base64.b64encode(good.encode()).decode()}}
    cp.kubectl("patch", "secret", "-n", ns, "given", "--type=merge", "-p", json.dumps(patch))
    reg = wait_condition(cp, ns, "acmeregistration", "ops", "True", "Reconciled")
    assert reg["status"]["keyID"] == "ops-kid"
    row = store_registration(store_url, f"{ns}/ops")
    assert row is not None and (row.kid, row.hmac_key) == ("ops-kid", good)
    secret = _get(cp, ns, "secret", "given")
    assert not secret["metadata"].get("ownerReferences")  # the admin's Secret stays theirs


def _get(cp: ControlPlane, ns: str, kind: str, name: str) -> dict[str, Any]:
    obj = get_obj(cp, ns, kind, name)
    assert obj is not None, f"{kind}/{name} not found"
    return obj


def _suspended(url: str, name: str) -> bool | None:
    row = store_registration(url, name)
    return None if row is None else row.suspended


def _domains(url: str, name: str) -> set[DomainRule] | None:
    row = store_registration(url, name)
    return None if row is None else set(row.domains)
