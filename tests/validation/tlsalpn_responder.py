"""A hand-built tls-alpn-01 responder for the tests: a real TLS server on 127.0.0.1.

Each case sets what the server presents (`Responder.serve`: a certificate made by
`challenge_cert`, and the ALPN protocols it agrees to, or none) or how it misbehaves
(`Responder.raw`: it reads the ClientHello, records it, then closes or stays silent). It
runs in a thread, so both the async validator tests and the sync gateway tests use it.
"""

from __future__ import annotations

import hashlib
import ipaddress
import shutil
import socket
import socketserver
import ssl
import struct
import tempfile
import threading
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

ACME_IDENTIFIER = x509.ObjectIdentifier("1.3.6.1.5.5.7.1.31")
_KEY = ec.generate_private_key(ec.SECP256R1())


def acme_identifier_value(key_authorization: str) -> bytes:
    """The extension's DER value: an OCTET STRING of SHA-256(key authorization)."""
    return b"\x04\x20" + hashlib.sha256(key_authorization.encode()).digest()


def challenge_cert(
    sans: list[str],
    key_authorization: str | None,
    *,
    critical: bool = True,
    extension_value: bytes | None = None,
) -> x509.Certificate:
    """A self-signed certificate with these SANs (IP literals become iPAddress) and, unless
    `key_authorization` is None, an acmeIdentifier extension (RFC 8737 §3)."""
    now = datetime.now(UTC)
    names: list[x509.GeneralName] = []
    for san in sans:
        try:
            names.append(x509.IPAddress(ipaddress.ip_address(san)))
        except ValueError:
            names.append(x509.DNSName(san))
    builder = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "tls-alpn-01 test")]))
        .issuer_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "tls-alpn-01 test")]))
        .public_key(_KEY.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(minutes=5))
        .not_valid_after(now + timedelta(hours=1))
    )
    if names:
        builder = builder.add_extension(x509.SubjectAlternativeName(names), critical=False)
    if key_authorization is not None:
        value = extension_value or acme_identifier_value(key_authorization)
        builder = builder.add_extension(
            x509.UnrecognizedExtension(ACME_IDENTIFIER, value), critical=critical
        )
    return builder.sign(_KEY, hashes.SHA256())


@dataclass
class ClientHello:
    """What the validator offered: the SNI name and the ALPN protocol list."""

    sni: str | None
    alpn: list[str] | None


def parse_client_hello(data: bytes) -> ClientHello:
    """Pull SNI (extension 0) and ALPN (extension 16) out of a TLS ClientHello record."""
    body = data[5 + 4 :]  # record header, handshake header
    pos = 2 + 32  # client_version, random
    pos += 1 + body[pos]  # session_id
    pos += 2 + struct.unpack_from("!H", body, pos)[0]  # cipher_suites
    pos += 1 + body[pos]  # compression_methods
    end = pos + 2 + struct.unpack_from("!H", body, pos)[0]
    pos += 2
    sni: str | None = None
    alpn: list[str] | None = None
    while pos < end:
        ext_type, length = struct.unpack_from("!HH", body, pos)
        ext = body[pos + 4 : pos + 4 + length]
        pos += 4 + length
        if ext_type == 0:  # server_name: list length, name type, name length, name
            sni = ext[5 : 5 + struct.unpack_from("!H", ext, 3)[0]].decode()
        elif ext_type == 16:  # ALPN: list length, then length-prefixed protocol names
            alpn, i = [], 2
            while i < len(ext):
                alpn.append(ext[i + 1 : i + 1 + ext[i]].decode())
                i += 1 + ext[i]
    return ClientHello(sni, alpn)


@dataclass
class Responder:
    """A TLS (or deliberately broken) server on 127.0.0.1:port, in a thread."""

    port: int = 0
    context: ssl.SSLContext | None = None
    mode: str = "tls"  # tls | close (read the ClientHello, then close) | silent
    hellos: list[ClientHello] = field(default_factory=list)
    negotiated: list[str | None] = field(default_factory=list)  # ALPN of each handshake
    _server: socketserver.ThreadingTCPServer | None = None
    _dir: Path = field(default_factory=lambda: Path(tempfile.mkdtemp(prefix="tlsalpn-")))

    def serve(self, cert: x509.Certificate, alpn: list[str] | None = None) -> None:
        """Present `cert`, agreeing to `alpn` (None: a plain TLS server without ALPN)."""
        cert_path, key_path = self._dir / "cert.pem", self._dir / "key.pem"
        cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
        key_path.write_bytes(
            _KEY.private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.PKCS8,
                serialization.NoEncryption(),
            )
        )
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(cert_path, key_path)
        if alpn is not None:
            context.set_alpn_protocols(alpn)
        self.context, self.mode = context, "tls"

    def raw(self, mode: str) -> None:
        """Not a TLS server: `close` after the ClientHello, or stay `silent`."""
        self.context, self.mode = None, mode

    def start(self) -> Responder:
        responder = self

        class Handler(socketserver.BaseRequestHandler):
            def handle(self) -> None:
                responder._handle(self.request)

        socketserver.ThreadingTCPServer.allow_reuse_address = True
        server = socketserver.ThreadingTCPServer(("127.0.0.1", self.port), Handler)
        server.daemon_threads = True
        self.port = server.server_address[1]
        self._server = server
        threading.Thread(target=server.serve_forever, daemon=True).start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
        shutil.rmtree(self._dir, ignore_errors=True)

    def __enter__(self) -> Responder:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _handle(self, sock: socket.socket) -> None:
        sock.settimeout(5)
        hello = sock.recv(16384, socket.MSG_PEEK)
        if hello[:1] == b"\x16":  # a TLS handshake record
            try:
                self.hellos.append(parse_client_hello(hello))
            except (IndexError, struct.error, UnicodeDecodeError):
                self.hellos.append(ClientHello(None, None))
        if self.mode == "close":
            return
        if self.mode == "silent":
            time.sleep(5)
            return
        assert self.context is not None
        try:
            with self.context.wrap_socket(sock, server_side=True) as tls:
                self.negotiated.append(tls.selected_alpn_protocol())
                tls.recv(1)  # until the validator hangs up
        except (ssl.SSLError, OSError):
            pass
