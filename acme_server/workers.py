"""`serve --workers N`: N server processes on one port, so every CPU serves requests.

The supervisor prepares once what must not race (store migration, CA and serving
certificate, CA root and nonce key), creates the shared region (nonce window, account
change counter), then forks the workers. Each worker is a whole server (`run_server` with a
`WorkerRole`) listening with SO_REUSEPORT, so the kernel spreads connections across them;
they share the store, and the validation queue's leases keep two workers from validating
one challenge. Housekeeping (retention, spent-nonce purge) runs in worker 0 only.

A worker that dies is restarted; one that dies before it is ready fails the start-up (its
error is on stderr). SIGTERM/SIGINT stop the workers gracefully, each draining like a
single server, and the supervisor exits when they have.

With `--metrics-listen`, the supervisor also owns the private directory the workers count
their metrics into (removed on exit) and drops a dead worker's live gauges from it.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import logging
import multiprocessing
import multiprocessing.connection
import os
import shutil
import signal
import sys
import time
from multiprocessing.process import BaseProcess
from pathlib import Path

from acme_server import metrics
from acme_server.config import Settings
from acme_server.shared_region import SharedRegion

log = logging.getLogger("acme_server.workers")

START_TIMEOUT = 120.0
STOP_MARGIN = 10.0  # beyond --shutdown-timeout: cancelling, releasing leases, closing
RESTART_DELAY = 1.0
_PR_SET_PDEATHSIG = 1


def supervise(settings: Settings) -> None:
    """Prepare, run `settings.workers` workers until a signal, then stop them."""
    from acme_server.server import StartupError, prepare

    asyncio.run(prepare(settings))
    region = SharedRegion.create()
    # Workers count into files here, so any worker's /metrics is the whole server's.
    metrics_dir = metrics.create_multiprocess_dir() if settings.metrics_listen else None
    if metrics_dir is not None:
        metrics.enable_multiprocess(metrics_dir)
    supervisor = _Supervisor(settings, region.path)
    try:
        supervisor.start_all()
        supervisor.watch()
    except _WorkerFailed as exc:
        raise StartupError(str(exc)) from None
    finally:
        supervisor.stop_all()
        region.close()
        region.remove()
        if metrics_dir is not None:
            shutil.rmtree(metrics_dir, ignore_errors=True)


class _WorkerFailed(RuntimeError):
    pass


class _Supervisor:
    def __init__(self, settings: Settings, region_path: Path) -> None:
        self._settings = settings
        self._region_path = region_path
        self._context = multiprocessing.get_context("fork")
        self._workers: dict[int, BaseProcess] = {}
        self._stopping = False

    def start_all(self) -> None:
        readers = {i: self._spawn(i) for i in range(self._settings.workers)}
        deadline = time.monotonic() + START_TIMEOUT
        while readers:
            left = deadline - time.monotonic()
            if left <= 0:
                raise _WorkerFailed(f"workers {sorted(readers)} did not start in time")
            waitables: list[multiprocessing.connection.Connection | int] = [
                *readers.values(),
                *(self._workers[i].sentinel for i in readers),
            ]
            multiprocessing.connection.wait(waitables, timeout=left)
            for index, reader in list(readers.items()):
                if reader.poll() and _said_ready(reader):
                    del readers[index]
                elif not self._workers[index].is_alive() or reader.closed:
                    self._workers[index].join(5)
                    raise _WorkerFailed(
                        f"worker {index} exited with status {self._workers[index].exitcode} "
                        "while starting (see its error above)"
                    )
        log.info("all %d workers are serving", self._settings.workers)

    def watch(self) -> None:
        """Until SIGTERM/SIGINT: restart any worker that dies."""
        stop = False

        def on_signal(signum: int, _frame: object) -> None:
            nonlocal stop
            stop = True

        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, on_signal)
        while not stop:
            sentinels = {p.sentinel: i for i, p in self._workers.items()}
            ready = multiprocessing.connection.wait(list(sentinels), timeout=1.0)
            for sentinel in ready:
                if stop:
                    break
                index = sentinels[sentinel]  # type: ignore[index]
                code = self._workers[index].exitcode
                self._reap(index)
                log.error("worker %d exited with status %s; restarting it", index, code)
                time.sleep(RESTART_DELAY)
                reader = self._spawn(index)
                reader.close()

    def stop_all(self) -> None:
        """Forward SIGTERM; each worker drains like a single server (--shutdown-timeout),
        and one still running well after that is killed."""
        for proc in self._workers.values():
            if proc.is_alive() and proc.pid is not None:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(proc.pid, signal.SIGTERM)
        deadline = time.monotonic() + self._settings.shutdown_timeout + STOP_MARGIN
        for index, proc in self._workers.items():
            proc.join(max(0.0, deadline - time.monotonic()))
            if proc.is_alive():
                log.error("worker %d did not stop in time; killing it", index)
                proc.kill()
                proc.join()
            self._reap(index)

    def _reap(self, index: int) -> None:
        """A worker ended: its live gauges leave the metrics (its counters stay)."""
        pid = self._workers[index].pid
        if pid is not None:
            metrics.mark_dead(pid)

    def _spawn(self, index: int) -> multiprocessing.connection.Connection:
        reader, writer = self._context.Pipe(duplex=False)
        proc = self._context.Process(
            target=_worker_main,
            args=(self._settings, index, self._region_path, writer),
            name=f"acme-gateway-worker-{index}",
        )
        proc.start()
        writer.close()
        self._workers[index] = proc
        return reader


def _said_ready(reader: multiprocessing.connection.Connection) -> bool:
    """True when the worker reported ready; False (pipe closed) when it died before that."""
    try:
        return bool(reader.recv())
    except EOFError:
        return False
    finally:
        reader.close()


def _worker_main(
    settings: Settings,
    index: int,
    region_path: Path,
    ready: multiprocessing.connection.Connection,
) -> None:
    from acme_server.server import WorkerRole, run_server

    _die_with_supervisor()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, signal.SIG_DFL)  # run_server installs its own on its loop

    def signal_ready() -> None:
        ready.send(True)
        ready.close()

    try:
        asyncio.run(run_server(settings, WorkerRole(index, region_path, signal_ready)))
    except Exception as exc:  # reported by the supervisor as a failed start or a restart
        print(f"Error: worker {index}: {exc}", file=sys.stderr)
        sys.exit(1)


def _die_with_supervisor() -> None:
    """A worker must not outlive a supervisor that was killed outright."""
    with contextlib.suppress(OSError, AttributeError):
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)
