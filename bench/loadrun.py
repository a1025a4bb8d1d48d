"""One load-generator run against one started server, with the server's CPU time measured
over exactly the issuance phase (accounts are created before the first CPU reading)."""

from __future__ import annotations

import json
import os
import select
import signal
import subprocess
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from bench.peers import Server
from bench.procstat import tree_cpu_seconds
from tests.infra.bind import die_with_parent


@dataclass
class LoadOptions:
    count: int = 200
    concurrency: int = 10
    http01_port: int = 5002
    suffix: str = "bench.test"
    poll_ms: int = 50
    flow_timeout_s: float = 60.0
    run_timeout_s: float = 300.0
    max_stalls: int | None = None  # default: the concurrency (every client stalled once)


@dataclass
class RunResult:
    """The load generator's JSON plus the CPU figures measured here."""

    server: str
    concurrency: int
    loadgen: dict[str, Any]
    server_cpu_s: float
    cpu_by_root_s: dict[str, float] = field(default_factory=dict)
    loadavg_1m: float = 0.0  # the machine's load right after the run (others share it)
    log: str = ""  # server log kept under bench/results/ when flows stalled or failed

    @property
    def issued(self) -> int:
        return int(self.loadgen["issued"])

    @property
    def cpu_ms_per_cert(self) -> float | None:
        return 1000 * self.server_cpu_s / self.issued if self.issued else None

    @property
    def certs_per_s(self) -> float:
        return float(self.loadgen["certs_per_second"])

    def as_dict(self) -> dict[str, Any]:
        return {**asdict(self), "cpu_ms_per_cert": self.cpu_ms_per_cert}


def _read_line(proc: subprocess.Popen[str], deadline: float) -> str:
    """A stdout line from the load generator, or an error once it exits or the deadline passes."""
    assert proc.stdout is not None
    while True:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise TimeoutError("load generator did not answer in time")
        ready, _, _ = select.select([proc.stdout], [], [], min(remaining, 1.0))
        if ready:
            line = proc.stdout.readline()
            if line:
                return line
            proc.wait(timeout=10)
            raise RuntimeError(f"load generator exited with {proc.returncode}")


def run_load(loadgen: Path, server: Server, opts: LoadOptions, log: Path) -> RunResult:
    """Run `loadgen` against `server` and return its figures; the server keeps running."""
    cmd = [
        str(loadgen),
        *("-directory", server.directory_url, "-ca-bundle", str(server.ca_bundle)),
        *("-count", str(opts.count), "-concurrency", str(opts.concurrency)),
        *("-http01-listen", f"127.0.0.1:{opts.http01_port}", "-poll", f"{opts.poll_ms}ms"),
        *("-suffix", opts.suffix),
        *("-flow-timeout", f"{opts.flow_timeout_s}s", "-run-timeout", f"{opts.run_timeout_s}s"),
        *("-max-stalls", str(opts.max_stalls or opts.concurrency)),
        "-wait-go",
    ]
    if server.eab is not None:
        cmd += ["-eab-kid", server.eab[0], "-eab-hmac", server.eab[1]]
    deadline = time.monotonic() + opts.run_timeout_s + 2 * opts.flow_timeout_s + 60
    with log.open("a") as err:
        proc = subprocess.Popen(
            cmd,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=err,
            text=True,
            preexec_fn=die_with_parent(signal.SIGTERM),
        )
    try:
        phase = json.loads(_read_line(proc, deadline))
        if phase.get("phase") != "accounts-ready":
            raise RuntimeError(f"unexpected load generator output: {phase}")
        roots = server.cpu_roots()
        before = {pid: tree_cpu_seconds(pid) for pid in roots}
        assert proc.stdin is not None
        proc.stdin.write("go\n")
        proc.stdin.flush()
        result = json.loads(_read_line(proc, deadline))
        by_root = {str(pid): tree_cpu_seconds(pid) - before[pid] for pid in roots}
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    return RunResult(
        server=server.name,
        concurrency=opts.concurrency,
        loadgen=result,
        server_cpu_s=sum(by_root.values()),
        cpu_by_root_s=by_root,
        loadavg_1m=os.getloadavg()[0],
    )
