"""Issue 8 on the real control plane: grants, key IDs and HMAC Secrets a tenant cannot abuse.

Every test runs the real operator on a real SQLite store and attacks it the way a namespace
editor could (kubectl only): squatting another namespace's key ID, naming another
registration's Secret, rotating a Secret the operator does not own.
"""

from __future__ import annotations

import base64
import os
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

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
)
from tests.polling import wait_for

__all__ = ["operator_proc", "store_url"]  # fixtures

ROTATE = "acme-gateway.io/rotate-hmac-key"


def _get(cp: ControlPlane, ns: str, kind: str, name: str) -> dict[str, Any]:
    obj = get_obj(cp, ns, kind, name)
    assert obj is not None, f"{kind}/{name} not found"
    return obj


def _owned_config_map(name: str, owner: dict[str, Any]) -> dict[str, Any]:
    """A ConfigMap the garbage collector deletes once `owner` is gone."""
    ref = {
        "apiVersion": owner["apiVersion"],
        "kind": owner["kind"],
        "name": owner["metadata"]["name"],
        "uid": owner["metadata"]["uid"],
    }
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": name, "ownerReferences": [ref]},
        "data": {},
    }


def _messages(cp: ControlPlane, ns: str, name: str) -> str:
    """Everything the owner of `name` can read about it: its conditions and its Events."""
    obj = _get(cp, ns, "acmeregistration", name)
    parts = [c.get("message", "") for c in (obj.get("status") or {}).get("conditions") or []]
    parts += [e.get("message", "") for e in events_for(cp, ns, name)]
    return "\n".join(parts)


def _reconciled(cp: ControlPlane, ns: str, name: str) -> dict[str, Any]:
    """The registration once the operator reported on it at all (any Ready status)."""

    def probe() -> dict[str, Any] | None:
        obj = get_obj(cp, ns, "acmeregistration", name)
        return obj if condition(obj) is not None and obj and obj["status"].get("keyID") else None

    found: dict[str, Any] = wait_for(f"acmeregistration/{name} reconciled", probe, 60)
    return found


def any_domain(name: str, registration_name: str) -> dict[str, Any]:
    """An AllowedDomain granting every name."""
    obj = allowed_domain(name, registration_name, "")
    obj["spec"] = {"registrationName": registration_name, "anyDomain": True}
    return obj


def _any_domain(url: str, name: str) -> bool | None:
    row = store_registration(url, name)
    return None if row is None else row.any_domain


@pytest.fixture
def two_namespaces(control_plane: ControlPlane) -> Iterator[tuple[str, str]]:
    names = (f"victim-{uuid.uuid4().hex[:8]}", f"squat-{uuid.uuid4().hex[:8]}")
    for ns in names:
        control_plane.kubectl("create", "namespace", ns)
    yield names
    for ns in names:
        control_plane.kubectl("delete", "namespace", ns, "--wait=false", check=False)


# ---------------------------------------------------------------- item 1: no grant, no names


def test_registration_without_allowed_domain_grants_nothing(
    control_plane: ControlPlane, kube_namespace: str, operator_proc: OperatorProcess, store_url: str
) -> None:
    ns, cp = kube_namespace, control_plane
    apply(cp, ns, registration("alone"))
    cond = condition(
        wait_condition(cp, ns, "acmeregistration", "alone", "False", "NoAllowedDomains")
    )
    assert cond is not None and "an administrator creates an AllowedDomain" in cond["message"]
    assert "NoAllowedDomains" in [e["reason"] for e in events_for(cp, ns, "alone")]
    assert get_obj(cp, ns, "secret", "alone-eab") is not None  # the EAB key is still made
    row = store_registration(store_url, f"{ns}/alone")
    assert row is not None
    assert (row.domains, row.any_domain, row.suspended) == ((), False, False)

    # The explicit "any name" grant, then taking it away again narrows to nothing.
    apply(cp, ns, any_domain("everything", "alone"))
    wait_condition(cp, ns, "alloweddomain", "everything", "True", "Active")
    wait_condition(cp, ns, "acmeregistration", "alone", "True", "Reconciled", timeout=30)
    row = store_registration(store_url, f"{ns}/alone")
    assert row is not None and row.any_domain and row.domains == ()
    cp.kubectl("delete", "-n", ns, "alloweddomain", "everything", "--timeout=60s")
    wait_for("the grant to be withdrawn", lambda: not _any_domain(store_url, f"{ns}/alone"))
    row = store_registration(store_url, f"{ns}/alone")
    assert row is not None and (row.domains, row.any_domain, row.suspended) == ((), False, False)
    wait_condition(cp, ns, "acmeregistration", "alone", "False", "NoAllowedDomains", timeout=30)


def test_per_registration_limits_reach_the_store(
    control_plane: ControlPlane, kube_namespace: str, operator_proc: OperatorProcess, store_url: str
) -> None:
    ns, cp = kube_namespace, control_plane
    apply(cp, ns, registration("limited", limits={"maxPendingOrders": 7}))
    wait_condition(cp, ns, "acmeregistration", "limited", "False", "NoAllowedDomains")
    row = store_registration(store_url, f"{ns}/limited")
    assert row is not None
    assert (row.max_pending_orders, row.max_pending_authorizations) == (7, None)
    apply(
        cp,
        ns,
        registration("limited", limits={"maxPendingOrders": 3, "maxPendingAuthorizations": 11}),
    )
    wait_for(
        "new limits in the store",
        lambda: (
            (r := store_registration(store_url, f"{ns}/limited")) is not None
            and (r.max_pending_orders, r.max_pending_authorizations) == (3, 11)
        ),
    )
    # A domain change keeps the limits (the allow-list sync rewrites the row too).
    apply(cp, ns, allowed_domain("dom", "limited", "limited.example"))
    wait_condition(cp, ns, "alloweddomain", "dom", "True", "Active")
    row = store_registration(store_url, f"{ns}/limited")
    assert row is not None and (row.max_pending_orders, row.max_pending_authorizations) == (3, 11)


# ---------------------------------------------------------------- item 3: key IDs


def test_key_id_cannot_be_squatted_across_namespaces(
    control_plane: ControlPlane,
    two_namespaces: tuple[str, str],
    store_url: str,
    tmp_path: Path,
) -> None:
    cp = control_plane
    victim_ns, squat_ns = two_namespaces
    assert cp.kubeconfig is not None
    op = OperatorProcess(cp.kubeconfig, store_url, tmp_path, namespaces=two_namespaces).start()
    try:
        # The squatter comes first and claims the victim's default key ID.
        apply(cp, squat_ns, registration("grabber", keyID=f"{victim_ns}.web"))
        _reconciled(cp, squat_ns, "grabber")

        apply(cp, victim_ns, registration("web"))
        apply(cp, victim_ns, allowed_domain("dom", "web", "victim.example"))
        victim = wait_condition(cp, victim_ns, "acmeregistration", "web", "True", "Reconciled")
        assert victim["status"]["keyID"] == f"{victim_ns}.web"
        row = store_registration(store_url, f"{victim_ns}/web")
        assert row is not None and row.kid == f"{victim_ns}.web"
        squatter_row = store_registration(store_url, f"{squat_ns}/grabber")
        assert squatter_row is not None and squatter_row.kid == f"{squat_ns}.{victim_ns}.web"
        grabber = _get(cp, squat_ns, "acmeregistration", "grabber")
        assert grabber["status"]["keyID"] == f"{squat_ns}.{victim_ns}.web"
        assert squat_ns not in _messages(cp, victim_ns, "web")

        # A value that already starts with the namespace is kept as it is.
        apply(cp, squat_ns, registration("own", keyID=f"{squat_ns}.custom"))
        own = wait_condition(cp, squat_ns, "acmeregistration", "own", "False", "NoAllowedDomains")
        assert own["status"]["keyID"] == f"{squat_ns}.custom"
    finally:
        op.stop()
        print(op.logs())


def test_key_id_collision_in_one_namespace_is_a_condition(
    control_plane: ControlPlane, kube_namespace: str, operator_proc: OperatorProcess, store_url: str
) -> None:
    ns, cp = kube_namespace, control_plane
    # squatter-reg takes "<ns>.web" first; the later "web" (whose default it is) is refused,
    # told so without being told who holds it.
    apply(cp, ns, registration("squatter-reg", keyID="web"))
    _reconciled(cp, ns, "squatter-reg")
    apply(cp, ns, registration("web"))
    cond = condition(wait_condition(cp, ns, "acmeregistration", "web", "False", "KeyIDConflict"))
    assert cond is not None and f"key ID {ns}.web is already used" in cond["message"]
    assert "squatter-reg" not in _messages(cp, ns, "web")
    assert store_registration(store_url, f"{ns}/web") is None
    row = store_registration(store_url, f"{ns}/squatter-reg")
    assert row is not None and row.kid == f"{ns}.web"

    # The squatter goes: the key ID is free and the victim gets it on its next resync.
    cp.kubectl("delete", "-n", ns, "acmeregistration", "squatter-reg", "--timeout=60s")
    wait_condition(cp, ns, "acmeregistration", "web", "False", "NoAllowedDomains", timeout=30)
    row = store_registration(store_url, f"{ns}/web")
    assert row is not None and row.kid == f"{ns}.web"


# ---------------------------------------------------------------- item 4: Secrets


def test_second_registration_on_one_secret_is_a_conflict(
    control_plane: ControlPlane, kube_namespace: str, operator_proc: OperatorProcess, store_url: str
) -> None:
    ns, cp = kube_namespace, control_plane
    apply(cp, ns, registration("first", hmacKeySecretRef={"name": "shared"}))
    first = _reconciled(cp, ns, "first")
    key = secret_text(_get(cp, ns, "secret", "shared"), "secret")

    apply(cp, ns, registration("second", hmacKeySecretRef={"name": "shared"}))
    cond = condition(
        wait_condition(cp, ns, "acmeregistration", "second", "False", "SecretConflict")
    )
    assert cond is not None and "spec.hmacKeySecretRef" in cond["message"]
    assert store_registration(store_url, f"{ns}/second") is None
    owners = _get(cp, ns, "secret", "shared")["metadata"]["ownerReferences"]
    assert [o["uid"] for o in owners] == [first["metadata"]["uid"]]

    # Deleting the second registration must not take the first one's key with it. A
    # ConfigMap owned by the second one shows when the garbage collector has acted on it.
    second = _get(cp, ns, "acmeregistration", "second")
    apply(cp, ns, _owned_config_map("second-marker", second))
    cp.kubectl("delete", "-n", ns, "acmeregistration", "second", "--timeout=60s")
    assert get_obj(cp, ns, "acmeregistration", "second") is None
    # Give the garbage collector time to act on a (wrong) owner reference.
    time.sleep(3)
    wait_for(
        "garbage collector ran for the deleted registration",
        lambda: get_obj(cp, ns, "configmap", "second-marker") is None,
        timeout=90,
    )
    secret = get_obj(cp, ns, "secret", "shared")
    assert secret is not None and secret_text(secret, "secret") == key
    row = store_registration(store_url, f"{ns}/first")
    assert row is not None and row.hmac_key == key

    # A Secret the operator generated for another registration, named by a newcomer: same.
    apply(cp, ns, registration("owner-of-eab"))
    _reconciled(cp, ns, "owner-of-eab")
    apply(cp, ns, registration("fourth", hmacKeySecretRef={"name": "owner-of-eab-eab"}))
    wait_condition(cp, ns, "acmeregistration", "fourth", "False", "SecretConflict")


def test_generated_secret_is_adopted_only_by_the_same_registration(
    control_plane: ControlPlane, kube_namespace: str, operator_proc: OperatorProcess, store_url: str
) -> None:
    """The re-created registration keeps its key (the feature); nobody else adopts it."""
    ns, cp = kube_namespace, control_plane
    apply(cp, ns, registration("again"))
    _reconciled(cp, ns, "again")
    key = secret_text(_get(cp, ns, "secret", "again-eab"), "secret")
    # Deleted with its Secret orphaned (as if re-created before garbage collection ran).
    cp.kubectl("delete", "-n", ns, "acmeregistration", "again", "--cascade=orphan", "--timeout=60s")
    wait_for(
        "orphaned",
        lambda: not _get(cp, ns, "secret", "again-eab")["metadata"].get("ownerReferences"),
    )

    apply(cp, ns, registration("other", hmacKeySecretRef={"name": "again-eab"}))
    wait_condition(cp, ns, "acmeregistration", "other", "False", "SecretConflict")
    assert not _get(cp, ns, "secret", "again-eab")["metadata"].get("ownerReferences")

    apply(cp, ns, registration("again"))
    reg = wait_condition(cp, ns, "acmeregistration", "again", "False", "NoAllowedDomains")
    secret = _get(cp, ns, "secret", "again-eab")
    assert [o["uid"] for o in secret["metadata"]["ownerReferences"]] == [reg["metadata"]["uid"]]
    assert secret_text(secret, "secret") == key


def test_rotation_refuses_a_secret_the_operator_does_not_own(
    control_plane: ControlPlane, kube_namespace: str, operator_proc: OperatorProcess, store_url: str
) -> None:
    ns, cp = kube_namespace, control_plane
    given = base64.urlsafe_b64encode(os.urandom(32)).rstrip(b"=").decode()
    cp.kubectl(
        "create", "secret", "generic", "-n", ns, "admin-key", f"--from-literal=secret={given}"
    )
    apply(cp, ns, registration("ops", hmacKeySecretRef={"name": "admin-key"}))
    apply(cp, ns, allowed_domain("dom", "ops", "ops.example"))
    wait_condition(cp, ns, "acmeregistration", "ops", "True", "Reconciled")

    cp.kubectl("annotate", "-n", ns, "acmeregistration", "ops", f"{ROTATE}=1")
    cond = condition(wait_condition(cp, ns, "acmeregistration", "ops", "False", "RotationRefused"))
    assert cond is not None and "never overwritten" in cond["message"]
    warnings = [e for e in events_for(cp, ns, "ops") if e["type"] == "Warning"]
    assert any(e["reason"] == "RotationRefused" for e in warnings)
    secret = _get(cp, ns, "secret", "admin-key")
    assert secret_text(secret, "secret") == given  # untouched
    assert not secret["metadata"].get("ownerReferences")
    row = store_registration(store_url, f"{ns}/ops")
    assert row is not None and row.hmac_key == given
    assert _get(cp, ns, "acmeregistration", "ops")["status"].get("hmacKeyRotation") != "1"

    # Taking the request back restores Ready.
    cp.kubectl("annotate", "-n", ns, "acmeregistration", "ops", f"{ROTATE}-")
    wait_condition(cp, ns, "acmeregistration", "ops", "True", "Reconciled")
