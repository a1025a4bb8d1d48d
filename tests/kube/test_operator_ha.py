"""Two operator replicas, one active (issue 14, item 4): kill -9 the leader mid-burst,
then pause the new leader past its deadline, then stop one cleanly.

Two real `acme-gateway-operator` processes with `--leader-election` share one PostgreSQL
store (the chart's HA mode) and the harness kube-apiserver. While registrations, domain
grants, HMAC rotations and issued certificates arrive, the leader is killed with SIGKILL.
A `kubectl get secrets --watch` running all along records every write to a Secret, so
"exported once" and "rotated once" are checked against the API server's own history.
"""

from __future__ import annotations

import itertools
import json
import re
import signal
import subprocess
import threading
import time
import urllib.request
from datetime import datetime
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from acme_operator.constants import ROTATE_ANNOTATION
from prometheus_client.parser import text_string_to_metric_families

from acme_server.store.schema import certificates, registrations
from tests.infra.kube import ControlPlane
from tests.kube.operator_proc import (
    OperatorProcess,
    _migrate,
    allowed_domain,
    apply,
    condition,
    ensure_ca_root,
    insert_certificate,
    list_objs,
    registration,
    run,
    secret_text,
    store_execute,
    store_hmac_keys,
)
from tests.polling import wait_for
from tests.procs import free_port

COUNT = 24  # registrations (and AllowedDomains); the first half exists before the burst
HALF = COUNT // 2
ROTATED = range(6)  # registrations whose HMAC key the burst rotates once
LEASE, RENEW, RETRY = 6.0, 4.0, 0.5
TAKEOVER_SLACK = 4.0
LEASE_NAME = "acme-gateway-operator"
LOG_TIME = re.compile(r"^\[?(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d[,.]\d+)")


def _operator(cp: ControlPlane, url: str, ns: str, tmp: Path, pod: str) -> OperatorProcess:
    assert cp.kubeconfig is not None
    metrics_port = free_port()
    op = OperatorProcess(
        cp.kubeconfig,
        url,
        tmp,
        namespaces=(ns,),
        extra_args=(
            "--leader-election",
            "--lease-namespace",
            ns,
            "--lease-duration",
            str(LEASE),
            "--lease-renew-deadline",
            str(RENEW),
            "--lease-retry-period",
            str(RETRY),
            "--metrics-listen",
            f"127.0.0.1:{metrics_port}",
        ),
        extra_env={"POD_NAME": pod},
    )
    op.metrics_url = f"http://127.0.0.1:{metrics_port}/metrics"  # type: ignore[attr-defined]
    return op


def _metrics(op: OperatorProcess) -> dict[str, float]:
    """Sum of every sample per metric name (labels folded: we only need totals here)."""
    with urllib.request.urlopen(op.metrics_url, timeout=10) as resp:  # type: ignore[attr-defined]
        text = resp.read().decode()
    out: dict[str, float] = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            out[s.name] = out.get(s.name, 0.0) + s.value
    return out


def _holder(cp: ControlPlane, ns: str) -> str:
    proc = cp.kubectl(
        "get", "lease", "-n", ns, LEASE_NAME, "-o", "jsonpath={.spec.holderIdentity}", check=False
    )
    return proc.stdout.strip() if proc.returncode == 0 else ""


class SecretWatch:
    """`kubectl get secrets --watch` for the whole test: every ADDED/MODIFIED/DELETED."""

    def __init__(self, cp: ControlPlane, ns: str, out: Path) -> None:
        assert cp.binaries is not None and cp.kubeconfig is not None
        self.out = out
        self._file = out.open("wb")
        self.proc = subprocess.Popen(
            [
                str(cp.binaries.kubectl),
                "--kubeconfig",
                str(cp.kubeconfig),
                "get",
                "secrets",
                "-n",
                ns,
                "--watch",
                "--output-watch-events",
                "-o",
                "json",
            ],
            stdout=self._file,
            stderr=subprocess.STDOUT,
        )

    def events(self) -> list[dict[str, Any]]:
        text = self.out.read_text()
        decoder, pos = json.JSONDecoder(), 0
        events: list[dict[str, Any]] = []
        while True:
            while pos < len(text) and text[pos].isspace():
                pos += 1
            if pos >= len(text):
                return events
            event, pos = decoder.raw_decode(text, pos)
            events.append(event)

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait(10)
        self._file.close()


def _ready(cp: ControlPlane, ns: str, kind: str) -> set[str]:
    return {
        o["metadata"]["name"]
        for o in list_objs(cp, ns, kind)
        if (condition(o) or {}).get("status") == "True"
    }


def _exported(url: str, ns: str) -> tuple[int, int]:
    """(certificates of this namespace's registrations, of those exported)."""

    def read(conn: sa.Connection) -> tuple[int, int]:
        mine = certificates.c.registration_id.in_(
            sa.select(registrations.c.id).where(registrations.c.name.like(f"{ns}/%"))
        )
        total = conn.execute(sa.select(sa.func.count()).where(mine)).scalar_one()
        done = conn.execute(
            sa.select(sa.func.count()).where(
                mine, certificates.c.exported_revision >= certificates.c.revision
            )
        ).scalar_one()
        return int(total), int(done)

    return store_execute(url, read)


def _log_time(line: str) -> datetime | None:
    m = LOG_TIME.search(line)
    return datetime.fromisoformat(m.group(1).replace(",", ".")) if m else None


def test_standby_takes_over_from_a_killed_leader_without_duplicates(
    control_plane: ControlPlane, kube_namespace: str, postgres_url: str, tmp_path: Path
) -> None:
    cp, ns, url = control_plane, kube_namespace, postgres_url
    run(_migrate(url))
    ensure_ca_root(url)
    watch = SecretWatch(cp, ns, tmp_path / "secret-watch.json")
    a = _operator(cp, url, ns, tmp_path, "op-a")
    b = _operator(cp, url, ns, tmp_path, "op-b")
    burst: threading.Thread | None = None
    try:
        a.start()
        wait_for("op-a leads", lambda: _holder(cp, ns).startswith("op-a-"), timeout=30)
        b.start()  # healthy (its /healthz answers) while standing by
        assert _metrics(a)["acme_operator_leader"] == 1
        assert _metrics(b)["acme_operator_leader"] == 0

        items: list[dict[str, Any]] = []
        for i in range(HALF):
            items += [registration(f"r{i}"), allowed_domain(f"d{i}", f"r{i}", f"r{i}.example")]
        apply(cp, ns, {"apiVersion": "v1", "kind": "List", "items": items})
        wait_for("first half Ready", lambda: len(_ready(cp, ns, "acmeregistration")) == HALF)

        # The burst: new registrations and grants, rotations, issued certificates, one
        # after another; the leader is killed halfway through it.
        halfway = threading.Event()
        failures: list[BaseException] = []

        def produce() -> None:
            try:
                for step, i in enumerate(range(HALF, COUNT)):
                    apply(cp, ns, registration(f"r{i}"))
                    apply(cp, ns, allowed_domain(f"d{i}", f"r{i}", f"r{i}.example"))
                    j = i - HALF
                    insert_certificate(url, f"{ns}/r{j}", [f"a.r{j}.example"])
                    insert_certificate(url, f"{ns}/r{j}", [f"b.r{j}.example"])
                    if j in ROTATED:
                        cp.kubectl(
                            "annotate", "-n", ns, "acmeregistration", f"r{j}",
                            f"{ROTATE_ANNOTATION}=rot-1",
                        )  # fmt: skip
                    if step == HALF // 2:
                        halfway.set()
            except BaseException as exc:  # reported by the main thread
                failures.append(exc)
                halfway.set()

        burst = threading.Thread(target=produce, name="burst")
        burst.start()
        assert halfway.wait(120)
        wait_for("an export", lambda: _exported(url, ns)[1] >= 1, timeout=30, interval=0.1)
        before_b = _metrics(b)
        assert before_b["acme_operator_leader"] == 0
        a.kill()
        killed_at, killed_wall = time.monotonic(), datetime.now()
        progress = _exported(url, ns)
        wait_for(
            "op-b leads",
            lambda: _holder(cp, ns).startswith("op-b-"),
            timeout=LEASE + RETRY * 1.2 + TAKEOVER_SLACK + 5,
            interval=0.1,
        )
        takeover = time.monotonic() - killed_at
        print(f"takeover after {takeover:.1f}s; (certificates, exported) at the kill: {progress}")
        assert takeover <= LEASE + RETRY * 1.2 + TAKEOVER_SLACK, takeover
        burst.join(180)
        assert not burst.is_alive() and not failures, failures

        # The standby acted on nothing while op-a held the lease.
        assert before_b.get("acme_operator_reconciles_total", 0) == 0, before_b
        assert before_b.get("acme_operator_certificate_exports_total", 0) == 0, before_b
        b_lines = b.logs(100000).splitlines()
        acquired = [n for n, line in enumerate(b_lines) if "acquired lease" in line]
        assert acquired, b.logs()
        standby_lines = b_lines[: acquired[0]]
        acting = [
            ln
            for ln in standby_lines
            if any(w in ln for w in ("kopf.objects", "Handler", "exported"))
        ]
        assert not acting, acting
        when = _log_time(b_lines[acquired[0]])
        assert when is not None and when >= killed_wall.replace(microsecond=0), (when, killed_wall)

        # Everything converges under op-b.
        wait_for(
            "all registrations and domains Ready",
            lambda: (
                len(_ready(cp, ns, "acmeregistration")) == COUNT
                and len(_ready(cp, ns, "alloweddomain")) == COUNT
            ),
            timeout=120,
        )
        wait_for("all exported", lambda: _exported(url, ns) == (COUNT, COUNT), timeout=60)

        def rotated() -> list[str]:
            objs = {o["metadata"]["name"]: o for o in list_objs(cp, ns, "acmeregistration")}
            return [
                f"r{j}"
                for j in ROTATED
                if objs[f"r{j}"].get("status", {}).get("hmacKeyRotation") != "rot-1"
            ]

        wait_for("every rotation handled", lambda: not rotated(), timeout=60)

        # A leader paused past its renew deadline (SIGSTOP: a frozen node, a starved
        # process) loses the Lease to the standby, and exits the moment it runs again.
        a.start()  # op-a's container restarted: a standby now
        assert _metrics(a)["acme_operator_leader"] == 0
        assert b.proc is not None
        b.proc.send_signal(signal.SIGSTOP)
        try:
            wait_for(
                "op-a leads again",
                lambda: _holder(cp, ns).startswith("op-a-"),
                timeout=LEASE + RETRY * 1.2 + TAKEOVER_SLACK + 5,
                interval=0.1,
            )
        finally:
            b.proc.send_signal(signal.SIGCONT)
        assert b.proc.wait(15) == 3, b.logs()
        assert "lost the lease" in b.logs(), b.logs()
        assert _metrics(a)["acme_operator_leader"] == 1

        # A clean stop (SIGTERM: a rolling update) hands the Lease back: the standby takes
        # it at its next attempt instead of after the lease duration.
        b.start()
        a.stop()
        assert a.proc is not None and a.proc.returncode == 0, a.logs()
        handed = time.monotonic()
        wait_for(
            "op-b leads after the hand-back",
            lambda: _holder(cp, ns).startswith("op-b-"),
            timeout=30,
            interval=0.1,
        )
        assert time.monotonic() - handed <= RETRY * 1.2 + TAKEOVER_SLACK
        assert "released lease" in a.logs(), a.logs()
        time.sleep(2 * RETRY)  # the watch catches up
        assert watch.proc.poll() is None, "the Secret watch ended early: history incomplete"
        events = watch.events()
    finally:
        if burst is not None:
            burst.join(180)
        b.stop()
        a.stop()
        watch.stop()
        print(a.logs())
        print(b.logs())

    # Every certificate exported exactly once: one Secret each, created once, never rewritten.
    history: dict[str, list[dict[str, Any]]] = {}
    for event in events:
        history.setdefault(event["object"]["metadata"]["name"], []).append(event)

    def purpose(name: str) -> str:
        labels = history[name][-1]["object"]["metadata"].get("labels") or {}
        return str(labels.get("acme-gateway.io/purpose", ""))

    certs = [n for n in history if purpose(n) == "certificate"]
    assert len(certs) == COUNT, sorted(certs)
    serials = {
        history[n][-1]["object"]["metadata"]["annotations"]["acme-gateway.io/serial"] for n in certs
    }
    assert len(serials) == COUNT
    for name in certs:
        assert [e["type"] for e in history[name]] == ["ADDED"], (name, history[name])

    # Every HMAC Secret created once; rotated exactly once where asked, else never rewritten.
    hmac = [n for n in history if purpose(n) == "eab-hmac-key"]
    assert sorted(hmac) == sorted(f"r{i}-eab" for i in range(COUNT))
    keys = store_hmac_keys(url, ns)
    for i in range(COUNT):
        seen = history[f"r{i}-eab"]
        assert seen[0]["type"] == "ADDED" and "DELETED" not in [e["type"] for e in seen[1:]]
        assert [e["type"] for e in seen].count("ADDED") == 1
        values = [secret_text(e["object"], "secret") for e in seen]
        changes = sum(1 for old, new in itertools.pairwise(values) if old != new)
        assert changes == (1 if i in ROTATED else 0), (f"r{i}", changes)
        assert keys[f"{ns}/r{i}"] == values[-1]  # the store holds the Secret's current key

    # The kill landed mid-burst (else this proved nothing about a takeover).
    assert progress[1] < COUNT, progress
