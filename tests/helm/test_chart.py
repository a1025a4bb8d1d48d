"""The chart: lint, rendering per value combination, schema refusals, and the real API server
accepting, installing, upgrading and uninstalling it."""

from __future__ import annotations

import base64
import gzip
import json
import subprocess
import sys
import tarfile
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.helm.chart import (
    CHART,
    REPO,
    Helm,
    Manifest,
    containers,
    find,
    flag,
    one,
    parse_manifests,
    write_values,
)
from tests.helm.hook_jobs import playing_hook_jobs
from tests.helm.values_sets import (
    FULLNAME,
    INVALID_VALUES,
    NAMESPACE,
    RELEASE,
    VALUE_SETS,
    WATCHED,
)
from tests.infra.kube import ControlPlane

SA_TOKEN_PATH = "/var/run/secrets/kubernetes.io/serviceaccount"


def render(helm: Helm, tmp_path: Path, name: str, values: dict[str, Any]) -> list[Manifest]:
    values_file = write_values(tmp_path, name, values)
    out = helm.run(
        "template", RELEASE, str(CHART), "--namespace", NAMESPACE, "-f", str(values_file)
    )
    return parse_manifests(out)


@pytest.fixture(scope="module")
def rendered(helm: Helm, tmp_path_factory: pytest.TempPathFactory) -> dict[str, list[Manifest]]:
    tmp = tmp_path_factory.mktemp("values")
    return {name: render(helm, tmp, name, values) for name, values in VALUE_SETS.items()}


# ---------------------------------------------------------------- static


def test_chart_crds_are_the_crds_directory() -> None:
    """helm/acme-gateway/crds/ is a byte-identical copy of crds/ (helm/sync-crds.sh)."""
    source = {p.name: p.read_bytes() for p in (REPO / "crds").glob("*.yaml")}
    chart = {p.name: p.read_bytes() for p in (CHART / "crds").glob("*.yaml")}
    assert source, "no CRDs in crds/"
    assert chart.keys() == source.keys(), "run helm/sync-crds.sh"
    for name, data in source.items():
        assert chart[name] == data, f"{name} differs from crds/{name}: run helm/sync-crds.sh"


def test_package_carries_the_crds(helm: Helm, tmp_path: Path) -> None:
    """`helm package` (what a chart repository or OCI registry receives) holds the CRDs."""
    out = helm.run("package", str(CHART), "--destination", str(tmp_path))
    archive = tmp_path / "acme-gateway-0.1.0.tgz"
    assert str(archive) in out
    with tarfile.open(archive) as tar:
        names = set(tar.getnames())
    for crd in (REPO / "crds").glob("*.yaml"):
        assert f"acme-gateway/crds/{crd.name}" in names
    assert "acme-gateway/values.schema.json" in names


@pytest.mark.parametrize("name", sorted(VALUE_SETS))
def test_lint(helm: Helm, tmp_path: Path, name: str) -> None:
    values = write_values(tmp_path, name, VALUE_SETS[name])
    out = helm.run("lint", "--strict", str(CHART), "-f", str(values))
    assert "1 chart(s) linted, 0 chart(s) failed" in out


@pytest.mark.parametrize("name", sorted(INVALID_VALUES))
def test_schema_refuses_invalid_values(helm: Helm, tmp_path: Path, name: str) -> None:
    values, words = INVALID_VALUES[name]
    values_file = write_values(tmp_path, name, values)
    out = helm.refused("template", RELEASE, str(CHART), "-f", str(values_file))
    assert "values don't meet the specifications of the schema" in out, out
    for word in words:
        assert word in out, f"{word!r} missing from helm's message:\n{out}"


def test_schema_file_is_generated() -> None:
    """values.schema.json is what helm/gen-values-schema.py writes (edit the script)."""
    proc = subprocess.run(
        [sys.executable, str(REPO / "helm" / "gen-values-schema.py"), "--check"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr


def test_schema_covers_every_default_value() -> None:
    """Every key in values.yaml is described by the schema, and objects refuse unknown keys."""
    schema = json.loads((CHART / "values.schema.json").read_text())
    values = yaml.safe_load((CHART / "values.yaml").read_text())

    def walk(value: Any, node: dict[str, Any], path: str) -> None:
        if isinstance(value, dict) and "properties" in node:
            assert node.get("additionalProperties") is False, f"{path or '/'} allows unknown keys"
            for key, sub in value.items():
                assert key in node["properties"], f"{path}/{key} is not in values.schema.json"
                walk(sub, node["properties"][key], f"{path}/{key}")

    walk(values, schema, "")


@pytest.mark.parametrize("name", sorted(VALUE_SETS))
def test_every_pod_is_locked_down(rendered: dict[str, list[Manifest]], name: str) -> None:
    """Non-root, read-only root, no capabilities, RuntimeDefault seccomp, no automounted token,
    resources requested, probes on every container."""
    deployments = find(rendered[name], "Deployment")
    assert deployments
    for dep in deployments:
        pod = dep["spec"]["template"]["spec"]
        assert pod["automountServiceAccountToken"] is False
        assert pod["securityContext"]["runAsNonRoot"] is True
        assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
        for c in pod["containers"]:
            sc = c["securityContext"]
            assert sc["readOnlyRootFilesystem"] is True
            assert sc["allowPrivilegeEscalation"] is False
            assert sc["capabilities"] == {"drop": ["ALL"]}
            assert c["resources"]["requests"]["cpu"] and c["resources"]["requests"]["memory"]
            assert c["livenessProbe"] and c["readinessProbe"]
            mounts = {m["mountPath"] for m in c.get("volumeMounts", [])}
            # Only the operator container holds an API token.
            assert (SA_TOKEN_PATH in mounts) == (c["name"] == "operator"), c["name"]


def test_default_is_sqlite_single_pod(rendered: dict[str, list[Manifest]]) -> None:
    docs = rendered["sqlite-default"]
    dep = one(docs, "Deployment")
    assert dep["spec"]["replicas"] == 1
    assert dep["spec"]["strategy"]["type"] == "Recreate"
    pod = dep["spec"]["template"]["spec"]
    assert pod["serviceAccountName"] == f"{FULLNAME}-operator"
    server, operator = containers(dep)["server"], containers(dep)["operator"]
    # The global options go before the subcommand; the operator gets the same ones.
    assert server["args"][:3] == ["--log-level=info", "--log-format=json", "serve"]
    assert flag(operator, "log-level") == ["info"]
    assert flag(operator, "log-format") == ["json"]
    assert flag(server, "base-url") == [f"https://{FULLNAME}.{NAMESPACE}.svc"]
    assert flag(server, "account-creation") == ["pre-registered"]
    assert flag(server, "listen") == ["0.0.0.0:14000"]
    assert f"{FULLNAME}.{NAMESPACE}.svc.cluster.local" in flag(server, "tls-name")
    assert flag(server, "ca-cert") == ["/etc/acme-gateway/ca/tls.crt"]
    # Validation refuses loopback/link-local by default: the chart allows nothing extra.
    assert flag(server, "validation-allow-cidr") == []
    assert "--client-auth-eku" not in server["args"]
    assert flag(server, "max-pending-orders") == ["300"]
    assert flag(server, "workers") == ["1"]
    assert flag(server, "account-cache-seconds") == ["2"]
    # One server: nonces stay in its shared memory, no store write per request.
    assert flag(server, "nonce-scope") == []
    assert flag(server, "caa-identity") == []  # no identities: CAA not checked
    assert flag(server, "caa-recheck-after") == []
    assert operator["command"] == ["acme-gateway-operator"]
    assert flag(operator, "data-dir") == ["/data"]
    assert flag(operator, "namespace") == []
    assert flag(operator, "health-listen") == ["0.0.0.0:8081"]
    assert flag(operator, "acme-base-url") == flag(server, "base-url")
    volumes = {v["name"]: v for v in pod["volumes"]}
    assert volumes["data"]["persistentVolumeClaim"]["claimName"] == f"{FULLNAME}-data"
    pvc = one(docs, "PersistentVolumeClaim", f"{FULLNAME}-data")
    assert pvc["metadata"]["annotations"]["helm.sh/resource-policy"] == "keep"
    # The CA Secret is made at runtime by the hook Job, never rendered (issue 8 item 19).
    assert not find(docs, "Secret")
    assert volumes["ca"]["secret"]["secretName"] == f"{FULLNAME}-ca"
    job = one(docs, "Job", f"{FULLNAME}-ca-init")
    assert flag(job["spec"]["template"]["spec"]["containers"][0], "name") == [f"{FULLNAME}-ca"]
    assert not find(docs, "PodDisruptionBudget"), "a budget on a single Pod blocks node drains"
    svc = one(docs, "Service", FULLNAME)
    assert svc["spec"]["ports"][0]["port"] == 443
    assert svc["spec"]["selector"]["app.kubernetes.io/component"] == "server"
    # Cluster-wide operator: the namespaced rules (Secrets) live in the ClusterRole (the
    # only Role is the CA hook Job's own, see test_ca_hook_job_is_least_privilege).
    assert [r["metadata"]["name"] for r in find(docs, "Role")] == [f"{FULLNAME}-ca-init"]
    role = one(docs, "ClusterRole", f"{NAMESPACE}:{FULLNAME}-operator")
    assert any("secrets" in r["resources"] for r in role["rules"])


CA_MATERIAL = ("PRIVATE KEY", "BEGIN CERTIFICATE", "LS0tLS1CRUdJTi")  # PEM, and PEM in base64


@pytest.mark.parametrize("name", sorted(VALUE_SETS))
def test_renders_hold_no_ca_and_are_reproducible(helm: Helm, tmp_path: Path, name: str) -> None:
    """`helm template` (also --dry-run and GitOps renders) makes no CA: two renders are equal
    and neither holds a key or a certificate."""
    values = write_values(tmp_path, name, VALUE_SETS[name])
    args = ["template", RELEASE, str(CHART), "--namespace", NAMESPACE, "-f", str(values)]
    first, second = helm.run(*args), helm.run(*args)
    assert first == second
    for needle in CA_MATERIAL:
        assert needle not in first, needle


def test_ca_hook_job_is_least_privilege(rendered: dict[str, list[Manifest]]) -> None:
    docs = rendered["sqlite-default"]
    name = f"{FULLNAME}-ca-init"
    hooks = {(d["kind"], d["metadata"]["name"]): d for d in docs if d["metadata"]["name"] == name}
    assert set(hooks) == {
        ("ServiceAccount", name),
        ("Role", name),
        ("RoleBinding", name),
        ("Job", name),
    }
    for (kind, _), doc in hooks.items():
        ann = doc["metadata"]["annotations"]
        assert ann["helm.sh/hook"] == "pre-install,pre-upgrade"
        assert ann["helm.sh/hook-delete-policy"] == "before-hook-creation,hook-succeeded"
        assert int(ann["helm.sh/hook-weight"]) < 0 or kind == "Job"
        assert doc["metadata"]["namespace"] == NAMESPACE
    role = hooks[("Role", name)]
    assert _rule_set(role["rules"]) == {("", "secrets", "create"), ("", "secrets", "get")}
    getter = next(r for r in role["rules"] if "get" in r["verbs"])
    assert getter["resourceNames"] == [f"{FULLNAME}-ca"]
    binding = hooks[("RoleBinding", name)]
    assert binding["subjects"] == [{"kind": "ServiceAccount", "name": name, "namespace": NAMESPACE}]
    pod = hooks[("Job", name)]["spec"]["template"]["spec"]
    assert pod["serviceAccountName"] == name and pod["automountServiceAccountToken"] is False
    assert pod["restartPolicy"] == "Never"
    (c,) = pod["containers"]
    assert c["command"] == ["acme-gateway-operator", "ensure-ca-secret"]
    assert flag(c, "namespace") == [NAMESPACE]
    assert c["securityContext"]["readOnlyRootFilesystem"] is True
    assert c["securityContext"]["capabilities"] == {"drop": ["ALL"]}
    # No Job (and no ServiceAccount with Secret rights) when the CA is given.
    assert not find(rendered["byo-ca"], "Job")
    assert not [d for d in find(rendered["byo-ca"], "Role")]


@pytest.mark.parametrize("name", sorted(VALUE_SETS))
def test_only_the_server_pod_migrates(rendered: dict[str, list[Manifest]], name: str) -> None:
    """One migration step: `store migrate` as the server Pod's init container, on the same
    store the server uses; no other Pod (the PostgreSQL operator) migrates."""
    docs = rendered[name]
    server = one(docs, "Deployment", FULLNAME)
    pod = server["spec"]["template"]["spec"]
    assert [c["name"] for c in pod["initContainers"]] == ["store-migrate"]
    init = pod["initContainers"][0]
    assert init["args"][:2] == ["store", "migrate"]
    assert init["image"] == containers(server)["server"]["image"]
    assert init["securityContext"]["readOnlyRootFilesystem"] is True
    assert init["securityContext"]["allowPrivilegeEscalation"] is False
    mounts = {m["mountPath"] for m in init["volumeMounts"]}
    assert SA_TOKEN_PATH not in mounts
    server_c = containers(server)["server"]
    if flag(server_c, "data-dir") and "ACME_GATEWAY_DATABASE" not in {
        e["name"] for e in server_c.get("env", [])
    }:
        assert flag(init, "data-dir") == flag(server_c, "data-dir") == ["/data"]
        assert "/data" in mounts
    else:
        env = {e["name"]: e for e in init["env"]}
        server_env = {e["name"]: e for e in server_c["env"]}
        assert env["ACME_GATEWAY_DATABASE"] == server_env["ACME_GATEWAY_DATABASE"]
    for dep in find(docs, "Deployment"):
        if dep is not server:
            assert not dep["spec"]["template"]["spec"].get("initContainers"), dep["metadata"]


def test_postgresql_runs_replicas_and_a_separate_operator(
    rendered: dict[str, list[Manifest]],
) -> None:
    docs = rendered["postgresql-ha"]
    server = one(docs, "Deployment", FULLNAME)
    operator = one(docs, "Deployment", f"{FULLNAME}-operator")
    assert server["spec"]["replicas"] == 3
    assert server["spec"]["strategy"]["type"] == "RollingUpdate"
    # Two operators, one active (Lease leader election: tests/helm/test_operator_ha_chart.py).
    assert operator["spec"]["replicas"] == 2
    assert "--leader-election" in containers(operator)["operator"]["args"]
    assert list(containers(server)) == ["server"]
    assert list(containers(operator)) == ["operator"]
    # Replicas behind one Service: a nonce from one must be good on the others.
    assert flag(containers(server)["server"], "nonce-scope") == ["store"]
    assert server["spec"]["template"]["spec"]["serviceAccountName"] == f"{FULLNAME}-server"
    assert operator["spec"]["template"]["spec"]["serviceAccountName"] == f"{FULLNAME}-operator"
    for dep, cname in ((server, "server"), (operator, "operator")):
        env = {e["name"]: e for e in containers(dep)[cname]["env"]}
        ref = env["ACME_GATEWAY_DATABASE"]["valueFrom"]["secretKeyRef"]
        assert ref == {"name": "acme-db", "key": "url"}
    assert not find(docs, "PersistentVolumeClaim")
    pdb = one(docs, "PodDisruptionBudget", FULLNAME)
    assert pdb["spec"]["maxUnavailable"] == 1
    assert pdb["spec"]["selector"]["matchLabels"]["app.kubernetes.io/component"] == "server"
    assert len(find(docs, "PodDisruptionBudget")) == 2  # the operator's: its own test
    server_sa = one(docs, "ServiceAccount", f"{FULLNAME}-server")
    assert server_sa["automountServiceAccountToken"] is False
    # No RBAC binds the server's account.
    for binding in find(docs, "ClusterRoleBinding") + find(docs, "RoleBinding"):
        assert all(s["name"] != f"{FULLNAME}-server" for s in binding["subjects"])
    assert len(find(docs, "NetworkPolicy")) == 2
    # The separate operator is reachable only on its metrics port; its metrics Service too.
    op_policy = one(docs, "NetworkPolicy", f"{FULLNAME}-operator")
    assert [r["ports"] for r in op_policy["spec"]["ingress"]] == [
        [{"port": "op-metrics", "protocol": "TCP"}]
    ]
    op_metrics = one(docs, "Service", f"{FULLNAME}-operator-metrics")
    assert [p["name"] for p in op_metrics["spec"]["ports"]] == ["op-metrics"]


def test_ingress_sets_the_external_url(rendered: dict[str, list[Manifest]]) -> None:
    docs = rendered["ingress"]
    ing = one(docs, "Ingress")
    rule = ing["spec"]["rules"][0]
    assert rule["host"] == "acme.example.com"
    assert rule["http"]["paths"][0]["backend"]["service"] == {
        "name": FULLNAME,
        "port": {"name": "https"},
    }
    assert ing["spec"]["tls"] == [
        {"hosts": ["acme.example.com"], "secretName": "acme-example-com-tls"}
    ]
    server = containers(one(docs, "Deployment"))["server"]
    assert flag(server, "base-url") == ["https://acme.example.com"]
    assert "acme.example.com" in flag(server, "tls-name")


def test_bring_your_own_ca_and_tls(rendered: dict[str, list[Manifest]]) -> None:
    docs = rendered["byo-ca"]
    assert not find(docs, "Secret"), "no CA Secret is generated when one is given"
    dep = one(docs, "Deployment")
    server = containers(dep)["server"]
    volumes = {v["name"]: v for v in dep["spec"]["template"]["spec"]["volumes"]}
    assert volumes["ca"]["secret"]["secretName"] == "corp-issuing-ca"
    assert volumes["tls"]["secret"]["secretName"] == "acme-server-tls"
    assert flag(server, "tls-cert") == ["/etc/acme-gateway/tls/tls.crt"]
    assert flag(server, "tls-name") == []
    assert flag(server, "base-url") == ["https://acme.corp.example:8443"]
    assert flag(server, "account-creation") == ["open"]
    assert flag(server, "cert-validity") == ["30d"]
    assert flag(server, "http01-port") == ["8080"]
    assert flag(server, "tlsalpn01-port") == ["8443"]
    assert flag(server, "dns-resolver") == ["10.0.0.10:53", "10.0.0.11:53"]
    assert flag(server, "caa-identity") == ["acme.corp.example", "pki.corp.example"]
    assert flag(server, "caa-recheck-after") == ["4h"]
    assert flag(server, "validation-allow-cidr") == ["127.0.0.0/8"]
    assert flag(server, "validation-deny-cidr") == ["10.96.0.1/32", "10.0.0.0/24"]
    assert flag(server, "validation-concurrency-per-account") == ["2"]
    assert flag(server, "validation-concurrency-per-registration") == ["4"]
    assert flag(server, "dns01-retry-seconds") == ["30"]
    assert flag(server, "validation-quorum") == ["1"]
    assert flag(server, "validation-lease") == ["45s"]
    assert flag(server, "max-pending-orders") == ["30"]
    assert flag(server, "max-pending-authorizations") == ["100"]
    assert flag(server, "max-connections") == ["256"]
    assert flag(server, "purge-after") == ["7d"]
    assert "--client-auth-eku" in server["args"]


def test_watch_namespaces_uses_roles(rendered: dict[str, list[Manifest]]) -> None:
    docs = rendered["watch-namespaces"]
    operator = containers(one(docs, "Deployment"))["operator"]
    assert flag(operator, "namespace") == WATCHED
    # The operator's Roles (the CA hook Job has its own, in the release namespace).
    roles = [r for r in find(docs, "Role") if r["metadata"]["name"].endswith("-operator")]
    assert sorted(r["metadata"]["namespace"] for r in roles) == WATCHED
    bindings = [b for b in find(docs, "RoleBinding") if b["metadata"]["name"].endswith("-operator")]
    assert sorted(b["metadata"]["namespace"] for b in bindings) == WATCHED
    for b in bindings:
        assert b["subjects"] == [
            {"kind": "ServiceAccount", "name": f"{FULLNAME}-operator", "namespace": NAMESPACE}
        ]
    # Nothing cluster-scoped for the operator (Kopf's cluster scanning is off).
    assert not [d for d in find(docs, "ClusterRole") if d["metadata"]["name"].endswith("-operator")]
    assert not find(docs, "ClusterRoleBinding")


def _rule_set(rules: list[dict[str, Any]]) -> set[tuple[str, str, str]]:
    return {
        (group, resource, verb)
        for r in rules
        for group in r["apiGroups"]
        for resource in r["resources"]
        for verb in r["verbs"]
    }


@pytest.mark.parametrize("name", ["sqlite-default", "watch-namespaces"])
def test_operator_rules_are_operator_rbac_md(
    rendered: dict[str, list[Manifest]], name: str
) -> None:
    """The chart grants the operator exactly the ClusterRole documented in operator/rbac.md."""
    text = (REPO / "operator" / "rbac.md").read_text()
    documented = yaml.safe_load(text.split("```yaml\n", 1)[1].split("```", 1)[0])
    expected = _rule_set(documented["rules"])
    docs = rendered[name]
    roles = find(docs, "Role") if name == "watch-namespaces" else find(docs, "ClusterRole")
    roles = [r for r in roles if r["metadata"]["name"].endswith("-operator")]
    assert roles
    for role in roles:
        assert _rule_set(role["rules"]) == expected, role["metadata"]


def test_aggregated_roles_keep_domains_from_namespace_admins(
    rendered: dict[str, list[Manifest]],
) -> None:
    def rules_for(doc: Manifest, resource: str) -> set[str]:
        return {v for r in doc["rules"] if resource in r["resources"] for v in r["verbs"]}

    docs = rendered["sqlite-default"]
    edit = one(docs, "ClusterRole", f"{NAMESPACE}:{FULLNAME}-edit")
    assert edit["metadata"]["labels"]["rbac.authorization.k8s.io/aggregate-to-admin"] == "true"
    assert edit["metadata"]["labels"]["rbac.authorization.k8s.io/aggregate-to-edit"] == "true"
    assert "create" in rules_for(edit, "acmeregistrations")
    assert rules_for(edit, "alloweddomains") == {"get", "list", "watch"}
    view = one(docs, "ClusterRole", f"{NAMESPACE}:{FULLNAME}-view")
    assert view["metadata"]["labels"]["rbac.authorization.k8s.io/aggregate-to-view"] == "true"
    assert rules_for(view, "acmeregistrations") == {"get", "list", "watch"}
    domain_admin = one(docs, "ClusterRole", f"{NAMESPACE}:{FULLNAME}-domain-admin")
    assert "create" in rules_for(domain_admin, "alloweddomains")
    assert "rbac.authorization.k8s.io/aggregate-to-admin" not in domain_admin["metadata"]["labels"]
    opted_in = one(
        rendered["http-monitoring"], "ClusterRole", f"{NAMESPACE}:{FULLNAME}-domain-admin"
    )
    assert opted_in["metadata"]["labels"]["rbac.authorization.k8s.io/aggregate-to-admin"] == "true"


def test_optional_values(rendered: dict[str, list[Manifest]]) -> None:
    docs = rendered["options"]
    assert not find(docs, "PersistentVolumeClaim")
    assert not [d for d in find(docs, "ClusterRole") if d["metadata"]["name"].endswith("-edit")]
    dep = one(docs, "Deployment")
    pod = dep["spec"]["template"]["spec"]
    volumes = {v["name"]: v for v in pod["volumes"]}
    assert volumes["data"]["persistentVolumeClaim"]["claimName"] == "my-claim"
    server, operator = containers(dep)["server"], containers(dep)["operator"]
    assert server["image"] == "ghcr.io/acme-gateway/acme-gateway@sha256:" + "0123456789abcdef" * 4
    assert server["env"] == VALUE_SETS["options"]["server"]["extraEnv"]
    assert operator["env"] == VALUE_SETS["options"]["operator"]["extraEnv"]
    assert flag(server, "terms-of-service") == ["https://pki.example.com/tos"]
    assert pod["imagePullSecrets"] == [{"name": "regcred"}]
    assert pod["tolerations"][0]["key"] == "dedicated"
    assert all(d["metadata"]["labels"]["team"] == "pki" for d in docs)


def test_plain_http_and_service_monitor(rendered: dict[str, list[Manifest]]) -> None:
    docs = rendered["http-monitoring"]
    server = containers(one(docs, "Deployment"))["server"]
    assert "--insecure-http" in server["args"]
    assert server["readinessProbe"]["httpGet"]["scheme"] == "HTTP"
    assert flag(server, "base-url") == ["https://acme.example.net"]
    monitor = one(docs, "ServiceMonitor")
    assert monitor["metadata"]["labels"]["release"] == "prom"
    # Metrics have a port and a Service of their own, never the ACME port.
    assert monitor["spec"]["endpoints"][0]["port"] == "metrics"
    assert monitor["spec"]["endpoints"][0]["scheme"] == "http"
    assert flag(server, "metrics-listen") == ["0.0.0.0:9090"]
    metrics_service = one(docs, "Service", f"{FULLNAME}-metrics")
    # SQLite: the operator shares the server Pod, so its metrics port is on this Service too.
    assert [p["name"] for p in metrics_service["spec"]["ports"]] == ["metrics", "op-metrics"]
    assert [e["port"] for e in monitor["spec"]["endpoints"]] == ["metrics", "op-metrics"]
    selector = monitor["spec"]["selector"]["matchLabels"]
    assert all(metrics_service["metadata"]["labels"][k] == v for k, v in selector.items())
    acme_service = one(docs, "Service", FULLNAME)
    assert all(p["targetPort"] != "metrics" for p in acme_service["spec"]["ports"])
    policy = one(docs, "NetworkPolicy")
    assert (
        policy["spec"]["ingress"][0]["from"]
        == VALUE_SETS["http-monitoring"]["networkPolicy"]["allowedFrom"]
    )
    assert policy["spec"]["ingress"][1]["ports"] == [
        {"port": "metrics", "protocol": "TCP"},
        {"port": "op-metrics", "protocol": "TCP"},
    ]


# ---------------------------------------------------------------- the real API server


def _namespaces(cp: ControlPlane, *names: str) -> None:
    for ns in names:
        if cp.kubectl("get", "namespace", ns, check=False).returncode != 0:
            cp.kubectl("create", "namespace", ns)


@pytest.mark.parametrize("name", sorted(VALUE_SETS))
def test_api_server_accepts_every_manifest(
    helm: Helm, control_plane: ControlPlane, tmp_path: Path, name: str
) -> None:
    """`kubectl apply --dry-run=server` of everything the chart renders (CRDs are installed
    by the control plane from crds/). The ServiceMonitor needs prometheus-operator's CRD,
    which this cluster lacks: it is checked by the template test instead."""
    _namespaces(control_plane, NAMESPACE, *WATCHED)
    docs = render(helm, tmp_path, name, VALUE_SETS[name])
    docs = [d for d in docs if d["kind"] != "ServiceMonitor"]
    manifest = tmp_path / "manifest.yaml"
    manifest.write_text(yaml.safe_dump_all(docs))
    out = control_plane.kubectl("apply", "--dry-run=server", "-f", str(manifest)).stdout
    for doc in docs:
        kind = doc["kind"].lower()
        assert f"{kind}" in out.lower() and doc["metadata"]["name"] in out, (doc["kind"], out)
    assert out.count("(server dry run)") == len(docs)


def _get(cp: ControlPlane, kind: str, name: str, ns: str | None = None) -> dict[str, Any] | None:
    args = ["get", kind, name, "-o", "json"] + (["-n", ns] if ns else [])
    proc = cp.kubectl(*args, check=False)
    if proc.returncode != 0:
        assert "NotFound" in proc.stderr, proc.stderr
        return None
    return dict(json.loads(proc.stdout))


def test_install_upgrade_uninstall(helm: Helm, control_plane: ControlPlane, tmp_path: Path) -> None:
    """Real install (no --wait: no Pods run here), upgrade changing a value, uninstall."""
    assert control_plane.kubeconfig is not None
    cluster_helm = helm.with_kubeconfig(control_plane.kubeconfig)
    release, ns = "lifecycle", "helm-lifecycle"
    full = f"{release}-acme-gateway"
    # The pre-install hook Job creates the CA Secret (played here: no Pods run).
    with playing_hook_jobs(control_plane, ns, tmp_path) as played:
        out = cluster_helm.run("install", release, str(CHART), "-n", ns, "--create-namespace")
    assert [o.strip() for o in played.outputs] == [
        f"created CA Secret {ns}/{full}-ca (acme-gateway CA)"
    ]
    assert "STATUS: deployed" in out
    # NOTES.txt: the directory URL, the caBundle command and the cert-manager Issuer.
    notes = out.split("NOTES:", 1)[1]
    assert f"ACME directory: https://{full}.{ns}.svc/directory" in notes
    assert f"server: https://{full}.{ns}.svc/directory" in notes
    assert f"kubectl get secret -n {ns} {full}-ca -o jsonpath='{{.data.tls\\.crt}}'" in notes
    assert "kind: Issuer" in notes and "caBundle: $CA_BUNDLE" in notes

    dep = _get(control_plane, "deployment", full, ns)
    assert dep is not None
    server = containers(dep)["server"]
    assert flag(server, "account-creation") == ["pre-registered"]
    for kind, name in [
        ("service", full),
        ("serviceaccount", f"{full}-operator"),
        ("persistentvolumeclaim", f"{full}-data"),
        ("networkpolicy", full),
    ]:
        assert _get(control_plane, kind, name, ns) is not None, (kind, name)
    for name in (f"{ns}:{full}-operator", f"{ns}:{full}-edit", f"{ns}:{full}-view"):
        assert _get(control_plane, "clusterrole", name) is not None, name
    assert _get(control_plane, "clusterrolebinding", f"{ns}:{full}-operator") is not None
    ca_before = _get(control_plane, "secret", f"{full}-ca", ns)
    assert ca_before is not None and ca_before["type"] == "kubernetes.io/tls"
    assert b"BEGIN CERTIFICATE" in base64.b64decode(ca_before["data"]["tls.crt"])
    # The hook's ServiceAccount, Role and Job are gone once it succeeded.
    for kind in ("job", "serviceaccount", "role", "rolebinding"):
        assert _get(control_plane, kind, f"{full}-ca-init", ns) is None, kind
    _assert_release_holds_no_ca(control_plane, release, ns, 1)

    with playing_hook_jobs(control_plane, ns, tmp_path) as played:
        out = cluster_helm.run(
            "upgrade", release, str(CHART), "-n", ns,
            "--set", "server.accountCreation=open",
            "--set", "operator.watchNamespaces={" + ns + "}",
        )  # fmt: skip
    assert [o.strip() for o in played.outputs] == [
        f"CA Secret {ns}/{full}-ca exists; left unchanged"
    ]
    _assert_release_holds_no_ca(control_plane, release, ns, 2)
    assert "STATUS: deployed" in out and "REVISION: 2" in out
    dep = _get(control_plane, "deployment", full, ns)
    assert dep is not None
    assert flag(containers(dep)["server"], "account-creation") == ["open"]
    assert flag(containers(dep)["operator"], "namespace") == [ns]
    assert _get(control_plane, "role", f"{full}-operator", ns) is not None
    # Confined to its namespace, the operator holds nothing cluster-wide any more.
    assert _get(control_plane, "clusterrole", f"{ns}:{full}-operator") is None
    # The generated CA is never regenerated (nor even rewritten).
    ca_after = _get(control_plane, "secret", f"{full}-ca", ns)
    assert ca_after is not None and ca_after["data"] == ca_before["data"]
    assert ca_after["metadata"]["resourceVersion"] == ca_before["metadata"]["resourceVersion"]

    out = cluster_helm.run("uninstall", release, "-n", ns)
    assert f'release "{release}" uninstalled' in out
    assert "These resources were kept due to the resource policy" in out
    for kind, name in [
        ("deployment", full),
        ("service", full),
        ("serviceaccount", f"{full}-operator"),
        ("role", f"{full}-operator"),
        ("networkpolicy", full),
    ]:
        assert _get(control_plane, kind, name, ns) is None, (kind, name)
    assert _get(control_plane, "clusterrole", f"{ns}:{full}-operator") is None
    assert _get(control_plane, "clusterrolebinding", f"{ns}:{full}-operator") is None
    # The CA (not part of the release) and the store (resource-policy: keep) outlive it.
    kept_ca = _get(control_plane, "secret", f"{full}-ca", ns)
    assert kept_ca is not None and kept_ca["data"] == ca_before["data"]
    assert _get(control_plane, "persistentvolumeclaim", f"{full}-data", ns) is not None


def _assert_release_holds_no_ca(cp: ControlPlane, release: str, ns: str, revision: int) -> None:
    """Helm's release Secret (the rendered manifests and hooks) holds no CA material."""
    secret = _get(cp, "secret", f"sh.helm.release.v1.{release}.v{revision}", ns)
    assert secret is not None
    payload = gzip.decompress(base64.b64decode(base64.b64decode(secret["data"]["release"])))
    text = json.loads(payload)["manifest"] + json.dumps(json.loads(payload).get("hooks"))
    assert "ensure-ca-secret" in text  # the hook is recorded, its product is not
    for needle in CA_MATERIAL:
        assert needle not in text, needle
