"""`acme-gateway.io/revoke: <reason>` on an exported certificate Secret (issue 12 item 3).

A real ACME server (with its CRL/OCSP listener) and the operator share a store; a
certificate issued over ACME is exported as a Secret; a namespace editor annotates it
(a viewer cannot), and the store, the Secret, the registration's Events, OCSP (real
`openssl ocsp`) and the CRL all show the revocation. Bad reasons, a second request and an
expired certificate get Warning Events that say what happened.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from acme import messages
from cryptography import x509
from cryptography.hazmat.primitives import serialization

from acme_server.store.schema import certificates
from tests.gateway_proc import GatewayProcess
from tests.infra.bind import BindServer
from tests.infra.kube import ControlPlane
from tests.kube.operator_proc import (
    OperatorProcess,
    allowed_domain,
    apply,
    ensure_ca_root,
    events_for,
    get_obj,
    insert_certificate,
    list_objs,
    operator_proc,
    registration,
    store_execute,
    store_url,
    wait_condition,
)
from tests.kube.test_acme_e2e import _eab, _issue_dns01
from tests.polling import wait_for
from tests.protocol.acme_client import new_client, register
from tests.revocation.support import Issued, fetch_crl, ocsp_status, revocation_gateway

__all__ = ["operator_proc", "store_url"]  # fixtures

REVOKE = "acme-gateway.io/revoke"


@pytest.fixture
def crl_gateway(
    store_url: str, tmp_path: Path, bind_server: BindServer
) -> Iterator[GatewayProcess]:
    gw = revocation_gateway(
        tmp_path / "gw",
        database=store_url,
        resolvers=(bind_server.resolver_address,),
        account_creation="pre-registered",
        workers=1,
    )
    gw.start()
    try:
        yield gw
    finally:
        gw.stop()


def _cert_secret(cp: ControlPlane, ns: str, registration_name: str) -> dict[str, Any]:
    selector = f"acme-gateway.io/registration={registration_name}"

    def probe() -> list[dict[str, Any]] | None:
        found = list_objs(cp, ns, "secrets", selector)
        return [s for s in found if s["type"] == "acme-gateway.io/certificate"] or None

    found = wait_for("the exported certificate Secret", probe, timeout=30)
    assert len(found) == 1, found
    return found[0]


def _bind(cp: ControlPlane, ns: str, user: str, role: str) -> None:
    cp.kubectl(
        "create", "rolebinding", "-n", ns, f"{user}-{role}", f"--clusterrole={role}",
        f"--user={user}",
    )  # fmt: skip


def _annotate(cp: ControlPlane, ns: str, secret: str, value: str, user: str | None = None) -> Any:
    args = ["annotate", "--overwrite", "-n", ns, "secret", secret, f"{REVOKE}={value}"]
    if user:
        args.append(f"--as={user}")
    return cp.kubectl(*args, check=False)


def _event(cp: ControlPlane, ns: str, name: str, reason: str, kind: str) -> dict[str, Any]:
    def probe() -> dict[str, Any] | None:
        for e in events_for(cp, ns, name):
            if e["reason"] == reason and e["involvedObject"]["kind"] == kind:
                return e
        return None

    return wait_for(f"Event {reason} on {kind} {name}", probe, timeout=30)


def _issued(chain_pem: str, gw: GatewayProcess, out: Path) -> Issued:
    certs = x509.load_pem_x509_certificates(chain_pem.encode())
    out.mkdir(parents=True, exist_ok=True)
    leaf_pem, issuer_pem = out / "leaf.pem", out / "issuer.pem"
    leaf_pem.write_bytes(certs[0].public_bytes(serialization.Encoding.PEM))
    issuer_pem.write_bytes(certs[1].public_bytes(serialization.Encoding.PEM))
    return Issued(certs[0], leaf_pem, issuer_pem, gw.root_pem)


def test_editor_revokes_through_the_annotation_and_relying_parties_see_it(
    control_plane: ControlPlane,
    kube_namespace: str,
    operator_proc: OperatorProcess,
    crl_gateway: GatewayProcess,
    bind_server: BindServer,
    store_url: str,
    tmp_path: Path,
) -> None:
    cp, ns, gw = control_plane, kube_namespace, crl_gateway
    domain = f"{ns.replace('-', '')}.acme.test"
    apply(cp, ns, registration("team"))
    apply(cp, ns, allowed_domain("team-allowed", "team", domain))
    eab = _eab(cp, ns, "team")
    client = new_client(gw)
    register(client, eab=eab)
    chain = wait_for(
        "an issuance once the grant reached the server",
        lambda: _try_issue(client, bind_server, [f"www.{domain}"]),
        timeout=60,
    )
    cert = _issued(chain, gw, tmp_path / "cert")
    serial = format(cert.leaf.serial_number, "x")
    assert "leaf.pem: good" in ocsp_status(cert)

    secret = _cert_secret(cp, ns, "team")
    name = secret["metadata"]["name"]
    assert secret["metadata"]["annotations"]["acme-gateway.io/serial"] == serial
    assert secret["metadata"]["annotations"]["acme-gateway.io/revoked"] == "false"

    # Only principals who may patch the Secret: a namespace viewer cannot, an editor can.
    _bind(cp, ns, "vera", "view")
    _bind(cp, ns, "eddie", "edit")
    denied = _annotate(cp, ns, name, "keyCompromise", user="vera")
    assert denied.returncode != 0 and "forbidden" in denied.stderr.lower(), denied.stderr
    assert (get_obj(cp, ns, "secret", name) or {})["metadata"]["annotations"].get(REVOKE) is None
    done = _annotate(cp, ns, name, "keyCompromise", user="eddie")
    assert done.returncode == 0, done.stderr

    def revoked_secret() -> dict[str, Any] | None:
        obj = get_obj(cp, ns, "secret", name) or {}
        ann = obj.get("metadata", {}).get("annotations") or {}
        return ann if ann.get("acme-gateway.io/revoked") == "true" else None

    ann = wait_for("the Secret to show the revocation", revoked_secret, timeout=30)
    assert ann["acme-gateway.io/revocation-reason"] == "keyCompromise"
    assert ann["acme-gateway.io/revoked-at"]
    assert ann[REVOKE] == "keyCompromise"  # the request stays visible
    wait_for(
        "the request to be recorded handled",
        lambda: (
            (get_obj(cp, ns, "secret", name) or {})["metadata"]["annotations"].get(
                "acme-gateway.io/revoke-handled"
            )
            == "keyCompromise"
        ),
        timeout=30,
    )
    event = _event(cp, ns, "team", "CertificateRevoked", "AcmeRegistration")
    assert event["type"] == "Normal"
    assert serial in event["message"] and "keyCompromise" in event["message"]

    row = store_execute(
        store_url,
        lambda conn: conn.execute(
            sa.select(certificates).where(certificates.c.serial == serial)
        ).one(),
    )
    assert row.revocation_reason == 1 and row.revoked_at is not None

    # Relying parties: OCSP (real openssl) and the CRL say revoked, with the reason.
    out = ocsp_status(cert)
    assert "leaf.pem: revoked" in out and "keyCompromise" in out, out
    crl, _ = fetch_crl(cert.crl_url, tmp_path / "crl.pem")
    entry = crl.get_revoked_certificate_by_serial_number(cert.leaf.serial_number)
    assert entry is not None
    assert entry.extensions.get_extension_for_class(x509.CRLReason).value.reason == (
        x509.ReasonFlags.key_compromise
    )

    # A bad reason: a Warning that lists what is allowed; nothing changes.
    assert _annotate(cp, ns, name, "becauseISaidSo", user="eddie").returncode == 0
    bad = _event(cp, ns, "team", "InvalidRevocationReason", "AcmeRegistration")
    assert bad["type"] == "Warning"
    for allowed in (
        "unspecified",
        "keyCompromise",
        "affiliationChanged",
        "superseded",
        "cessationOfOperation",
    ):
        assert allowed in bad["message"], bad["message"]
    assert "becauseISaidSo" in bad["message"]

    # Asking again (by code): already revoked, said clearly, reason unchanged.
    assert _annotate(cp, ns, name, "4", user="eddie").returncode == 0
    again = _event(cp, ns, "team", "AlreadyRevoked", "AcmeRegistration")
    assert again["type"] == "Warning"
    assert "already revoked" in again["message"] and "keyCompromise" in again["message"]
    assert "Reason: keyCompromise" in ocsp_status(cert)


def _try_issue(client: Any, bind_server: BindServer, names: list[str]) -> str | None:
    try:
        return _issue_dns01(client, bind_server, names)
    except messages.Error as exc:
        if exc.typ == "urn:ietf:params:acme:error:rejectedIdentifier":
            return None
        raise


def test_expired_and_foreign_certificates_are_refused_with_an_event(
    control_plane: ControlPlane,
    kube_namespace: str,
    operator_proc: OperatorProcess,
    store_url: str,
) -> None:
    cp, ns = control_plane, kube_namespace
    ensure_ca_root(store_url)
    apply(cp, ns, registration("old"))
    apply(cp, ns, allowed_domain("old-dom", "old", "old.example"))
    wait_condition(cp, ns, "acmeregistration", "old", "True")
    cert = insert_certificate(store_url, f"{ns}/old", ["old.example"])
    past = dt.datetime.now(dt.UTC) - dt.timedelta(days=1)
    store_execute(
        store_url,
        lambda conn: conn.execute(
            certificates.update()
            .where(certificates.c.id == cert.id)
            .values(not_after=past, revision=certificates.c.revision + 1)
        ),
    )
    secret = _cert_secret(cp, ns, "old")
    name = secret["metadata"]["name"]
    assert _annotate(cp, ns, name, "cessationOfOperation").returncode == 0
    refused = _event(cp, ns, "old", "RevocationRefused", "AcmeRegistration")
    assert refused["type"] == "Warning"
    assert "expired" in refused["message"] and cert.serial in refused["message"]
    on_secret = _event(cp, ns, name, "RevocationRefused", "Secret")
    assert on_secret["message"] == refused["message"]
    row = store_execute(
        store_url,
        lambda conn: conn.execute(
            sa.select(certificates).where(certificates.c.id == cert.id)
        ).one(),
    )
    assert row.revoked_at is None

    # A Secret made to look like another registration's certificate is not acted on.
    other = insert_certificate(store_url, f"{ns}/old", ["old.example"])
    forged = {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {
            "name": "forged",
            "labels": {
                "app.kubernetes.io/managed-by": "acme-gateway",
                "acme-gateway.io/purpose": "certificate",
            },
            "annotations": {"acme-gateway.io/serial": other.serial, REVOKE: "keyCompromise"},
            "ownerReferences": [
                {
                    "apiVersion": "acme-gateway.io/v1alpha1",
                    "kind": "AcmeRegistration",
                    "name": "old",
                    "uid": (get_obj(cp, ns, "acmeregistration", "old") or {})["metadata"]["uid"],
                }
            ],
        },
    }
    apply(cp, ns, forged)
    ignored = _event(cp, ns, "forged", "RevocationRefused", "Secret")
    assert "not a certificate Secret exported by acme-gateway" in ignored["message"]
    row = store_execute(
        store_url,
        lambda conn: conn.execute(
            sa.select(certificates).where(certificates.c.id == other.id)
        ).one(),
    )
    assert row.revoked_at is None
