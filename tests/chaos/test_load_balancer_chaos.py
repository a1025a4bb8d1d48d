"""Three server replicas on one PostgreSQL behind a real HAProxy, under load, with chaos
(issue 14 item 5).

Eight client threads run full ACME flows (EAB account, newOrder, http-01, finalize,
download) through HAProxy round-robin while the test
1. kills one replica with SIGKILL while it validates challenges (the http-01 responders
   hold their answers, so it dies holding leases), waits until the other replicas have taken
   those challenges over once their lease ran out, and restarts it;
2. stops PostgreSQL, waits 3 s, and starts it again.
The real operator exports every certificate from the same PostgreSQL as a Secret.

Asserted: no 500 and no traceback in any server log; every non-2xx answer is a 503 with
`Retry-After` (serverInternal from a replica, or HAProxy's own ACME-shaped page) or
`badNonce`, and every 503 falls inside one of the two outages; every order ends valid with a
downloadable certificate and exactly one Secret; the killed replica's challenges end valid,
validated by another replica.
"""

from __future__ import annotations

import threading
import time
import traceback
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.chaos.http01 import Responders, responders
from tests.chaos.lb_client import ERR, ChaosClient, OrderResult, Recorder, Response
from tests.gateway_proc import GatewayProcess
from tests.infra.bind import BindServer
from tests.infra.haproxy import HAProxy, HAProxyError
from tests.infra.kube import ControlPlane
from tests.infra.postgres import PostgresServer
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
from tests.polling import wait_for
from tests.procs import free_port

pytestmark = pytest.mark.postgres

WORKERS = 8
ORDERS = 64  # at least; workers go on until the chaos is over
LEASE_SECONDS = 11  # --validation-lease: must exceed the 10 s validation timeout
RESPONDER_DELAY = 1.0
TEST_SECONDS = 170  # everything, set-up included, must finish in this
CERT_SELECTOR = "app.kubernetes.io/managed-by=acme-gateway,acme-gateway.io/purpose=certificate"
# After an outage ends, requests already waiting (or on a pooled connection found dead)
# may still be answered 503 for a moment.
GRACE_SECONDS = 5.0


class Load:
    """The client threads and what they saw."""

    def __init__(self, lb: HAProxy, eab: dict[str, str], domain: str, state: Responders) -> None:
        self.lb, self.eab, self.domain, self.state = lb, eab, domain, state
        self.recorder = Recorder()
        self.results: list[OrderResult] = []
        self.failures: list[str] = []
        self.chaos_done = threading.Event()
        self.lock = threading.Lock()
        self.started = 0
        self.deadline = time.monotonic() + TEST_SECONDS
        self.threads = [
            threading.Thread(target=self._worker, args=(i,), daemon=True) for i in range(WORKERS)
        ]

    def completed(self) -> int:
        with self.lock:
            return len(self.results)

    def _take(self) -> int | None:
        with self.lock:
            if self.failures or (self.started >= ORDERS and self.chaos_done.is_set()):
                return None
            self.started += 1
            return self.started

    def _worker(self, worker: int) -> None:
        try:
            assert self.lb.root_pem is not None
            client = ChaosClient(
                f"{self.lb.base_url}/directory",
                self.lb.root_pem,
                self.recorder,
                worker,
                self.deadline,
                self.state.tokens,
            )
            client.register(self.eab)
            while (n := self._take()) is not None:
                result = client.issue(f"o{n}-w{worker}.{self.domain}")
                with self.lock:
                    self.results.append(result)
        except Exception:
            with self.lock:
                self.failures.append(f"worker {worker}:\n{traceback.format_exc()}")

    def start(self) -> None:
        for thread in self.threads:
            thread.start()

    def join(self) -> None:
        for thread in self.threads:
            thread.join(max(1.0, self.deadline - time.monotonic()))
        assert not any(t.is_alive() for t in self.threads), "client threads did not finish"


def _wait_until(what: str, check: Callable[[], object], timeout: float, load: Load) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert not load.failures, "\n".join(load.failures)
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)


def test_replicas_behind_haproxy_survive_a_killed_replica_and_a_database_restart(
    control_plane: ControlPlane,
    kube_namespace: str,
    bind_server: BindServer,
    own_postgres: PostgresServer,
    tmp_path: Path,
) -> None:
    begun = time.monotonic()
    cp, ns, pg = control_plane, kube_namespace, own_postgres
    ports = [free_port() for _ in range(3)]
    lb = HAProxy([("127.0.0.1", port) for port in ports])
    data_dir = tmp_path / "gw"  # one CA for all replicas
    replicas = [
        GatewayProcess(
            data_dir,
            database=pg.url,
            account_creation="pre-registered",
            dns_resolvers=(bind_server.resolver_address,),
            port=port,
            workers=1,
            public_url=lb.base_url,
            insecure_http=True,
            extra_args=("--nonce-scope", "store", "--validation-lease", f"{LEASE_SECONDS}s"),
        )
        for port in ports
    ]
    operator: OperatorProcess | None = None
    try:
        for gw in replicas:  # the first migrates the store and makes the CA
            gw.start()
        try:
            lb.start(tmp_path / "haproxy")
        except HAProxyError as exc:
            pytest.fail(str(exc), pytrace=False)
        assert cp.kubeconfig is not None
        operator = OperatorProcess(
            cp.kubeconfig, pg.url, tmp_path, namespaces=(ns,), acme_base_url=lb.base_url
        ).start()
        domain = f"{ns.replace('-', '')}.acme.test"
        apply(cp, ns, registration("team"))
        apply(cp, ns, allowed_domain("team-domain", "team", domain))
        obj = wait_condition(cp, ns, "acmeregistration", "team", "True", timeout=30)
        secret = get_obj(cp, ns, "secret", obj["status"]["hmacKeySecretRef"]["name"])
        assert secret is not None
        eab = {
            "kid": obj["status"]["keyID"],
            "hmac_key": secret_text(secret, obj["status"]["hmacKeySecretRef"]["key"]),
        }

        with responders([gw.http01_port for gw in replicas], RESPONDER_DELAY) as state:
            _wait_for_grant(lb, eab, domain)
            load = Load(lb, eab, domain, state)
            load.start()
            victim = replicas[1]
            outages = _chaos(load, victim, pg, state)
            load.join()
        assert not load.failures, "\n".join(load.failures)
        responses = load.recorder.snapshot()
        _assert_answers(responses, outages)
        _assert_no_tracebacks(replicas)
        assert "Traceback" not in operator.logs(10**6), operator.logs(80)  # the whole log
        _assert_orphans_taken_over(outages.orphans, victim, state, load.results)
        _assert_certificates_exported(cp, ns, load.results)
        print(
            f"chaos: {len(load.results)} orders, {len(responses)} responses "
            f"({Counter(r.status for r in responses)}), {len(outages.orphans)} orphaned "
            f"challenges, {time.monotonic() - begun:.0f}s"
        )
    finally:
        if operator is not None:
            operator.stop()
        lb.stop()
        for gw in replicas:
            gw.stop()


def _wait_for_grant(lb: HAProxy, eab: dict[str, str], domain: str) -> None:
    """The operator wrote the registration and its domain: a newOrder is accepted."""
    assert lb.root_pem is not None
    probe = ChaosClient(
        f"{lb.base_url}/directory", lb.root_pem, Recorder(), -1, time.monotonic() + 60, {}
    )
    probe.register(eab)

    def allowed() -> bool:
        return probe.new_order(f"probe.{domain}").status_code == 201

    wait_for("the operator's grant to reach the servers", allowed, timeout=30, interval=0.5)


class Outages:
    def __init__(self) -> None:
        self.windows: list[tuple[str, float, float]] = []
        self.orphans: set[str] = set()
        self.killed_at = 0.0


def _chaos(load: Load, victim: GatewayProcess, pg: PostgresServer, state: Responders) -> Outages:
    out = Outages()
    port = victim.http01_port
    _wait_until("the first orders", lambda: load.completed() >= 8, 60, load)

    # 1. SIGKILL a replica while it validates: challenges whose answer it has not yet got.
    def young_hits() -> list[str]:
        now = time.monotonic()
        return [h.token for h in state.in_flight(port) if now - h.started < RESPONDER_DELAY * 0.6]

    _wait_until("a validation in flight on the victim", young_hits, 30, load)
    out.orphans = set(young_hits())
    out.killed_at = time.monotonic()  # before: kill() returns once the process is gone
    victim.kill()

    def taken_over() -> bool:
        return all(
            any(h.port != port and h.finished and h.started > out.killed_at for h in hits)
            for hits in (state.hits_for(t) for t in out.orphans)
        )

    _wait_until("the other replicas to take the leases over", taken_over, LEASE_SECONDS + 15, load)
    victim.start()
    out.windows.append(("replica killed", out.killed_at, time.monotonic() + GRACE_SECONDS))

    # 2. Restart PostgreSQL under load.
    done = load.completed()
    _wait_until("orders after the restart", lambda: load.completed() >= done + 8, 60, load)
    down = time.monotonic()
    pg.stop_server()
    time.sleep(3)
    pg.start_server()
    out.windows.append(("PostgreSQL restarted", down, time.monotonic() + GRACE_SECONDS))
    load.chaos_done.set()
    return out


def _assert_answers(responses: list[Response], outages: Outages) -> None:
    assert not [r for r in responses if r.status == 0], "requests failed below HTTP"
    assert not [r for r in responses if r.status >= 500 and r.status != 503], "5xx other than 503"
    bad = []
    for r in responses:
        if r.status < 400:
            continue
        if r.status == 400 and r.problem == ERR + "badNonce":
            continue
        if (
            r.status == 403
            and r.problem == ERR + "orderNotReady"
            and r.path.startswith("/acme/order/")
        ):
            continue  # a finalize repeated after a lost answer (checked by the client)
        if r.status == 503:
            if r.retry_after and r.problem == ERR + "serverInternal":
                if any(start <= r.at <= end for _, start, end in outages.windows):
                    continue
        bad.append(r)
    assert not bad, "unexpected answers:\n" + "\n".join(map(str, bad[:20]))
    _, pg_down, pg_end = outages.windows[1]
    from_replicas = [
        r
        for r in responses
        if r.status == 503 and pg_down <= r.at <= pg_end and "database" in r.detail
    ]
    assert from_replicas, "no client saw the database outage: the test did not exercise it"


def _assert_no_tracebacks(replicas: list[GatewayProcess]) -> None:
    for gw in replicas:
        text = gw.log_path.read_text(errors="replace")
        assert "Traceback" not in text, gw.log_tail(80)
        assert " 500 " not in text, "a 500 in the access log"


def _assert_orphans_taken_over(
    orphans: set[str], victim: GatewayProcess, state: Responders, results: list[OrderResult]
) -> None:
    assert orphans, "the victim held no lease when it was killed"
    by_token = {r.challenge_token: r for r in results}
    for token in orphans:
        assert token in by_token, f"the order of orphaned challenge {token} did not finish"
        assert by_token[token].status == "valid"
        others = [h for h in state.hits_for(token) if h.port != victim.http01_port]
        assert others, f"challenge {token} was never validated by another replica"


def _assert_certificates_exported(cp: ControlPlane, ns: str, results: list[OrderResult]) -> None:
    assert len(results) >= ORDERS
    assert all(r.status == "valid" and r.certificate_pem for r in results)
    serials = [r.serial_hex for r in results]
    assert len(set(serials)) == len(serials)

    def exported() -> Counter[str] | None:
        secrets = list_objs(cp, ns, "secrets", CERT_SELECTOR)
        counts = Counter(s["metadata"]["annotations"]["acme-gateway.io/serial"] for s in secrets)
        return counts if all(counts[s] >= 1 for s in serials) else None

    counts = wait_for("every certificate exported as a Secret", exported, timeout=60, interval=1)
    assert all(counts[s] == 1 for s in serials), counts
    # and no Secret for a certificate no client got: every finalize that landed was seen
    assert set(counts) == set(serials), set(counts) - set(serials)
