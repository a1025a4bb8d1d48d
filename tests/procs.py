"""What every test that runs a real server process needs: a free loopback port, a wait until
the process serves (failing with its log as soon as it exits), a clean stop, its log's tail."""

from __future__ import annotations

import http.client
import os
import signal
import socket
import ssl
import subprocess
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path


def free_port(address: str = "127.0.0.1") -> int:
    """A currently free TCP port on `address`."""
    with socket.socket() as sock:
        sock.bind((address, 0))
        return int(sock.getsockname()[1])


def http_ok(url: str, context: ssl.SSLContext | None = None) -> Callable[[], bool]:
    """A readiness probe for `wait_ready`: `url` answers 200."""

    def probe() -> bool:
        with urllib.request.urlopen(url, timeout=2, context=context) as resp:
            return bool(resp.status == 200)

    return probe


def wait_ready(
    proc: subprocess.Popen[bytes],
    what: str,
    ready: Callable[[], bool],
    logs: Callable[[], str],
    timeout: float = 60,
    interval: float = 0.3,
) -> None:
    """Return once `ready()` is true. Connection errors mean "not yet"; the process exiting
    or the timeout fails at once, with `logs()` so the failure explains itself."""
    deadline = time.monotonic() + timeout
    last = ""
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{what} exited with {proc.returncode}:\n{logs()}")
        try:
            if ready():
                return
        except (OSError, http.client.HTTPException) as exc:  # URLError is an OSError
            last = f"{type(exc).__name__}: {exc}"
        time.sleep(interval)
    raise RuntimeError(f"{what} not ready within {timeout}s ({last}):\n{logs()}")


def stop_process(
    proc: subprocess.Popen[bytes],
    sig: int = signal.SIGTERM,
    timeout: float = 20,
    *,
    group: bool = False,
) -> None:
    """Send `sig` (to the process group with `group`, for processes started in a session of
    their own) and wait; SIGKILL what has not exited after `timeout` seconds."""
    if proc.poll() is not None:
        return

    def send(signum: int) -> None:
        try:
            if group:
                os.killpg(proc.pid, signum)
            else:
                proc.send_signal(signum)
        except ProcessLookupError:
            pass

    send(sig)
    try:
        proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        send(signal.SIGKILL)
        proc.wait()


def log_tail(path: Path | None, lines: int, missing: str = "(no log)") -> str:
    """The last `lines` lines of a log file, or `missing` when there is none (yet)."""
    try:
        if path is None:
            return missing
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return missing
