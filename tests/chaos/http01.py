"""http-01 responders for several replicas, one port each, that answer slowly and remember who
asked: each replica validates on its own `--http01-port`, so the port a validation request
arrives on names the replica holding the challenge's lease.

Answers are held for `delay` seconds, so at any moment validations are in flight: a replica
killed then dies holding leases, and the test knows which challenges those were.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

PREFIX = "/.well-known/acme-challenge/"


@dataclass
class Hit:
    port: int
    token: str
    started: float
    finished: float | None = None  # None while the answer is held (or never sent)


@dataclass
class Responders:
    """Key authorizations to serve (token -> body) and every request seen."""

    delay: float
    tokens: dict[str, str] = field(default_factory=dict)
    hits: list[Hit] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def in_flight(self, port: int) -> list[Hit]:
        with self.lock:
            return [h for h in self.hits if h.port == port and h.finished is None]

    def hits_for(self, token: str) -> list[Hit]:
        with self.lock:
            return [h for h in self.hits if h.token == token]


def _handler(state: Responders, port: int) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            token = self.path.rsplit("/", 1)[-1]
            hit = Hit(port, token, time.monotonic())
            with state.lock:
                state.hits.append(hit)
                body = state.tokens.get(token)
            time.sleep(state.delay)
            try:
                if body is None or not self.path.startswith(PREFIX):
                    self.send_response(404)
                    self.end_headers()
                    return
                self.send_response(200)
                self.send_header("Content-Type", "text/plain")
                self.end_headers()
                self.wfile.write(body.encode())
            except OSError:
                return  # the validating replica was killed while we held the answer
            with state.lock:
                hit.finished = time.monotonic()

        def log_message(self, *args: Any) -> None:
            pass

    return Handler


@contextmanager
def responders(ports: list[int], delay: float) -> Iterator[Responders]:
    """One threaded HTTP server per port on 127.0.0.1, sharing one token map."""
    state = Responders(delay)
    with ExitStack() as stack:
        for port in ports:
            server = ThreadingHTTPServer(("127.0.0.1", port), _handler(state, port))
            server.daemon_threads = True
            thread = threading.Thread(target=server.serve_forever, daemon=True)
            thread.start()
            stack.callback(server.server_close)
            stack.callback(server.shutdown)
        yield state
