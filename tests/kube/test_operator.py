"""The operator against the real control plane: kubectl in, store rows and Secrets out.

Each test runs its own `acme-gateway-operator` subprocess (watching the test's namespace)
on its own SQLite store, and checks the store directly and the API objects via kubectl.
"""

from __future__ import annotations

import base64
import datetime as dt
import os
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

import sqlalchemy as sa

from acme_server.domain.identifiers import DomainRule
from acme_server.store import registrations
from acme_server.store.database import Database
from acme_server.store.schema import certificates
from tests.infra.kube import ControlPlane, merge_patch, service_account_kubeconfig
from tests.kube.operator_proc import (
    OperatorProcess,
    allowed_domain,
    apply,
    certificate_row,
    condition,
    documented_cluster_role,
    ensure_ca_root,
    events_for,
    get_obj,
    insert_certificate,
    list_objs,
    operator_proc,
    registration,
    run,
    secret_text,
    store_execute,
    store_registration,
    store_url,
    wait_condition,
)
from tests.polling import wait_for

ROTATE = "acme-gateway.io/rotate-hmac-key"

__all__ = ["operator_proc", "store_url"]  # fixtures


def test_registration_generates_secret_and_store_row(
    control_plane: ControlPlane, kube_namespace: str, operator_proc: OperatorProcess, store_url: str
) -> None:
    ns, cp = kube_namespace, control_plane
    apply(cp, ns, allowed_domain("team-a-dom", "team-a", "team-a.example"))  # the grant
    apply(cp, ns, registration("team-a", maxAccounts=3))
    reg = wait_condition(cp, ns, "acmeregistration", "team-a", "True", "Reconciled")
    status = reg["status"]
    assert status["keyID"] == f"{ns}.team-a"
    assert status["hmacKeySecretRef"] == {"name": "team-a-eab", "key": "secret"}
    assert status["observedGeneration"] == reg["metadata"]["generation"]

    secret = get_obj(cp, ns, "secret", "team-a-eab")
    assert secret is not None and secret["type"] == "Opaque"
    key = secret_text(secret, "secret")
    assert len(base64.urlsafe_b64decode(key + "=" * (-len(key) % 4))) == 32
    assert "=" not in key
    owner = secret["metadata"]["ownerReferences"][0]
    assert (owner["kind"], owner["uid"]) == ("AcmeRegistration", reg["metadata"]["uid"])

    row = store_registration(store_url, f"{ns}/team-a")
    assert row is not None
    assert (row.kid, row.hmac_key, row.max_accounts, row.suspended) == (
        f"{ns}.team-a",
        key,
        3,
        False,
    )
    with urllib.request.urlopen(operator_proc.health_url, timeout=5) as resp:
        assert resp.status == 200


def test_suspend_rotate_and_delete_registration(
    control_plane: ControlPlane, kube_namespace: str, operator_proc: OperatorProcess, store_url: str
) -> None:
    ns, cp = kube_namespace, control_plane
    name = f"{ns}/team-b"
    apply(cp, ns, allowed_domain("team-b-dom", "team-b", "team-b.example"))  # the grant
    apply(cp, ns, registration("team-b"))
    wait_condition(cp, ns, "acmeregistration", "team-b", "True")

    apply(cp, ns, registration("team-b", suspended=True))
    cond = condition(wait_condition(cp, ns, "acmeregistration", "team-b", "False", "Suspended"))
    assert cond is not None and "refused" in cond["message"]
    assert wait_for("store suspended", lambda: _suspended(store_url, name) is True)
    apply(cp, ns, registration("team-b", suspended=False))
    wait_condition(cp, ns, "acmeregistration", "team-b", "True", "Reconciled")
    assert wait_for("store unsuspended", lambda: _suspended(store_url, name) is False)

    old_key = secret_text(_get(cp, ns, "secret", "team-b-eab"), "secret")
    cp.kubectl("annotate", "-n", ns, "acmeregistration", "team-b", f"{ROTATE}=1")

    def rotated() -> dict[str, Any] | None:
        obj = _get(cp, ns, "acmeregistration", "team-b")
        return obj if obj["status"].get("hmacKeyRotation") == "1" else None

    wait_for("rotation recorded in status", rotated)
    new_key = secret_text(_get(cp, ns, "secret", "team-b-eab"), "secret")
    assert new_key != old_key
    row = store_registration(store_url, name)
    assert row is not None and row.hmac_key == new_key
    # The timer re-syncs without rotating again. Drift the store row behind the operator's
    # back (only a registration re-sync repairs maxAccounts), so the repair proves it ran.
    _set_max_accounts(store_url, name, 7)
    time.sleep(operator_proc.resync_interval + 1)
    wait_for("resync timer ran", lambda: _max_accounts(store_url, name) is None)
    assert secret_text(_get(cp, ns, "secret", "team-b-eab"), "secret") == new_key
    reasons = [e["reason"] for e in events_for(cp, ns, "team-b")]
    assert "SecretCreated" in reasons and "HMACKeyRotated" in reasons

    cp.kubectl("delete", "-n", ns, "acmeregistration", "team-b", "--wait=false")
    wait_for("store row deleted", lambda: store_registration(store_url, name) is None)
    wait_for("finalizer released", lambda: get_obj(cp, ns, "acmeregistration", "team-b") is None)
    wait_for("Secret garbage-collected", lambda: get_obj(cp, ns, "secret", "team-b-eab") is None)


def test_allowed_domains_follow_objects(
    control_plane: ControlPlane, kube_namespace: str, operator_proc: OperatorProcess, store_url: str
) -> None:
    ns, cp = kube_namespace, control_plane
    name = f"{ns}/web"
    # The domain exists before its registration: it says so, then takes effect.
    apply(cp, ns, allowed_domain("example", "web", "Example.COM"))
    cond = condition(
        wait_condition(cp, ns, "alloweddomain", "example", "False", "RegistrationNotFound")
    )
    assert cond is not None and "fix spec.registrationName" in cond["message"]
    assert "RegistrationNotFound" in [e["reason"] for e in events_for(cp, ns, "example")]

    apply(cp, ns, registration("web"))
    wait_condition(cp, ns, "alloweddomain", "example", "True", "Active")
    assert _domains(store_url, name) == {DomainRule("example.com", True, True)}

    apply(
        cp,
        ns,
        allowed_domain("exact", "web", "exact.test", includeSubdomains=False, allowWildcard=False),
    )
    wait_for(
        "second domain in store",
        lambda: (
            _domains(store_url, name)
            == {DomainRule("example.com", True, True), DomainRule("exact.test", False, False)}
        ),
    )
    wait_condition(cp, ns, "alloweddomain", "exact", "True", "Active")
    # The registration's periodic re-sync brings its message up to date.
    wait_for(
        "registration message lists both domains",
        lambda: (
            "exact.test"
            in (condition(get_obj(cp, ns, "acmeregistration", "web")) or {}).get("message", "")
        ),
        timeout=operator_proc.resync_interval * 3 + 10,
    )

    cp.kubectl("delete", "-n", ns, "alloweddomain", "exact")
    wait_for(
        "domain removed from store",
        lambda: _domains(store_url, name) == {DomainRule("example.com", True, True)},
    )

    # Removing the last AllowedDomain narrows the registration to nothing, never widens it.
    cp.kubectl("delete", "-n", ns, "alloweddomain", "example")
    wait_for("allow-list empty", lambda: _domains(store_url, name) == set())
    wait_condition(cp, ns, "acmeregistration", "web", "False", "NoAllowedDomains", timeout=30)
    row = store_registration(store_url, name)
    assert row is not None and (row.any_domain, row.suspended) == (False, False)
    # Accepted by the API server's rules, refused by the store's: reported, and granting
    # nothing (the store refuses every order with "no domain was granted").
    apply(cp, ns, allowed_domain("numeric", "web", "host.123"))
    cond = condition(wait_condition(cp, ns, "alloweddomain", "numeric", "False", "InvalidDomain"))
    assert cond is not None and "example.com" in cond["message"]
    wait_for(
        "the registration to name the invalid AllowedDomain",
        lambda: (
            (c := condition(get_obj(cp, ns, "acmeregistration", "web"))) is not None
            and c["reason"] == "NoAllowedDomains"
            and "invalid AllowedDomains: numeric" in c["message"]
        ),
        timeout=30,
    )
    assert _domains(store_url, name) == set() and _suspended(store_url, name) is False
    cp.kubectl("delete", "-n", ns, "alloweddomain", "numeric")
    apply(cp, ns, allowed_domain("example", "web", "example.com"))
    wait_condition(cp, ns, "acmeregistration", "web", "True", "Reconciled", timeout=30)
    assert _suspended(store_url, name) is False


def test_admin_provided_secret(
    control_plane: ControlPlane, kube_namespace: str, operator_proc: OperatorProcess, store_url: str
) -> None:
    ns, cp = kube_namespace, control_plane
    good = base64.urlsafe_b64encode(os.urandom(40)).rstrip(b"=").decode()
    short = base64.urlsafe_b64encode(os.urandom(16)).rstrip(b"=").decode()
    cp.kubectl("create", "secret", "generic", "-n", ns, "given", f"--from-literal=hmac={short}")
    apply(cp, ns, allowed_domain("ops-dom", "ops", "ops.example"))  # the grant
    apply(
        cp,
        ns,
        registration("ops", keyID="ops-kid", hmacKeySecretRef={"name": "given", "key": "hmac"}),
    )
    cond = condition(wait_condition(cp, ns, "acmeregistration", "ops", "False", "InvalidHMACKey"))
    assert cond is not None and "at least 32" in cond["message"]
    warnings = [e for e in events_for(cp, ns, "ops") if e["type"] == "Warning"]
    assert any(e["reason"] == "InvalidHMACKey" for e in warnings)
    assert store_registration(store_url, f"{ns}/ops") is None  # nothing usable to store

    # The admin fixes the Secret; the periodic re-read picks it up (no CR change).
    patch = {"data": {"hmac": base64.b64encode(good.encode()).decode()}}
    cp.kubectl(*merge_patch(ns, "secret", "given", patch))
    reg = wait_condition(cp, ns, "acmeregistration", "ops", "True", "Reconciled")
    assert reg["status"]["keyID"] == f"{ns}.ops-kid"  # key IDs stay inside the namespace
    row = store_registration(store_url, f"{ns}/ops")
    assert row is not None and (row.kid, row.hmac_key) == (f"{ns}.ops-kid", good)
    secret = _get(cp, ns, "secret", "given")
    assert not secret["metadata"].get("ownerReferences")  # the admin's Secret stays theirs


def _get(cp: ControlPlane, ns: str, kind: str, name: str) -> dict[str, Any]:
    obj = get_obj(cp, ns, kind, name)
    assert obj is not None, f"{kind}/{name} not found"
    return obj


def _suspended(url: str, name: str) -> bool | None:
    row = store_registration(url, name)
    return None if row is None else row.suspended


def _domains(url: str, name: str) -> set[DomainRule] | None:
    row = store_registration(url, name)
    return None if row is None else set(row.domains)


CERT_SELECTOR = "app.kubernetes.io/managed-by=acme-gateway,acme-gateway.io/purpose=certificate"


def _cert_secrets(cp: ControlPlane, ns: str) -> list[dict[str, Any]]:
    return list_objs(cp, ns, "secrets", CERT_SELECTOR)


def _unmark(cert_id: str) -> Callable[[sa.Connection], None]:
    """Undo the export mark of one certificate, as a crash before marking would leave it."""

    def unmark(conn: sa.Connection) -> None:
        conn.execute(
            certificates.update().where(certificates.c.id == cert_id).values(exported_revision=0)
        )

    return unmark


def _set_max_accounts(url: str, name: str, value: int) -> None:
    async def go() -> None:
        db = await Database.open(url, migrate=False)
        try:
            await registrations.set_limits(db, name, max_accounts=value)
        finally:
            await db.close()

    run(go())


def _max_accounts(url: str, name: str) -> int | None:
    row = store_registration(url, name)
    assert row is not None
    return row.max_accounts


def _exported(url: str, cert_id: str) -> bool:
    row = certificate_row(url, cert_id)
    return bool(row.exported_revision == row.revision)


def test_certificate_export_status_and_garbage_collection(
    control_plane: ControlPlane, kube_namespace: str, store_url: str, tmp_path: Path
) -> None:
    ns, cp = kube_namespace, control_plane
    assert cp.kubeconfig is not None
    op = OperatorProcess(
        cp.kubeconfig,
        store_url,
        tmp_path,
        namespaces=(ns,),
        acme_base_url="https://acme.example.test:14000",
    ).start()
    try:
        root = ensure_ca_root(store_url)
        apply(cp, ns, allowed_domain("issuer-dom", "issuer", "example.com"))  # the grant
        apply(cp, ns, registration("issuer"))
        reg = wait_condition(cp, ns, "acmeregistration", "issuer", "True")
        cert = insert_certificate(store_url, f"{ns}/issuer", ["a.example.com", "b.example.com"])

        secrets = wait_for("certificate Secret", lambda: _cert_secrets(cp, ns))
        assert len(secrets) == 1
        secret = secrets[0]
        meta = secret["metadata"]
        assert meta["name"] == f"issuer-cert-{cert.serial}"
        assert secret["type"] == "acme-gateway.io/certificate"
        assert secret_text(secret, "tls.crt") == cert.chain_pem
        assert secret_text(secret, "ca.crt") == root
        assert meta["labels"]["acme-gateway.io/registration"] == "issuer"
        assert meta["labels"]["acme-gateway.io/serial"] == cert.serial
        ann = meta["annotations"]
        assert ann["acme-gateway.io/names"] == "a.example.com,b.example.com"
        assert ann["acme-gateway.io/account"] == (
            f"https://acme.example.test:14000/acme/acct/{cert.account_id}"
        )
        assert ann["acme-gateway.io/revoked"] == "false"
        assert ann["acme-gateway.io/not-after"].endswith("Z")
        owner = meta["ownerReferences"][0]
        assert (owner["kind"], owner["name"], owner["uid"]) == (
            "AcmeRegistration",
            "issuer",
            reg["metadata"]["uid"],
        )
        wait_for("marked exported", lambda: _exported(store_url, cert.id))
        assert "CertificateExported" in [e["reason"] for e in events_for(cp, ns, "issuer")]

        def usage() -> dict[str, Any] | None:
            status = _get(cp, ns, "acmeregistration", "issuer")["status"]
            return status if status.get("certificatesIssued") == 1 else None

        status = wait_for("status counts", usage)
        assert status["accountCount"] == 1
        assert status["lastIssuance"].endswith("Z")
        acct = status["accounts"][0]
        assert acct["url"].endswith(f"/acme/acct/{cert.account_id}")
        assert acct["status"] == "valid" and acct["keyThumbprint"].startswith("tp-")

        # A revocation bumps the revision: the same Secret is updated, not a new one.
        def revoke(conn: sa.Connection) -> None:
            conn.execute(
                certificates.update()
                .where(certificates.c.id == cert.id)
                .values(revoked_at=dt.datetime.now(dt.UTC), revocation_reason=1, revision=2)
            )

        store_execute(store_url, revoke)

        def revoked() -> dict[str, Any] | None:
            items = _cert_secrets(cp, ns)
            ok = items and items[0]["metadata"]["annotations"]["acme-gateway.io/revoked"] == "true"
            return items[0] if ok else None

        secret = wait_for("revocation exported", revoked)
        assert len(_cert_secrets(cp, ns)) == 1
        assert secret["metadata"]["annotations"]["acme-gateway.io/revocation-reason"] == (
            "keyCompromise"
        )
        wait_for("revision 2 marked", lambda: _exported(store_url, cert.id))

        # Deleting the registration garbage-collects its certificate Secrets.
        cp.kubectl("delete", "-n", ns, "acmeregistration", "issuer", "--wait=false")
        wait_for("certificate Secret collected", lambda: not _cert_secrets(cp, ns), timeout=90)
        assert certificate_row(store_url, cert.id) is not None  # the store keeps it
    finally:
        op.stop()
        print(op.logs())


def test_crash_and_restart_converges_without_duplicates(
    control_plane: ControlPlane, kube_namespace: str, store_url: str, tmp_path: Path
) -> None:
    ns, cp = kube_namespace, control_plane
    assert cp.kubeconfig is not None
    op = OperatorProcess(cp.kubeconfig, store_url, tmp_path, namespaces=(ns,)).start()
    try:
        ensure_ca_root(store_url)
        apply(cp, ns, registration("crash"))
        # Reconciled (its store row exists); no AllowedDomain yet, so it grants nothing.
        wait_condition(cp, ns, "acmeregistration", "crash", "False", "NoAllowedDomains")
        first = insert_certificate(store_url, f"{ns}/crash", ["one.example.com"])
        wait_for("first exported", lambda: _exported(store_url, first.id))

        # Crash while the operator has work in flight: certificates just issued, a domain
        # and a suspension just applied.
        more = [
            insert_certificate(store_url, f"{ns}/crash", [f"n{i}.example.com"]) for i in range(3)
        ]
        apply(cp, ns, allowed_domain("dom", "crash", "example.com"))
        apply(cp, ns, registration("crash", suspended=True))
        op.kill()

        # A crash after writing a Secret but before marking it exported: simulate it by
        # taking the mark back. The restart must find the Secret, not write a second one.
        def unmark(conn: sa.Connection) -> None:
            conn.execute(
                certificates.update()
                .where(certificates.c.id == first.id)
                .values(exported_revision=0)
            )

        store_execute(store_url, unmark)
        before = {
            s["metadata"]["name"]: s["metadata"]["resourceVersion"] for s in _cert_secrets(cp, ns)
        }
        more.append(insert_certificate(store_url, f"{ns}/crash", ["late.example.com"]))

        op.start()
        everything = [first, *more]
        wait_for(
            "all exported after restart",
            lambda: all(_exported(store_url, c.id) for c in everything),
        )
        wait_condition(cp, ns, "acmeregistration", "crash", "False", "Suspended")
        row = store_registration(store_url, f"{ns}/crash")
        assert row is not None and row.suspended
        assert {d.domain for d in row.domains} == {"example.com"}

        secrets = _cert_secrets(cp, ns)
        names = sorted(s["metadata"]["name"] for s in secrets)
        assert names == sorted(f"crash-cert-{c.serial}" for c in everything)  # one each
        # A Secret written before the crash was not rewritten.
        after = {s["metadata"]["name"]: s["metadata"]["resourceVersion"] for s in secrets}
        for name, version in before.items():
            assert after[name] == version

        # Kill again right after issuance, repeatedly: still one Secret per certificate.
        for i in range(3):
            c = insert_certificate(store_url, f"{ns}/crash", [f"k{i}.example.com"])
            everything.append(c)
            time.sleep(0.2 * i)
            op.kill()
            op.start()
        wait_for(
            "all exported after repeated kills",
            lambda: all(_exported(store_url, c.id) for c in everything),
        )
        names = sorted(s["metadata"]["name"] for s in _cert_secrets(cp, ns))
        assert names == sorted(f"crash-cert-{c.serial}" for c in everything)
        versions = {
            s["metadata"]["name"]: s["metadata"]["resourceVersion"] for s in _cert_secrets(cp, ns)
        }
        # Take one mark back: the export loop runs again and finds nothing to rewrite.
        store_execute(store_url, _unmark(everything[0].id))
        time.sleep(op.export_interval * 4)
        wait_for("export loop ran", lambda: _exported(store_url, everything[0].id))
        assert versions == {
            s["metadata"]["name"]: s["metadata"]["resourceVersion"] for s in _cert_secrets(cp, ns)
        }  # settled: nothing re-exported
    finally:
        op.stop()
        print(op.logs())


def test_operator_runs_with_documented_rbac(
    control_plane: ControlPlane, kube_namespace: str, store_url: str, tmp_path: Path
) -> None:
    """Only the permissions in operator/rbac.md, bound in one namespace: everything works."""
    ns, cp = kube_namespace, control_plane
    role = f"acme-gateway-operator-{ns}"
    manifest = documented_cluster_role().replace("name: acme-gateway-operator", f"name: {role}")
    cp.kubectl("apply", "-f", "-", input=manifest)
    try:
        cp.kubectl("create", "serviceaccount", "-n", ns, "op")
        cp.kubectl(
            "create",
            "rolebinding",
            "-n",
            ns,
            "op",
            f"--clusterrole={role}",
            f"--serviceaccount={ns}:op",
        )
        kubeconfig = service_account_kubeconfig(cp, ns, "op", tmp_path / "op.kubeconfig")
        # Secrets may be listed (the revoke watch, operator/rbac.md) in the bound namespace
        # only, and never deleted.
        denied = cp.kubectl(
            "--kubeconfig", str(kubeconfig), "get", "secrets", "-n", "default", check=False
        )
        assert denied.returncode != 0 and "forbidden" in denied.stderr
        denied = cp.kubectl(
            "--kubeconfig", str(kubeconfig), "auth", "can-i", "delete", "secrets", "-n", ns,
            check=False,
        )  # fmt: skip
        assert denied.stdout.strip() == "no"

        op = OperatorProcess(kubeconfig, store_url, tmp_path, namespaces=(ns,)).start()
        try:
            ensure_ca_root(store_url)
            apply(cp, ns, registration("least"))
            apply(cp, ns, allowed_domain("dom", "least", "least.example"))
            wait_condition(cp, ns, "acmeregistration", "least", "True")
            wait_condition(cp, ns, "alloweddomain", "dom", "True", "Active")
            cert = insert_certificate(store_url, f"{ns}/least", ["least.example"])
            wait_for("exported", lambda: _exported(store_url, cert.id))
            assert len(_cert_secrets(cp, ns)) == 1
            assert any(e["reason"] == "SecretCreated" for e in events_for(cp, ns, "least"))
            cp.kubectl("delete", "-n", ns, "alloweddomain", "dom", "--timeout=60s")
            cp.kubectl("delete", "-n", ns, "acmeregistration", "least", "--timeout=60s")
            assert store_registration(store_url, f"{ns}/least") is None
            logs = op.logs()
            assert "Forbidden" not in logs and "forbidden" not in logs, logs
        finally:
            op.stop()
            print(op.logs())
    finally:
        cp.kubectl("delete", "clusterrole", role, check=False)


def test_cluster_wide_operator(
    control_plane: ControlPlane, kube_namespace: str, store_url: str, tmp_path: Path
) -> None:
    """Without --namespace it serves every namespace (the default deployment)."""
    ns, cp = kube_namespace, control_plane
    assert cp.kubeconfig is not None
    op = OperatorProcess(cp.kubeconfig, store_url, tmp_path).start()
    try:
        apply(cp, ns, allowed_domain("wide-dom", "wide", "wide.example"))  # the grant
        apply(cp, ns, registration("wide"))
        reg = wait_condition(cp, ns, "acmeregistration", "wide", "True")
        assert reg["status"]["keyID"] == f"{ns}.wide"
        assert store_registration(store_url, f"{ns}/wide") is not None
    finally:
        op.stop()
        print(op.logs())
