"""Running the real operator out of cluster with the chart's own ServiceAccount token.

The test control plane runs no Pods, so the operator container the chart deploys is played
by a local `acme-gateway-operator` process holding exactly the credentials that container
would get: a token of the chart's ServiceAccount (`kubectl create token`), hence exactly the
chart's RBAC.
"""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from tests.infra.kube import ControlPlane, kubeconfig_env
from tests.procs import free_port, http_ok, stop_process, wait_ready

OPERATOR = Path(sys.executable).parent / "acme-gateway-operator"
GATEWAY = Path(sys.executable).parent / "acme-gateway"


def kubectl_as(cp: ControlPlane, kubeconfig: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """kubectl with another identity (never raises; callers assert on the result)."""
    assert cp.binaries is not None
    return subprocess.run(
        [str(cp.binaries.kubectl), "--kubeconfig", str(kubeconfig), *args],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def local_args(container: dict[str, Any], data_dir: Path, port: int) -> list[str]:
    """A chart container's args made runnable here: its /data on data_dir, its listen or
    health address on 127.0.0.1:port, everything else exactly as the chart renders it."""
    out = []
    ports = iter([port])  # the first listen address gets `port`, any other a free one
    for arg in container.get("args", []):
        name, sep, value = arg.partition("=")
        if sep and value.startswith("0.0.0.0:"):
            arg = f"{name}=127.0.0.1:{next(ports, None) or free_port()}"
        elif sep and (value == "/data" or value.startswith("/data/")):
            arg = f"{name}={data_dir}{value[len('/data') :]}"
        out.append(arg)
    return out


def run_migrate_init(deployment: dict[str, Any], data_dir: Path) -> str:
    """The server Pod's `store-migrate` init container as a local process (the chart's one
    migration step, which runs before the operator container starts); returns its output."""
    inits = {c["name"]: c for c in deployment["spec"]["template"]["spec"]["initContainers"]}
    init = inits["store-migrate"]
    assert init["args"][:2] == ["store", "migrate"], init["args"]
    done = subprocess.run(
        [str(GATEWAY), *local_args(init, data_dir, free_port())],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout


@contextmanager
def running_operator(
    container: dict[str, Any], kubeconfig: Path, data_dir: Path, log: Path
) -> Iterator[subprocess.Popen[bytes]]:
    """The chart's operator container as a local process (its command and args, with /data
    and the health port rewritten), on a SQLite store in data_dir; healthy before yielding."""
    assert container["command"] == ["acme-gateway-operator"], container["command"]
    assert OPERATOR.exists(), f"{OPERATOR} missing: run `uv sync`"
    port = free_port()
    argv = [str(OPERATOR), *local_args(container, data_dir, port), "--export-interval=1"]
    env = kubeconfig_env(kubeconfig)
    with log.open("ab") as out:
        proc = subprocess.Popen(
            argv, stdout=out, stderr=subprocess.STDOUT, env=env, start_new_session=True
        )
    try:
        wait_ready(
            proc,
            "operator",
            http_ok(f"http://127.0.0.1:{port}/healthz"),
            lambda: log.read_text()[-4000:],
        )
        yield proc
    finally:
        stop_process(proc, group=True)


def forbidden_lines(log: Path, allowed: Sequence[str] = ()) -> list[str]:
    """Log lines reporting a refused API call, except the expected ones."""
    return [
        line
        for line in log.read_text(errors="replace").splitlines()
        if ("forbidden" in line.lower() or " 403" in line) and not any(a in line for a in allowed)
    ]
