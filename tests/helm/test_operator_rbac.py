"""The chart's operator RBAC is sufficient (the real operator, holding only a token of the
chart's ServiceAccount, completes its scenario) and minimal (what it must not do is refused)."""

from __future__ import annotations

import base64
import json
from pathlib import Path

import pytest

from tests.helm.chart import CHART, Helm, containers, flag
from tests.helm.hook_jobs import playing_hook_jobs
from tests.helm.operator_proc import (
    forbidden_lines,
    kubectl_as,
    run_migrate_init,
    running_operator,
)
from tests.infra.kube import ControlPlane, service_account_kubeconfig

REGISTRATION = """
apiVersion: acme-gateway.io/v1alpha1
kind: AcmeRegistration
metadata:
  name: {name}
spec:
  maxAccounts: 3
"""

ALLOWED_DOMAIN = """
apiVersion: acme-gateway.io/v1alpha1
kind: AllowedDomain
metadata:
  name: {name}-example-com
spec:
  registrationName: {name}
  domain: example.com
"""


@pytest.mark.parametrize("mode", ["namespaced", "cluster-wide"])
def test_operator_runs_with_the_chart_service_account(
    helm: Helm, control_plane: ControlPlane, tmp_path: Path, mode: str
) -> None:
    cp = control_plane
    assert cp.kubeconfig is not None
    release = f"rbac-{mode}"
    system_ns, tenant_ns, other_ns = f"{release}-system", f"{release}-tenant", f"{release}-other"
    full = f"{release}-acme-gateway"
    for ns in (tenant_ns, other_ns):
        cp.kubectl("create", "namespace", ns)
    args = ["install", release, str(CHART), "-n", system_ns, "--create-namespace"]
    if mode == "namespaced":
        args += ["--set", f"operator.watchNamespaces={{{tenant_ns}}}"]
    with playing_hook_jobs(cp, system_ns, tmp_path):  # the CA hook Job (no Pods run here)
        helm.with_kubeconfig(cp.kubeconfig).run(*args)

    token_config = service_account_kubeconfig(
        cp, system_ns, f"{full}-operator", tmp_path / "operator.kubeconfig"
    )
    who = kubectl_as(
        cp, token_config, "auth", "whoami", "-o", "jsonpath={.status.userInfo.username}"
    )
    assert who.stdout == f"system:serviceaccount:{system_ns}:{full}-operator", who

    # The operator runs exactly as the installed Deployment says (command and args).
    deployment = json.loads(
        cp.kubectl("get", "deployment", full, "-n", system_ns, "-o", "json").stdout
    )
    container = containers(deployment)["operator"]
    expected_ns = [tenant_ns] if mode == "namespaced" else []
    assert flag(container, "namespace") == expected_ns
    log = tmp_path / "operator.log"
    try:
        run_migrate_init(deployment, tmp_path / "data")  # the operator never migrates
        with running_operator(container, token_config, tmp_path / "data", log):
            if mode == "namespaced":
                # Outside the watched namespaces nothing happens (and nothing could).
                cp.kubectl(
                    "apply", "-n", other_ns, "-f", "-", input=REGISTRATION.format(name="web")
                )
            cp.kubectl("apply", "-n", tenant_ns, "-f", "-", input=REGISTRATION.format(name="web"))
            # No grant, no names: the registration is Ready once an AllowedDomain grants one.
            cp.kubectl("apply", "-n", tenant_ns, "-f", "-", input=ALLOWED_DOMAIN.format(name="web"))
            cp.kubectl(
                "wait", "-n", tenant_ns, "acmeregistration/web",
                "--for=condition=Ready", "--timeout=90s", timeout=100,
            )  # fmt: skip
            secret = json.loads(
                cp.kubectl("get", "secret", "web-eab", "-n", tenant_ns, "-o", "json").stdout
            )
            key = base64.b64decode(secret["data"]["secret"]).decode()
            assert len(base64.urlsafe_b64decode(key + "=" * (-len(key) % 4))) >= 32
            reg = json.loads(
                cp.kubectl("get", "acmeregistration", "web", "-n", tenant_ns, "-o", "json").stdout
            )
            assert reg["status"]["keyID"] == f"{tenant_ns}.web"
            assert reg["status"]["hmacKeySecretRef"] == {"name": "web-eab", "key": "secret"}

            cp.kubectl(
                "wait", "-n", tenant_ns, "alloweddomain/web-example-com",
                "--for=condition=Ready", "--timeout=90s", timeout=100,
            )  # fmt: skip

            if mode == "namespaced":
                other = cp.kubectl("get", "secret", "web-eab", "-n", other_ns, check=False)
                assert other.returncode != 0 and "NotFound" in other.stderr
                untouched = json.loads(
                    cp.kubectl(
                        "get", "acmeregistration", "web", "-n", other_ns, "-o", "json"
                    ).stdout
                )
                assert not untouched["metadata"].get("finalizers"), untouched["metadata"]
                assert "status" not in untouched

            # Cleanup while the operator runs, so it removes its finalizers.
            for ns in {tenant_ns, other_ns}:
                cp.kubectl("delete", "alloweddomains,acmeregistrations", "--all", "-n", ns,
                           "--timeout=60s", timeout=90)  # fmt: skip
    finally:
        print(log.read_text(errors="replace")[-6000:])

    # Sufficient: not one API call of the operator was refused.
    assert not forbidden_lines(log), forbidden_lines(log)

    # Minimal: what the token must not do.
    def can_i(*args: str) -> str:
        proc = kubectl_as(cp, token_config, "auth", "can-i", *args)
        return proc.stdout.strip()

    assert can_i("create", "alloweddomains", "-n", tenant_ns) == "no"  # never grants domains
    assert can_i("delete", "acmeregistrations", "-n", tenant_ns) == "no"
    # list/watch Secrets: the revoke annotation's metadata-only watch (operator/rbac.md).
    assert can_i("watch", "secrets", "-n", tenant_ns) == "yes"
    assert can_i("get", "configmaps", "-n", "kube-system") == "no"
    assert can_i("create", "pods", "-n", tenant_ns) == "no"
    assert can_i("get", "nodes") == "no"
    assert can_i("list", "customresourcedefinitions") == "no"
    assert can_i("delete", "secrets", "-n", tenant_ns) == "no"
    assert can_i("get", "secrets", "-n", tenant_ns) == "yes"
    if mode == "namespaced":
        assert can_i("get", "secrets", "-n", other_ns) == "no"
        assert can_i("list", "secrets", "-n", other_ns) == "no"
        assert can_i("patch", "acmeregistrations", "-n", other_ns) == "no"
        assert can_i("list", "namespaces") == "no"
        refused = kubectl_as(cp, token_config, "get", "secret", "web-eab", "-n", "kube-system")
        assert refused.returncode != 0 and "Forbidden" in refused.stderr, refused.stderr
    else:
        refused = kubectl_as(cp, token_config, "get", "configmaps", "-n", "kube-system")
        assert refused.returncode != 0 and "Forbidden" in refused.stderr, refused.stderr

    helm.with_kubeconfig(cp.kubeconfig).run("uninstall", release, "-n", system_ns)
    for ns in (tenant_ns, other_ns, system_ns):
        cp.kubectl("delete", "namespace", ns, "--wait=false", check=False)
