"""The chart's aggregated roles on the real API server: a namespace editor (the built-in
`edit`/`admin` roles) may create AcmeRegistrations but cannot grant names, i.e. create any
AllowedDomain, `anyDomain` included (issue 8 item 1: no grant, no names)."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from tests.helm.chart import CHART, Helm, parse_manifests, write_values
from tests.infra.kube import ControlPlane
from tests.polling import wait_for

RELEASE = "tenancy"


@pytest.fixture
def tenant_ns(control_plane: ControlPlane) -> Iterator[str]:
    ns = f"tenant-{uuid.uuid4().hex[:8]}"
    control_plane.kubectl("create", "namespace", ns)
    yield ns
    control_plane.kubectl("delete", "namespace", ns, "--wait=false", check=False)


def _cluster_roles(helm: Helm, tmp_path: Path, system_ns: str) -> list[dict[str, object]]:
    values = write_values(tmp_path, "tenancy", {})
    out = helm.run("template", RELEASE, str(CHART), "-n", system_ns, "-f", str(values))
    return [d for d in parse_manifests(out) if d["kind"] == "ClusterRole"]


@pytest.mark.parametrize("role", ["edit", "admin"])
def test_namespace_editors_cannot_grant_names(
    helm: Helm, control_plane: ControlPlane, tenant_ns: str, tmp_path: Path, role: str
) -> None:
    cp, ns = control_plane, tenant_ns
    roles = _cluster_roles(helm, tmp_path, f"{ns}-system")
    cp.kubectl("apply", "-f", "-", input=yaml.safe_dump_all(roles))
    user = f"alice-{role}"
    cp.kubectl("create", "rolebinding", user, "-n", ns, f"--clusterrole={role}", f"--user={user}")

    def can_i(verb: str, resource: str) -> str:
        proc = cp.kubectl("auth", "can-i", verb, resource, "-n", ns, f"--as={user}", check=False)
        return proc.stdout.strip()

    # The aggregation controller folds the chart's rules into the built-in role.
    wait_for("aggregated rules", lambda: can_i("create", "acmeregistrations") == "yes", 60)
    assert can_i("get", "alloweddomains") == "yes"
    for verb in ("create", "update", "patch", "delete"):
        assert can_i(verb, "alloweddomains") == "no", verb

    registration = {
        "apiVersion": "acme-gateway.io/v1alpha1",
        "kind": "AcmeRegistration",
        "metadata": {"name": "mine"},
    }
    cp.kubectl("create", "-n", ns, f"--as={user}", "-f", "-", input=json.dumps(registration))
    grant = {
        "apiVersion": "acme-gateway.io/v1alpha1",
        "kind": "AllowedDomain",
        "metadata": {"name": "everything"},
        "spec": {"registrationName": "mine", "anyDomain": True},
    }
    proc = cp.kubectl(
        "create", "-n", ns, f"--as={user}", "-f", "-", input=json.dumps(grant), check=False
    )
    assert proc.returncode != 0 and "forbidden" in proc.stderr.lower(), proc.stderr
    cp.kubectl("delete", "rolebinding", user, "-n", ns)
    names = [str(r["metadata"]["name"]) for r in roles]  # type: ignore[index]
    cp.kubectl("delete", "clusterrole", *names, check=False)
