"""The chart's CA hook Job, run with exactly its own ServiceAccount and Role on the real API
server: it creates the CA Secret once, never rewrites it, and can do nothing else."""

from __future__ import annotations

import base64
import json
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from cryptography import x509

from acme_server.ca.given import load_given
from tests.helm.chart import CHART, Helm, Manifest, find, one, parse_manifests
from tests.helm.hook_jobs import run_job_container
from tests.helm.operator_proc import kubectl_as
from tests.infra.kube import ControlPlane, service_account_kubeconfig

RELEASE = "hook"
FULL = f"{RELEASE}-acme-gateway"


@pytest.fixture
def release_ns(control_plane: ControlPlane) -> Iterator[str]:
    ns = f"cahook-{uuid.uuid4().hex[:8]}"
    control_plane.kubectl("create", "namespace", ns)
    yield ns
    control_plane.kubectl("delete", "namespace", ns, "--wait=false", check=False)


def _hook_objects(helm: Helm, ns: str) -> list[Manifest]:
    out = helm.run(
        "template", RELEASE, str(CHART), "-n", ns, "--show-only", "templates/ca-init.yaml"
    )
    return parse_manifests(out)


def _secret(cp: ControlPlane, ns: str, name: str) -> dict[str, Any] | None:
    proc = cp.kubectl("get", "secret", name, "-n", ns, "-o", "json", check=False)
    return dict(json.loads(proc.stdout)) if proc.returncode == 0 else None


def test_ensure_ca_secret_with_the_hook_rbac(
    helm: Helm, control_plane: ControlPlane, release_ns: str, tmp_path: Path
) -> None:
    cp, ns = control_plane, release_ns
    docs = _hook_objects(helm, ns)
    rbac = [d for d in docs if d["kind"] != "Job"]
    cp.kubectl("apply", "-n", ns, "-f", "-", input=yaml.safe_dump_all(rbac))
    job = one(docs, "Job")

    first = run_job_container(cp, ns, job, tmp_path)
    assert first.returncode == 0, first.stderr
    assert first.stdout.strip() == f"created CA Secret {ns}/{FULL}-ca (acme-gateway CA)"
    secret = _secret(cp, ns, f"{FULL}-ca")
    assert secret is not None and secret["type"] == "kubernetes.io/tls"
    data = secret["data"]
    cert_pem, key_pem = (base64.b64decode(data[k]) for k in ("tls.crt", "tls.key"))
    assert b"PRIVATE KEY" not in first.stdout.encode() + first.stderr.encode()
    # What the server will load with --ca-cert/--ca-key: a valid issuing CA and its key.
    (tmp_path / "tls.crt").write_bytes(cert_pem)
    (tmp_path / "tls.key").write_bytes(key_pem)
    ca = load_given(tmp_path / "tls.crt", tmp_path / "tls.key")
    assert ca.issuer.subject.get_attributes_for_oid(x509.NameOID.COMMON_NAME)[0].value == (
        "acme-gateway CA"
    )
    labels = secret["metadata"]["labels"]
    assert labels["app.kubernetes.io/instance"] == RELEASE

    # Idempotent: a second run (the next upgrade) leaves the Secret exactly as it is.
    again = run_job_container(cp, ns, job, tmp_path)
    assert again.returncode == 0, again.stderr
    assert again.stdout.strip() == f"CA Secret {ns}/{FULL}-ca exists; left unchanged"
    after = _secret(cp, ns, f"{FULL}-ca")
    assert after is not None
    assert after["metadata"]["resourceVersion"] == secret["metadata"]["resourceVersion"]

    # Least privilege: create Secrets, read this one; nothing else.
    token = service_account_kubeconfig(cp, ns, f"{FULL}-ca-init", tmp_path / "hook.kubeconfig")

    def can_i(*args: str) -> str:
        return kubectl_as(cp, token, "auth", "can-i", *args, "-n", ns).stdout.strip()

    assert can_i("create", "secrets") == "yes"
    assert can_i("get", f"secret/{FULL}-ca") == "yes"
    for verb in ("update", "patch", "delete"):
        assert can_i(verb, f"secret/{FULL}-ca") == "no", verb
    assert can_i("get", "secret/other") == "no"
    assert can_i("list", "secrets") == "no"
    assert can_i("create", "pods") == "no"
    assert (
        kubectl_as(cp, token, "auth", "can-i", "get", "secrets", "-n", "default").stdout.strip()
        == "no"
    )


def test_ensure_ca_secret_refuses_an_incomplete_secret(
    helm: Helm, control_plane: ControlPlane, release_ns: str, tmp_path: Path
) -> None:
    cp, ns = control_plane, release_ns
    docs = _hook_objects(helm, ns)
    cp.kubectl(
        "apply",
        "-n",
        ns,
        "-f",
        "-",
        input=yaml.safe_dump_all(d for d in docs if d["kind"] != "Job"),
    )
    cp.kubectl("create", "secret", "generic", f"{FULL}-ca", "-n", ns, "--from-literal=tls.crt=x")
    proc = run_job_container(cp, ns, one(docs, "Job"), tmp_path)
    assert proc.returncode == 1
    assert f"Secret {ns}/{FULL}-ca exists but lacks tls.key" in proc.stderr
    secret = _secret(cp, ns, f"{FULL}-ca")
    assert secret is not None and set(secret["data"]) == {"tls.crt"}
    assert not find(docs, "Secret")
