"""Connections the server accepts: a cap on how many, and how long one may take to talk.

aiohttp has no request-head timeout of its own. Its keep-alive timer, though, fires whenever
a connection is waiting for a complete request head (nothing sent yet, or half a head), and
is armed at connect and after every response: set to `request_head_timeout`, it closes
slowloris connections. The TLS handshake gets the same bound (`ssl_handshake_timeout`), the
body its own (see web.auth.read_body). The connection cap wraps aiohttp's protocol factory:
over the cap, a connection gets a 503 and is closed before aiohttp sees it.
"""

from __future__ import annotations

import asyncio
import json
import ssl

from aiohttp import web

from acme_server.domain.problems import ProblemType, problem_json


class ConnectionLimiter:
    """Counts open connections; admits one only while under `limit`."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.open = 0

    def try_acquire(self) -> bool:
        if self.open >= self.limit:
            return False
        self.open += 1
        return True

    def release(self) -> None:
        self.open -= 1


def _busy_response() -> bytes:
    body = json.dumps(
        problem_json(
            ProblemType.SERVER_INTERNAL,
            "the server has too many open connections; retry later",
            503,
        )
    ).encode()
    head = (
        "HTTP/1.1 503 Service Unavailable\r\n"
        "Content-Type: application/problem+json\r\n"
        f"Content-Length: {len(body)}\r\n"
        "Retry-After: 5\r\n"
        "Connection: close\r\n\r\n"
    )
    return head.encode() + body


_BUSY = _busy_response()
REFUSED_LINGER_SECONDS = 1.0


class _GuardedProtocol(asyncio.Protocol):
    """Forwards to aiohttp's handler once admitted; refuses the connection otherwise.

    A refused connection gets the 503 at once and is closed when its request arrives (or
    after REFUSED_LINGER_SECONDS): closing before reading it would make the kernel answer the
    request with a reset that can destroy the 503 before the client reads it.
    """

    def __init__(self, inner: asyncio.Protocol, limiter: ConnectionLimiter) -> None:
        self._inner = inner
        self._limiter = limiter
        self._admitted = False
        self._refused: asyncio.BaseTransport | None = None
        self._close_later: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        if not self._limiter.try_acquire():
            assert isinstance(transport, asyncio.WriteTransport)
            transport.write(_BUSY)
            self._refused = transport
            self._close_later = asyncio.get_running_loop().call_later(
                REFUSED_LINGER_SECONDS, transport.close
            )
            return
        self._admitted = True
        self._inner.connection_made(transport)

    def connection_lost(self, exc: Exception | None) -> None:
        if self._close_later is not None:
            self._close_later.cancel()
        if self._admitted:
            self._admitted = False
            self._limiter.release()
            self._inner.connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        if self._admitted:
            self._inner.data_received(data)
        elif self._refused is not None:
            self._refused.close()

    def eof_received(self) -> bool | None:
        return self._inner.eof_received() if self._admitted else None

    def pause_writing(self) -> None:
        if self._admitted:
            self._inner.pause_writing()

    def resume_writing(self) -> None:
        if self._admitted:
            self._inner.resume_writing()


class GuardedTCPSite(web.BaseSite):
    """A TCP(+TLS) site with a connection cap and a bounded TLS handshake."""

    def __init__(
        self,
        runner: web.BaseRunner,
        host: str,
        port: int,
        *,
        limiter: ConnectionLimiter,
        handshake_timeout: float,
        ssl_context: ssl.SSLContext | None = None,
        backlog: int = 512,
        reuse_port: bool = False,
    ) -> None:
        super().__init__(runner, ssl_context=ssl_context, backlog=backlog)
        self._host = host
        self._port = port
        self._reuse_port = reuse_port
        self._limiter = limiter
        self._handshake_timeout = handshake_timeout

    @property
    def name(self) -> str:
        scheme = "https" if self._ssl_context else "http"
        return f"{scheme}://{self._host}:{self._port}"

    async def start(self) -> None:
        await super().start()
        server = self._runner.server
        assert server is not None
        factory = server  # aiohttp's protocol factory: one RequestHandler per connection
        self._server = await asyncio.get_running_loop().create_server(
            lambda: _GuardedProtocol(factory(), self._limiter),
            self._host,
            self._port,
            ssl=self._ssl_context,
            backlog=self._backlog,
            reuse_address=True,
            reuse_port=self._reuse_port or None,
            ssl_handshake_timeout=self._handshake_timeout if self._ssl_context else None,
        )
