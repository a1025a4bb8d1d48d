"""Run the real cert-manager controller out of cluster against the test control plane.

The binary is our small `main` over cert-manager's public packages (tools/certmanager),
built by tools/go-tools/build.sh. It runs with leader election off, metrics and liveness on
free loopback ports, and dns-01 self-checks sent only to the test's BIND server, exactly as
issue 4 asks of a user's out-of-cluster controller.
"""

from __future__ import annotations

import ctypes
import signal
import subprocess
from pathlib import Path

from tests.infra.kube import kubeconfig_env
from tests.procs import free_port, http_ok, log_tail, stop_process, wait_ready


def _die_with_parent() -> None:
    """Runs in the child before exec: a killed test run leaves no controller behind."""
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG


class CertManagerController:
    """One cert-manager controller process; `.start()` waits until /livez answers."""

    def __init__(
        self,
        binary: Path,
        kubeconfig: Path,
        log_dir: Path,
        *,
        dns01_nameserver: str,
        cluster_resource_namespace: str,
        workers: int = 20,
        feature_gates: str | None = None,
    ) -> None:
        self.binary = binary
        self.kubeconfig = kubeconfig
        self.log_path = log_dir / "cert-manager-controller.log"
        self.dns01_nameserver = dns01_nameserver
        self.cluster_resource_namespace = cluster_resource_namespace
        self.workers = workers
        self.feature_gates = feature_gates
        self.metrics_port = free_port()
        self.healthz_port = free_port()
        self.proc: subprocess.Popen[bytes] | None = None

    def command(self) -> list[str]:
        return [
            str(self.binary),
            f"--kubeconfig={self.kubeconfig}",
            "--leader-elect=false",
            f"--metrics-listen-address=127.0.0.1:{self.metrics_port}",
            f"--healthz-listen-address=127.0.0.1:{self.healthz_port}",
            f"--cluster-resource-namespace={self.cluster_resource_namespace}",
            f"--dns01-recursive-nameservers={self.dns01_nameserver}",
            "--dns01-recursive-nameservers-only",
            # Every dns-01 check blocks a worker for cert-manager's fixed 60 s wait: enough
            # workers let all the suite's challenges wait at the same time.
            f"--concurrent-workers={self.workers}",
            "--v=2",
        ] + ([f"--feature-gates={self.feature_gates}"] if self.feature_gates else [])

    def start(self, timeout: float = 60) -> CertManagerController:
        env = kubeconfig_env(self.kubeconfig)
        with self.log_path.open("ab") as log:
            self.proc = subprocess.Popen(
                self.command(),
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                env=env,
                preexec_fn=_die_with_parent,
            )
        try:
            wait_ready(
                self.proc,
                "cert-manager controller",
                http_ok(f"http://127.0.0.1:{self.healthz_port}/livez"),
                self.log_tail,
                timeout,
            )
        except RuntimeError:
            self.stop()
            raise
        return self

    def stop(self) -> None:
        if self.proc is None:
            return
        stop_process(self.proc)
        self.proc = None

    def log_tail(self, lines: int = 80) -> str:
        return log_tail(self.log_path, lines)
