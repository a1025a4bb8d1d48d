"""The chart's `server.profiles` becomes the file `serve --profiles` reads: rendered by real
helm, parsed by the server's own loader, mounted where the flag points."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest
import yaml

from acme_server.profile_config import load_profiles
from tests.helm.chart import Helm, containers, flag, one, parse_manifests, write_values
from tests.infra.gotools import GoToolError, ensure_helm

CHART = Path(__file__).resolve().parents[2] / "helm" / "acme-gateway"


@pytest.fixture(scope="module")
def helm(tmp_path_factory: pytest.TempPathFactory) -> Helm:
    try:
        binary = ensure_helm()
    except GoToolError as exc:
        pytest.fail(f"cannot build helm:\n{exc}", pytrace=False)
    return Helm(binary, tmp_path_factory.mktemp("helm-home"))


def test_chart_profiles_value_is_the_servers_file(helm: Helm, tmp_path: Path) -> None:
    values = {
        "server": {
            "profiles": {
                "default": "default",
                "profiles": {"tlsclient": {"enabled": True}, "shortlived": {"validity": "3d"}},
            }
        }
    }
    docs = parse_manifests(
        helm.run("template", "t", str(CHART), "-f", str(write_values(tmp_path, "v", values)))
    )
    config = one(docs, "ConfigMap", "t-acme-gateway-profiles")
    path = tmp_path / "profiles.yaml"
    path.write_text(config["data"]["profiles.yaml"])
    assert yaml.safe_load(path.read_text()) == values["server"]["profiles"]
    loaded = load_profiles(path, timedelta(days=90))
    assert set(loaded.meta()) == {"default", "shortlived", "tlsclient"}
    assert loaded.profiles["shortlived"].validity == timedelta(days=3)

    deployment = one(docs, "Deployment", "t-acme-gateway")
    server = containers(deployment)["server"]
    assert flag(server, "profiles") == ["/etc/acme-gateway/profiles/profiles.yaml"]
    mounts = {m["name"]: m["mountPath"] for m in server["volumeMounts"]}
    assert mounts["profiles"] == "/etc/acme-gateway/profiles"
    volumes = {v["name"]: v for v in deployment["spec"]["template"]["spec"]["volumes"]}
    assert volumes["profiles"]["configMap"]["name"] == "t-acme-gateway-profiles"
    assert "checksum/profiles" in deployment["spec"]["template"]["metadata"]["annotations"]


def test_chart_without_profiles_renders_no_file(helm: Helm) -> None:
    docs = parse_manifests(helm.run("template", "t", str(CHART)))
    assert not [d for d in docs if d["kind"] == "ConfigMap" and "profiles" in d["metadata"]["name"]]
    server = containers(one(docs, "Deployment", "t-acme-gateway"))["server"]
    assert flag(server, "profiles") == []


def test_chart_refuses_unknown_profiles_keys(helm: Helm, tmp_path: Path) -> None:
    values: dict[str, object] = {"server": {"profiles": {"profile": {}}}}
    out = helm.refused(
        "template", "t", str(CHART), "-f", str(write_values(tmp_path, "bad", values))
    )
    assert "profile" in out and "additional properties" in out.lower(), out
