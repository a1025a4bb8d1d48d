"""The chart in SQLite mode on a real node: one Pod (server + operator) on a hostPath-backed
PersistentVolume, reached through its Service, `helm test` passing, and the store surviving
the Pod's deletion; `helm uninstall` keeps the CA Secret."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.infra.cluster import Cluster

RELEASE, NS = "acme-gateway", "agw-sqlite"
BASE = f"https://{RELEASE}.{NS}.svc"


@pytest.fixture(scope="module")
def release(cluster: Cluster, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The chart installed with its defaults (plus the local image), its claim bound to a
    hostPath PV in a directory of this test session."""
    data: Path = tmp_path_factory.mktemp("sqlite-pv") / "data"
    cluster.hostpath_pv("agw-sqlite-data", data, (NS, f"{RELEASE}-data"))
    cluster.install_chart(RELEASE, NS, {})
    yield RELEASE
    cluster.helm("uninstall", RELEASE, "-n", NS, "--wait")
    cluster.kubectl("delete", "namespace", NS, "--wait=false", check=False)


def server_pod(cluster: Cluster) -> dict:
    pods = json.loads(
        cluster.kubectl(
            "get", "pods", "-n", NS, "-l", "app.kubernetes.io/component=server", "-o", "json"
        ).stdout
    )["items"]
    live = [p for p in pods if not p["metadata"].get("deletionTimestamp")]
    assert len(live) == 1, [p["metadata"]["name"] for p in pods]
    return dict(live[0])


def test_pod_ready_and_directory_through_service(cluster: Cluster, release: str) -> None:
    pod = server_pod(cluster)
    statuses = {c["name"]: c for c in pod["status"]["containerStatuses"]}
    assert set(statuses) == {"server", "operator"}, statuses
    assert all(c["ready"] for c in statuses.values()), statuses
    claim = cluster.kubectl(
        "get",
        "pvc",
        f"{RELEASE}-data",
        "-n",
        NS,
        "-o",
        "jsonpath={.status.phase} {.spec.volumeName}",
    ).stdout
    assert claim == "Bound agw-sqlite-data", claim

    ca = cluster.ca_pem(NS, f"{RELEASE}-ca")
    directory = cluster.wait_service(NS, RELEASE, ca)
    for key in ("newNonce", "newAccount", "newOrder", "revokeCert", "keyChange"):
        assert directory[key].startswith(BASE + "/"), (key, directory)
    assert directory["meta"]["externalAccountRequired"] is True, directory
    status, headers, _ = cluster.service_request(NS, RELEASE, "HEAD", "/acme/new-nonce", ca_pem=ca)
    assert status == 200 and headers.get("replay-nonce"), (status, headers)


def test_runs_as_non_root_on_read_only_root(cluster: Cluster, release: str) -> None:
    name = server_pod(cluster)["metadata"]["name"]
    probe = (
        "import os\n"
        "print(os.getuid(), os.getgid())\n"
        "try:\n    open('/app/x', 'w')\nexcept OSError as e:\n    print('ro', e.errno)\n"
        "open('/data/.probe', 'w').write('ok')\nprint('data ok')\n"
    )
    out = cluster.kubectl(
        "exec", "-n", NS, name, "-c", "server", "--", "python3", "-c", probe
    ).stdout.split("\n")
    assert out[0] == "10001 10001", out
    assert out[1] == "ro 30", out  # EROFS: the root filesystem is mounted read-only
    assert out[2] == "data ok", out


def test_helm_test_hook_passes(cluster: Cluster, release: str) -> None:
    out = cluster.helm("test", RELEASE, "-n", NS, "--logs", "--timeout=120s")
    assert "Phase:          Succeeded" in out, out
    assert "directory OK at" in out, out
