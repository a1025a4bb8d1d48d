"""The servers the bench compares, each started fresh on loopback and stopped by `stop()`:
Debian's Pebble, step-ca (built by tools/go-tools/build.sh stepca) and ours, plus
pebble-challtestsrv as the one DNS server all of them resolve the random names with
(every name -> 127.0.0.1, where the load generator answers http-01)."""

from __future__ import annotations

import contextlib
import datetime
import ipaddress
import json
import os
import shutil
import signal
import socket
import ssl
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Protocol

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from tests.gateway_proc import GatewayProcess
from tests.infra.bind import die_with_parent, free_udp_tcp_port
from tests.procs import free_port, http_ok, log_tail, stop_process, wait_ready

REPO = Path(__file__).resolve().parent.parent
GO_TOOLS = REPO / "tools" / "go-tools" / "build.sh"
PEBBLE = "/usr/bin/pebble"
CHALLTESTSRV = "/usr/bin/pebble-challtestsrv"
INSTALL_HINT = "run `tools/install-system-deps.sh` (as root) for Debian's pebble"


class Server(Protocol):
    """What the bench needs of a server under test."""

    name: str
    directory_url: str
    ca_bundle: Path
    eab: tuple[str, str] | None  # (key id, HMAC key) every account must bind to

    def cpu_roots(self) -> list[int]: ...
    def diagnose(self) -> Path: ...
    def stop(self) -> None: ...


def go_tool(target: str) -> Path:
    """Build (or find cached) a Go tool of tools/go-tools/build.sh and return its path."""
    out = subprocess.run(
        [str(GO_TOOLS), target], check=True, capture_output=True, text=True, timeout=3600
    ).stdout
    for line in out.splitlines():
        key, _, value = line.partition("=")
        if key.endswith("_BIN"):
            return Path(value)
    raise RuntimeError(f"build.sh {target} printed no binary path: {out!r}")


def need(path: str) -> None:
    if not os.access(path, os.X_OK):
        raise RuntimeError(f"{path} is missing: {INSTALL_HINT}")


def _popen(cmd: list[str], log: Path, env: dict[str, str] | None = None) -> subprocess.Popen[bytes]:
    with log.open("ab") as out:
        return subprocess.Popen(
            cmd,
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env=env,
            preexec_fn=die_with_parent(signal.SIGTERM),
        )


def _tcp_open(port: int) -> Callable[[], bool]:
    def probe() -> bool:
        with socket.create_connection(("127.0.0.1", port), timeout=2):
            return True

    return probe


def _insecure() -> ssl.SSLContext:
    ctx = ssl.create_default_context()  # readiness only
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    return ctx


# ---- a throw-away PKI (for Pebble's and step-ca's serving/issuing certificates) ----


def _name(cn: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])


def _cert(
    subject: str,
    key: ec.EllipticCurvePrivateKey,
    issuer: tuple[x509.Name, ec.EllipticCurvePrivateKey] | None,
    *,
    ca: bool,
    path_len: int | None = None,
    sans: tuple[str, ...] = (),
) -> x509.Certificate:
    now = datetime.datetime.now(datetime.UTC)
    issuer_name, issuer_key = issuer or (_name(subject), key)
    builder = (
        x509.CertificateBuilder()
        .subject_name(_name(subject))
        .issuer_name(issuer_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=2))
        .add_extension(x509.BasicConstraints(ca=ca, path_length=path_len), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), False)
    )
    if ca:
        usage = x509.KeyUsage(False, False, False, False, False, True, True, False, False)
        builder = builder.add_extension(usage, critical=True)
    if sans:
        names: list[x509.GeneralName] = []
        for san in sans:
            try:
                names.append(x509.IPAddress(ipaddress.ip_address(san)))
            except ValueError:
                names.append(x509.DNSName(san))
        builder = builder.add_extension(x509.SubjectAlternativeName(names), critical=False)
    return builder.sign(issuer_key, hashes.SHA256())


def _write_key(path: Path, key: ec.EllipticCurvePrivateKey) -> None:
    path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    path.chmod(0o600)


def _write_cert(path: Path, *certs: x509.Certificate) -> None:
    path.write_bytes(b"".join(c.public_bytes(serialization.Encoding.PEM) for c in certs))


def make_pki(directory: Path, label: str) -> dict[str, Path]:
    """Root + intermediate CA and a localhost/127.0.0.1 serving leaf under `directory`."""
    directory.mkdir(parents=True, exist_ok=True)
    root_key, inter_key, leaf_key = (ec.generate_private_key(ec.SECP256R1()) for _ in range(3))
    root = _cert(f"{label} bench root", root_key, None, ca=True, path_len=1)
    inter = _cert(f"{label} bench intermediate", inter_key, (root.subject, root_key), ca=True)
    leaf = _cert(
        "localhost", leaf_key, (inter.subject, inter_key), ca=False, sans=("localhost", "127.0.0.1")
    )
    paths = {
        "root": directory / "root_ca.crt",
        "intermediate": directory / "intermediate_ca.crt",
        "intermediate_key": directory / "intermediate_ca_key",
        "leaf": directory / "leaf.crt",
        "leaf_key": directory / "leaf.key",
    }
    _write_cert(paths["root"], root)
    _write_cert(paths["intermediate"], inter)
    _write_key(paths["intermediate_key"], inter_key)
    _write_cert(paths["leaf"], leaf, inter)
    _write_key(paths["leaf_key"], leaf_key)
    return paths


# ---- processes ----


class _Proc:
    """One started process with its log; stop() is idempotent."""

    def __init__(self, name: str, workdir: Path) -> None:
        self.name = name
        self.eab: tuple[str, str] | None = None
        self.workdir = workdir
        self.log = workdir / f"{name}.log"
        self.proc: subprocess.Popen[bytes] | None = None
        workdir.mkdir(parents=True, exist_ok=True)

    def cpu_roots(self) -> list[int]:
        assert self.proc is not None
        return [self.proc.pid]

    def log_tail(self) -> str:
        return log_tail(self.log, 40)

    def diagnose(self) -> Path:
        """Its log, after SIGQUIT: a Go server then writes every goroutine's stack to it
        (and exits), which shows where stalled requests wait."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGQUIT)
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.proc.wait(timeout=10)
        return self.log

    def stop(self) -> None:
        if self.proc is not None:
            stop_process(self.proc, timeout=10)
            self.proc = None


class ChallTestSrv(_Proc):
    """pebble-challtestsrv answering every A query with 127.0.0.1 (no AAAA, so validation
    connects to the IPv4 responder); its http-01 servers are off (the load generator answers)."""

    def __init__(self, workdir: Path) -> None:
        super().__init__("challtestsrv", workdir)
        need(CHALLTESTSRV)
        self.dns_port = free_udp_tcp_port()
        self.management_port = free_port()

    @property
    def resolver(self) -> str:
        return f"127.0.0.1:{self.dns_port}"

    def start(self) -> ChallTestSrv:
        cmd = [
            CHALLTESTSRV,
            *("-dns01", self.resolver),
            *("-management", f"127.0.0.1:{self.management_port}"),
            *("-http01", "", "-https01", "", "-tlsalpn01", ""),
            *("-defaultIPv4", "127.0.0.1", "-defaultIPv6", ""),
        ]
        self.proc = _popen(cmd, self.log)
        wait_ready(self.proc, self.name, _tcp_open(self.management_port), self.log_tail, 20)
        return self


class Pebble(_Proc):
    """Debian's Pebble, in memory, no validation sleep, no random nonce rejection."""

    def __init__(self, workdir: Path, resolver: str, http01_port: int) -> None:
        super().__init__("pebble", workdir)
        need(PEBBLE)
        self.port = free_port()
        self.resolver = resolver
        self.http01_port = http01_port
        self.directory_url = f"https://127.0.0.1:{self.port}/dir"
        self.pki = make_pki(workdir / "pki", "pebble")
        self.ca_bundle = self.pki["root"]

    def start(self) -> Pebble:
        config = {
            "pebble": {
                "listenAddress": f"127.0.0.1:{self.port}",
                "managementListenAddress": f"127.0.0.1:{free_port()}",
                "certificate": str(self.pki["leaf"]),
                "privateKey": str(self.pki["leaf_key"]),
                "httpPort": self.http01_port,
                "tlsPort": free_port(),
                "ocspResponderURL": "",
                "externalAccountBindingRequired": False,
            }
        }
        path = self.workdir / "pebble-config.json"
        path.write_text(json.dumps(config))
        env = {**os.environ, "PEBBLE_VA_NOSLEEP": "1", "PEBBLE_WFE_NONCEREJECT": "0"}
        self.proc = _popen(
            [PEBBLE, "-config", str(path), "-dnsserver", self.resolver], self.log, env
        )
        wait_ready(
            self.proc, self.name, http_ok(self.directory_url, _insecure()), self.log_tail, 30
        )
        return self


class StepCA(_Proc):
    """step-ca with one ACME provisioner and its embedded badger database; the PKI and
    ca.json are written here (no `step` CLI), as `step ca init` would lay them out."""

    def __init__(self, workdir: Path, binary: Path, resolver: str, http01_port: int) -> None:
        super().__init__("step-ca", workdir)
        self.binary = binary
        self.port = free_port()
        self.resolver = resolver
        self.http01_port = http01_port
        self.directory_url = f"https://127.0.0.1:{self.port}/acme/acme/directory"
        self.pki = make_pki(workdir / "certs", "step-ca")
        self.ca_bundle = self.pki["root"]

    def start(self) -> StepCA:
        config = {
            "root": str(self.pki["root"]),
            "crt": str(self.pki["intermediate"]),
            "key": str(self.pki["intermediate_key"]),
            "address": f"127.0.0.1:{self.port}",
            "dnsNames": ["localhost", "127.0.0.1"],
            "logger": {"format": "text"},
            "db": {"type": "badgerv2", "dataSource": str(self.workdir / "db")},
            "authority": {"provisioners": [{"type": "ACME", "name": "acme"}]},
            "tls": {
                "cipherSuites": [
                    "TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256",
                    "TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256",
                ],
                "minVersion": 1.2,
                "maxVersion": 1.3,
                "renegotiation": False,
            },
        }
        path = self.workdir / "ca.json"
        path.write_text(json.dumps(config, indent=2))
        cmd = [str(self.binary), str(path), "--resolver", self.resolver]
        # http-01 to a port other than 80 is a testing knob that needs --insecure.
        cmd += ["--insecure", "--acme-http-port", str(self.http01_port)]
        self.proc = _popen(cmd, self.log)
        health = f"https://127.0.0.1:{self.port}/health"
        wait_ready(self.proc, self.name, http_ok(health, _insecure()), self.log_tail, 60)
        return self


def serve_supports(flag: str) -> bool:
    """Whether this checkout's `acme-gateway serve` has `flag` (e.g. --workers)."""
    gateway = shutil.which("acme-gateway", path=str(Path(sys.executable).parent))
    out = subprocess.run(
        [gateway or "acme-gateway", "serve", "--help"], capture_output=True, text=True, timeout=60
    ).stdout
    return flag in out


class Ours:
    """`acme-gateway serve` on SQLite or the given PostgreSQL URL, validating through the
    shared resolver. Open account creation by default, like the peers' bench setup; with
    `eab`, pre-registered accounts under one registration that grants `suffix`."""

    def __init__(
        self,
        name: str,
        workdir: Path,
        resolver: str,
        http01_port: int,
        *,
        database: str | None = None,
        workers: int | None = None,
        extra_cpu_roots: tuple[int, ...] = (),
        eab: bool = False,
        suffix: str = "bench.test",
    ) -> None:
        self.name = name
        self.use_eab = eab
        self.suffix = suffix
        self.eab: tuple[str, str] | None = None
        extra: tuple[str, ...] = ()
        if workers is not None:
            extra = ("--workers", str(workers))
        self.gw = GatewayProcess(
            workdir,
            database=database,
            http01_port=http01_port,
            dns_resolvers=(resolver,),
            extra_args=extra,
            account_creation="pre-registered" if eab else "open",
        )
        self.extra_cpu_roots = extra_cpu_roots
        self.directory_url = self.gw.directory_url
        self.ca_bundle = self.gw.root_pem

    def start(self) -> Ours:
        self.gw.start()
        if self.use_eab:
            reg = self.gw.create_registration("bench", "--domain", self.suffix)
            self.eab = (str(reg["kid"]), str(reg["hmac_key"]))
        return self

    def cpu_roots(self) -> list[int]:
        assert self.gw.proc is not None
        return [self.gw.proc.pid, *self.extra_cpu_roots]

    def diagnose(self) -> Path:
        return self.gw.log_path

    def stop(self) -> None:
        self.gw.stop()
