"""A real HAProxy (Debian's `haproxy`) on loopback in front of several ACME server replicas.

The generated configuration is the reference one of docs/operations.md ("Load balancer and
replicas"), with the addresses filled in:

* TLS ends at HAProxy (a certificate made here for `localhost`); the replicas serve plain
  HTTP on loopback (`serve --insecure-http --base-url https://<haproxy>`).
* `balance roundrobin` over every replica, health-checked on `/healthz` (process liveness,
  no database round trip: a database outage must not take every replica out of rotation,
  the replicas answer it themselves with 503 + Retry-After).
* `retries 3` with `option redispatch 1` and `retry-on conn-failure empty-response
  response-timeout`, but `http-request disable-l7-retry` for every method except GET/HEAD:
  a POST is re-sent to another replica only when it never reached one (connection
  failure), never after a replica may have acted on it. Replaying a POST would spend its
  nonce twice (a certain `badNonce`) or repeat a finalize; the client decides instead.
* `option httpclose`: one request per client connection. HAProxy answers a request whose
  replica died under it with its 502 page only when the request was the first on its
  client connection; on a kept-alive one it closes the connection without any answer
  (http_ana.c, `abort_keep_alive`, meant for browsers to retry), and an ACME client would
  see its POST vanish. The price is one TLS handshake per request.
* HAProxy's own 502/503/504 pages are ACME problem documents with HTTP 503 and
  `Retry-After` (a replica died mid-request, or none is up), which ACME clients retry.
"""

from __future__ import annotations

import datetime as dt
import json
import shutil
import signal
import subprocess
import time
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from tests.infra.bind import die_with_parent
from tests.procs import free_port, log_tail, stop_process

HAPROXY = "/usr/sbin/haproxy"
INSTALL_HINT = "run `bash tools/install-system-deps.sh` (as root) to install Debian's haproxy"
RETRY_AFTER_SECONDS = 1


class HAProxyError(RuntimeError):
    """HAProxy is missing, its configuration is refused, or it did not start."""


def _problem_page(status_line: str, detail: str) -> str:
    """An errorfile: a whole HTTP response HAProxy sends as it is."""
    body = json.dumps(
        {"type": "urn:ietf:params:acme:error:serverInternal", "detail": detail, "status": 503}
    )
    return (
        f"HTTP/1.1 {status_line}\r\n"
        "Content-Type: application/problem+json\r\n"
        f"Retry-After: {RETRY_AFTER_SECONDS}\r\n"
        "Cache-Control: no-store\r\n"
        "Connection: close\r\n"
        f"Content-Length: {len(body)}\r\n"
        "\r\n"
        f"{body}"
    )


def _tls_pair(directory: Path, name: str = "localhost") -> tuple[Path, Path]:
    """A root and a leaf for `name` signed by it: (root PEM for clients, leaf+key PEM)."""
    now = dt.datetime.now(dt.UTC)
    root_key = ec.generate_private_key(ec.SECP256R1())
    root_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "haproxy test root")])
    root = (
        x509.CertificateBuilder()
        .subject_name(root_name)
        .issuer_name(root_name)
        .public_key(root_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=1))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(False, False, False, False, False, True, True, False, False),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(root_key.public_key()), False)
        .sign(root_key, hashes.SHA256())
    )
    leaf_key = ec.generate_private_key(ec.SECP256R1())
    leaf = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)]))
        .issuer_name(root_name)
        .public_key(leaf_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=1))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName(name)]), critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(root_key.public_key()), False
        )
        .sign(root_key, hashes.SHA256())
    )
    root_pem = directory / "lb-root.pem"
    root_pem.write_bytes(root.public_bytes(serialization.Encoding.PEM))
    combined = directory / "lb-cert.pem"
    combined.write_bytes(
        leaf.public_bytes(serialization.Encoding.PEM)
        + leaf_key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    combined.chmod(0o600)
    return root_pem, combined


def render_config(
    port: int, backends: list[tuple[str, int]], crt: Path, errors_dir: Path, stats_port: int
) -> str:
    """The configuration (see the module docstring for why each line is there)."""
    servers = "\n".join(
        f"    server s{i} {host}:{bport} check" for i, (host, bport) in enumerate(backends, 1)
    )
    errorfiles = "\n".join(
        f"    errorfile {code} {errors_dir}/{code}.http" for code in (502, 503, 504)
    )
    return f"""\
global
    log stdout format raw local0 info
    maxconn 2000
    nbthread 1

defaults
    mode http
    log global
    option httplog
    option log-separate-errors
    # One request per connection. When a replica dies under a request that was not the
    # first on its client connection, HAProxy closes that connection without an answer
    # (for browsers to retry); an ACME client would see its POST vanish, not a 503.
    option httpclose
    timeout connect 2s
    timeout client 30s
    timeout http-request 10s
    timeout server 30s
    timeout queue 5s
    retries 3
    option redispatch 1
    retry-on conn-failure empty-response response-timeout
{errorfiles}

frontend acme
    bind 127.0.0.1:{port} ssl crt {crt}
    default_backend replicas

frontend stats
    bind 127.0.0.1:{stats_port}
    http-request return status 200 content-type text/plain string ok if {{ path /ready }}
    stats enable
    stats uri /stats

backend replicas
    balance roundrobin
    # Only GET/HEAD may be replayed after a replica saw them; a POST only on conn-failure.
    http-request disable-l7-retry unless METH_GET or METH_HEAD
    option httpchk
    http-check send meth GET uri /healthz
    http-check expect status 200
    default-server inter 500ms fall 2 rise 1
{servers}
"""


class HAProxy:
    """One haproxy process in the foreground (`-db`), logging to its own file."""

    def __init__(self, backends: list[tuple[str, int]]) -> None:
        self.backends = backends
        self.port = free_port()
        self.stats_port = free_port()
        self.proc: subprocess.Popen[bytes] | None = None
        self.workdir: Path | None = None
        self.root_pem: Path | None = None

    @property
    def base_url(self) -> str:
        return f"https://localhost:{self.port}"

    @property
    def log_path(self) -> Path:
        assert self.workdir is not None
        return self.workdir / "haproxy.log"

    def log_tail(self, lines: int = 40) -> str:
        return log_tail(self.log_path, lines, missing="")

    def start(self, workdir: Path, timeout: float = 20.0) -> HAProxy:
        if shutil.which(HAPROXY) is None:
            raise HAProxyError(f"missing {HAPROXY}: {INSTALL_HINT}")
        self.workdir = workdir
        workdir.mkdir(parents=True, exist_ok=True)
        self.root_pem, crt = _tls_pair(workdir)
        errors_dir = workdir / "errors"
        errors_dir.mkdir(exist_ok=True)
        pages = {
            502: ("503 Service Unavailable", "a server replica failed mid-request; retry"),
            503: ("503 Service Unavailable", "no server replica is available; retry"),
            504: ("503 Service Unavailable", "a server replica did not answer in time; retry"),
        }
        for code, (status_line, detail) in pages.items():
            (errors_dir / f"{code}.http").write_text(_problem_page(status_line, detail))
        cfg = workdir / "haproxy.cfg"
        cfg.write_text(render_config(self.port, self.backends, crt, errors_dir, self.stats_port))
        check = subprocess.run([HAPROXY, "-c", "-q", "-f", str(cfg)], capture_output=True)
        if check.returncode != 0:
            raise HAProxyError(f"haproxy refused {cfg}: {check.stderr.decode(errors='replace')}")
        with self.log_path.open("ab") as log:
            self.proc = subprocess.Popen(
                [HAPROXY, "-db", "-f", str(cfg)],
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                preexec_fn=die_with_parent(signal.SIGTERM),
            )
        self._wait_ready(timeout)
        return self

    def _wait_ready(self, timeout: float) -> None:
        import urllib.request

        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc is None or self.proc.poll() is not None:
                raise HAProxyError(f"haproxy exited:\n{self.log_tail()}")
            try:
                url = f"http://127.0.0.1:{self.stats_port}/ready"
                with urllib.request.urlopen(url, timeout=2) as resp:
                    if resp.status == 200:
                        return
            except OSError:
                pass
            time.sleep(0.1)
        raise HAProxyError(f"haproxy not ready within {timeout}s:\n{self.log_tail()}")

    def servers_up(self) -> dict[str, bool]:
        """Each backend server's health as HAProxy sees it (from its CSV stats)."""
        import urllib.request

        url = f"http://127.0.0.1:{self.stats_port}/stats;csv"
        with urllib.request.urlopen(url, timeout=5) as resp:
            lines = resp.read().decode().splitlines()
        header = lines[0].lstrip("# ").split(",")
        out = {}
        for line in lines[1:]:
            row = dict(zip(header, line.split(","), strict=False))
            if row.get("pxname") == "replicas" and row.get("svname", "").startswith("s"):
                out[row["svname"]] = row.get("status", "").startswith("UP")
        return out

    def stop(self) -> None:
        if self.proc is not None:
            stop_process(self.proc, signal.SIGTERM)
            self.proc = None
