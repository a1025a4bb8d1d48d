"""The user's whole path on a real node, from docs/helm.md's install block (the README's
install section) run verbatim: `helm install` (SQLite mode), a registration and an
AllowedDomain applied with kubectl, the EAB Secret made by the operator Pod, the
cert-manager Issuer; then cert-manager's controller (in a Pod) gets a Certificate through
dns-01 RFC 2136 against BIND, the certificate lands in its Secret, the operator exports its
copy and `kubectl get acmeregistrations` counts it. Deleting the server Pod keeps all of it
(the PV), and `helm uninstall` keeps the CA Secret.

The only additions to the block are the cluster's own facts, given to helm by a wrapper on
PATH as one extra values file: the image imported into the node (no registry here) and the
DNS resolver the ACME server validates dns-01 with (BIND; there is no cluster DNS).
"""

from __future__ import annotations

import base64
import json
import os
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TypeVar

import pytest
import yaml
from cryptography import x509

from tests.helm.test_docs_install import install_block
from tests.infra.bind import BindServer
from tests.infra.cluster import Cluster
from tests.infra.kube import REPO
from tests.node import certmanager

T = TypeVar("T")
RELEASE_NS, TENANT_NS, RELEASE = "acme-gateway", "team-a", "acme-gateway"
DOMAIN = "web.example.com"


@pytest.fixture(scope="module")
def bind(cluster: Cluster, tmp_path_factory: pytest.TempPathFactory) -> Iterator[BindServer]:
    """BIND authoritative for example.com on the node address (Pods reach it there)."""
    server = BindServer(("example.com",), address=cluster.ip, answer_address=cluster.ip)
    server.start(tmp_path_factory.mktemp("bind"))
    try:
        yield server
    finally:
        server.stop()


def wait_until(what: str, check: Callable[[], T], timeout: float = 120) -> T:
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(1)


def run_install_block(cluster: Cluster, bind: BindServer, tmp_path: Path) -> str:
    assert cluster.helm_binary is not None and cluster.plane.binaries is not None
    values = {
        **cluster.image_values(),
        "server": {"dnsResolvers": [bind.resolver_address]},
    }
    values_file = tmp_path / "cluster-values.yaml"
    values_file.write_text(yaml.safe_dump(values))
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "helm").write_text(
        "#!/bin/sh\n"
        "# This cluster's facts (local image, DNS resolver) added to install/upgrade.\n"
        f'case "$1" in install|upgrade) exec {cluster.helm_binary} "$@" -f {values_file};; esac\n'
        f'exec {cluster.helm_binary} "$@"\n'
    )
    (bin_dir / "helm").chmod(0o755)
    (bin_dir / "kubectl").symlink_to(cluster.plane.binaries.kubectl)
    env = {**cluster.helm_env(), "PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}"}
    proc = subprocess.run(
        ["bash", "-euo", "pipefail", "-c", install_block()],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    output = proc.stdout + proc.stderr
    assert proc.returncode == 0, f"install block failed ({proc.returncode}):\n{output}"
    return output


def registration_columns(cluster: Cluster) -> dict[str, str]:
    """`kubectl get acmeregistrations` as a user sees it: header -> value of row `web`."""
    out = cluster.kubectl("get", "acmeregistrations", "-n", TENANT_NS).stdout.splitlines()
    header, rows = out[0].split(), [line.split() for line in out[1:]]
    row = next(r for r in rows if r[0] == "web")
    return dict(zip(header, row, strict=False))


def exported(cluster: Cluster) -> list[dict]:
    secrets = json.loads(
        cluster.kubectl(
            "get", "secrets", "-n", TENANT_NS, "--field-selector=type=acme-gateway.io/certificate",
            "-o", "json",
        ).stdout
    )["items"]  # fmt: skip
    return list(secrets)


def test_readme_install_path(
    cluster: Cluster, bind: BindServer, tmp_path: Path, tmp_path_factory: pytest.TempPathFactory
) -> None:
    data = tmp_path_factory.mktemp("install-pv") / "data"
    cluster.hostpath_pv("agw-install-data", data, (RELEASE_NS, f"{RELEASE}-data"))
    try:
        _path(cluster, bind, tmp_path)
    finally:
        subprocess.run(
            [str(cluster.helm_binary), "uninstall", RELEASE, "-n", RELEASE_NS, "--wait"],
            env=cluster.helm_env(), capture_output=True, timeout=300, check=False,
        )  # fmt: skip
        certmanager.remove(cluster)
        for ns in (TENANT_NS, RELEASE_NS):
            cluster.kubectl("delete", "namespace", ns, "--wait=false", check=False)


def _path(cluster: Cluster, bind: BindServer, tmp_path: Path) -> None:
    certmanager.install_crds(cluster)  # the block's last step needs cert-manager installed
    output = run_install_block(cluster, bind, tmp_path)
    assert f"server: https://{RELEASE}.{RELEASE_NS}.svc/directory" in output, output
    # The operator Pod made the EAB Secret the Issuer refers to.
    cluster.kubectl("get", "secret", "web-eab", "-n", TENANT_NS)
    assert registration_columns(cluster)["READY"] == "True"

    # cert-manager in a Pod; no cluster DNS, so the Service name is a host alias.
    acme_ip = cluster.cluster_ip(RELEASE_NS, RELEASE)
    certmanager.deploy(cluster, bind.resolver_address, {f"{RELEASE}.{RELEASE_NS}.svc": acme_ip})
    tsig = {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": "rfc2136-tsig", "namespace": TENANT_NS},
        "stringData": {"tsig-secret": bind.key_secret},
    }
    cluster.kubectl("apply", "-f", "-", input=json.dumps(tsig))
    # The block's Issuer solves http-01 through an Ingress; this cluster has none, so the
    # solver becomes dns-01 RFC 2136 (as in docs/examples/cert-manager/issuer.yaml).
    solver = {
        "dns01": {
            "rfc2136": {
                "nameserver": bind.resolver_address,
                "tsigKeyName": bind.key_name,
                "tsigAlgorithm": "HMACSHA256",
                "tsigSecretSecretRef": {"name": "rfc2136-tsig", "key": "tsig-secret"},
            }
        }
    }
    cluster.kubectl(
        "patch", "issuer", "acme-gateway", "-n", TENANT_NS, "--type=merge",
        "-p", json.dumps({"spec": {"acme": {"solvers": [solver]}}}),
    )  # fmt: skip
    cluster.kubectl(
        "wait", "-n", TENANT_NS, "issuer/acme-gateway", "--for=condition=Ready",
        "--timeout=120s", timeout=150,
    )  # fmt: skip
    certificate = {
        "apiVersion": "cert-manager.io/v1",
        "kind": "Certificate",
        "metadata": {"name": "web", "namespace": TENANT_NS},
        "spec": {
            "secretName": "web-tls",
            "dnsNames": [DOMAIN],
            "issuerRef": {"name": "acme-gateway", "kind": "Issuer"},
            "privateKey": {"algorithm": "ECDSA", "size": 256},
        },
    }
    cluster.kubectl("apply", "-f", "-", input=json.dumps(certificate))
    cluster.kubectl(
        "wait", "-n", TENANT_NS, "certificate/web", "--for=condition=Ready",
        "--timeout=300s", timeout=330,
    )  # fmt: skip

    # The certificate in its Secret, issued by the chart's CA for the requested name.
    tls = json.loads(
        cluster.kubectl("get", "secret", "web-tls", "-n", TENANT_NS, "-o", "json").stdout
    )
    leaf = x509.load_pem_x509_certificate(base64.b64decode(tls["data"]["tls.crt"]))
    ca = x509.load_pem_x509_certificate(cluster.ca_pem(RELEASE_NS, f"{RELEASE}-ca").encode())
    assert leaf.issuer == ca.subject, (leaf.issuer, ca.subject)
    sans = leaf.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert sans.get_values_for_type(x509.DNSName) == [DOMAIN]
    serial = format(leaf.serial_number, "x")

    # The operator's exported copy and the registration's count.
    copies = wait_until("the exported certificate Secret", lambda: exported(cluster), timeout=90)
    assert len(copies) == 1, [c["metadata"]["name"] for c in copies]
    copy = x509.load_pem_x509_certificate(base64.b64decode(copies[0]["data"]["tls.crt"]))
    assert copy.serial_number == leaf.serial_number
    wait_until(
        "Certificates=1 in kubectl get acmeregistrations",
        lambda: registration_columns(cluster).get("CERTIFICATES") == "1",
        timeout=90,
    )

    # Day 2: the SQLite Pod goes away; its replacement serves the same store from the PV.
    old = cluster.kubectl(
        "get", "pods", "-n", RELEASE_NS, "-l", "app.kubernetes.io/component=server",
        "-o", "jsonpath={.items[0].metadata.name}",
    ).stdout  # fmt: skip
    cluster.kubectl("delete", "pod", old, "-n", RELEASE_NS, "--wait=true", timeout=120)
    cluster.kubectl(
        "rollout",
        "status",
        "-n",
        RELEASE_NS,
        f"deployment/{RELEASE}",
        "--timeout=180s",
        timeout=200,
    )
    new = cluster.kubectl(
        "get", "pods", "-n", RELEASE_NS, "-l", "app.kubernetes.io/component=server",
        "-o", "jsonpath={.items[*].metadata.name}",
    ).stdout.split()  # fmt: skip
    assert len(new) == 1 and new[0] != old, (old, new)
    cluster.wait_service(RELEASE_NS, RELEASE, cluster.ca_pem(RELEASE_NS, f"{RELEASE}-ca"))
    store_serials = cluster.kubectl(
        "exec", "-n", RELEASE_NS, new[0], "-c", "server", "--", "python3", "-c",
        "import sqlite3; db = sqlite3.connect('file:/data/acme-gateway.sqlite3?mode=ro', uri=True)\n"
        "print(*[r[0] for r in db.execute('SELECT serial FROM certificates')])",
    ).stdout.split()  # fmt: skip
    assert serial in [s.lower().lstrip("0") for s in store_serials], (serial, store_serials)
    time.sleep(12)  # one status interval of the new operator container
    assert registration_columns(cluster).get("CERTIFICATES") == "1"
    assert len(exported(cluster)) == 1

    # helm uninstall keeps the CA Secret (and the claim holding the store).
    cluster.helm("uninstall", RELEASE, "-n", RELEASE_NS, "--wait")
    kept = cluster.kubectl("get", "secret", f"{RELEASE}-ca", "-n", RELEASE_NS, "-o", "json").stdout
    assert "tls.key" in json.loads(kept)["data"]
    cluster.kubectl("get", "pvc", f"{RELEASE}-data", "-n", RELEASE_NS)
