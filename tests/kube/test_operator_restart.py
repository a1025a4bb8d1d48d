"""An operator killed halfway re-converges without redoing finished work (issue 10, item 4).

The real control plane and a real operator process, killed with SIGKILL while a batch of
registrations is being reconciled and again while certificates are being exported. Proof
that finished work is not redone: the resourceVersions of Secrets written before the kill
are unchanged afterwards, the store keys are the same, and each HMAC key was generated once.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import sqlalchemy as sa

from acme_server.store.schema import certificates
from tests.infra.kube import ControlPlane
from tests.kube.operator_proc import (
    OperatorProcess,
    allowed_domain,
    apply,
    condition,
    ensure_ca_root,
    events_for,
    insert_certificate,
    list_objs,
    registration,
    store_execute,
    store_hmac_keys,
    store_url,
)
from tests.polling import wait_for

__all__ = ["store_url"]  # fixture

COUNT = 16


def _ready_names(cp: ControlPlane, ns: str, kind: str) -> set[str]:
    return {
        o["metadata"]["name"]
        for o in list_objs(cp, ns, kind)
        if (condition(o) or {}).get("status") == "True"
    }


def _secret_versions(cp: ControlPlane, ns: str, purpose: str) -> dict[str, str]:
    items = list_objs(cp, ns, "secrets", f"acme-gateway.io/purpose={purpose}")
    return {s["metadata"]["name"]: s["metadata"]["resourceVersion"] for s in items}


def _exported(url: str) -> int:
    def read(conn: sa.Connection) -> int:
        q = sa.select(sa.func.count()).where(
            certificates.c.exported_revision >= certificates.c.revision
        )
        return int(conn.execute(q).scalar_one())

    return store_execute(url, read)


def _apply_all(cp: ControlPlane, ns: str) -> None:
    items: list[dict[str, Any]] = []
    for i in range(COUNT):
        items.append(registration(f"r{i}"))
        items.append(allowed_domain(f"d{i}", f"r{i}", f"r{i}.example"))
    apply(cp, ns, {"apiVersion": "v1", "kind": "List", "items": items})


def test_restart_midway_redoes_no_finished_work(
    control_plane: ControlPlane, kube_namespace: str, store_url: str, tmp_path: Path
) -> None:
    ns, cp = kube_namespace, control_plane
    assert cp.kubeconfig is not None
    op = OperatorProcess(cp.kubeconfig, store_url, tmp_path, namespaces=(ns,)).start()
    try:
        ensure_ca_root(store_url)
        _apply_all(cp, ns)
        # Kill while some, not all, are done.
        wait_for(
            "some registrations Ready",
            lambda: len(_ready_names(cp, ns, "acmeregistration")) >= 2,
            timeout=60,
            interval=0.1,
        )
        op.kill()
        hmac_before = _secret_versions(cp, ns, "eab-hmac-key")
        keys_before = store_hmac_keys(store_url, ns)
        assert hmac_before and keys_before  # something was finished before the kill
        op.start()
        wait_for(
            "all registrations and domains Ready",
            lambda: (
                len(_ready_names(cp, ns, "acmeregistration")) == COUNT
                and len(_ready_names(cp, ns, "alloweddomain")) == COUNT
            ),
            timeout=90,
        )
        hmac_after = _secret_versions(cp, ns, "eab-hmac-key")
        keys_after = store_hmac_keys(store_url, ns)
        assert len(hmac_after) == COUNT and len(keys_after) == COUNT
        rewritten = {k for k, v in hmac_before.items() if hmac_after.get(k) != v}
        assert not rewritten, f"HMAC Secrets written again after the restart: {rewritten}"
        changed = {k for k, v in keys_before.items() if keys_after.get(k) != v}
        assert not changed, f"store keys changed after the restart: {changed}"
        # Each key generated once: never a second SecretCreated (one posted by the killed
        # process may be lost with it; Events are best effort).
        for i in range(COUNT):
            created = [e for e in events_for(cp, ns, f"r{i}") if e["reason"] == "SecretCreated"]
            assert sum(e.get("count", 1) for e in created) <= 1, (f"r{i}", created)

        # The same for the certificate outbox: kill it halfway through a batch of exports.
        for i in range(COUNT):
            insert_certificate(store_url, f"{ns}/r{i}", [f"r{i}.example"])
        wait_for("some exported", lambda: _exported(store_url) >= 1, timeout=60, interval=0.1)
        op.kill()
        certs_before = _secret_versions(cp, ns, "certificate")
        exported_before = _exported(store_url)
        op.start()
        wait_for("all exported", lambda: _exported(store_url) == COUNT, timeout=60)
        certs_after = _secret_versions(cp, ns, "certificate")
        assert len(certs_after) == COUNT
        rewritten = {k for k, v in certs_before.items() if certs_after.get(k) != v}
        assert not rewritten, f"certificate Secrets written again: {rewritten}"
        assert exported_before <= len(certs_before)  # marked only after the Secret exists
    finally:
        op.stop()
        print(op.logs())
