"""kubectl apply → operator → store → ACME server → a real ACME client (issue 3's contract).

A registration and its allowed domains applied with kubectl let an ACME client (certbot's
`acme` library) create an account with the operator-generated EAB key and get a certificate
for an allowed name; other names are refused with rejectedIdentifier; AllowedDomain changes,
suspension and deletion reach the server within seconds; the certificate comes back as a
Secret counted in the registration's status.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from pathlib import Path

import pytest
from acme import challenges, errors, messages

from tests.gateway_proc import GatewayProcess
from tests.infra.bind import BindServer
from tests.infra.kube import ControlPlane, merge_patch
from tests.kube.operator_proc import (
    OperatorProcess,
    allowed_domain,
    apply,
    get_obj,
    list_objs,
    operator_proc,
    registration,
    secret_text,
    store_url,
    wait_condition,
)
from tests.polling import wait_for
from tests.protocol.acme_client import make_csr, new_client, register

__all__ = ["operator_proc", "store_url"]  # fixtures


@pytest.fixture
def gateway_on_store(
    store_url: str, tmp_path: Path, bind_server: BindServer
) -> Iterator[GatewayProcess]:
    gw = GatewayProcess(
        tmp_path / "gw",
        database=store_url,
        account_creation="pre-registered",
        dns_resolvers=(bind_server.resolver_address,),
    )
    gw.start()
    try:
        yield gw
    finally:
        gw.stop()


def _eab(
    cp: ControlPlane, ns: str, name: str, ready: str = "True", reason: str | None = None
) -> dict[str, str]:
    obj = wait_condition(cp, ns, "acmeregistration", name, ready, reason, timeout=30)
    status = obj["status"]
    secret = get_obj(cp, ns, "secret", status["hmacKeySecretRef"]["name"])
    assert secret is not None
    return {
        "kid": status["keyID"],
        "hmac_key": secret_text(secret, status["hmacKeySecretRef"]["key"]),
    }


def _refused(gw: GatewayProcess, acme_client: object, names: list[str]) -> messages.Error:
    csr_pem, _ = make_csr(names)
    with pytest.raises(messages.Error) as exc:
        acme_client.new_order(csr_pem)  # type: ignore[attr-defined]
    return exc.value


def _issue_dns01(acme_client: object, bind_server: BindServer, names: list[str]) -> str:
    csr_pem, _ = make_csr(names)
    order = acme_client.new_order(csr_pem)  # type: ignore[attr-defined]
    for authz in order.authorizations:
        chall = next(c for c in authz.body.challenges if isinstance(c.chall, challenges.DNS01))
        response, validation = chall.response_and_validation(acme_client.net.key)  # type: ignore[attr-defined]
        bind_server.nsupdate_add_txt(f"_acme-challenge.{authz.body.identifier.value}", validation)
        acme_client.answer_challenge(chall, response)  # type: ignore[attr-defined]
    deadline = dt.datetime.now() + dt.timedelta(seconds=60)
    done = acme_client.poll_and_finalize(order, deadline=deadline)  # type: ignore[attr-defined]
    return str(done.fullchain_pem)


def test_kubectl_registration_drives_the_acme_server(
    control_plane: ControlPlane,
    kube_namespace: str,
    operator_proc: OperatorProcess,
    gateway_on_store: GatewayProcess,
    bind_server: BindServer,
) -> None:
    cp, ns, gw = control_plane, kube_namespace, gateway_on_store
    label = ns.replace("-", "")
    allowed, other = f"{label}.acme.test", f"other{label}.acme.test"
    apply(cp, ns, registration("team"))
    apply(cp, ns, allowed_domain("team-allowed", "team", allowed))
    eab = _eab(cp, ns, "team")

    client = new_client(gw)
    register(client, eab=eab)

    def order_allowed() -> bool:
        try:
            client.new_order(make_csr([f"www.{allowed}"])[0])
            return True
        except messages.Error:
            return False

    wait_for("the allowed domain to reach the server", order_allowed, timeout=30)
    chain = _issue_dns01(client, bind_server, [f"www.{allowed}", allowed])
    assert chain.count("BEGIN CERTIFICATE") == 2

    refusal = _refused(gw, client, [f"www.{other}"])
    assert refusal.typ == "urn:ietf:params:acme:error:rejectedIdentifier"
    assert [sp.identifier.value for sp in refusal.subproblems or () if sp.identifier] == [
        f"www.{other}"
    ]

    # Adding an AllowedDomain opens the other name; deleting it closes it again.
    apply(cp, ns, allowed_domain("team-other", "team", other))
    wait_for("the added domain to be allowed", lambda: _allowed(client, f"a.{other}"), timeout=30)
    cp.kubectl("delete", "-n", ns, "alloweddomain", "team-other")
    wait_for(
        "the deleted domain to be refused", lambda: not _allowed(client, f"b.{other}"), timeout=30
    )

    # The certificate comes back as a Secret, counted in the registration's status.
    secrets = wait_for(
        "the exported certificate Secret",
        lambda: (
            list_objs(cp, ns, "secrets", "acme-gateway.io/registration=team,acme-gateway.io/serial")
            or None
        ),
        timeout=30,
    )
    assert len(secrets) == 1
    assert f"www.{allowed}" in secrets[0]["metadata"]["annotations"]["acme-gateway.io/names"]
    wait_for(
        "status to count the certificate",
        lambda: (
            (get_obj(cp, ns, "acmeregistration", "team") or {})
            .get("status", {})
            .get("certificatesIssued")
            == 1
        ),
        timeout=30,
    )
    status = (get_obj(cp, ns, "acmeregistration", "team") or {})["status"]
    assert status["accountCount"] == 1

    # Suspending refuses the account; resuming lets it back in.
    cp.kubectl(*merge_patch(ns, "acmeregistration", "team", {"spec": {"suspended": True}}))
    wait_for(
        "suspension to refuse the account", lambda: _refusal_detail(client) is not None, timeout=30
    )
    assert "suspended" in (_refusal_detail(client) or "")
    cp.kubectl(*merge_patch(ns, "acmeregistration", "team", {"spec": {"suspended": False}}))
    wait_for("resumption", lambda: _refusal_detail(client) is None, timeout=30)

    # Deleting the registration refuses its accounts for good.
    cp.kubectl("delete", "-n", ns, "acmeregistration", "team", "--timeout=60s")
    wait_for(
        "deletion to refuse the account", lambda: _refusal_detail(client) is not None, timeout=30
    )
    assert "deleted" in (_refusal_detail(client) or "")


def _allowed(client: object, name: str) -> bool:
    try:
        client.new_order(make_csr([name])[0])  # type: ignore[attr-defined]
        return True
    except messages.Error as exc:
        assert exc.typ == "urn:ietf:params:acme:error:rejectedIdentifier", exc
        return False


def _refusal_detail(client: object) -> str | None:
    """None when the account may still place orders, else the server's detail."""
    try:
        client.new_order(make_csr(["probe.acme.test"])[0])  # type: ignore[attr-defined]
        return None
    except messages.Error as exc:
        if exc.typ == "urn:ietf:params:acme:error:rejectedIdentifier":
            return None
        assert exc.typ == "urn:ietf:params:acme:error:unauthorized", exc
        return str(exc.detail)
    except errors.Error as exc:  # pragma: no cover - surfaced in the assertion message
        raise AssertionError(f"unexpected client error {exc!r}") from exc


def test_no_grant_means_no_names_and_any_domain_is_explicit(
    control_plane: ControlPlane,
    kube_namespace: str,
    operator_proc: OperatorProcess,
    gateway_on_store: GatewayProcess,
) -> None:
    """Issue 8 item 1: a tenant's registration alone (no AllowedDomain) gets no certificate."""
    cp, ns, gw = control_plane, kube_namespace, gateway_on_store
    apply(cp, ns, registration("tenant"))
    eab = _eab(cp, ns, "tenant", "False", "NoAllowedDomains")
    client = new_client(gw)
    register(client, eab=eab)  # the EAB key works: accounts exist, names do not

    refusal = _refused(gw, client, ["anything.example.org", "*.example.net"])
    assert refusal.typ == "urn:ietf:params:acme:error:rejectedIdentifier"
    assert "no domain was granted" in str(refusal.detail)

    # An administrator's explicit "any name" grant opens every name.
    grant = allowed_domain("everything", "tenant", "")
    grant["spec"] = {"registrationName": "tenant", "anyDomain": True}
    apply(cp, ns, grant)
    wait_for("the anyDomain grant", lambda: _allowed(client, "a.example.org"), timeout=30)
    assert _allowed(client, "b.unrelated.test")
    # Withdrawn, the registration is back to nothing (never to "everything").
    cp.kubectl("delete", "-n", ns, "alloweddomain", "everything", "--timeout=60s")
    wait_for("the grant withdrawn", lambda: not _allowed(client, "c.example.org"), timeout=30)
    refusal = _refused(gw, client, ["d.example.org"])
    assert "no domain was granted" in str(refusal.detail)
