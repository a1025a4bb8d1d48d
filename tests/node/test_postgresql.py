"""The chart in PostgreSQL mode on a real node: two server replicas and the operator's own
Deployment against a PostgreSQL on this machine (listening on the node address, which Pods
reach), `helm test`, and a `helm upgrade` to a new image tag that rolls the servers while a
client loops ACME requests (directory, newNonce, newAccount: accountCreation=open here)
through the Service without a single failure."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import josepy
import pytest
from acme import jws as acme_jws
from cryptography.hazmat.primitives.asymmetric import ec

from tests.infra.cluster import Cluster
from tests.infra.node import POD_CIDR
from tests.infra.postgres import PostgresServer

RELEASE, NS = "acme-gateway", "agw-pg"


class NodePostgres(PostgresServer):
    """PostgreSQL listening on the node address, accepting password logins from there (its
    own readiness checks) and from the Pod range."""

    def _initdb(self, base: Path) -> None:
        super()._initdb(base)
        assert self.cluster_dir is not None
        with (self.cluster_dir / "pg_hba.conf").open("a") as hba:
            hba.write(f"host all all {self.host}/32 scram-sha-256\n")
            hba.write(f"host all all {POD_CIDR} scram-sha-256\n")


@pytest.fixture(scope="module")
def postgres(
    cluster: Cluster, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[PostgresServer]:
    """PostgreSQL on this machine's node address (never anything off this machine)."""
    pg = NodePostgres()
    pg.host = cluster.ip
    pg.start(tmp_path_factory.mktemp("pg"))
    try:
        yield pg
    finally:
        pg.stop()


@pytest.fixture(scope="module")
def release(cluster: Cluster, postgres: PostgresServer) -> Iterator[str]:
    cluster.kubectl("create", "namespace", NS)
    cluster.kubectl(
        "create", "secret", "generic", "agw-db", "-n", NS, f"--from-literal=url={postgres.url}"
    )
    values = {
        "store": {"type": "postgresql", "postgresql": {"existingSecret": "agw-db"}},
        "server": {"replicaCount": 2, "accountCreation": "open"},
        "operator": {"watchNamespaces": [NS]},
    }
    cluster.install_chart(RELEASE, NS, values)
    yield RELEASE
    cluster.helm("uninstall", RELEASE, "-n", NS, "--wait")
    cluster.kubectl("delete", "namespace", NS, "--wait=false", check=False)


def deployments(cluster: Cluster) -> dict[str, dict]:
    items = json.loads(cluster.kubectl("get", "deployments", "-n", NS, "-o", "json").stdout)
    return {d["metadata"]["name"]: d for d in items["items"]}


def test_replicas_and_operator_deployment_ready(cluster: Cluster, release: str) -> None:
    deps = deployments(cluster)
    assert set(deps) == {RELEASE, f"{RELEASE}-operator"}, set(deps)
    assert deps[RELEASE]["status"].get("readyReplicas") == 2, deps[RELEASE]["status"]
    # Two operator replicas (the chart's default with PostgreSQL), both Ready (a standby
    # answers /healthz), exactly one of them holding the Lease.
    assert deps[f"{RELEASE}-operator"]["status"].get("readyReplicas") == 2
    pods = {
        p["metadata"]["name"]
        for p in json.loads(
            cluster.kubectl(
                "get", "pods", "-n", NS, "-l", "app.kubernetes.io/component=operator", "-o", "json"
            ).stdout
        )["items"]
    }
    holder = ""
    for _ in range(60):
        proc = cluster.kubectl(
            "get", "lease", f"{RELEASE}-operator", "-n", NS, "-o",
            "jsonpath={.spec.holderIdentity}", check=False,
        )  # fmt: skip
        holder = proc.stdout.strip() if proc.returncode == 0 else ""
        if holder:
            break
        time.sleep(1)
    assert [p for p in pods if holder.startswith(f"{p}-")], (holder, pods)
    pdb = json.loads(cluster.kubectl("get", "pdb", RELEASE, "-n", NS, "-o", "json").stdout)
    assert pdb["spec"]["maxUnavailable"] == 1, pdb["spec"]
    ca = cluster.ca_pem(NS, f"{RELEASE}-ca")
    directory = cluster.wait_service(NS, RELEASE, ca)
    assert directory["newOrder"] == f"https://{RELEASE}.{NS}.svc/acme/new-order", directory
    out = cluster.helm("test", RELEASE, "-n", NS, "--logs", "--timeout=120s")
    assert "directory OK at" in out, out


class Looper(threading.Thread):
    """An ACME client in a loop through the Service: GET the directory, HEAD newNonce, and
    POST newAccount (a JWS with a fresh key: a write to the store) with that nonce. Every
    request on a fresh connection, so each is routed by kube-proxy anew; any answer other
    than the expected one, or a connection error, is a failure."""

    def __init__(self, cluster: Cluster, ca: str, new_account_url: str) -> None:
        super().__init__(daemon=True)
        self.cluster, self.ca, self.new_account_url = cluster, ca, new_account_url
        self.stop_event = threading.Event()
        self.ok = 0
        self.accounts = 0
        self.failures: list[str] = []

    def request(self, method: str, path: str, **kw: Any) -> tuple[int, dict[str, str], bytes]:
        return self.cluster.service_request(NS, RELEASE, method, path, ca_pem=self.ca, **kw)

    def once(self) -> None:
        status, _, body = self.request("GET", "/directory")
        assert status == 200, ("directory", status, body[:300])
        status, headers, _ = self.request("HEAD", "/acme/new-nonce")
        assert status == 200 and headers.get("replay-nonce"), ("newNonce", status, headers)
        key = josepy.JWKEC(key=ec.generate_private_key(ec.SECP256R1()))
        jws = acme_jws.JWS.sign(
            json.dumps({"termsOfServiceAgreed": True}).encode(),
            key,
            josepy.ES256,
            nonce=josepy.b64.b64decode(headers["replay-nonce"]),
            url=self.new_account_url,
        )
        status, headers, body = self.request(
            "POST",
            "/acme/new-account",
            body=jws.json_dumps().encode(),
            headers={"Content-Type": "application/jose+json"},
        )
        assert status == 201 and headers.get("location"), ("newAccount", status, body[:300])
        self.ok += 3
        self.accounts += 1

    def run(self) -> None:
        while not self.stop_event.is_set():
            try:
                self.once()
            except (AssertionError, OSError) as exc:
                self.failures.append(f"{time.time():.2f} {exc!r}")


def test_upgrade_rolls_without_failed_requests(cluster: Cluster, release: str) -> None:
    ca = cluster.ca_pem(NS, f"{RELEASE}-ca")
    cluster.wait_service(NS, RELEASE, ca)
    before = {
        p["metadata"]["name"]
        for p in json.loads(
            cluster.kubectl(
                "get", "pods", "-n", NS, "-l", "app.kubernetes.io/component=server", "-o", "json"
            ).stdout
        )["items"]
    }
    new_image = cluster.tag_image("upgrade-1")
    directory = cluster.wait_service(NS, RELEASE, ca)
    loop = Looper(cluster, ca, directory["newAccount"])
    loop.start()
    try:
        time.sleep(2)
        values = {
            "store": {"type": "postgresql", "postgresql": {"existingSecret": "agw-db"}},
            "server": {"replicaCount": 2, "accountCreation": "open"},
            "operator": {"watchNamespaces": [NS]},
            **cluster.image_values(new_image),
        }
        cluster.install_chart(RELEASE, NS, values, upgrade=True)
        time.sleep(2)
    finally:
        loop.stop_event.set()
        loop.join(timeout=30)
    dep = deployments(cluster)[RELEASE]
    images = {c["image"] for c in dep["spec"]["template"]["spec"]["containers"]}
    assert images == {new_image}, images
    after = json.loads(
        cluster.kubectl(
            "get", "pods", "-n", NS, "-l", "app.kubernetes.io/component=server", "-o", "json"
        ).stdout
    )["items"]
    live = [p for p in after if not p["metadata"].get("deletionTimestamp")]
    assert {p["spec"]["containers"][0]["image"] for p in live} == {new_image}
    assert not before & {p["metadata"]["name"] for p in live}, "no Pod was replaced"
    assert loop.accounts > 10 and loop.ok > 30, (loop.ok, loop.accounts)
    assert loop.failures == [], loop.failures
