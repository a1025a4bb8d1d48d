"""The bench's load generator runs complete flows against ours and Pebble and its figures
parse. Counts and positivity only: speed is measured by `make bench`, never by a test."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from bench.compare import KINDS, kinds_table, load_results, table
from bench.loadrun import LoadOptions, RunResult, run_load
from bench.peers import ChallTestSrv, Ours, Pebble, go_tool
from tests.procs import free_port


@pytest.fixture(scope="module")
def loadgen() -> Path:
    return go_tool("loadgen")  # builds it (cached); a failed build fails the test


@pytest.fixture(scope="module")
def dns(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ChallTestSrv]:
    srv = ChallTestSrv(tmp_path_factory.mktemp("challtestsrv")).start()
    yield srv
    srv.stop()


def assert_complete(result: RunResult, count: int) -> None:
    lg = result.loadgen
    assert lg["issued"] == count, lg["error_samples"]
    assert (lg["stalls"], lg["retryable_errors"], lg["other_errors"]) == (0, 0, 0)
    assert lg["not_started"] == 0
    assert set(KINDS) <= set(lg["latency"]), lg["latency"].keys()
    assert lg["latency"]["newOrder"]["n"] == count
    assert lg["latency"]["certificate"]["n"] == count
    assert lg["requests_per_cert"] >= len(KINDS)  # at least one request of each kind
    assert lg["certs_per_second"] > 0 and lg["client_cpu_seconds"] > 0
    assert result.server_cpu_s > 0
    assert result.cpu_ms_per_cert is not None and result.cpu_ms_per_cert > 0


def test_ours_and_pebble(loadgen: Path, dns: ChallTestSrv, tmp_path: Path) -> None:
    http01 = free_port()
    results = []
    ours = Ours("ours-sqlite", tmp_path / "ours", dns.resolver, http01).start()
    try:
        opts = LoadOptions(count=4, concurrency=2, http01_port=http01, run_timeout_s=120)
        results.append(run_load(loadgen, ours, opts, tmp_path / "ours.log"))
    finally:
        ours.stop()
    assert_complete(results[0], 4)
    pebble = Pebble(tmp_path / "pebble", dns.resolver, http01).start()
    try:
        # Pebble needs ~4 ms of CPU per certificate: enough certificates for clock ticks.
        opts = LoadOptions(count=12, concurrency=2, http01_port=http01, run_timeout_s=120)
        results.append(run_load(loadgen, pebble, opts, tmp_path / "pebble.log"))
    finally:
        pebble.stop()
    assert_complete(results[1], 12)
    rows = table(results).splitlines()
    assert len(rows) == 4 and rows[2].startswith("| ours-sqlite | 2 |")
    cells = [c.strip() for c in rows[2].strip("|").split("|")]
    # Ratios against step-ca are blank (not run); against Pebble (same level) they are numbers.
    assert cells[8] == cells[10] == "—"
    assert float(cells[9]) > 0 and float(cells[11]) > 0
    assert len(kinds_table(results).splitlines()) == 4
    # `compare.py --table FILE` reprints the same table from the JSON it wrote.
    saved = tmp_path / "results.json"
    saved.write_text(json.dumps({"results": [r.as_dict() for r in results]}))
    assert table(load_results(saved)) == table(results)


def test_ours_with_eab(loadgen: Path, dns: ChallTestSrv, tmp_path: Path) -> None:
    http01 = free_port()
    ours = Ours("ours-sqlite", tmp_path / "ours", dns.resolver, http01, eab=True).start()
    try:
        assert ours.eab is not None
        opts = LoadOptions(count=2, concurrency=2, http01_port=http01, run_timeout_s=120)
        assert_complete(run_load(loadgen, ours, opts, tmp_path / "eab.log"), 2)
        # Without the binding the pre-registered server refuses the accounts: the load
        # generator really sends it, and fails loudly when it cannot create accounts.
        ours.eab = None
        with pytest.raises(RuntimeError, match="exited with 1"):
            run_load(loadgen, ours, opts, tmp_path / "no-eab.log")
        assert "externalAccountRequired" in (tmp_path / "no-eab.log").read_text()
    finally:
        ours.stop()
