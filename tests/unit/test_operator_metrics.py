"""The operator's metrics, pure parts: closed label sets, the reconcile timer, the lag."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from acme_operator import metrics, reconcile

REG = metrics.REGISTRY


def _sample(name: str, **labels: str) -> float:
    value = REG.get_sample_value(name, labels)
    assert value is not None, (name, labels)
    return value


def test_every_ready_reason_reconcile_can_set_is_a_label() -> None:
    """The reason label is a closed set: a new reason in reconcile.py must be added to it."""
    source = Path(reconcile.__file__).read_text()
    set_there = set(re.findall(r'out\.reason(?:, out\.message)? = False, "(\w+)"', source))
    assert {"NoAllowedDomains", "Suspended", "KeyIDConflict"} <= set_there
    assert set_there | {"Reconciled"} <= set(metrics.READY_REASONS)
    assert metrics.reason_label("NoAllowedDomains") == "NoAllowedDomains"
    assert metrics.reason_label(None) == "Pending"
    assert metrics.reason_label("team-a/whatever") == "Other"


def test_registrations_gauge_counts_the_source_at_scrape_time() -> None:
    reasons: list[str | None] = ["Reconciled", "Reconciled", "NoAllowedDomains", None, "Weird"]
    metrics.watch_registrations(lambda: reasons)
    try:
        assert _sample("acme_operator_registrations", reason="Reconciled") == 2
        assert _sample("acme_operator_registrations", reason="NoAllowedDomains") == 1
        assert _sample("acme_operator_registrations", reason="Pending") == 1
        assert _sample("acme_operator_registrations", reason="Other") == 1
        assert _sample("acme_operator_registrations", reason="Suspended") == 0
        reasons.pop()
        assert _sample("acme_operator_registrations", reason="Other") == 0
    finally:
        metrics.watch_registrations(lambda: [])


def test_reconcile_timer_counts_outcome_and_duration() -> None:
    name = "acme_operator_reconciles_total"
    ready0 = _sample(name, kind="AllowedDomain", outcome="ready")
    error0 = _sample(name, kind="AllowedDomain", outcome="error")
    count0 = _sample("acme_operator_reconcile_duration_seconds_count", kind="AllowedDomain")
    with metrics.reconcile_timer("AllowedDomain") as outcome:
        outcome.value = "ready"
    with pytest.raises(RuntimeError), metrics.reconcile_timer("AllowedDomain") as outcome:
        outcome.value = "ready"
        raise RuntimeError("boom")
    assert _sample(name, kind="AllowedDomain", outcome="ready") == ready0 + 1
    assert _sample(name, kind="AllowedDomain", outcome="error") == error0 + 1
    count = _sample("acme_operator_reconcile_duration_seconds_count", kind="AllowedDomain")
    assert count == count0 + 2


def test_export_lag_and_counts() -> None:
    now = datetime(2026, 1, 1, tzinfo=UTC)
    assert metrics.lag_seconds(None, now) == 0
    assert metrics.lag_seconds(now - timedelta(seconds=90), now) == 90
    assert metrics.lag_seconds(now + timedelta(seconds=5), now) == 0  # clock skew
    before = _sample("acme_operator_certificate_exports_total", outcome="failed")
    metrics.count_exports("failed", 3)
    metrics.count_exports("failed", 0)
    assert _sample("acme_operator_certificate_exports_total", outcome="failed") == before + 3


def test_listen_address_is_checked() -> None:
    assert metrics.parse_listen("0.0.0.0:9091", "--metrics-listen") == ("0.0.0.0", 9091)
    assert metrics.parse_listen("[::1]:9091", "--metrics-listen") == ("::1", 9091)
    for bad in ("9091", ":9091", "host:http", "host:70000"):
        with pytest.raises(ValueError, match="HOST:PORT"):
            metrics.parse_listen(bad, "--metrics-listen")
