"""A real HAProxy (Debian's `haproxy`) on loopback in front of several ACME server replicas.

The configuration is the reference one of docs/operations.md ("Load balancer and
replicas", the blocks marked `tested: haproxy-reference` and `tested: haproxy-errorfile`),
so the documented file is the tested one; only its addresses, certificate and health-check
interval are replaced, and a log target and a stats listener are added. The document says
why each line is there. In short:

* TLS ends at HAProxy (a certificate made here for `localhost`); the replicas serve plain
  HTTP on loopback (`serve --insecure-http --base-url https://<haproxy>`).
* `balance roundrobin`, health-checked on `/healthz` (process liveness, no database: a
  database outage must not take every replica out of rotation; the replicas answer it
  themselves with 503 + Retry-After).
* `retries` + `option redispatch` + `retry-on`, but `disable-l7-retry` for everything but
  GET/HEAD: a POST is re-sent to another replica only when it never reached one.
* `option httpclose`: on a kept-alive client connection HAProxy answers a request whose
  replica died under it by closing the connection without any answer (http_ana.c,
  `abort_keep_alive`, for browsers to retry); one request per connection gets the 502 page.
* HAProxy's 502/503/504 pages are an ACME problem document with 503 and `Retry-After`.
"""

from __future__ import annotations

import datetime as dt
import re
import shutil
import signal
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from tests.infra.bind import die_with_parent
from tests.procs import free_port, log_tail, stop_process

HAPROXY = "/usr/sbin/haproxy"
INSTALL_HINT = "run `bash tools/install-system-deps.sh` (as root) to install Debian's haproxy"
DOCS = Path(__file__).resolve().parents[2] / "docs" / "operations.md"


class HAProxyError(RuntimeError):
    """HAProxy is missing, its configuration is refused, or it did not start."""


def _documented(marker: str) -> str:
    """The fenced block of docs/operations.md that follows `<!-- tested: marker -->`."""
    text = DOCS.read_text()
    match = re.search(rf"<!-- tested: {marker} -->\s*```\n(.*?)```", text, re.S)
    if match is None:
        raise HAProxyError(f"docs/operations.md lost its block marked `tested: {marker}`")
    return match.group(1)


def errorfile_text() -> str:
    """The documented errorfile: a whole HTTP response, sent as it is (CRLF line ends)."""
    head, _, body = _documented("haproxy-errorfile").partition("\n\n")
    body = body.strip()
    if f"Content-Length: {len(body)}" not in head.splitlines():
        raise HAProxyError(f"the documented errorfile's Content-Length must be {len(body)}")
    return "\r\n".join([*head.splitlines(), "", body])


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


def _literal(value: str) -> Callable[[re.Match[str]], str]:
    return lambda _match: value


def render_config(
    port: int, backends: list[tuple[str, int]], crt: Path, errorfile: Path, stats_port: int
) -> str:
    """The documented configuration with this run's addresses, plus logging and stats."""
    cfg = _documented("haproxy-reference")
    servers = "\n".join(
        f"    server s{i} {host}:{bport} check" for i, (host, bport) in enumerate(backends, 1)
    )
    replaced = {
        r"(?m)^    bind :443 ssl crt \S+$": f"    bind 127.0.0.1:{port} ssl crt {crt}",
        r"/etc/haproxy/acme-503\.http": str(errorfile),
        r"(?m)^    default-server inter \S+": "    default-server inter 500ms",
        r"(?m)^    server a .*\n(    server .*\n)*": servers + "\n",
        r"(?m)^defaults$": "defaults\n    log global",
    }
    for pattern, value in replaced.items():
        cfg, count = re.subn(pattern, _literal(value), cfg)
        if count == 0:
            raise HAProxyError(f"the documented HAProxy config has no line matching {pattern!r}")
    return f"""\
global
    log stdout format raw local0 info
    maxconn 2000
    nbthread 1

{cfg}
frontend stats
    bind 127.0.0.1:{stats_port}
    http-request return status 200 content-type text/plain string ok if {{ path /ready }}
    stats enable
    stats uri /stats
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
        errorfile = workdir / "acme-503.http"
        errorfile.write_bytes(errorfile_text().encode())
        cfg = workdir / "haproxy.cfg"
        cfg.write_text(render_config(self.port, self.backends, crt, errorfile, self.stats_port))
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
