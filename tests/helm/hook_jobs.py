"""Playing the chart's hook Job (the CA Secret) in a control plane that runs no Pods.

`helm install`/`upgrade` wait for the pre-install/pre-upgrade Job to complete. The test
control plane runs neither the Job controller nor a kubelet, so the test plays both: it
runs the Job container's command and arguments locally with a token of the Job's own
ServiceAccount (hence exactly the chart's RBAC for it), then writes the Job's status as the
Job controller would (Complete, or Failed when the command failed), which releases helm.
"""

from __future__ import annotations

import json
import subprocess
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from tests.helm.operator_proc import OPERATOR
from tests.infra.kube import ControlPlane, kubeconfig_env, merge_patch, service_account_kubeconfig

HOOK_SELECTOR = "app.kubernetes.io/component=ca-init"


@dataclass
class Played:
    """What the played Job runs printed, per run; errors end the context with a failure."""

    outputs: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)


def run_job_container(
    cp: ControlPlane, namespace: str, job: dict[str, Any], workdir: Path
) -> subprocess.CompletedProcess[str]:
    """The Job's container command, run here with its ServiceAccount's token."""
    pod = job["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    command = list(container["command"]) + list(container.get("args", []))
    assert command[0] == "acme-gateway-operator", command
    kubeconfig = service_account_kubeconfig(
        cp,
        namespace,
        pod["serviceAccountName"],
        workdir / f"{job['metadata']['name']}-{uuid.uuid4().hex[:6]}.kubeconfig",
    )
    return subprocess.run(
        [str(OPERATOR), *command[1:]],
        env=kubeconfig_env(kubeconfig),
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def _items(cp: ControlPlane, *args: str) -> list[dict[str, Any]]:
    proc = cp.kubectl("get", *args, "-o", "json", check=False)
    if proc.returncode != 0:
        return []
    items: list[dict[str, Any]] = json.loads(proc.stdout)["items"]
    return items


def _finished_status(ok: bool) -> dict[str, Any]:
    now = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    reason = "CompletionsReached" if ok else "BackoffLimitExceeded"
    types = ("SuccessCriteriaMet", "Complete") if ok else ("FailureTarget", "Failed")
    conditions = [
        {"type": kind, "status": "True", "reason": reason, "message": "played by the test",
         "lastProbeTime": now, "lastTransitionTime": now}
        for kind in types
    ]  # fmt: skip
    status: dict[str, Any] = {"startTime": now, "conditions": conditions}
    if ok:
        status |= {"completionTime": now, "succeeded": 1}
    else:
        status |= {"failed": 1}
    return {"status": status}


def _play_once(
    cp: ControlPlane, namespace: str, workdir: Path, seen: set[str], out: Played
) -> None:
    for job in _items(cp, "jobs", "-n", namespace, "-l", HOOK_SELECTOR):
        uid = job["metadata"]["uid"]
        if uid in seen:
            continue
        seen.add(uid)
        proc = run_job_container(cp, namespace, job, workdir)
        out.outputs.append(proc.stdout + proc.stderr)
        if proc.returncode != 0:
            out.errors.append(f"hook Job {job['metadata']['name']} failed:\n{proc.stderr}")
        status = _finished_status(proc.returncode == 0)
        name = job["metadata"]["name"]
        cp.kubectl(*merge_patch(namespace, "job", name, status, "--subresource=status"))


@contextmanager
def playing_hook_jobs(cp: ControlPlane, namespace: str, workdir: Path) -> Iterator[Played]:
    """Run every hook Job that appears in `namespace` while the block runs (helm install)."""
    played, seen, stop = Played(), set[str](), threading.Event()

    def loop() -> None:
        while not stop.is_set():
            try:
                _play_once(cp, namespace, workdir, seen, played)
            except Exception as exc:  # reported when the block ends
                played.errors.append(repr(exc))
            time.sleep(0.3)

    thread = threading.Thread(target=loop, daemon=True)
    thread.start()
    try:
        yield played
    finally:
        stop.set()
        thread.join(timeout=30)
    assert not played.errors, played.errors
