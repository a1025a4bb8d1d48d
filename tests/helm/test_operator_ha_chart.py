"""The chart's operator high availability: with PostgreSQL two replicas by default, Lease
leader election on, least-privilege Lease RBAC, anti-affinity, a PDB; none of it with
SQLite (the operator is a container of the single server Pod) or with one replica."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from tests.helm.chart import (
    CHART,
    Helm,
    Manifest,
    containers,
    find,
    flag,
    one,
    parse_manifests,
    write_values,
)
from tests.helm.values_sets import FULLNAME, NAMESPACE, RELEASE

POSTGRESQL: dict[str, Any] = {
    "store": {"type": "postgresql", "postgresql": {"existingSecret": "acme-db"}}
}
LEASE = f"{FULLNAME}-operator"
OPERATOR_SELECTOR = {
    "app.kubernetes.io/name": "acme-gateway",
    "app.kubernetes.io/instance": RELEASE,
    "app.kubernetes.io/component": "operator",
}


def _render(helm: Helm, tmp_path: Path, values: dict[str, Any]) -> list[Manifest]:
    out = helm.run(
        "template", RELEASE, str(CHART), "--namespace", NAMESPACE,
        "-f", str(write_values(tmp_path, "values", values)),
    )  # fmt: skip
    return parse_manifests(out)


def _with_operator(**operator: Any) -> dict[str, Any]:
    return {**POSTGRESQL, "operator": operator}


def test_postgresql_runs_two_operators_with_leader_election(helm: Helm, tmp_path: Path) -> None:
    docs = _render(helm, tmp_path, POSTGRESQL)
    dep = one(docs, "Deployment", f"{FULLNAME}-operator")
    assert dep["spec"]["replicas"] == 2
    assert dep["spec"]["strategy"] == {
        "type": "RollingUpdate",
        "rollingUpdate": {"maxSurge": 1, "maxUnavailable": 0},
    }
    op = containers(dep)["operator"]
    assert "--leader-election" in op["args"]
    assert flag(op, "lease-name") == [LEASE]
    assert flag(op, "lease-namespace") == [NAMESPACE]
    assert flag(op, "lease-duration") == ["15"]
    assert flag(op, "lease-renew-deadline") == ["10"]
    assert flag(op, "lease-retry-period") == ["2"]
    env = {e["name"]: e for e in op["env"]}
    assert env["POD_NAME"]["valueFrom"] == {"fieldRef": {"fieldPath": "metadata.name"}}

    pod = dep["spec"]["template"]["spec"]
    preferred = pod["affinity"]["podAntiAffinity"][
        "preferredDuringSchedulingIgnoredDuringExecution"
    ]
    assert [t["podAffinityTerm"]["topologyKey"] for t in preferred] == ["kubernetes.io/hostname"]
    selector = preferred[0]["podAffinityTerm"]["labelSelector"]["matchLabels"]
    assert selector == OPERATOR_SELECTOR
    assert (
        "requiredDuringSchedulingIgnoredDuringExecution" not in pod["affinity"]["podAntiAffinity"]
    )

    pdb = one(docs, "PodDisruptionBudget", f"{FULLNAME}-operator")
    assert pdb["spec"]["maxUnavailable"] == 1
    assert pdb["spec"]["selector"]["matchLabels"] == OPERATOR_SELECTOR

    # Least privilege: get/update on the one Lease by name; create (which RBAC cannot
    # restrict by name) on leases of the release namespace only; nothing else.
    role = one(docs, "Role", f"{FULLNAME}-operator-lease")
    assert role["metadata"]["namespace"] == NAMESPACE
    assert role["rules"] == [
        {
            "apiGroups": ["coordination.k8s.io"],
            "resources": ["leases"],
            "resourceNames": [LEASE],
            "verbs": ["get", "update"],
        },
        {"apiGroups": ["coordination.k8s.io"], "resources": ["leases"], "verbs": ["create"]},
    ]
    binding = one(docs, "RoleBinding", f"{FULLNAME}-operator-lease")
    assert binding["metadata"]["namespace"] == NAMESPACE
    assert binding["roleRef"]["name"] == role["metadata"]["name"]
    assert binding["subjects"] == [
        {"kind": "ServiceAccount", "name": f"{FULLNAME}-operator", "namespace": NAMESPACE}
    ]
    # No lease rights anywhere else (ClusterRoles included).
    for doc in find(docs, "ClusterRole") + find(docs, "Role"):
        if doc is not role:
            assert all("leases" not in r.get("resources", []) for r in doc["rules"]), doc


def test_lease_timing_is_passed_and_checked(helm: Helm, tmp_path: Path) -> None:
    timing = {"leaseDuration": 30, "renewDeadline": 20, "retryPeriod": 5}
    docs = _render(helm, tmp_path, _with_operator(replicaCount=3, leaderElection=timing))
    dep = one(docs, "Deployment", f"{FULLNAME}-operator")
    assert dep["spec"]["replicas"] == 3
    op = containers(dep)["operator"]
    assert flag(op, "lease-duration") == ["30"]
    assert flag(op, "lease-renew-deadline") == ["20"]
    assert flag(op, "lease-retry-period") == ["5"]

    bad = {"leaseDuration": 10, "renewDeadline": 10, "retryPeriod": 2}
    out = helm.refused(
        "template", RELEASE, str(CHART), "--namespace", NAMESPACE,
        "-f", str(write_values(tmp_path, "bad", _with_operator(leaderElection=bad))),
    )  # fmt: skip
    assert "retryPeriod < renewDeadline < leaseDuration" in out


def test_given_affinity_replaces_the_default(helm: Helm, tmp_path: Path) -> None:
    affinity = {
        "nodeAffinity": {
            "requiredDuringSchedulingIgnoredDuringExecution": {
                "nodeSelectorTerms": [
                    {"matchExpressions": [{"key": "pool", "operator": "In", "values": ["ops"]}]}
                ]
            }
        }
    }
    docs = _render(helm, tmp_path, _with_operator(affinity=affinity))
    dep = one(docs, "Deployment", f"{FULLNAME}-operator")
    assert dep["spec"]["template"]["spec"]["affinity"] == affinity


def test_one_replica_or_sqlite_has_no_election(helm: Helm, tmp_path: Path) -> None:
    single = _render(helm, tmp_path, _with_operator(replicaCount=1))
    dep = one(single, "Deployment", f"{FULLNAME}-operator")
    assert dep["spec"]["replicas"] == 1
    assert dep["spec"]["strategy"] == {"type": "Recreate"}  # never two acting at once
    assert "affinity" not in dep["spec"]["template"]["spec"]
    op = containers(dep)["operator"]
    assert "--leader-election" not in op["args"] and not flag(op, "lease-name")
    assert "POD_NAME" not in {e["name"] for e in op["env"]}
    assert not find(single, "Role", f"{FULLNAME}-operator-lease")
    assert not find(single, "PodDisruptionBudget", f"{FULLNAME}-operator")

    # SQLite: the operator is a container of the one server Pod; replicaCount is ignored.
    sqlite = _render(helm, tmp_path, {"operator": {"replicaCount": 3}})
    assert not find(sqlite, "Deployment", f"{FULLNAME}-operator")
    op = containers(one(sqlite, "Deployment", FULLNAME))["operator"]
    assert "--leader-election" not in op["args"]
    assert not find(sqlite, "Role", f"{FULLNAME}-operator-lease")
    assert not find(sqlite, "PodDisruptionBudget")
