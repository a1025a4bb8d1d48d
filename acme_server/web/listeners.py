"""Stopping every HTTP listener of a process together on SIGTERM."""

from __future__ import annotations

import asyncio
import logging

from aiohttp import web

from acme_server.web.draining import Draining, close_idle

log = logging.getLogger("acme_server")

CANCEL_GRACE_SECONDS = 1.0  # after --shutdown-timeout: aiohttp cancelling what still runs


class Listeners:
    """The HTTP listeners SIGTERM stops: all stop accepting at once; idle connections are
    closed, requests in flight get `timeout` to finish (answered with `Connection: close`),
    and aiohttp cancels what still runs after that."""

    def __init__(self, timeout: float) -> None:
        self.timeout = timeout
        self._runners: list[tuple[web.BaseRunner, Draining | None]] = []
        self._drained = False

    def add(self, runner: web.BaseRunner, draining: Draining | None = None) -> None:
        self._runners.append((runner, draining))

    def _busy(self) -> int:
        """Requests in their handler (aiohttp finishes writing an answer when cleaning up)."""
        return sum(len(draining.busy) for _, draining in self._runners if draining is not None)

    async def drain(self) -> None:
        if self._drained:
            return
        self._drained = True
        for runner, _ in self._runners:
            for site in list(runner.sites):
                await site.stop()
        await asyncio.sleep(0)  # requests whose handler was just scheduled enter it first
        for runner, draining in self._runners:
            if draining is not None:
                close_idle(runner, draining)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.timeout
        if self._busy():
            log.info(
                "stopped accepting; %d request(s) in flight get %gs to finish",
                self._busy(),
                self.timeout,
            )
        # Handlers signal nothing when they end: poll the busy set.
        while self._busy() and loop.time() < deadline:  # noqa: ASYNC110
            await asyncio.sleep(0.05)
        if self._busy():
            log.warning(
                "cancelling %d request(s) still running at the shutdown timeout", self._busy()
            )
        await asyncio.gather(*(runner.cleanup() for runner, _ in self._runners))
