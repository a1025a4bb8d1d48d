"""`make cluster`: try the chart for real on this machine.

A Kubernetes control plane and one real node (tests/infra/node.py, needs root), the image
built from our Dockerfile (tools/image/build.sh) imported into the node, and the Helm chart
installed from it in SQLite mode on a hostPath volume. Prints what to `kubectl apply` next;
Ctrl-C (or SIGTERM) tears everything down and puts the machine back.
"""

from __future__ import annotations

import os
import shutil
import signal
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.infra.cluster import Cluster  # noqa: E402
from tests.infra.kube import ControlPlaneError  # noqa: E402

RELEASE = NAMESPACE = "acme-gateway"


def main() -> int:
    workdir = Path(os.environ.get("ACME_GATEWAY_CLUSTER_DIR", "./acme-gateway-cluster")).resolve()
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    cluster = Cluster()
    try:
        print("building (cached) and starting control plane + node + image ...", flush=True)
        cluster.start(workdir)
        # Each run has a fresh etcd, hence a fresh CA: a store from an earlier run would
        # belong to another CA root (the server refuses that), so it starts empty too.
        shutil.rmtree(workdir / "data", ignore_errors=True)
        cluster.hostpath_pv("acme-gateway-data", workdir / "data", (NAMESPACE, f"{RELEASE}-data"))
        print(f"installing the chart with {cluster.image} ...", flush=True)
        cluster.install_chart(RELEASE, NAMESPACE, {})
        ca = workdir / "acme-gateway-ca.pem"
        ca.write_text(cluster.ca_pem(NAMESPACE, f"{RELEASE}-ca"))
        ip = cluster.cluster_ip(NAMESPACE, RELEASE)
        host = f"{RELEASE}.{NAMESPACE}.svc"
        kubectl = cluster.plane.binaries.kubectl if cluster.plane.binaries else "kubectl"
        print(
            f"""
acme-gateway runs on a real node ({cluster.ip}); Pods, logs and exec work as usual.
  export KUBECONFIG={cluster.plane.kubeconfig}
  kubectl: {kubectl}
  ACME directory (from this machine, through the Service's ClusterIP {ip}):
    curl --cacert {ca} --resolve {host}:443:{ip} https://{host}/directory
  Pods have no cluster DNS: give in-cluster clients a hostAlias {host} -> {ip}.

Next (docs/helm.md, Install, steps 2-3):
  kubectl create namespace team-a
  kubectl apply -n team-a -f - <<'EOF'
  apiVersion: acme-gateway.io/v1alpha1
  kind: AcmeRegistration
  metadata:
    name: web
  EOF
  kubectl get acmeregistrations -n team-a   # Ready, key ID team-a.web
  kubectl get secret web-eab -n team-a      # the EAB key the operator Pod made
Press Ctrl-C to stop and clean up ({workdir} keeps logs).""",
            flush=True,
        )
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        print("stopping", file=sys.stderr)
        return 0
    except ControlPlaneError as exc:
        print(f"cluster failed: {exc}", file=sys.stderr)
        return 1
    finally:
        cluster.stop()


if __name__ == "__main__":
    sys.exit(main())
