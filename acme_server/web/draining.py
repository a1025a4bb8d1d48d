"""Which connections have a request in flight, so SIGTERM can close only the idle ones.

aiohttp's own shutdown closes every connection at once, and a closed connection reads no
more data: a request whose body was still arriving could then never finish. So shutdown
(`web.listeners.Listeners.drain`) closes the idle connections itself, lets the busy ones finish
(`context_middleware` marks their answers `Connection: close`), and only then hands what
is left to aiohttp, which cancels it.
"""

from __future__ import annotations

from aiohttp import web


class Draining:
    def __init__(self) -> None:
        self.busy: set[object] = set()  # aiohttp protocols running a handler now
        self.stopping = False


DRAINING_KEY = web.AppKey("draining", Draining)


def close_idle(runner: web.BaseRunner, draining: Draining) -> None:
    """Close the connections of `runner` that run no request (idle keep-alive, half a head)
    now; the busy ones close after their answer."""
    draining.stopping = True
    if runner.server is not None:
        for conn in list(runner.server.connections):
            if conn not in draining.busy:
                transport = conn.transport
                conn.force_close()
                if transport is not None:
                    # Not a TLS close_notify exchange: an idle client is not reading and
                    # would hold the connection for the whole SSL shutdown timeout.
                    transport.abort()
