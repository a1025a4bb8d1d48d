"""The long-running processes one harness part starts (etcd, kube-apiserver, containerd,
kubelet...): each in a process group of its own that dies with the test run, logging to a
file of its own; stopped newest first, and their logs' tails for failure reports."""

from __future__ import annotations

import ctypes
import os
import signal
import subprocess
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

LOG_TAIL_LINES = 60


def die_with_parent() -> None:
    """Runs in the child before exec: SIGKILL it when the starting thread dies."""
    os.setsid()
    libc = ctypes.CDLL(None, use_errno=True)
    pr_set_pdeathsig = 1
    libc.prctl(pr_set_pdeathsig, signal.SIGKILL)


@dataclass
class Proc:
    name: str
    popen: subprocess.Popen[bytes]
    log: Path

    def stop(self) -> None:
        """TERM, up to 10 s, then KILL of its whole process group."""
        if self.popen.poll() is None:
            self.popen.terminate()
        try:
            self.popen.wait(timeout=10)
        except subprocess.TimeoutExpired:
            pass
        try:
            os.killpg(self.popen.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
        self.popen.wait()


@dataclass
class ProcessGroup:
    procs: list[Proc] = field(default_factory=list)

    def spawn(self, name: str, argv: Sequence[str], workdir: Path) -> Proc:
        """Start `argv` in `workdir`, its output appended to `<workdir>/<name>.log`."""
        log = workdir / f"{name}.log"
        with log.open("ab") as fh:
            popen = subprocess.Popen(
                list(argv),
                stdin=subprocess.DEVNULL,
                stdout=fh,
                stderr=subprocess.STDOUT,
                cwd=workdir,
                preexec_fn=die_with_parent,
            )
        proc = Proc(name, popen, log)
        self.procs.append(proc)
        return proc

    def running(self, name: str) -> Proc | None:
        return next((p for p in self.procs if p.name == name and p.popen.poll() is None), None)

    def stop(self) -> None:
        """Stop every process, newest first."""
        for proc in reversed(self.procs):
            proc.stop()
        self.procs.clear()

    def logs_text(self, lines: int = LOG_TAIL_LINES) -> str:
        """The last lines of each process log."""
        out = []
        for proc in self.procs:
            try:
                text = proc.log.read_text(errors="replace").splitlines()[-lines:]
            except OSError as exc:
                text = [f"(cannot read {proc.log}: {exc})"]
            out.append(f"----- {proc.name} ({proc.log}) -----\n" + "\n".join(text))
        return "\n".join(out)
