"""acme_server/metrics.py across processes: after `enable_multiprocess`, forked workers'
counts add up in one exposition, a dead worker's live gauges leave it and its counters stay.
Runs in a child interpreter: switching prometheus_client's storage is process-wide."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

from acme_server import metrics

SCRIPT = textwrap.dedent(
    """
    import os, sys
    from pathlib import Path
    from prometheus_client.parser import text_string_to_metric_families
    from acme_server import metrics

    held = metrics.STORE_UNIT_SECONDS.labels("read")  # made before the switch, as executors do
    metrics.enable_multiprocess(Path(sys.argv[1]))

    def child(n):
        pid = os.fork()
        if pid == 0:
            for _ in range(n):
                metrics.CERTIFICATES_ISSUED.inc()
                held.observe(0.01)
            metrics.OPEN_CONNECTIONS.set(n)
            metrics.JWK_CACHE_ENTRIES.set(n)
            os._exit(0)
        os.waitpid(pid, 0)
        return pid

    first, second = child(3), child(4)
    values = lambda: {
        s.name + str(sorted(s.labels.items())): s.value
        for f in text_string_to_metric_families(metrics.exposition().decode())
        for s in f.samples
    }
    before = values()
    metrics.mark_dead(first)
    after = values()
    print(before["acme_gateway_certificates_issued_total[]"])
    print(before["acme_gateway_store_unit_duration_seconds_count[('kind', 'read')]"])
    print(before["acme_gateway_open_connections[]"], before["acme_gateway_jwk_cache_entries[]"])
    print(after["acme_gateway_certificates_issued_total[]"], after["acme_gateway_open_connections[]"])
    """
)


def test_forked_workers_add_up_and_dead_ones_drop_their_gauges(tmp_path: Path) -> None:
    out = subprocess.run(
        [sys.executable, "-c", SCRIPT, str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    ).stdout.split("\n")
    assert out[0] == "7.0"  # both workers' counters
    assert out[1] == "7.0"  # a child held before the switch counts too
    assert out[2] == "7.0 4.0"  # livesum adds, livemax keeps the largest
    assert out[3] == "7.0 4.0"  # the dead worker's counter stays, its gauge goes


def test_method_label_is_a_closed_set() -> None:
    assert metrics.method_label("POST") == "POST"
    assert metrics.method_label("PROPFIND") == "other"
    assert metrics.method_label("x" * 1000) == "other"


def test_not_multiprocess_in_a_single_process() -> None:
    assert metrics.multiprocess_dir() is None
    assert b"acme_gateway_http_requests_total" in metrics.exposition()
