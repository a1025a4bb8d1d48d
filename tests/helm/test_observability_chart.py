"""The chart's alert rules, Grafana dashboard and log options (issue 14): the PrometheusRule
and the dashboard ConfigMap carry files/alerts.yaml and files/dashboard.json unchanged (the
files the promtool and real-Prometheus tests in tests/observe check), with the labels
prometheus-operator and Grafana's sidecar select by; both are off by default; the server and
the operator get the same --log-level/--log-format."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import yaml

from tests.helm.chart import CHART, Helm, containers, find, flag, one
from tests.helm.test_chart import render
from tests.helm.values_sets import FULLNAME

OBSERVABILITY: dict[str, Any] = {
    "metrics": {
        "prometheusRule": {"enabled": True, "labels": {"release": "prom"}},
        "dashboard": {"enabled": True, "annotations": {"grafana_folder": "PKI"}},
    },
    "logging": {"level": "debug", "format": "text"},
}


def test_rules_and_dashboard_ship_unchanged(helm: Helm, tmp_path: Path) -> None:
    docs = render(helm, tmp_path, "observability", OBSERVABILITY)
    rule = one(docs, "PrometheusRule")
    assert rule["metadata"]["name"] == FULLNAME
    assert rule["metadata"]["labels"]["release"] == "prom"
    assert rule["spec"] == yaml.safe_load((CHART / "files" / "alerts.yaml").read_text())
    # Prometheus' own templates reach the rule as written (Helm does not render the file).
    annotations = [
        r["annotations"]["description"] for g in rule["spec"]["groups"] for r in g["rules"]
    ]
    assert any("{{ $value | humanizeDuration }}" in a for a in annotations)

    board = one(docs, "ConfigMap", f"{FULLNAME}-dashboard")
    assert board["metadata"]["labels"]["grafana_dashboard"] == "1"
    assert board["metadata"]["annotations"] == {"grafana_folder": "PKI"}
    shipped = json.loads(board["data"]["acme-gateway.json"])
    assert shipped == json.loads((CHART / "files" / "dashboard.json").read_text())

    dep = one(docs, "Deployment")
    server, operator = containers(dep)["server"], containers(dep)["operator"]
    assert server["args"][:3] == ["--log-level=debug", "--log-format=text", "serve"]
    assert flag(operator, "log-level") == ["debug"]
    assert flag(operator, "log-format") == ["text"]


def test_rules_and_dashboard_are_opt_in(helm: Helm, tmp_path: Path) -> None:
    default = render(helm, tmp_path, "default", {})
    assert not find(default, "PrometheusRule")
    assert not find(default, "ConfigMap", f"{FULLNAME}-dashboard")
    no_metrics = render(helm, tmp_path, "no-metrics", {**OBSERVABILITY, "metrics": {
        **OBSERVABILITY["metrics"], "enabled": False}})  # fmt: skip
    assert not find(no_metrics, "PrometheusRule")
    assert not find(no_metrics, "ConfigMap", f"{FULLNAME}-dashboard")
