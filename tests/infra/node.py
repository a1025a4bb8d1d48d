"""A real single-node data plane for the test control plane: Pods actually run.

containerd (Debian's, with a config of its own) + runc + the CNI bridge plugin, and kubelet,
kube-scheduler and kube-proxy built from the same k8s.io/kubernetes module as the control plane
(tools/k8s/build.sh node). The sandbox ("pause") image is built locally from the module's
pause.c, because no registry can be reached.

    cp = ControlPlane(node_ip=node_ip()).start(workdir / "cp")
    node = Node(cp).start(workdir / "node")
    node.import_image(archive)   # a docker-archive tar, see tests/infra/images.py

The node's pieces are global to the machine (kubelet ports, the bridge, iptables chains,
containerd's shim sockets), so ``start`` takes an exclusive lock (one node per machine; a
second caller waits). ``stop`` puts the machine back: processes, containers, mounts,
network namespaces, the bridge, iptables ``KUBE-*``/``CNI-*`` chains, the kubelet's cgroups
and every sysctl the node changed. A crashed run's leftovers are swept at the next start.

Pods only reach addresses on this machine: their range lives on the node's own bridge, the
host's resolv.conf is not given to them (no nameserver), and no route leads elsewhere except
the host's own default, which nothing in the tests targets.
"""

from __future__ import annotations

import fcntl
import ipaddress
import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO

import yaml

from tests.infra.kube import (
    BUILD_SCRIPT,
    SERVICE_CIDR,
    ControlPlane,
    ControlPlaneError,
    issue_cert,
    write_kubeconfig,
)
from tests.infra.process_group import Proc, ProcessGroup
from tests.procs import free_port

CACHE = Path(os.environ.get("ACME_GATEWAY_CACHE", Path.home() / ".cache" / "acme-gateway"))
# Fixed paths, so a later run can sweep what a killed one left behind.
RUN_DIR = Path("/run/acme-gateway-node")
LOCK_FILE = Path("/run/lock/acme-gateway-node.lock")
# Imported images survive sessions (importing the app image costs ~15 s).
CONTAINERD_ROOT = CACHE / "node" / "containerd"
NODE_NAME = "acme-gateway-node"
BRIDGE = "agw0"
POD_CIDR = "10.244.0.0/24"
CNI_NETWORK = "acme-gateway-node"
CNI_BIN_DIR = Path("/usr/lib/cni")
PAUSE_IMAGE = "localhost/acme-gateway/pause:3.10"
# The sysctls the kubelet, kube-proxy and the bridge plugin may change; restored on stop.
SYSCTLS = (
    "net.ipv4.ip_forward",
    "net.ipv4.conf.all.forwarding",
    "net.ipv4.conf.default.forwarding",
    "net.ipv6.conf.all.forwarding",
    "net.ipv4.conf.all.route_localnet",
    "net.bridge.bridge-nf-call-iptables",
    "net.bridge.bridge-nf-call-ip6tables",
    "net.netfilter.nf_conntrack_max",
    "vm.overcommit_memory",
    "vm.panic_on_oom",
    "kernel.panic",
    "kernel.panic_on_oops",
    "kernel.keys.root_maxkeys",
    "kernel.keys.root_maxbytes",
)
CHAIN_PREFIXES = ("KUBE-", "CNI-")
CGROUP_NAMES = ("kubepods", "k8s.io")


class NodeError(ControlPlaneError):
    """The node could not be built, started or cleaned; the message carries the logs."""


@dataclass(frozen=True)
class NodeBinaries:
    """kubelet, kube-scheduler, kube-proxy and the static pause binary."""

    kubelet: Path
    kube_scheduler: Path
    kube_proxy: Path
    pause: Path


def build_node_binaries(timeout: float = 3 * 3600) -> NodeBinaries:
    """`tools/k8s/build.sh node` (a second when cached) and the binaries it reports."""
    proc = subprocess.run(
        ["bash", str(BUILD_SCRIPT), "node"],
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    if proc.returncode != 0:
        tail = "\n".join((proc.stdout + proc.stderr).splitlines()[-80:])
        raise NodeError(f"{BUILD_SCRIPT} node failed (exit {proc.returncode}):\n{tail}")
    line = next(x for x in proc.stdout.splitlines() if x.startswith("NODE_BIN="))
    bin_dir = Path(line.split("=", 1)[1])
    return NodeBinaries(
        *(bin_dir / n for n in ("kubelet", "kube-scheduler", "kube-proxy", "pause"))
    )


def require_tools() -> None:
    """Fail loudly when a Debian part of the node is missing (tools/install-system-deps.sh)."""
    if os.geteuid() != 0:
        raise NodeError("a real node needs root (kubelet, containerd, network set-up)")
    tools = ("containerd", "containerd-shim-runc-v2", "runc", "ctr", "iptables", "ip")
    missing = [t for t in tools if shutil.which(t) is None]
    missing += [p for p in ("bridge", "host-local", "loopback") if not (CNI_BIN_DIR / p).exists()]
    if missing:
        raise NodeError(f"missing {missing}: run tools/install-system-deps.sh (as root)")


def node_ip() -> str:
    """The machine's own address on its default-route interface (ACME_GATEWAY_NODE_IP wins):
    the kubelet's --node-ip and where Pods reach host services (API server, BIND, PostgreSQL).
    Never loopback: inside a Pod that is the Pod itself."""
    forced = os.environ.get("ACME_GATEWAY_NODE_IP")
    if forced:
        return forced
    routes = json.loads(_run(["ip", "-j", "-4", "route", "show", "default"]).stdout or "[]")
    devs = [r["dev"] for r in routes if "dev" in r] or ["eth0"]
    addrs = json.loads(_run(["ip", "-j", "-4", "addr", "show", "dev", devs[0]]).stdout or "[]")
    for link in addrs:
        for info in link.get("addr_info", []):
            if info.get("scope") == "global":
                return str(info["local"])
    raise NodeError(f"no global IPv4 address on {devs[0]}; set ACME_GATEWAY_NODE_IP")


def _run(
    argv: Sequence[str], *, check: bool = True, timeout: float = 60, input: str | None = None
) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run(
        list(argv), capture_output=True, text=True, timeout=timeout, check=False, input=input
    )
    if check and proc.returncode != 0:
        raise NodeError(f"{' '.join(argv)} failed ({proc.returncode}): {proc.stderr.strip()}")
    return proc


# ---------------------------------------------------------------- machine state


def _sysctl_path(name: str) -> Path:
    return Path("/proc/sys") / name.replace(".", "/")


def _read_sysctls() -> dict[str, str]:
    values = {}
    for name in SYSCTLS:
        try:
            values[name] = _sysctl_path(name).read_text().strip()
        except OSError:
            pass
    return values


def _restore_sysctls(saved: dict[str, str]) -> None:
    for name, value in saved.items():
        try:
            path = _sysctl_path(name)
            if path.read_text().strip() != value:
                path.write_text(value)
        except OSError:
            pass


def _iptables_variants() -> list[str]:
    names = ("iptables-nft", "ip6tables-nft", "iptables-legacy", "ip6tables-legacy")
    return [n for n in names if shutil.which(n)]


def _remove_chains() -> None:
    """Delete every KUBE-*/CNI-* chain and the rules that jump to them, in every table of
    every iptables variant (kube-proxy picks nft or legacy itself)."""
    for tool in _iptables_variants():
        family, backend = tool.split("-")
        dump = _run([f"{family}-{backend}-save"], check=False)
        if dump.returncode != 0:
            continue
        script = chain_removal_script(dump.stdout)
        if script:
            _run([f"{family}-{backend}-restore", "--noflush"], input=script, check=False)


def chain_removal_script(saved: str) -> str:
    """An iptables-restore --noflush script undoing our chains in an iptables-save dump:
    the jumps to them from other chains are deleted, then they are flushed and removed."""
    out: list[str] = []
    tables: list[tuple[str, list[str], list[str]]] = []
    for line in saved.splitlines():
        if line.startswith("*"):
            tables.append((line[1:], [], []))
        elif not tables:
            continue
        elif line.startswith(":"):
            chain = line[1:].split()[0]
            if chain.startswith(CHAIN_PREFIXES):
                tables[-1][2].append(chain)
        elif line.startswith("-A "):
            parts = line.split()
            jumps = any(p.startswith(CHAIN_PREFIXES) for p in parts[2:])
            if not parts[1].startswith(CHAIN_PREFIXES) and jumps:
                tables[-1][1].append("-D " + line[3:])
    for table, deletes, chains in tables:
        if deletes or chains:
            out.append(f"*{table}")
            out.extend(deletes)
            out.extend(f"-F {c}" for c in chains)
            out.extend(f"-X {c}" for c in chains)
            out.append("COMMIT")
    return "\n".join(out) + "\n" if out else ""


def _mounts_under(prefixes: Sequence[Path]) -> list[str]:
    points = []
    for line in Path("/proc/self/mountinfo").read_text().splitlines():
        point = line.split()[4].encode().decode("unicode_escape")
        if any(point == str(p) or point.startswith(f"{p}/") for p in prefixes):
            points.append(point)
    return points


def _unmount_under(prefixes: Sequence[Path]) -> None:
    for _ in range(3):
        points = _mounts_under(prefixes)
        if not points:
            return
        for point in sorted(points, key=len, reverse=True):
            _run(["umount", "-l", point], check=False)


def _cgroup_roots() -> list[Path]:
    base = Path("/sys/fs/cgroup")
    roots = [p for p in base.iterdir() if p.is_dir()] if base.is_dir() else []
    return [*roots, base] if (base / "cgroup.controllers").exists() else roots


def _remove_cgroups() -> None:
    """Kill what is left in the kubelet's/containerd's cgroups, then remove them bottom-up."""
    for root in _cgroup_roots():
        for name in CGROUP_NAMES:
            top = root / name
            if not top.is_dir():
                continue
            dirs = sorted((d for d in top.rglob("*") if d.is_dir()), key=lambda d: -len(d.parts))
            for d in [*dirs, top]:
                _kill_cgroup(d)
                for _ in range(20):
                    try:
                        d.rmdir()
                        break
                    except FileNotFoundError:
                        break
                    except OSError:
                        time.sleep(0.1)


def _kill_cgroup(d: Path) -> None:
    try:
        pids = (d / "cgroup.procs").read_text().split()
    except OSError:
        return
    for pid in pids:
        try:
            os.kill(int(pid), 9)
        except (ProcessLookupError, ValueError, PermissionError):
            pass


def _remove_netns() -> None:
    netns = Path("/run/netns")
    if not netns.is_dir():
        return
    for entry in netns.glob("cni-*"):
        _run(["umount", "-l", str(entry)], check=False)
        try:
            entry.unlink()
        except OSError:
            pass


def _delete_link(name: str) -> None:
    if Path(f"/sys/class/net/{name}").exists():
        _run(["ip", "link", "delete", name], check=False)


# ---------------------------------------------------------------- the node


class Node:
    """One node (kubelet + containerd + kube-scheduler + kube-proxy) joined to `cp`, which
    must have been started with `node_ip`."""

    def __init__(
        self,
        cp: ControlPlane,
        binaries: NodeBinaries | None = None,
        *,
        start_timeout: float = 120.0,
        lock_timeout: float = 3600.0,
    ) -> None:
        if not cp.node_ip:
            raise NodeError("the control plane was not started with node_ip")
        self.cp = cp
        self.binaries = binaries
        self.ip = cp.node_ip
        self.name = NODE_NAME
        self.start_timeout = start_timeout
        self.lock_timeout = lock_timeout
        self.workdir: Path | None = None
        self.socket = RUN_DIR / "containerd" / "containerd.sock"
        self._group = ProcessGroup()
        self._lock: IO[str] | None = None

    # -- lifecycle

    def start(self, workdir: Path | str) -> Node:
        """Lock the machine, sweep leftovers, start everything and wait for a Ready node."""
        require_tools()
        self.workdir = Path(workdir).resolve()
        self.workdir.mkdir(parents=True, exist_ok=True)
        self._take_lock()
        try:
            if self.binaries is None:
                self.binaries = build_node_binaries()
            self._sweep()
            RUN_DIR.mkdir(parents=True, exist_ok=True)
            saved = RUN_DIR / "sysctls.json"
            if not saved.exists():  # a killed run's file holds the machine's true values
                saved.write_text(json.dumps(_read_sysctls()))
            self._start_containerd()
            self._clear_containers()
            from tests.infra.images import ensure_pause_image

            ensure_pause_image(self, self.binaries.pause)
            self._write_cni()
            self._start_kubelet()
            self._start_scheduler()
            self._start_proxy()
            self._wait_ready()
        except BaseException as exc:
            logs = self.logs_text()
            self.stop()
            if isinstance(exc, ControlPlaneError):
                raise NodeError(f"{exc}\n{logs}") from exc
            raise
        return self

    def stop(self) -> None:
        """Stop Pods, processes, and put the machine back (idempotent)."""
        if self._lock is None:
            return
        try:
            self._drain()
            self._group.stop()
            self._sweep()
        finally:
            fcntl.flock(self._lock, fcntl.LOCK_UN)
            self._lock.close()
            self._lock = None

    def __enter__(self) -> Node:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- images

    def ctr(self, *args: str, timeout: float = 600) -> subprocess.CompletedProcess[str]:
        """`ctr` against the node's containerd, in the Kubernetes namespace."""
        return _run(["ctr", "-a", str(self.socket), "-n", "k8s.io", *args], timeout=timeout)

    def has_image(self, ref: str) -> bool:
        names = self.ctr("images", "ls", "-q").stdout.split()
        return ref in names

    def import_image(self, archive: Path) -> None:
        """Import a docker-archive/OCI tar (e.g. from tools/image/build.sh) into the node."""
        self.ctr("images", "import", "--no-unpack=false", str(archive))

    # -- diagnostics

    def logs_text(self, lines: int = 60) -> str:
        return self._group.logs_text(lines)

    # -- internals

    def _take_lock(self) -> None:
        LOCK_FILE.parent.mkdir(parents=True, exist_ok=True)
        fh = LOCK_FILE.open("a+")
        deadline = time.monotonic() + self.lock_timeout
        told = False
        while True:
            try:
                fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() > deadline:
                    fh.close()
                    raise NodeError(f"another node holds {LOCK_FILE} for too long") from None
                if not told:
                    print(f"node: waiting for {LOCK_FILE} (another node runs)", file=sys.stderr)
                    told = True
                time.sleep(1)
        fh.seek(0)
        fh.truncate()
        fh.write(f"{os.getpid()}\n")
        fh.flush()
        self._lock = fh

    def _sweep(self) -> None:
        """Remove every trace of a node, ours or a killed run's (we hold the lock)."""
        # A killed run's kubelet/containerd died with it (PR_SET_PDEATHSIG); its shims did not.
        _kill_shims()
        _remove_cgroups()
        _unmount_under([RUN_DIR, CONTAINERD_ROOT])
        _remove_netns()
        _delete_link(BRIDGE)
        _remove_chains()
        saved = RUN_DIR / "sysctls.json"
        if saved.exists():
            _restore_sysctls(json.loads(saved.read_text()))
        shutil.rmtree(RUN_DIR, ignore_errors=True)

    def _spawn(self, name: str, argv: Sequence[str]) -> Proc:
        assert self.workdir is not None
        return self._group.spawn(name, argv, self.workdir)

    def _check_alive(self) -> None:
        for proc in self._group.procs:
            code = proc.popen.poll()
            if code is not None:
                raise NodeError(f"{proc.name} exited with code {code}")

    def _kubeconfig(self, stem: str, cn: str, org: str | None) -> Path:
        assert self.cp.pki is not None and self.workdir is not None
        pki_dir = self.workdir / "pki"
        crt, key = issue_cert(self.cp.pki, pki_dir, stem, cn, org)
        # The node's components use the node address, as they would on a real machine.
        server = f"https://{self.ip}:{_port(self.cp)}"
        return write_kubeconfig(
            self.workdir / f"{stem}.kubeconfig", server, self.cp.pki.ca_cert, crt, key, cn
        )

    def _start_containerd(self) -> None:
        assert self.workdir is not None
        state = RUN_DIR / "containerd"
        CONTAINERD_ROOT.mkdir(parents=True, exist_ok=True)
        config = f"""version = 2
root = "{CONTAINERD_ROOT}"
state = "{state}"
[grpc]
  address = "{self.socket}"
[ttrpc]
  address = "{state}/containerd.sock.ttrpc"
[debug]
  address = ""
[metrics]
  address = ""
[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = "{PAUSE_IMAGE}"
  # No CAP_SYS_RESOURCE in this VM: without this every sandbox fails in runc.
  restrict_oom_score_adj = true
  enable_selinux = false
  [plugins."io.containerd.grpc.v1.cri".containerd]
    snapshotter = "overlayfs"
    default_runtime_name = "runc"
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = "{CNI_BIN_DIR}"
    conf_dir = "{RUN_DIR / "cni" / "net.d"}"
  [plugins."io.containerd.grpc.v1.cri".registry]
    config_path = ""
"""
        path = self.workdir / "containerd.toml"
        path.write_text(config)
        proc = self._spawn("containerd", ["containerd", "--config", str(path)])
        deadline = time.monotonic() + self.start_timeout
        while time.monotonic() < deadline:
            self._check_alive()
            if self.socket.exists():
                probe = _run(["ctr", "-a", str(self.socket), "version"], check=False)
                if probe.returncode == 0:
                    return
            time.sleep(0.2)
        raise NodeError(f"{proc.name} did not open {self.socket}")

    def _clear_containers(self) -> None:
        """Delete containers a killed run left in the persistent containerd root."""
        for cid in self.ctr("containers", "ls", "-q").stdout.split():
            _run(["ctr", "-a", str(self.socket), "-n", "k8s.io", "tasks", "kill", "-s", "9", cid],
                 check=False)  # fmt: skip
            _run(["ctr", "-a", str(self.socket), "-n", "k8s.io", "tasks", "delete", "-f", cid],
                 check=False)  # fmt: skip
            _run(["ctr", "-a", str(self.socket), "-n", "k8s.io", "containers", "delete", cid],
                 check=False)  # fmt: skip

    def _write_cni(self) -> None:
        conf_dir = RUN_DIR / "cni" / "net.d"
        conf_dir.mkdir(parents=True, exist_ok=True)
        net = {
            "cniVersion": "0.4.0",
            "name": CNI_NETWORK,
            "plugins": [
                {
                    "type": "bridge",
                    "bridge": BRIDGE,
                    "isGateway": True,
                    "hairpinMode": True,
                    "ipam": {
                        "type": "host-local",
                        "ranges": [[{"subnet": POD_CIDR}]],
                        # Without it Pods get no default route (the Service range is routed
                        # through the bridge's gateway to kube-proxy's rules).
                        "routes": [{"dst": "0.0.0.0/0"}],
                        "dataDir": str(RUN_DIR / "cni" / "ipam"),
                    },
                },
                {"type": "portmap", "capabilities": {"portMappings": True}},
            ],
        }
        (conf_dir / "10-acme-gateway.conflist").write_text(json.dumps(net, indent=2))

    def _start_kubelet(self) -> None:
        assert self.binaries is not None and self.workdir is not None and self.cp.pki
        kubeconfig = self._kubeconfig("kubelet", f"system:node:{self.name}", "system:nodes")
        serving = issue_cert(
            self.cp.pki, self.workdir / "pki", "kubelet-serving", self.name,
            server_names=[self.name, "localhost"], server_ips=[self.ip, "127.0.0.1"],
        )  # fmt: skip
        root = RUN_DIR / "kubelet"
        root.mkdir(parents=True, exist_ok=True)
        resolv = self.workdir / "pod-resolv.conf"
        # Pods get no nameserver: nothing in them may resolve names off this machine.
        resolv.write_text("# acme-gateway test node: no cluster DNS\n")
        config = {
            "apiVersion": "kubelet.config.k8s.io/v1beta1",
            "kind": "KubeletConfiguration",
            # cgroup v1 here; v1.36 refuses it unless told.
            "failCgroupV1": False,
            "cgroupDriver": "cgroupfs",
            "containerRuntimeEndpoint": f"unix://{self.socket}",
            "address": "0.0.0.0",
            "port": free_port(),
            "readOnlyPort": 0,
            "healthzBindAddress": "127.0.0.1",
            "healthzPort": free_port(),
            "tlsCertFile": str(serving[0]),
            "tlsPrivateKeyFile": str(serving[1]),
            "authentication": {
                "anonymous": {"enabled": False},
                "webhook": {"enabled": False},
                "x509": {"clientCAFile": str(self.cp.pki.ca_cert)},
            },
            "authorization": {"mode": "Webhook"},
            "resolvConf": str(resolv),
            "podLogsDir": str(self.workdir / "pod-logs"),
            "failSwapOn": False,
            "protectKernelDefaults": False,
            "serializeImagePulls": False,
            # Images are imported, never pulled: never garbage-collect them.
            "imageGCHighThresholdPercent": 100,
            "imageGCLowThresholdPercent": 99,
            "evictionHard": {
                "memory.available": "50Mi",
                "nodefs.available": "1%",
                "imagefs.available": "1%",
                "nodefs.inodesFree": "1%",
            },
            "maxPods": 60,
            "rotateCertificates": False,
            "serverTLSBootstrap": False,
            "enableControllerAttachDetach": True,
            "registerNode": True,
            "staticPodPath": "",
            "shutdownGracePeriod": "0s",
        }
        path = self.workdir / "kubelet.yaml"
        path.write_text(yaml.safe_dump(config))
        self._spawn(
            "kubelet",
            [
                str(self.binaries.kubelet),
                f"--config={path}",
                f"--kubeconfig={kubeconfig}",
                f"--root-dir={root}",
                f"--cert-dir={self.workdir / 'kubelet-certs'}",
                f"--node-ip={self.ip}",
                f"--hostname-override={self.name}",
                "--v=1",
            ],
        )

    def _start_scheduler(self) -> None:
        assert self.binaries is not None
        kubeconfig = self._kubeconfig("kube-scheduler", "system:kube-scheduler", None)
        self._spawn(
            "kube-scheduler",
            [
                str(self.binaries.kube_scheduler),
                f"--kubeconfig={kubeconfig}",
                f"--authentication-kubeconfig={kubeconfig}",
                f"--authorization-kubeconfig={kubeconfig}",
                "--leader-elect=false",
                "--bind-address=127.0.0.1",
                f"--secure-port={free_port()}",
            ],
        )

    def _start_proxy(self) -> None:
        assert self.binaries is not None and self.workdir is not None
        kubeconfig = self._kubeconfig("kube-proxy", "system:kube-proxy", None)
        config = {
            "apiVersion": "kubeproxy.config.k8s.io/v1alpha1",
            "kind": "KubeProxyConfiguration",
            "clientConnection": {"kubeconfig": str(kubeconfig)},
            "mode": "iptables",
            "hostnameOverride": self.name,
            "clusterCIDR": POD_CIDR,
            # Service traffic between Pods on one bridge: SNAT it, so replies come back
            # through the host's conntrack instead of straight across the bridge.
            "iptables": {"masqueradeAll": True},
            "healthzBindAddress": f"127.0.0.1:{free_port()}",
            "metricsBindAddress": f"127.0.0.1:{free_port()}",
            # Leave the machine's conntrack settings alone.
            "conntrack": {
                "maxPerCore": 0,
                "min": 0,
                "tcpEstablishedTimeout": "0s",
                "tcpCloseWaitTimeout": "0s",
            },
            "nodePortAddresses": [f"{self.ip}/32"],
        }
        path = self.workdir / "kube-proxy.yaml"
        path.write_text(yaml.safe_dump(config))
        self._spawn("kube-proxy", [str(self.binaries.kube_proxy), f"--config={path}"])

    def _wait_ready(self) -> None:
        """Node Ready and untainted, and the kubernetes Service reachable through kube-proxy."""
        deadline = time.monotonic() + self.start_timeout
        last = ""
        while time.monotonic() < deadline:
            self._check_alive()
            got = self.cp.kubectl("get", "node", self.name, "-o", "json", check=False)
            if got.returncode == 0:
                node = json.loads(got.stdout)
                ready = [
                    c
                    for c in node["status"].get("conditions", [])
                    if c["type"] == "Ready" and c["status"] == "True"
                ]
                taints = node["spec"].get("taints", [])
                if ready and not taints:
                    return
                last = f"ready={bool(ready)} taints={taints}"
            else:
                last = got.stderr.strip()
            time.sleep(0.5)
        raise NodeError(f"node {self.name} not Ready and untainted: {last}")

    def _drain(self) -> None:
        """Let the kubelet stop every Pod (CNI DEL, unmounts) before it stops itself."""
        if self._group.running("kubelet") is None:
            return
        scheduler = self._group.running("kube-scheduler")
        if scheduler is not None:
            scheduler.stop()  # no new Pods are placed from now on
        self.cp.kubectl(
            "delete", "pods", "--all", "--all-namespaces", "--grace-period=0", "--force",
            "--wait=false", check=False, timeout=60,
        )  # fmt: skip
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            left = _run(
                ["ctr", "-a", str(self.socket), "-n", "k8s.io", "tasks", "ls", "-q"], check=False
            )
            if left.returncode != 0 or not left.stdout.strip():
                break
            time.sleep(0.5)
        self._clear_containers()


def _port(cp: ControlPlane) -> int:
    assert cp.server is not None
    return int(cp.server.rsplit(":", 1)[1])


def _kill_shims() -> None:
    """containerd's runc shims outlive containerd by design; ours run from our state dir."""
    killed: list[Path] = []
    for proc_dir in Path("/proc").iterdir():
        if not proc_dir.name.isdigit():
            continue
        try:
            cmdline = (proc_dir / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        # Ours are started with `-address <our socket>`, under RUN_DIR.
        if cmdline and cmdline[0].endswith(b"containerd-shim-runc-v2"):
            if str(RUN_DIR).encode() in b" ".join(cmdline):
                try:
                    os.kill(int(proc_dir.name), 9)
                    killed.append(proc_dir)
                except ProcessLookupError:
                    pass
    # SIGKILL is asynchronous: wait until each shim is gone (or only a zombie left for
    # whoever adopted it), so the caller sees a machine without them.
    deadline = time.monotonic() + 10
    for proc_dir in killed:
        while time.monotonic() < deadline and _alive(proc_dir):
            time.sleep(0.05)


def _alive(proc_dir: Path) -> bool:
    try:
        stat = (proc_dir / "stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def pod_cidr_free() -> bool:
    """True when no route of the machine overlaps the Pod and Service ranges."""
    routes = json.loads(_run(["ip", "-j", "-4", "route", "show"]).stdout or "[]")
    ours = [ipaddress.ip_network(POD_CIDR), ipaddress.ip_network(SERVICE_CIDR)]
    for route in routes:
        dst = route.get("dst", "")
        if dst in ("default", "") or route.get("dev") == BRIDGE:
            continue
        net = ipaddress.ip_network(dst if "/" in dst else f"{dst}/32", strict=False)
        if any(net.overlaps(o) for o in ours):
            return False
    return True
