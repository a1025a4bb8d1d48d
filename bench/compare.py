"""Full ACME flows against Pebble, step-ca and ours (SQLite, PostgreSQL) in one run.

For each server and concurrency level a fresh server is started, the Go load generator
(bench/loadgen) creates one account per client and then runs COUNT certificate flows on
random names; the server's CPU time (whole process tree, plus PostgreSQL's for ours on
PostgreSQL) is read from /proc around the issuance phase. Prints one table with the ratios
ours/step-ca and ours/Pebble and writes the figures as JSON under bench/results/.
Loopback only; every process is stopped at the end, also on Ctrl-C.

    .venv/bin/python bench/compare.py [--quick] [--count 200] [--concurrency 10,50,200]
        [--servers pebble,step-ca,ours-sqlite,ours-postgres] [--workers N]
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import json
import os
import platform
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import traceback
from collections.abc import Iterator
from pathlib import Path
from types import FrameType
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from bench.loadrun import LoadOptions, RunResult, run_load
from bench.peers import ChallTestSrv, Ours, Pebble, Server, StepCA, go_tool, serve_supports
from tests.infra.postgres import PostgresServer
from tests.procs import free_port

SERVERS = ("pebble", "step-ca", "ours-sqlite", "ours-postgres")
PEERS = ("step-ca", "pebble")
KINDS = ("newOrder", "authz", "challenge", "pollAuthz", "finalize", "pollOrder", "certificate")
RESULTS = Path(__file__).resolve().parent / "results"


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--quick", action="store_true", help="one level (10 clients), 50 certificates")
    p.add_argument("--count", type=int, default=None, help="certificates per run (default 200)")
    p.add_argument("--concurrency", default=None, help="comma-separated levels (10,50,200)")
    p.add_argument("--servers", default=",".join(SERVERS), help="subset of " + ",".join(SERVERS))
    p.add_argument(
        "--workers", type=int, default=2, help="ours: serve --workers N, if serve has it"
    )
    p.add_argument(
        "--eab", action="store_true", help="ours: pre-registered accounts with EAB (default open)"
    )
    p.add_argument("--poll-ms", type=int, default=50, help="client poll interval (all servers)")
    p.add_argument("--flow-timeout", type=float, default=60.0, help="seconds; longer = stall")
    p.add_argument("--run-timeout", type=float, default=300.0, help="seconds per run")
    p.add_argument("--output", type=Path, default=None, help="JSON file (default bench/results/)")
    p.add_argument("--table", type=Path, default=None, help="only print the tables of a JSON file")
    args = p.parse_args(argv)
    args.count = args.count or (50 if args.quick else 200)
    levels = args.concurrency or ("10" if args.quick else "10,50,200")
    args.levels = [int(c) for c in levels.split(",")]
    args.server_list = [s.strip() for s in args.servers.split(",") if s.strip()]
    unknown = set(args.server_list) - set(SERVERS)
    if unknown:
        p.error(f"unknown servers {sorted(unknown)}; choose from {SERVERS}")
    return args


def _sigterm(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt  # unwinds through every `with`, which stops every process


@contextlib.contextmanager
def started(server: Any) -> Iterator[Any]:
    try:
        yield server.start()
    finally:
        server.stop()


def postmaster_pid(pg: PostgresServer) -> int:
    """The postmaster, whose tree (one backend per connection) is ours on PostgreSQL too."""
    assert pg.cluster_dir is not None
    return int((pg.cluster_dir / "postmaster.pid").read_text().split()[0])


def run_all(args: argparse.Namespace, work: Path, stack: contextlib.ExitStack) -> list[RunResult]:
    loadgen = go_tool("loadgen")
    stepca = go_tool("stepca") if "step-ca" in args.server_list else None
    workers = args.workers_used
    dns = stack.enter_context(started(ChallTestSrv(work / "challtestsrv")))
    pg: PostgresServer | None = None
    if "ours-postgres" in args.server_list:
        pg = stack.enter_context(PostgresServer())
        pg.start(work / "postgres")
    http01 = free_port()
    results: list[RunResult] = []
    for name in args.server_list:
        for level in args.levels:
            run_dir = work / f"{name}-c{level}"
            server: Server
            if name == "pebble":
                server = Pebble(run_dir, dns.resolver, http01)
            elif name == "step-ca":
                assert stepca is not None
                server = StepCA(run_dir, stepca, dns.resolver, http01)
            else:
                database: str | None = None
                roots: tuple[int, ...] = ()
                if name == "ours-postgres":
                    assert pg is not None
                    database, roots = pg.create_database(), (postmaster_pid(pg),)
                server = Ours(
                    name,
                    run_dir,
                    dns.resolver,
                    http01,
                    database=database,
                    workers=workers,
                    extra_cpu_roots=roots,
                    eab=args.eab,
                )
            opts = LoadOptions(
                count=args.count,
                concurrency=level,
                http01_port=http01,
                poll_ms=args.poll_ms,
                flow_timeout_s=args.flow_timeout,
                run_timeout_s=args.run_timeout,
            )
            print(f"== {name}, {level} clients, {args.count} certificates", file=sys.stderr)
            began = time.monotonic()
            with started(server):
                try:
                    result = run_load(loadgen, server, opts, run_dir / "loadgen.log")
                except (RuntimeError, TimeoutError, OSError) as exc:
                    print(f"   failed: {exc}", file=sys.stderr)
                    keep_log(server, args.stamp, level)
                    continue
                lg = result.loadgen
                if lg["stalls"] or lg["retryable_errors"] or lg["other_errors"]:
                    result.log = str(keep_log(server, args.stamp, level))
            results.append(result)
            print(
                f"   {lg['issued']} issued, {lg['stalls']} stalls, "
                f"{lg['retryable_errors'] + lg['other_errors']} errors, "
                f"{result.certs_per_s:.1f} certs/s, {_fmt(result.cpu_ms_per_cert)} ms CPU/cert "
                f"({time.monotonic() - began:.0f} s with start/stop)",
                file=sys.stderr,
            )
    return results


def keep_log(server: Server, stamp: str, level: int) -> Path:
    """Copy the server's log (for Go peers with a goroutine dump) to bench/results/."""
    kept = RESULTS / f"compare-{stamp}-{server.name}-c{level}.log"
    kept.parent.mkdir(parents=True, exist_ok=True)
    with contextlib.suppress(OSError):
        shutil.copyfile(server.diagnose(), kept)
    print(f"   server log kept: {kept}", file=sys.stderr)
    return kept


def _fmt(value: float | None, digits: int = 1) -> str:
    return "—" if value is None else f"{value:.{digits}f}"


def _ratio(ours: float | None, peer: float | None) -> str:
    if ours is None or not peer:
        return "—"
    return f"{ours / peer:.2f}"


def table(results: list[RunResult]) -> str:
    """The main table (markdown): one row per server and concurrency level."""
    by_key = {(r.server, r.concurrency): r for r in results}
    head = (
        "| server | clients | certs/s | CPU ms/cert | p99 request ms | p99 flow ms | stalls | errors "
        "| CPU/cert ours÷step-ca | ours÷Pebble | certs/s ours÷step-ca | ours÷Pebble |"
    )
    lines = [head, "|" + "---|" * 12]
    for r in results:
        lg = r.loadgen
        ratios = ["", "", "", ""]
        if r.server.startswith("ours"):
            peers = [by_key.get((p, r.concurrency)) for p in PEERS]
            cpu = [_ratio(r.cpu_ms_per_cert, p.cpu_ms_per_cert if p else None) for p in peers]
            rate = [_ratio(r.certs_per_s, p.certs_per_s if p else None) for p in peers]
            # A peer run with stalls has no meaningful rate to compare with.
            rate = [
                "stalled" if p and p.loadgen["stalls"] else cell
                for p, cell in zip(peers, rate, strict=True)
            ]
            ratios = [*cpu, *rate]
        errors = lg["retryable_errors"] + lg["other_errors"]
        cpu_cell = _fmt(r.cpu_ms_per_cert)
        if len(r.cpu_by_root_s) > 1 and r.issued:  # ours on PostgreSQL: server + database
            server, *db = (1000 * s / r.issued for s in r.cpu_by_root_s.values())
            cpu_cell += f" ({server:.1f} + {sum(db):.1f} DB)"
        stalls = str(lg["stalls"])
        if lg["not_started"]:
            stalls += f" (+{lg['not_started']} not started)"
        flow_p99 = f"{lg['flow']['p99_ms']:.0f}" if lg["flow"]["n"] else "—"
        lines.append(
            f"| {r.server} | {r.concurrency} | {r.certs_per_s:.1f} | {cpu_cell} "
            f"| {lg['all_requests']['p99_ms']:.0f} | {flow_p99} "
            f"| {stalls} | {errors} | " + " | ".join(ratios) + " |"
        )
    return "\n".join(lines)


def kinds_table(results: list[RunResult]) -> str:
    """Per request kind, p50/p99 latency in ms, and requests per certificate."""
    lines = [
        "| server | clients | req/cert | " + " | ".join(KINDS) + " |",
        "|" + "---|" * (3 + len(KINDS)),
    ]
    for r in results:
        lat = r.loadgen["latency"]
        cells = [
            f"{lat[k]['p50_ms']:.0f}/{lat[k]['p99_ms']:.0f}" if k in lat else "—" for k in KINDS
        ]
        lines.append(
            f"| {r.server} | {r.concurrency} | {r.loadgen['requests_per_cert']:.1f} | "
            + " | ".join(cells)
            + " |"
        )
    return "\n".join(lines)


def machine() -> dict[str, Any]:
    model = ""
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    commit = subprocess.run(
        ["git", "describe", "--always", "--dirty"], capture_output=True, text=True, check=False
    ).stdout.strip()
    return {
        "cpus": os.cpu_count(),
        "cpu_model": model,
        "kernel": platform.release(),
        "commit": commit,
    }


def load_results(path: Path) -> list[RunResult]:
    """The runs of a JSON file this script wrote."""
    runs = json.loads(path.read_text())["results"]
    fields = set(RunResult.__dataclass_fields__)
    return [RunResult(**{k: v for k, v in run.items() if k in fields}) for run in runs]


def print_tables(results: list[RunResult]) -> None:
    print(table(results))
    print()
    print("Latency per request kind, p50/p99 ms:")
    print(kinds_table(results))


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.table:
        print_tables(load_results(args.table))
        return 0
    signal.signal(signal.SIGTERM, _sigterm)
    args.workers_used = args.workers if serve_supports("--workers") else None
    now = datetime.datetime.now(datetime.UTC)
    args.stamp = f"{now:%Y%m%dT%H%M%SZ}"
    results: list[RunResult] = []
    try:
        with tempfile.TemporaryDirectory(prefix="acme-bench-") as tmp, contextlib.ExitStack() as st:
            results = run_all(args, Path(tmp), st)
    except KeyboardInterrupt:
        print("interrupted; every process stopped", file=sys.stderr)
        return 130
    except Exception:
        traceback.print_exc()
        return 1
    report = {
        "date": now.isoformat(timespec="seconds"),
        "machine": machine(),
        "args": {
            "count": args.count,
            "concurrency": args.levels,
            "servers": args.server_list,
            "workers": args.workers_used,  # None: this serve has no --workers
            "eab": args.eab,
            "poll_ms": args.poll_ms,
        },
        "results": [r.as_dict() for r in results],
    }
    out = args.output or RESULTS / f"compare-{args.stamp}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=2))
    print_tables(results)
    print(f"\nJSON: {out}")
    complete = len(results) == len(args.server_list) * len(args.levels)
    return 0 if complete else 1


if __name__ == "__main__":
    sys.exit(main())
