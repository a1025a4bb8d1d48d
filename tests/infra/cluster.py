"""A whole test cluster with a real node, and the chart installed from our own image.

Used by tests/node (one per test session) and by `make cluster` (tools/cluster.py):

    with Cluster().start(workdir) as cluster:
        cluster.install_chart("acme-gateway", "acme-gateway", {...})
        cluster.service_get("acme-gateway", "acme-gateway", "/directory")
"""

from __future__ import annotations

import base64
import http.client
import json
import os
import socket
import ssl
import subprocess
import tempfile
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml

from tests.infra.gotools import ensure_helm
from tests.infra.images import ensure_app_image, tag_image
from tests.infra.kube import REPO, ControlPlane, ControlPlaneError, build_binaries
from tests.infra.node import Node, build_node_binaries, node_ip

CHART = REPO / "helm" / "acme-gateway"


class Cluster:
    """Control plane + node + the app image imported, with helm pointed at it."""

    def __init__(self) -> None:
        self.cp: ControlPlane | None = None
        self.node: Node | None = None
        self.image = ""
        self.helm_binary: Path | None = None
        self.workdir: Path | None = None
        self.helm_home: Path | None = None

    # -- lifecycle

    def start(self, workdir: Path) -> Cluster:
        """Build what is missing (cached), start control plane and node, import the image."""
        self.workdir = Path(workdir)
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.helm_home = self.workdir / "helm-home"
        binaries = build_binaries()
        node_binaries = build_node_binaries()
        self.helm_binary = ensure_helm()
        self.cp = ControlPlane(binaries, node_ip=node_ip())
        try:
            self.cp.start(self.workdir / "control-plane")
            self.node = Node(self.cp, node_binaries).start(self.workdir / "node")
            self.image = ensure_app_image(self.node)
        except BaseException:
            self.stop()
            raise
        return self

    def stop(self) -> None:
        if self.node is not None:
            self.node.stop()
            self.node = None
        if self.cp is not None:
            self.cp.stop()
            self.cp = None

    def __enter__(self) -> Cluster:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- helpers

    @property
    def plane(self) -> ControlPlane:
        assert self.cp is not None, "cluster not started"
        return self.cp

    @property
    def ip(self) -> str:
        assert self.node is not None, "cluster not started"
        return self.node.ip

    def kubectl(self, *args: str, **kw: Any) -> subprocess.CompletedProcess[str]:
        return self.plane.kubectl(*args, **kw)

    def helm_env(self) -> dict[str, str]:
        assert self.helm_home is not None and self.plane.kubeconfig is not None
        return {
            **os.environ,
            "HELM_CACHE_HOME": str(self.helm_home / "cache"),
            "HELM_CONFIG_HOME": str(self.helm_home / "config"),
            "HELM_DATA_HOME": str(self.helm_home / "data"),
            "KUBECONFIG": str(self.plane.kubeconfig),
        }

    def helm(self, *args: str, timeout: float = 600) -> str:
        """helm's stdout; raises ControlPlaneError with its output on failure."""
        assert self.helm_binary is not None
        proc = subprocess.run(
            [str(self.helm_binary), *args],
            capture_output=True,
            text=True,
            env=self.helm_env(),
            timeout=timeout,
            check=False,
        )
        if proc.returncode != 0:
            raise ControlPlaneError(
                f"helm {' '.join(args)} failed ({proc.returncode}):\n{proc.stdout}{proc.stderr}"
            )
        return proc.stdout

    def image_values(self, image: str | None = None) -> dict[str, Any]:
        """Chart values selecting an imported image (never pulled: no registry here)."""
        repository, tag = (image or self.image).rsplit(":", 1)
        return {"image": {"repository": repository, "tag": tag, "pullPolicy": "Never"}}

    def tag_image(self, tag: str) -> str:
        """The app image under another tag (an 'upgrade' to a new image reference)."""
        assert self.node is not None
        new = f"{self.image.rsplit(':', 1)[0]}:{tag}"
        tag_image(self.node, self.image, new)
        return new

    def install_chart(
        self,
        release: str,
        namespace: str,
        values: Mapping[str, Any],
        *,
        upgrade: bool = False,
        timeout: str = "240s",
    ) -> str:
        """`helm install|upgrade --wait` with `values` (written to a file) on the image."""
        merged = _merge(self.image_values(), dict(values))
        with tempfile.NamedTemporaryFile("w", suffix=".yaml", delete=False) as fh:
            yaml.safe_dump(merged, fh)
        try:
            verb = ["upgrade"] if upgrade else ["install", "--create-namespace"]
            return self.helm(
                *verb, release, str(CHART), "-n", namespace, "-f", fh.name,
                "--wait", f"--timeout={timeout}",
            )  # fmt: skip
        finally:
            os.unlink(fh.name)

    def hostpath_pv(
        self, name: str, path: Path, claim: tuple[str, str], size: str = "1Gi", uid: int = 10001
    ) -> None:
        """A PersistentVolume on a host directory owned by the chart's user (hostPath
        volumes ignore fsGroup), with no StorageClass, reserved for claim (namespace, name)."""
        path.mkdir(parents=True, exist_ok=True)
        os.chown(path, uid, uid)
        path.chmod(0o750)
        pv = {
            "apiVersion": "v1",
            "kind": "PersistentVolume",
            "metadata": {"name": name},
            "spec": {
                "capacity": {"storage": size},
                "accessModes": ["ReadWriteOnce"],
                "persistentVolumeReclaimPolicy": "Retain",
                "storageClassName": "",
                "claimRef": {"namespace": claim[0], "name": claim[1]},
                "hostPath": {"path": str(path), "type": "Directory"},
            },
        }
        self.kubectl("apply", "-f", "-", input=json.dumps(pv))

    def ca_pem(self, namespace: str, secret: str) -> str:
        data = json.loads(
            self.kubectl("get", "secret", secret, "-n", namespace, "-o", "json").stdout
        )
        return base64.b64decode(data["data"]["tls.crt"]).decode()

    def cluster_ip(self, namespace: str, service: str) -> str:
        return self.kubectl(
            "get", "service", service, "-n", namespace, "-o", "jsonpath={.spec.clusterIP}"
        ).stdout.strip()

    def service_request(
        self,
        namespace: str,
        service: str,
        method: str,
        path: str,
        *,
        ca_pem: str,
        body: bytes | None = None,
        headers: Mapping[str, str] | None = None,
        port: int = 443,
        timeout: float = 10,
    ) -> tuple[int, dict[str, str], bytes]:
        """One request on a fresh TLS connection to the Service's ClusterIP (through
        kube-proxy's rules), verifying the server certificate against the Service name."""
        host = f"{service}.{namespace}.svc"
        addr = self.cluster_ip(namespace, service)
        ctx = ssl.create_default_context(cadata=ca_pem)
        raw = socket.create_connection((addr, port), timeout=timeout)
        conn = http.client.HTTPSConnection(host, port, timeout=timeout, context=ctx)
        conn.sock = ctx.wrap_socket(raw, server_hostname=host)
        try:
            conn.request(method, path, body=body, headers=dict(headers or {}))
            resp = conn.getresponse()
            return resp.status, {k.lower(): v for k, v in resp.getheaders()}, resp.read()
        finally:
            conn.close()

    def wait_service(self, namespace: str, service: str, ca_pem: str, timeout: float = 60) -> dict:
        """The directory through the Service, once kube-proxy has programmed its rules."""
        deadline = time.monotonic() + timeout
        last = ""
        while time.monotonic() < deadline:
            try:
                status, _, body = self.service_request(
                    namespace, service, "GET", "/directory", ca_pem=ca_pem
                )
                if status == 200:
                    return dict(json.loads(body))
                last = f"HTTP {status}: {body[:200]!r}"
            except OSError as exc:
                last = str(exc)
            time.sleep(0.5)
        raise AssertionError(f"{service}.{namespace} Service did not answer /directory: {last}")

    def diagnostics(self, namespace: str | None = None) -> str:
        """Pods (wide), their descriptions, logs of every container and events: for failures."""
        ns = ["-n", namespace] if namespace else ["--all-namespaces"]
        parts = []
        for args in (
            ["get", "pods,pvc,pv,jobs", "-o", "wide", *ns],
            ["describe", "pods", *ns],
            ["get", "events", "--sort-by=.lastTimestamp", *ns],
        ):
            got = self.kubectl(*args, check=False, timeout=60)
            parts.append(f"$ kubectl {' '.join(args)}\n{got.stdout}{got.stderr}")
        pods = self.kubectl("get", "pods", *ns, "-o", "json", check=False, timeout=60)
        if pods.returncode == 0:
            for pod in json.loads(pods.stdout)["items"]:
                meta = pod["metadata"]
                specs = pod["spec"].get("initContainers", []) + pod["spec"]["containers"]
                for c in specs:
                    got = self.kubectl(
                        "logs", "-n", meta["namespace"], meta["name"], "-c", c["name"],
                        "--tail=80", check=False, timeout=60,
                    )  # fmt: skip
                    parts.append(
                        f"--- logs {meta['namespace']}/{meta['name']}/{c['name']}\n"
                        f"{got.stdout}{got.stderr}"
                    )
        return "\n".join(parts)


def _merge(base: dict[str, Any], over: dict[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for key, value in over.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = _merge(out[key], value)
        else:
            out[key] = value
    return out
