"""The chart's Lease RBAC is sufficient and no more: the rendered ServiceAccount, Role and
RoleBinding applied to the real API server, then the election (leader.py) run with that
account's token: create, renew and hand back the Lease; nothing else about leases."""

from __future__ import annotations

import asyncio
import json
import uuid
from pathlib import Path

import kubernetes.client
import kubernetes.config
from acme_operator import leader

from tests.helm.chart import CHART, Helm, one, parse_manifests, write_values
from tests.helm.operator_proc import kubectl_as
from tests.infra.kube import ControlPlane, service_account_kubeconfig

RELEASE = "lease"
FULL = f"{RELEASE}-acme-gateway"


def test_the_chart_lease_role_runs_the_election_and_allows_nothing_more(
    helm: Helm, control_plane: ControlPlane, tmp_path: Path
) -> None:
    cp = control_plane
    ns = f"lease-{uuid.uuid4().hex[:8]}"
    cp.kubectl("create", "namespace", ns)
    values = {"store": {"type": "postgresql", "postgresql": {"existingSecret": "db"}}}
    docs = parse_manifests(
        helm.run(
            "template",
            RELEASE,
            str(CHART),
            "--namespace",
            ns,
            "-f",
            str(write_values(tmp_path, "values", values)),
        )
    )
    objs = [
        one(docs, "ServiceAccount", f"{FULL}-operator"),
        one(docs, "Role", f"{FULL}-operator-lease"),
        one(docs, "RoleBinding", f"{FULL}-operator-lease"),
    ]
    cp.kubectl(
        "apply",
        "-n",
        ns,
        "-f",
        "-",
        input=json.dumps({"kind": "List", "apiVersion": "v1", "items": objs}),
    )
    token = service_account_kubeconfig(cp, ns, f"{FULL}-operator", tmp_path / "sa.kubeconfig")
    cfg = kubernetes.client.Configuration()
    kubernetes.config.load_kube_config(config_file=str(token), client_configuration=cfg)

    lease_name = f"{FULL}-operator"
    settings = leader.LeaseSettings(
        name=lease_name,
        namespace=ns,
        identity="op-0",
        lease_duration=3,
        renew_deadline=2,
        retry_period=0.3,
    )
    lost: list[str] = []

    async def elect() -> None:
        elector = leader.Elector(leader.LeaseApi(cfg, ns, lease_name), settings, lost.append)
        try:
            await asyncio.wait_for(elector.acquire(), 10)  # create
            hold = asyncio.create_task(elector.hold())
            await asyncio.sleep(1.0)  # get + update, renewed a few times
            assert elector.acting() and not hold.done()
            hold.cancel()
            await elector.release()  # update
        finally:
            await elector.api.aclose()

    asyncio.run(elect())
    assert not lost
    lease = json.loads(cp.kubectl("get", "lease", "-n", ns, lease_name, "-o", "json").stdout)
    assert lease["spec"].get("holderIdentity") is None  # handed back
    assert lease["spec"]["leaseDurationSeconds"] == 1

    def can_i(*args: str) -> str:
        return kubectl_as(cp, token, "auth", "can-i", *args).stdout.strip()

    assert can_i("get", f"leases/{lease_name}", "-n", ns) == "yes"
    assert can_i("update", f"leases/{lease_name}", "-n", ns) == "yes"
    assert can_i("get", "leases/another", "-n", ns) == "no"
    assert can_i("update", "leases/another", "-n", ns) == "no"
    assert can_i("delete", f"leases/{lease_name}", "-n", ns) == "no"
    assert can_i("patch", f"leases/{lease_name}", "-n", ns) == "no"
    assert can_i("list", "leases", "-n", ns) == "no"
    assert can_i("watch", "leases", "-n", ns) == "no"
    assert can_i("create", "leases", "-n", "default") == "no"
    cp.kubectl("delete", "namespace", ns, "--wait=false", check=False)
