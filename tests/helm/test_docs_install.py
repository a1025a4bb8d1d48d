"""docs/helm.md's install block (the README's install section) runs verbatim.

The test cluster runs no Pods, so while the block runs, the chart's operator container is
played by a local operator process with the command, arguments and ServiceAccount token
the installed Deployment gives it: `kubectl wait ... --for=condition=Ready` in the block
is satisfied by exactly the RBAC the chart grants.
"""

from __future__ import annotations

import base64
import contextlib
import json
import os
import re
import subprocess
import time
from pathlib import Path

import pytest

from tests.helm.chart import REPO, Helm, HelmError, containers
from tests.helm.hook_jobs import playing_hook_jobs
from tests.helm.operator_proc import forbidden_lines, run_migrate_init, running_operator
from tests.infra.gotools import GoToolError, certmanager_crds_dir
from tests.infra.kube import ControlPlane, service_account_kubeconfig

DOC = REPO / "docs" / "helm.md"
BLOCK = re.compile(r"<!-- helm-install:begin -->\n```sh\n(.*?)```\n<!-- helm-install:end -->", re.S)
RELEASE_NS, TENANT_NS = "acme-gateway", "team-a"


def install_block() -> str:
    match = BLOCK.search(DOC.read_text())
    assert match, f"no helm-install block in {DOC}"
    return match.group(1)


def _wait_for(
    cp: ControlPlane, proc: subprocess.Popen[str], *get: str, timeout: float = 60
) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if cp.kubectl("get", *get, check=False).returncode == 0:
            return
        assert proc.poll() is None, f"install block ended early: {proc.communicate()}"
        time.sleep(0.3)
    raise AssertionError(f"{get} did not appear")


def test_install_block_runs(helm: Helm, control_plane: ControlPlane, tmp_path: Path) -> None:
    cp = control_plane
    assert cp.kubeconfig is not None and cp.binaries is not None
    script = install_block()
    assert "helm install acme-gateway ./helm/acme-gateway" in script
    assert "kind: Issuer" in script

    # cert-manager's CRDs, so the Issuer is validated by its real schema.
    try:
        crds = certmanager_crds_dir()
    except GoToolError as exc:
        pytest.fail(f"cannot get cert-manager's CRDs:\n{exc}", pytrace=False)
    cp.kubectl("apply", "--server-side", "-f", str(crds), timeout=120)
    cp.kubectl("wait", "--for=condition=Established", "--timeout=60s", "-f", str(crds), timeout=90)

    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "helm").symlink_to(helm.binary)
    (bin_dir / "kubectl").symlink_to(cp.binaries.kubectl)
    env = {
        **helm.with_kubeconfig(cp.kubeconfig).env(),
        "PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}",
    }
    out_path = tmp_path / "install-block.out"
    with out_path.open("w") as out:
        proc = subprocess.Popen(
            ["bash", "-euo", "pipefail", "-c", script],
            cwd=REPO,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            text=True,
        )
    log = tmp_path / "operator.log"
    try:
        # The chart's CA hook Job (played: no Pods run here), then its operator, once
        # `helm install` has created its Deployment and account.
        with playing_hook_jobs(cp, RELEASE_NS, tmp_path) as played:
            _wait_for(cp, proc, "deployment", "acme-gateway", "-n", RELEASE_NS, timeout=180)
        assert [o.strip() for o in played.outputs] == [
            f"created CA Secret {RELEASE_NS}/acme-gateway-ca (acme-gateway CA)"
        ]
        deployment = json.loads(
            cp.kubectl("get", "deployment", "acme-gateway", "-n", RELEASE_NS, "-o", "json").stdout
        )
        token = service_account_kubeconfig(
            cp, RELEASE_NS, "acme-gateway-operator", tmp_path / "operator.kubeconfig"
        )
        run_migrate_init(deployment, tmp_path / "data")  # the operator never migrates
        with running_operator(containers(deployment)["operator"], token, tmp_path / "data", log):
            code = proc.wait(timeout=300)
            output = out_path.read_text()
            assert code == 0, f"install block failed ({code}):\n{output}"

            issuer = json.loads(
                cp.kubectl("get", "issuer", "acme-gateway", "-n", TENANT_NS, "-o", "json").stdout
            )
            ca = json.loads(
                cp.kubectl(
                    "get", "secret", "acme-gateway-ca", "-n", RELEASE_NS, "-o", "json"
                ).stdout
            )
            acme = issuer["spec"]["acme"]
            assert acme["caBundle"] == ca["data"]["tls.crt"]
            assert b"BEGIN CERTIFICATE" in base64.b64decode(acme["caBundle"])
            assert acme["server"] == "https://acme-gateway.acme-gateway.svc/directory"
            # The URL the chart configured, and the one its NOTES print.
            server_args = containers(deployment)["server"]["args"]
            assert "--base-url=https://acme-gateway.acme-gateway.svc" in server_args
            assert f"server: {acme['server']}" in output
            eab = acme["externalAccountBinding"]
            registration = json.loads(
                cp.kubectl("get", "acmeregistration", "web", "-n", TENANT_NS, "-o", "json").stdout
            )
            assert eab["keyID"] == registration["status"]["keyID"] == "team-a.web"
            ref = registration["status"]["hmacKeySecretRef"]
            assert ref == eab["keySecretRef"] == {"name": "web-eab", "key": "secret"}
            cp.kubectl("get", "secret", "web-eab", "-n", TENANT_NS)

            # Cleanup while the operator runs, so it removes its finalizers.
            cp.kubectl(
                "delete", "alloweddomains,acmeregistrations,issuers", "--all", "-n", TENANT_NS,
                "--timeout=60s", timeout=90,
            )  # fmt: skip
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        print(out_path.read_text(errors="replace")[-4000:])
        print(log.read_text(errors="replace")[-4000:] if log.exists() else "(no operator log)")
        with contextlib.suppress(HelmError):  # the block may have failed before installing
            helm.with_kubeconfig(cp.kubeconfig).run("uninstall", "acme-gateway", "-n", RELEASE_NS)
        for ns in (TENANT_NS, RELEASE_NS):
            cp.kubectl("delete", "namespace", ns, "--wait=false", check=False)
    assert not forbidden_lines(log), forbidden_lines(log)
