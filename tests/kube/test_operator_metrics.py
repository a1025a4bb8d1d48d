"""The operator's `--metrics-listen` against the real control plane: the series move with
real reconciles and a real export, and no label names a namespace or an object."""

from __future__ import annotations

import socket
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.infra.kube import ControlPlane
from tests.kube.operator_proc import (
    OperatorProcess,
    allowed_domain,
    apply,
    ensure_ca_root,
    insert_certificate,
    registration,
    store_url,
    wait_condition,
)
from tests.polling import wait_for
from tests.procs import free_port

__all__ = ["store_url"]  # fixture

ALLOWED_LABELS = {"kind", "outcome", "reason", "le"}

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def _scrape(url: str) -> tuple[str, Samples]:
    with urllib.request.urlopen(url, timeout=10) as resp:
        assert resp.status == 200
        assert resp.headers["Content-Type"].startswith("text/plain")
        text = resp.read().decode()
    samples: Samples = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            samples[(s.name, frozenset(s.labels.items()))] = s.value
    return text, samples


def _value(samples: Samples, name: str, **labels: str) -> float:
    return samples[(name, frozenset(labels.items()))]


def test_operator_metrics_move_with_reconciles_and_exports(
    control_plane: ControlPlane, kube_namespace: str, store_url: str, tmp_path: Path
) -> None:
    ns, cp = kube_namespace, control_plane
    assert cp.kubeconfig is not None
    port = free_port()
    url = f"http://127.0.0.1:{port}/metrics"
    op = OperatorProcess(
        cp.kubeconfig,
        store_url,
        tmp_path,
        namespaces=(ns,),
        extra_args=("--metrics-listen", f"127.0.0.1:{port}"),
    ).start()
    try:
        _, before = _scrape(url)
        assert _value(before, "acme_operator_export_lag_seconds") == 0
        assert _value(before, "acme_operator_registrations", reason="Reconciled") == 0
        for outcome in ("exported", "unchanged", "orphaned", "failed"):
            assert _value(before, "acme_operator_certificate_exports_total", outcome=outcome) == 0
        # The metrics are not on the liveness port.
        try:
            urllib.request.urlopen(op.health_url.replace("/healthz", "/metrics"), timeout=10)
            body = b""
        except urllib.error.HTTPError as exc:
            body = exc.read()
        assert b"acme_operator_" not in body

        apply(cp, ns, allowed_domain("metrics-dom", "granted", "metrics.example"))
        apply(cp, ns, registration("granted"))
        apply(cp, ns, registration("refused"))  # no AllowedDomain names it
        wait_condition(cp, ns, "acmeregistration", "granted", "True", "Reconciled")
        wait_condition(cp, ns, "acmeregistration", "refused", "False", "NoAllowedDomains")
        wait_condition(cp, ns, "alloweddomain", "metrics-dom", "True", "Active")

        def registrations_counted() -> Samples | None:
            _, s = _scrape(url)
            reg = "acme_operator_registrations"
            ok = (
                _value(s, reg, reason="Reconciled") == 1
                and _value(s, reg, reason="NoAllowedDomains") == 1
            )
            return s if ok else None

        after = wait_for("registrations by Ready reason", registrations_counted)
        rec = "acme_operator_reconciles_total"
        assert _value(after, rec, kind="AcmeRegistration", outcome="ready") >= 1
        assert _value(after, rec, kind="AcmeRegistration", outcome="not_ready") >= 1
        # The domain's handler ran (before its registration existed, most likely: not_ready;
        # the domain sweep, not the handler, then sets it Active).
        domain_runs = [
            _value(after, rec, kind="AllowedDomain", outcome=o) for o in ("ready", "not_ready")
        ]
        assert sum(domain_runs) >= 1
        assert _value(after, rec, kind="AcmeRegistration", outcome="error") == 0
        hist = "acme_operator_reconcile_duration_seconds_count"
        assert _value(after, hist, kind="AcmeRegistration") >= 2
        assert _value(after, "acme_operator_registrations", reason="Other") == 0

        # No CA root in the store yet: the certificate waits, and the lag shows it.
        insert_certificate(store_url, f"{ns}/granted", ["www.metrics.example"])
        time.sleep(1.5)
        _, waiting = _scrape(url)
        assert _value(waiting, "acme_operator_export_lag_seconds") >= 1
        exported = "acme_operator_certificate_exports_total"
        assert _value(waiting, exported, outcome="exported") == 0

        ensure_ca_root(store_url)

        def drained() -> Samples | None:
            _, s = _scrape(url)
            done = _value(s, exported, outcome="exported") == 1
            return s if done and _value(s, "acme_operator_export_lag_seconds") == 0 else None

        final = wait_for("certificate exported and the lag back to 0", drained)
        assert _value(final, exported, outcome="failed") == 0

        text, final = _scrape(url)
        for name, labels in final:
            if name.startswith("acme_operator_"):
                assert {k for k, _ in labels} <= ALLOWED_LABELS, (name, labels)
        for word in (ns, "granted", "refused", "metrics-dom"):
            assert word not in text
    finally:
        op.stop()
        print(op.logs())


def test_a_busy_metrics_port_is_one_line_not_a_traceback(
    control_plane: ControlPlane, kube_namespace: str, store_url: str, tmp_path: Path
) -> None:
    assert control_plane.kubeconfig is not None
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        op = OperatorProcess(
            control_plane.kubeconfig,
            store_url,
            tmp_path,
            namespaces=(kube_namespace,),
            extra_args=("--metrics-listen", f"127.0.0.1:{port}"),
        )
        with pytest.raises(RuntimeError, match="exited with 1") as failed:
            op.start()
    text = str(failed.value)
    assert f"cannot listen on 127.0.0.1:{port} for metrics" in text, text
    assert "Traceback" not in text, text
