"""The chart runs the operator with its metrics listener (its own port, apart from the
liveness port and the server's metrics port) when metrics.enabled, and without it when not."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from tests.helm.chart import (
    CHART,
    Helm,
    Manifest,
    containers,
    flag,
    one,
    parse_manifests,
    write_values,
)
from tests.helm.values_sets import FULLNAME, NAMESPACE, RELEASE

POSTGRESQL = {"store": {"type": "postgresql", "postgresql": {"existingSecret": "acme-db"}}}


def _deployment(helm: Helm, tmp_path: Path, values: dict[str, Any], name: str) -> Manifest:
    out = helm.run(
        "template", RELEASE, str(CHART), "--namespace", NAMESPACE,
        "-f", str(write_values(tmp_path, "values", values)),
    )  # fmt: skip
    return one(parse_manifests(out), "Deployment", name)


def _operator(helm: Helm, tmp_path: Path, values: dict[str, Any]) -> Manifest:
    name = (
        FULLNAME if values.get("store", {}).get("type") != "postgresql" else f"{FULLNAME}-operator"
    )
    return containers(_deployment(helm, tmp_path, values, name))["operator"]


@pytest.mark.parametrize("store", ["sqlite", "postgresql"])
def test_operator_metrics_listener_follows_metrics_enabled(
    helm: Helm, tmp_path: Path, store: str
) -> None:
    base: dict[str, Any] = dict(POSTGRESQL) if store == "postgresql" else {}
    op = _operator(helm, tmp_path, base)
    assert flag(op, "metrics-listen") == ["0.0.0.0:9091"]
    ports = {p["name"]: p["containerPort"] for p in op["ports"]}
    assert ports["op-metrics"] == 9091
    assert ports["health"] != 9091
    if store == "sqlite":  # one Pod with the server: its metrics listener is another port
        server = containers(_deployment(helm, tmp_path, base, FULLNAME))["server"]
        assert flag(server, "metrics-listen") == ["0.0.0.0:9090"]
    assert flag(op, "health-listen") == [f"0.0.0.0:{ports['health']}"]

    op = _operator(helm, tmp_path, {**base, "operator": {"metricsPort": 9191}})
    assert flag(op, "metrics-listen") == ["0.0.0.0:9191"]

    op = _operator(helm, tmp_path, {**base, "metrics": {"enabled": False}})
    assert flag(op, "metrics-listen") == []
    assert "op-metrics" not in {p["name"] for p in op["ports"]}
