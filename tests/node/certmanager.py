"""cert-manager's controller as a Deployment on the test node.

The image is the Go binary tools/go-tools/build.sh already builds (our small main over
cert-manager's packages) in an otherwise empty image (tests/infra/images.py). There is no
cluster DNS: the ACME server's Service name is mapped to its ClusterIP with hostAliases, and
dns-01 self-checks go only to the test's BIND on the node address.
"""

from __future__ import annotations

import json

from tests.infra.cluster import Cluster
from tests.infra.gotools import certmanager_crds_dir, ensure_certmanager
from tests.infra.images import binary_image, ensure_image

NS = "cert-manager"
IMAGE = "localhost/acme-gateway/cert-manager-controller:test"


def install_crds(cluster: Cluster) -> None:
    """cert-manager's CRDs, as a cluster with cert-manager installed has them."""
    crds = certmanager_crds_dir()
    cluster.kubectl("apply", "--server-side", "-f", str(crds), timeout=120)
    cluster.kubectl(
        "wait", "--for=condition=Established", "--timeout=60s", "-f", str(crds), timeout=90
    )


def deploy(cluster: Cluster, dns_server: str, host_aliases: dict[str, str]) -> None:
    """cert-manager's controller (Ready), with `host_aliases` (name -> IP)."""
    assert cluster.node is not None
    binary = ensure_certmanager()
    archive = binary_image(IMAGE, {binary: "/certmanager-controller"}, ["/certmanager-controller"])
    # The tag is fixed but the content is not: import whenever the archive changes.
    cluster.node.import_image(archive)
    ensure_image(cluster.node, IMAGE, archive)
    labels = {"app.kubernetes.io/name": "cert-manager-controller"}
    objects = [
        {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": NS}},
        {
            "apiVersion": "v1",
            "kind": "ServiceAccount",
            "metadata": {"name": "cert-manager", "namespace": NS},
        },
        {
            # Test infrastructure, not the shipped chart: upstream's fine-grained roles are
            # out of scope here.
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "ClusterRoleBinding",
            "metadata": {"name": "acme-gateway-test-cert-manager"},
            "roleRef": {
                "apiGroup": "rbac.authorization.k8s.io",
                "kind": "ClusterRole",
                "name": "cluster-admin",
            },
            "subjects": [{"kind": "ServiceAccount", "name": "cert-manager", "namespace": NS}],
        },
        {
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "metadata": {"name": "cert-manager", "namespace": NS, "labels": labels},
            "spec": {
                "replicas": 1,
                "selector": {"matchLabels": labels},
                "template": {
                    "metadata": {"labels": labels},
                    "spec": {
                        "serviceAccountName": "cert-manager",
                        "hostAliases": [
                            {"ip": ip, "hostnames": [name]} for name, ip in host_aliases.items()
                        ],
                        "securityContext": {"runAsNonRoot": True, "runAsUser": 65532},
                        "containers": [
                            {
                                "name": "controller",
                                "image": IMAGE,
                                "imagePullPolicy": "Never",
                                "args": [
                                    "--leader-elect=false",
                                    f"--cluster-resource-namespace={NS}",
                                    f"--dns01-recursive-nameservers={dns_server}",
                                    "--dns01-recursive-nameservers-only",
                                    "--metrics-listen-address=0.0.0.0:9402",
                                    "--healthz-listen-address=0.0.0.0:9403",
                                    "--v=2",
                                ],
                                "readinessProbe": {
                                    "httpGet": {"path": "/livez", "port": 9403},
                                    "periodSeconds": 2,
                                },
                                "securityContext": {
                                    "readOnlyRootFilesystem": True,
                                    "allowPrivilegeEscalation": False,
                                    "capabilities": {"drop": ["ALL"]},
                                },
                            }
                        ],
                    },
                },
            },
        },
    ]
    cluster.kubectl(
        "apply", "-f", "-", input=json.dumps({"apiVersion": "v1", "kind": "List", "items": objects})
    )
    cluster.kubectl(
        "rollout", "status", "-n", NS, "deployment/cert-manager", "--timeout=120s", timeout=150
    )


def remove(cluster: Cluster) -> None:
    cluster.kubectl("delete", "clusterrolebinding", "acme-gateway-test-cert-manager", check=False)
    cluster.kubectl("delete", "namespace", NS, "--wait=false", check=False)
