"""After `store restore`, the operator re-converges without exporting anything twice.

The real control plane, a real operator and the real admin CLI: certificates exported before
the backup keep their Secrets untouched (the restored store remembers they were exported);
a certificate issued after the backup is gone from the restored store, and its Secret stays
as it was (the certificate is still valid; the operator neither deletes nor rewrites it, and
does not crash); new issuance after the restore is exported as usual.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import sqlalchemy as sa

from acme_server.store.schema import certificates
from tests.gateway_proc import GATEWAY, client_env
from tests.infra.kube import ControlPlane
from tests.kube.operator_proc import (
    OperatorProcess,
    allowed_domain,
    apply,
    condition,
    ensure_ca_root,
    get_obj,
    insert_certificate,
    list_objs,
    registration,
    store_execute,
    store_url,
    wait_condition,
)
from tests.polling import wait_for

__all__ = ["store_url"]  # fixture


def _cert_secrets(cp: ControlPlane, ns: str) -> dict[str, str]:
    items = list_objs(cp, ns, "secrets", "acme-gateway.io/purpose=certificate")
    return {s["metadata"]["name"]: s["metadata"]["resourceVersion"] for s in items}


def _unexported(url: str) -> int:
    def read(conn: sa.Connection) -> int:
        q = sa.select(sa.func.count()).where(
            sa.or_(
                certificates.c.exported_revision.is_(None),
                certificates.c.exported_revision < certificates.c.revision,
            )
        )
        return int(conn.execute(q).scalar_one())

    return store_execute(url, read)


def _store_cli(url: str, data_dir: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [GATEWAY, "store", *args[:1], "--data-dir", str(data_dir), "--database", url, *args[1:]],
        capture_output=True,
        text=True,
        timeout=120,
        env=client_env(),
    )


def test_restore_exports_nothing_twice(
    control_plane: ControlPlane, kube_namespace: str, store_url: str, tmp_path: Path
) -> None:
    ns, cp = kube_namespace, control_plane
    assert cp.kubeconfig is not None
    backup = tmp_path / "backup.sqlite3"
    op = OperatorProcess(cp.kubeconfig, store_url, tmp_path, namespaces=(ns,)).start()
    try:
        ensure_ca_root(store_url)
        apply(cp, ns, registration("r0"))
        apply(cp, ns, allowed_domain("d0", "r0", "r0.example"))
        wait_condition(cp, ns, "acmeregistration", "r0", "True")
        for i in range(3):
            insert_certificate(store_url, f"{ns}/r0", [f"a{i}.r0.example"])
        wait_for("exported", lambda: _unexported(store_url) == 0, timeout=60, interval=0.1)
        wait_for("3 Secrets", lambda: len(_cert_secrets(cp, ns)) == 3, timeout=30)
        # Online backup while the operator runs.
        result = _store_cli(store_url, tmp_path, "backup", str(backup))
        assert result.returncode == 0, result.stderr
        before = _cert_secrets(cp, ns)

        insert_certificate(store_url, f"{ns}/r0", ["later.r0.example"])
        wait_for("later exported", lambda: len(_cert_secrets(cp, ns)) == 4, timeout=60)
        wait_for("marked", lambda: _unexported(store_url) == 0, timeout=30, interval=0.1)
        with_later = _cert_secrets(cp, ns)
        later = set(with_later) - set(before)
        assert len(later) == 1

        refused = _store_cli(store_url, tmp_path, "restore", str(backup))
        assert refused.returncode == 1 and "in use" in refused.stderr, refused.stderr
        op.stop()
        restored = _store_cli(store_url, tmp_path, "restore", str(backup))
        assert restored.returncode == 0, restored.stderr
        assert _unexported(store_url) == 0  # the backup remembers what was exported

        op.start()
        # Proof that export rounds ran after the restart: a new certificate is exported.
        insert_certificate(store_url, f"{ns}/r0", ["after.r0.example"])
        wait_for("after exported", lambda: len(_cert_secrets(cp, ns)) == 5, timeout=60)
        wait_for("marked", lambda: _unexported(store_url) == 0, timeout=30, interval=0.1)
        after = _cert_secrets(cp, ns)
        rewritten = {k for k, v in with_later.items() if after.get(k) != v}
        assert not rewritten, f"certificate Secrets written again after the restore: {rewritten}"
        assert later <= set(after)  # issued after the backup: its Secret stays
        assert op.proc is not None and op.proc.poll() is None, op.logs()
        reg = get_obj(cp, ns, "acmeregistration", "r0")
        assert (condition(reg) or {}).get("status") == "True", reg
    finally:
        op.stop()
        print(op.logs())
