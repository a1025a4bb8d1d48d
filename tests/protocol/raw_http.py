"""HTTP/1.1 by hand over real sockets: what no HTTP library lets a test do on purpose
(a body in pauses, half a request head, a connection that never finishes its handshake)."""

from __future__ import annotations

import socket
import ssl
import time
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class RawResponse:
    status: int
    headers: dict[str, str]  # lower-case names
    body: bytes


def connect(port: int, root_pem: Path | None, timeout: float = 10.0) -> socket.socket:
    """A connection to 127.0.0.1:port, TLS (verified against `root_pem`) unless it is None."""
    sock = socket.create_connection(("127.0.0.1", port), timeout=timeout)
    if root_pem is None:
        return sock
    context = ssl.create_default_context(cafile=str(root_pem))
    return context.wrap_socket(sock, server_hostname="localhost")


def request_head(method: str, path: str, headers: dict[str, str]) -> bytes:
    lines = [
        f"{method} {path} HTTP/1.1",
        "Host: localhost",
        *(f"{k}: {v}" for k, v in headers.items()),
    ]
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


def read_response(sock: socket.socket) -> RawResponse:
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        assert chunk, f"connection closed before a response head: {data!r}"
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    headers = {}
    for line in lines[1:]:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    length = int(headers.get("content-length", "0"))
    while len(body) < length:
        chunk = sock.recv(65536)
        if not chunk:
            break
        body += chunk
    return RawResponse(int(lines[0].split()[1]), headers, body)


def send_in_pieces(sock: socket.socket, data: bytes, pieces: int, pause: float) -> None:
    """`data` in `pieces` separate writes with `pause` seconds between them."""
    size = -(-len(data) // pieces)
    for start in range(0, len(data), size):
        sock.sendall(data[start : start + size])
        time.sleep(pause)


def closed_by_peer(sock: socket.socket, deadline: float) -> bool:
    """Whether the server closes `sock` before `deadline` (monotonic), reading what it sends."""
    while True:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            return False
        sock.settimeout(remaining)
        try:
            if not sock.recv(65536):
                return True
        except TimeoutError:
            return False
        except (ConnectionError, ssl.SSLError):
            return True
