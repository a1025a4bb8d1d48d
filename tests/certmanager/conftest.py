"""One end-to-end world for the cert-manager scenarios of issue 4, set up once per session.

Real components only: the test control plane (tests/kube), BIND9 (tests/infra/bind.py), an
ACME gateway that requires pre-registration, the operator sharing the gateway's SQLite
store, and the cert-manager controller out of cluster. Everything the scenarios need is
applied at once (from the README's YAML in docs/examples/cert-manager/), because each
dns-01 challenge costs cert-manager a fixed 60 s wait: the scenarios then wait for their
own objects in parallel instead of one after the other.
"""

from __future__ import annotations

import base64
import functools
import json
import time
import uuid
from collections.abc import Generator, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from acme_server.store.database import default_database_url
from tests.certmanager import examples
from tests.certmanager.controller_proc import CertManagerController
from tests.gateway_proc import GatewayProcess
from tests.infra.bind import BindServer
from tests.infra.gotools import GoToolError, certmanager_crds_dir, ensure_certmanager
from tests.infra.kube import ControlPlane, merge_patch
from tests.kube.conftest import control_plane  # noqa: F401 - the shared session fixture
from tests.kube.operator_proc import OperatorProcess, get_obj, list_objs
from tests.polling import wait_for

REGISTRATION = "team-a"  # the name in docs/examples/cert-manager/registration.yaml
EAB_SECRET = f"{REGISTRATION}-eab"
SETUP_TIMEOUT = 90  # seconds for the operator to reconcile a registration
FORBIDDEN_CERT = "outside"


@dataclass
class CertManagerWorld:
    """Handles on every running component plus the namespaces the scenarios use."""

    cp: ControlPlane
    bind: BindServer
    gateway: GatewayProcess
    operator: OperatorProcess
    controller: CertManagerController
    team_ns: str  # Issuer, its Certificates and the registration they use
    cluster_ns: str  # cert-manager's cluster resource namespace: ClusterIssuer's Secrets
    portal_ns: str  # a Certificate from the ClusterIssuer
    suspended_ns: str  # an Issuer whose registration is suspended
    key_ids: dict[str, str] = field(default_factory=dict)
    started: float = field(default_factory=time.monotonic)

    def domain(self, namespace: str) -> str:
        return f"{namespace}.acme.test"

    def values(self, namespace: str) -> dict[str, str]:
        """The README's envsubst variables for a registration in `namespace`."""
        return {
            "DOMAIN": self.domain(namespace),
            "ACME_DIRECTORY": self.gateway.directory_url,
            "ACME_CA_BUNDLE": examples.b64(self.gateway.root_pem.read_bytes()),
            "ACME_KEY_ID": self.key_ids.get(namespace, ""),
            "DNS_SERVER": self.bind.resolver_address,
            "TSIG_KEY_NAME": self.bind.key_name,
            "TSIG_SECRET": self.bind.key_secret,
        }

    def kubectl(self, *args: str, check: bool = True) -> str:
        return self.cp.kubectl(*args, check=check, timeout=120).stdout

    def get(self, namespace: str | None, kind: str, name: str) -> dict[str, Any] | None:
        return get_obj(self.cp, namespace, kind, name)

    def items(self, namespace: str, kind: str, selector: str = "") -> list[dict[str, Any]]:
        return list_objs(self.cp, namespace, kind, selector, timeout=120)

    def secret_data(self, namespace: str, name: str, key: str) -> bytes:
        secret = self.get(namespace, "secret", name)
        assert secret is not None, f"no Secret {namespace}/{name}"
        return base64.b64decode(secret["data"][key])

    def diagnostics(self) -> str:
        """What a failing scenario needs to be understood: cert-manager's and ours."""
        parts = [
            f"----- cert-manager controller -----\n{self.controller.log_tail(120)}",
            f"----- acme-gateway -----\n{self.gateway.log_tail(80)}",
            self.operator.logs(60),
        ]
        for ns in (self.team_ns, self.cluster_ns, self.portal_ns, self.suspended_ns):
            kinds = "issuers,certificates,certificaterequests,orders,challenges"
            proc = self.cp.kubectl("get", "-n", ns, kinds, "-o", "wide", check=False)
            parts.append(f"----- {ns} -----\n{proc.stdout}{proc.stderr}")
        return "\n".join(parts)


def _registration_ready(world: CertManagerWorld, namespace: str) -> str | None:
    """The registration's effective key ID once the operator reconciled it and made the Secret."""
    reg = world.get(namespace, "acmeregistration", REGISTRATION)
    key_id = ((reg or {}).get("status") or {}).get("keyID")
    if not key_id or world.get(namespace, "secret", EAB_SECRET) is None:
        return None
    return str(key_id)


def _forbidden_certificate(world: CertManagerWorld) -> dict[str, Any]:
    """Same shape as the README's Certificates, for a name outside the allowed domain."""
    return {
        "apiVersion": "cert-manager.io/v1",
        "kind": "Certificate",
        "metadata": {"name": FORBIDDEN_CERT},
        "spec": {
            "secretName": f"{FORBIDDEN_CERT}-tls",
            "dnsNames": [f"www.elsewhere-{world.team_ns}.acme.test"],
            "issuerRef": {"kind": "Issuer", "name": "acme-gateway"},
        },
    }


def _apply_scenarios(world: CertManagerWorld) -> None:
    cp = world.cp
    for ns in (world.team_ns, world.cluster_ns, world.suspended_ns):
        examples.apply(cp, ns, "registration.yaml", **world.values(ns))
    # An admin suspends one registration before its team sets up the Issuer.
    suspend = {"spec": {"suspended": True}}
    cp.kubectl(*merge_patch(world.suspended_ns, "acmeregistration", REGISTRATION, suspend))
    for ns in (world.team_ns, world.cluster_ns, world.suspended_ns):
        world.key_ids[ns] = wait_for(
            f"registration {ns}/{REGISTRATION} reconciled",
            functools.partial(_registration_ready, world, ns),
            SETUP_TIMEOUT,
            0.5,
        )
    examples.apply(cp, world.team_ns, "issuer.yaml", **world.values(world.team_ns))
    examples.apply(cp, world.suspended_ns, "issuer.yaml", **world.values(world.suspended_ns))
    examples.apply(cp, world.cluster_ns, "clusterissuer.yaml", **world.values(world.cluster_ns))
    examples.apply(cp, world.team_ns, "certificates.yaml", **world.values(world.team_ns))
    examples.apply(
        cp,
        world.portal_ns,
        "certificate-clusterissuer.yaml",
        **world.values(world.cluster_ns),
    )
    cp.kubectl(
        "apply", "-n", world.team_ns, "-f", "-", input=json.dumps(_forbidden_certificate(world))
    )


@pytest.fixture(scope="session")
def certmanager_bin() -> Path:
    try:
        return ensure_certmanager()
    except GoToolError as exc:
        pytest.fail(f"cannot build the cert-manager controller:\n{exc}", pytrace=False)


@pytest.fixture(scope="session")
def cm_world(
    control_plane: ControlPlane,  # noqa: F811
    bind_server: BindServer,
    certmanager_bin: Path,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[CertManagerWorld]:
    """Gateway + operator + cert-manager, with every scenario's objects already applied."""
    cp = control_plane
    assert cp.kubeconfig is not None
    work = tmp_path_factory.mktemp("certmanager")
    cp.install_crds(certmanager_crds_dir())
    suffix = uuid.uuid4().hex[:6]
    namespaces = [f"cm-{role}-{suffix}" for role in ("team", "cluster", "portal", "suspended")]
    for ns in namespaces:
        cp.kubectl("create", "namespace", ns)
    gateway = GatewayProcess(
        work / "gateway",
        account_creation="pre-registered",
        dns_resolvers=(bind_server.resolver_address,),
    ).start()
    operator = OperatorProcess(
        cp.kubeconfig,
        default_database_url(gateway.data_dir),
        work,
        namespaces=(namespaces[0], namespaces[1], namespaces[3]),
        acme_base_url=gateway.base_url,
    )
    controller = CertManagerController(
        certmanager_bin,
        cp.kubeconfig,
        work,
        dns01_nameserver=bind_server.resolver_address,
        cluster_resource_namespace=namespaces[1],
        # ARI (RFC 9773): cert-manager asks renewalInfo when to renew (test_ari_renewal.py).
        feature_gates="ACMEUseARI=true",
    )
    team, cluster, portal, suspended = namespaces
    world = CertManagerWorld(
        cp, bind_server, gateway, operator, controller, team, cluster, portal, suspended
    )
    try:
        operator.start()
        controller.start()
        _apply_scenarios(world)
        yield world
    finally:
        controller.stop()
        operator.stop()
        gateway.stop()
        cp.kubectl("delete", "clusterissuer", "acme-gateway", "--wait=false", check=False)
        for ns in namespaces:
            cp.kubectl("delete", "namespace", ns, "--wait=false", check=False)


_worlds: list[CertManagerWorld] = []


@pytest.fixture(scope="session")
def cm(cm_world: CertManagerWorld) -> Iterator[CertManagerWorld]:
    """`cm_world`, remembered so failing tests get its logs attached."""
    _worlds.append(cm_world)
    yield cm_world
    _worlds.remove(cm_world)


def pytest_collection_finish(session: pytest.Session) -> None:
    """Build (or find) the controller before the tests run: a cold build is not a test's time."""
    if any("cm" in getattr(item, "fixturenames", ()) for item in session.items):
        try:
            ensure_certmanager()
        except GoToolError:
            pass  # the `certmanager_bin` fixture reports it, on every test that needs it


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if "cm" in getattr(item, "fixturenames", ()):
            item.add_marker(pytest.mark.kube)
            item.add_marker(pytest.mark.certmanager)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    report = yield
    if report.failed and _worlds and "cm" in getattr(item, "fixturenames", ()):
        report.sections.append(("cert-manager end to end", _worlds[0].diagnostics()))
    return report
