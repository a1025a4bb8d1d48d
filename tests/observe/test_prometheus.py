"""A real Prometheus (tests/infra/prometheus.py) scrapes a real server (`serve --workers 2
--metrics-listen --crl-listen`) and a real operator (against the test control plane) while
a short load runs: one AcmeRegistration and its AllowedDomain, two issuances, one failed
validation, one revocation, one HMAC key rotation and the exports. Then:

- both targets are up and every query of the chart's Grafana dashboard returns data;
- the chart's alert rules, loaded by that Prometheus, evaluate without error (and none of
  them fires on this healthy load);
- the operator logs one JSON object a line at DEBUG, kopf's per-object lines naming the
  object (kind, namespace, name and, for a registration, `registration`);
- no HMAC key the operator made or rotated, no certificate private key and no account key
  appears in the operator's or the server's log, in any usual spelling.
"""

from __future__ import annotations

import base64
import datetime as dt
import json
import re
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from acme import challenges, messages
from cryptography import x509
from cryptography.hazmat.primitives import serialization

from tests.infra.bind import BindServer
from tests.infra.kube import ControlPlane, merge_patch
from tests.infra.prometheus import PrometheusServer
from tests.kube.conftest import control_plane  # noqa: F401 - the shared session fixture
from tests.kube.operator_proc import (
    OperatorProcess,
    allowed_domain,
    apply,
    get_obj,
    list_objs,
    registration,
    secret_text,
    wait_condition,
)
from tests.observe.support import LoggingGateway
from tests.polling import wait_for
from tests.procs import free_port
from tests.protocol.acme_client import make_csr, new_client, register

REPO = Path(__file__).resolve().parents[2]
FILES = REPO / "helm" / "acme-gateway" / "files"
ROTATE = "acme-gateway.io/rotate-hmac-key"
# Grafana's variables, as the dashboard would resolve them: all namespaces, and a rate
# window holding many 1 s scrapes.
GRAFANA_VARIABLES = {"$__rate_interval": "30s", "$namespace": ".*"}


@dataclass
class World:
    prometheus: PrometheusServer
    gateway: LoggingGateway
    operator: OperatorProcess
    namespace: str
    operator_metrics: str  # HOST:PORT
    hmac_keys: list[str] = field(default_factory=list)
    private_keys: list[Any] = field(default_factory=list)
    secret_objects: list[str] = field(default_factory=list)  # as the API server serves them


def _hmac_secret(cp: ControlPlane, ns: str, name: str) -> tuple[str, str, dict[str, Any]]:
    """(key ID, HMAC key, Secret) from the registration's status and its Secret."""
    status = wait_condition(cp, ns, "acmeregistration", name, "True", timeout=30)["status"]
    secret = get_obj(cp, ns, "secret", status["hmacKeySecretRef"]["name"])
    assert secret is not None
    return status["keyID"], secret_text(secret, status["hmacKeySecretRef"]["key"]), secret


def _issue(client: Any, bind: BindServer, names: list[str], world: World) -> str:
    csr_pem, key = make_csr(names)
    world.private_keys.append(key)
    order = client.new_order(csr_pem)
    for authz in order.authorizations:
        chall = next(c for c in authz.body.challenges if isinstance(c.chall, challenges.DNS01))
        response, validation = chall.response_and_validation(client.net.key)
        bind.nsupdate_add_txt(f"_acme-challenge.{authz.body.identifier.value}", validation)
        client.answer_challenge(chall, response)
    deadline = dt.datetime.now() + dt.timedelta(seconds=30)
    return str(client.poll_and_finalize(order, deadline=deadline).fullchain_pem)


def _fail_validation(client: Any, bind: BindServer, name: str) -> None:
    """A dns-01 challenge answered with a wrong TXT record: the validation ends invalid."""
    csr_pem, _ = make_csr([name])
    order = client.new_order(csr_pem)
    authz = order.authorizations[0]
    chall = next(c for c in authz.body.challenges if isinstance(c.chall, challenges.DNS01))
    bind.nsupdate_add_txt(f"_acme-challenge.{name}", "not-the-key-authorization-digest")
    client.answer_challenge(chall, chall.response(client.net.key))

    def invalid() -> bool:
        status = client.poll(authz)[0].body.status
        return bool(status == messages.STATUS_INVALID)

    wait_for("the challenge to fail", invalid, timeout=30)


def _load(world: World, cp: ControlPlane, bind: BindServer) -> None:
    ns = world.namespace
    domain = f"{ns.replace('-', '')}.acme.test"
    apply(cp, ns, registration("team"))
    apply(cp, ns, allowed_domain("team-domain", "team", domain))
    kid, key, secret = _hmac_secret(cp, ns, "team")
    world.hmac_keys.append(key)
    world.secret_objects.append(json.dumps(secret))
    client = new_client(world.gateway)
    world.private_keys.append(client.net.key.key)  # type: ignore[union-attr]
    register(client, eab={"kid": kid, "hmac_key": key})

    def allowed() -> bool:
        try:
            client.new_order(make_csr([f"probe.{domain}"])[0])
            return True
        except messages.Error:
            return False

    wait_for("the allowed domain to reach the server", allowed, timeout=30)
    _issue(client, bind, [f"www.{domain}"], world)
    chain = _issue(client, bind, [f"api.{domain}"], world)
    _fail_validation(client, bind, f"bad.{domain}")
    client.revoke(x509.load_pem_x509_certificate(chain.encode()), 4)  # superseded

    # The operator rotates the key on request; the new one must stay out of the logs too.
    cp.kubectl(
        *merge_patch(ns, "acmeregistration", "team", {"metadata": {"annotations": {ROTATE: "1"}}})
    )

    def rotated_key() -> tuple[str, dict[str, Any]] | None:
        _, new, secret = _hmac_secret(cp, ns, "team")
        return (new, secret) if new != key else None

    rotated, secret = wait_for("the rotated HMAC key", rotated_key, timeout=30)
    world.hmac_keys.append(rotated)
    world.secret_objects.append(json.dumps(secret))
    wait_for(
        "both certificates exported as Secrets",
        lambda: (
            len(list_objs(cp, ns, "secrets", "acme-gateway.io/registration=team,"
                          "acme-gateway.io/serial")) == 2
        ),
        timeout=30,
    )  # fmt: skip


@pytest.fixture(scope="module")
def world(
    control_plane: ControlPlane,  # noqa: F811 - the imported session fixture
    bind_server: BindServer,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[World]:
    cp = control_plane
    assert cp.kubeconfig is not None
    tmp = tmp_path_factory.mktemp("prometheus-world")
    ns = f"t-{uuid.uuid4().hex[:10]}"
    cp.kubectl("create", "namespace", ns)
    store = f"sqlite:///{tmp / 'store.sqlite3'}"
    gateway = LoggingGateway(
        tmp / "gw",
        log_level="debug",
        log_format="json",
        database=store,
        account_creation="pre-registered",
        dns_resolvers=(bind_server.resolver_address,),
        workers=2,
        metrics=True,
        extra_args=("--crl-listen", f"127.0.0.1:{free_port()}"),
    )
    op_metrics = free_port()
    operator = OperatorProcess(
        cp.kubeconfig,
        store,
        tmp,
        namespaces=(ns,),
        extra_args=(
            "--metrics-listen", f"127.0.0.1:{op_metrics}",
            "--log-format", "json",
            "--log-level", "debug",
        ),
    )  # fmt: skip
    prometheus = PrometheusServer(
        {
            "acme-gateway": [f"127.0.0.1:{gateway.metrics_port}"],
            "acme-gateway-operator": [f"127.0.0.1:{op_metrics}"],
        },
        rule_files=[FILES / "alerts.yaml"],
    )
    world = World(prometheus, gateway, operator, ns, f"127.0.0.1:{op_metrics}")
    try:
        gateway.start()  # migrates the store the operator then opens
        operator.start()
        prometheus.start(tmp / "prometheus")
        _load(world, cp, bind_server)
        time.sleep(3)  # a few more scrapes after the last change
        yield world
    finally:
        prometheus.stop()
        operator.stop()
        gateway.stop()
        cp.kubectl("delete", "namespace", ns, "--wait=false", check=False)
        print(prometheus.logs())
        print(operator.logs())


def test_prometheus_scrapes_server_and_operator(world: World) -> None:
    health = world.prometheus.targets_health()
    assert sorted(health) == sorted(
        [
            f"http://127.0.0.1:{world.gateway.metrics_port}/metrics",
            f"http://{world.operator_metrics}/metrics",
        ]
    )
    assert set(health.values()) == {"up"}, health
    issued = world.prometheus.query("sum(acme_gateway_certificates_issued_total)")
    assert float(issued[0]["value"][1]) == 2
    revoked = world.prometheus.query('acme_gateway_revocations_total{reason="superseded"}')
    assert [float(s["value"][1]) for s in revoked] == [1]
    expiry = world.prometheus.query("acme_gateway_certificate_expiry_timestamp_seconds")
    certs = {s["metric"]["certificate"]: float(s["value"][1]) for s in expiry}
    assert set(certs) == {"root", "ca", "ocsp-signer"}
    assert all(v > time.time() for v in certs.values())
    assert certs["ocsp-signer"] - time.time() < 5 * 86400  # the 4-day responder certificate


def _dashboard_queries() -> list[tuple[str, str]]:
    doc = json.loads((FILES / "dashboard.json").read_text())
    panels = [p for p in doc["panels"] if p["type"] != "row"]
    panels += [p for row in doc["panels"] if row["type"] == "row" for p in row["panels"]]
    return [(p["title"], t["expr"]) for p in panels for t in p["targets"]]


def _resolve(expr: str) -> str:
    for name, value in GRAFANA_VARIABLES.items():
        expr = expr.replace(name, value)
    assert "$" not in expr, f"unknown dashboard variable in {expr}"
    return expr


def test_every_dashboard_query_returns_data(world: World) -> None:
    queries = _dashboard_queries()
    assert len(queries) >= 20
    empty = [(title, expr) for title, expr in queries if not world.prometheus.query(_resolve(expr))]
    assert not empty, empty


def test_every_alert_rule_evaluates_and_none_fires(world: World) -> None:
    def evaluated() -> list[dict[str, Any]] | None:
        groups = world.prometheus.api("rules")["groups"]
        rules = [r for g in groups for r in g["rules"]]
        never = "0001-01-01T00:00:00Z"  # Prometheus' "not evaluated yet"
        return rules if rules and all(r["lastEvaluation"] != never for r in rules) else None

    rules = wait_for("every rule evaluated", evaluated, timeout=15)
    assert len(rules) == 7
    for rule in rules:
        assert rule["health"] == "ok", (rule["name"], rule.get("lastError"))
        assert rule["state"] == "inactive", (rule["name"], rule["alerts"])
        world.prometheus.query(rule["query"])  # raises on an evaluation error


def test_operator_logs_json_naming_objects(world: World) -> None:
    lines = [x for x in world.operator.log_path.read_text().splitlines() if x.strip()]
    docs = [json.loads(line) for line in lines]  # every line is one JSON object
    assert any(d["level"] == "DEBUG" for d in docs)
    ns = world.namespace
    registration_lines = [
        d for d in docs if d.get("kind") == "AcmeRegistration" and d.get("name") == "team"
    ]
    assert registration_lines, "no line names the AcmeRegistration"
    assert all(d["namespace"] == ns for d in registration_lines)
    assert all(d["registration"] == f"{ns}/team" for d in registration_lines)
    assert any(d.get("kind") == "AllowedDomain" and d.get("name") == "team-domain" for d in docs)
    for doc in docs:  # kopf's record extras are not dumped
        assert not {"settings", "k8s_ref", "k8s_skip"} & doc.keys(), doc


def _spellings(secret: bytes) -> set[str]:
    """How a secret may show up in a log: hex, base64, base64url (with or without padding)."""
    b64 = base64.b64encode(secret).decode()
    b64url = base64.urlsafe_b64encode(secret).decode()
    return {secret.hex(), secret.hex().upper(), b64, b64.rstrip("="), b64url, b64url.rstrip("=")}


def _hmac_spellings(key: str) -> set[str]:
    raw = base64.urlsafe_b64decode(key + "=" * (-len(key) % 4))
    # The key text itself, the bytes it encodes, and the text as a Secret's data holds it.
    return {key} | _spellings(raw) | _spellings(key.encode())


def _private_key_spellings(key: Any) -> set[str]:
    der = key.private_bytes(
        serialization.Encoding.DER,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    found = _spellings(der)
    for fmt in (serialization.PrivateFormat.PKCS8, serialization.PrivateFormat.TraditionalOpenSSL):
        pem = key.private_bytes(serialization.Encoding.PEM, fmt, serialization.NoEncryption())
        body = [line for line in pem.decode().splitlines() if not line.startswith("-----")]
        found.add("".join(body))
        found.update(line for line in body if len(line) >= 32)  # each full PEM line alone
    return found


def test_no_secret_in_any_log(world: World) -> None:
    assert len(world.hmac_keys) == 2 and world.hmac_keys[0] != world.hmac_keys[1]
    assert len(world.private_keys) == 3  # the account key and two certificate keys
    secrets: set[str] = set()
    for key in world.hmac_keys:
        secrets |= _hmac_spellings(key)
    for private in world.private_keys:
        secrets |= _private_key_spellings(private)
    # The control: the Secrets as the API server serves them are caught by the same grep.
    for key, obj in zip(world.hmac_keys, world.secret_objects, strict=True):
        assert [s for s in _hmac_spellings(key) if s in obj], "the grep misses the Secret"
    logs = {
        "operator": world.operator.log_path.read_text(),
        "server": world.gateway.log_path.read_text(),
    }
    assert len(logs["operator"].splitlines()) > 50  # a DEBUG log of real work, not nothing
    for name, text in logs.items():
        # JSON escapes "/" nowhere, but a "+" or "/" may be escaped in other encoders.
        text = re.sub(r"\\u002[bB]", "+", text).replace("\\/", "/")
        leaked = sorted(s for s in secrets if s in text)
        assert not leaked, f"{name} log holds a secret: {leaked[:3]}"
