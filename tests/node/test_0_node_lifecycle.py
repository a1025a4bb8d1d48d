"""The node harness itself (runs first, before the session's cluster takes the node lock):
a node comes up Ready and runs a Pod, a second node waits for the machine's lock, and
stopping it puts the machine back exactly as it was (links, iptables chains, cgroups,
mounts, network namespaces, sysctls, processes)."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest

from tests.infra import node as node_mod
from tests.infra.kube import ControlPlane
from tests.infra.node import Node, NodeError


def machine_state() -> dict[str, object]:
    def chains(tool: str) -> list[str]:
        out = subprocess.run([tool], capture_output=True, text=True, check=False).stdout
        return sorted(line[1:].split()[0] for line in out.splitlines() if line.startswith(":"))

    cgroups = sorted(
        str(p) for root in node_mod._cgroup_roots() for p in root.iterdir() if p.is_dir()
    )
    mounts = sorted(
        line.split()[4] for line in Path("/proc/self/mountinfo").read_text().splitlines()
    )
    netns = sorted(os.listdir("/run/netns")) if Path("/run/netns").is_dir() else []
    rows = subprocess.run(["ps", "-eo", "stat=,comm="], capture_output=True, text=True).stdout
    # A zombie is already dead: only its adopter (PID 1 here) can reap it.
    procs = [
        comm for stat, comm in (r.split(None, 1) for r in rows.splitlines()) if "Z" not in stat
    ]
    ours = sorted(
        p
        for p in procs
        if p in {"kubelet", "containerd", "kube-proxy", "kube-scheduler"}
        or p.startswith("containerd-shim")
    )
    return {
        "links": sorted(os.listdir("/sys/class/net")),
        "sysctls": node_mod._read_sysctls(),
        "chains": {
            t: chains(t)
            for t in ("iptables-nft-save", "ip6tables-nft-save", "iptables-legacy-save")
        },
        "cgroups": cgroups,
        "mounts": mounts,
        "netns": netns,
        "processes": ours,
        "run_dir": node_mod.RUN_DIR.exists(),
    }


def test_node_runs_pods_and_teardown_restores_the_machine(tmp_path: Path) -> None:
    before = machine_state()
    cp = ControlPlane(node_ip=node_mod.node_ip()).start(tmp_path / "cp")
    try:
        node = Node(cp).start(tmp_path / "node")
        try:
            pod = {
                "apiVersion": "v1",
                "kind": "Pod",
                "metadata": {"name": "probe", "namespace": "default"},
                "spec": {
                    "containers": [
                        {"name": "pause", "image": node_mod.PAUSE_IMAGE, "imagePullPolicy": "Never"}
                    ]
                },
            }
            cp.kubectl("apply", "-f", "-", input=json.dumps(pod))
            cp.kubectl("wait", "--for=condition=Ready", "pod/probe", "--timeout=60s", timeout=90)
            ip = cp.kubectl("get", "pod", "probe", "-o", "jsonpath={.status.podIP}").stdout
            assert ip.startswith(node_mod.POD_CIDR.rsplit(".", 2)[0] + "."), ip
            during = machine_state()
            assert node_mod.BRIDGE in during["links"]  # type: ignore[operator]
            all_chains = [c for cs in during["chains"].values() for c in cs]  # type: ignore[attr-defined]
            assert any(c.startswith("KUBE-") for c in all_chains), during["chains"]
            # One node per machine: a second one waits for the lock, then gives up.
            with pytest.raises(NodeError, match="another node holds"):
                Node(cp, lock_timeout=1).start(tmp_path / "node2")
        finally:
            node.stop()
    finally:
        cp.stop()
    after = machine_state()
    for key in before:
        assert after[key] == before[key], (key, before[key], after[key])
