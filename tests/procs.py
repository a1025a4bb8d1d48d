"""What every test that runs a real server process needs: a free loopback port, a wait until
the process serves (failing with its log as soon as it exits), a clean stop, its log's tail."""

from __future__ import annotations

import http.client
import os
import random
import signal
import socket
import ssl
import subprocess
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path

# Ports for our servers come from below the kernel's ephemeral range (32768-60999 on Linux)
# and above the usual service ports, and under NodePorts (30000+): a port the kernel handed
# out (bind to 0) may be handed again at once to another server, or taken as the local port of
# an outgoing connection, before the server that was told to use it binds it.
PORT_RANGE = range(20000, 30000)
_handed_out: set[tuple[str, int]] = set()


def free_port(address: str = "127.0.0.1", *, udp: bool = False) -> int:
    """A port free on `address` now (for UDP too with `udp`), that this test process never
    handed out before."""
    for _ in range(1000):
        port = random.choice(PORT_RANGE)
        if (address, port) in _handed_out:
            continue
        if _bindable(address, port, socket.SOCK_STREAM) and (
            not udp or _bindable(address, port, socket.SOCK_DGRAM)
        ):
            _handed_out.add((address, port))
            return port
    raise RuntimeError(f"no free port on {address} in {PORT_RANGE}")


def _bindable(address: str, port: int, kind: socket.SocketKind) -> bool:
    family = socket.AF_INET6 if ":" in address else socket.AF_INET
    with socket.socket(family, kind) as sock:
        try:
            sock.bind((address, port))
        except OSError:
            return False
    return True


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
