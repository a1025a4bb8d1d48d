"""Run `acme-gateway-operator` as a real subprocess against the test control plane.

Reusable by other kube tests (the end-to-end ACME tests start the operator the same way):
`OperatorProcess(...).start()`, `.kill()` (SIGKILL, for crash tests), `.stop()`; plus store
helpers that read the SQLite store the operator writes and insert issued certificates into
it the way the ACME server does (account, order, certificate rows).
"""

from __future__ import annotations

import asyncio
import base64
import datetime as dt
import hashlib
import json
import secrets
import signal
import subprocess
import sys
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import pytest
import sqlalchemy as sa
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from acme_server.store import accounts as account_store
from acme_server.store import certificates as cert_store
from acme_server.store import meta, registrations, schema
from acme_server.store.database import Database
from acme_server.store.schema import certificates, orders
from tests.infra.kube import ControlPlane, kubeconfig_env
from tests.polling import wait_for
from tests.procs import free_port, http_ok, stop_process, wait_ready

OPERATOR = str(Path(sys.executable).parent / "acme-gateway-operator")
API = "acme-gateway.io/v1alpha1"
T = TypeVar("T")


class OperatorProcess:
    """One operator process; restartable (same database, same flags) after kill/stop."""

    def __init__(
        self,
        kubeconfig: Path,
        database_url: str,
        log_dir: Path,
        *,
        namespaces: tuple[str, ...] = (),
        export_interval: float = 0.5,
        resync_interval: float = 3,
        status_interval: float = 2,
        acme_base_url: str | None = None,
        extra_args: tuple[str, ...] = (),
        extra_env: dict[str, str] | None = None,
    ) -> None:
        self.kubeconfig = kubeconfig
        self.database_url = database_url
        self.log_dir = log_dir
        self.namespaces = namespaces
        self.export_interval = export_interval
        self.resync_interval = resync_interval
        self.status_interval = status_interval
        self.acme_base_url = acme_base_url
        self.extra_args = extra_args
        self.extra_env = dict(extra_env or {})
        self.health_port = free_port()
        self.proc: subprocess.Popen[bytes] | None = None
        self.starts = 0

    @property
    def health_url(self) -> str:
        return f"http://127.0.0.1:{self.health_port}/healthz"

    @property
    def log_path(self) -> Path:
        return self.log_dir / f"operator-{self.health_port}-{self.starts}.log"

    def command(self) -> list[str]:
        cmd = [
            OPERATOR,
            "--database", self.database_url,
            "--health-listen", f"127.0.0.1:{self.health_port}",
            "--export-interval", str(self.export_interval),
            "--resync-interval", str(self.resync_interval),
            "--status-interval", str(self.status_interval),
        ]  # fmt: skip
        for ns in self.namespaces:
            cmd += ["--namespace", ns]
        if self.acme_base_url:
            cmd += ["--acme-base-url", self.acme_base_url]
        return cmd + list(self.extra_args)

    def start(self, timeout: float = 60) -> OperatorProcess:
        if self.proc is not None and self.proc.poll() is None:
            raise RuntimeError("operator already running")
        self.starts += 1
        env = {**kubeconfig_env(self.kubeconfig), **self.extra_env}
        with self.log_path.open("wb") as log:
            self.proc = subprocess.Popen(
                self.command(), stdout=log, stderr=subprocess.STDOUT, env=env
            )
        wait_ready(self.proc, "operator", http_ok(self.health_url), self.logs, timeout, 0.2)
        return self

    def kill(self) -> None:
        """SIGKILL: no cleanup, no final patches; what a crash looks like."""
        if self.proc is not None:
            stop_process(self.proc, signal.SIGKILL, timeout=10)

    def stop(self) -> None:
        if self.proc is not None:
            stop_process(self.proc)

    def logs(self, lines: int = 200) -> str:
        out = []
        for path in sorted(self.log_dir.glob(f"operator-{self.health_port}-*.log")):
            text = path.read_text(errors="replace").splitlines()[-lines:]
            out.append(f"----- {path.name} -----\n" + "\n".join(text))
        return "\n".join(out)


# ---------------------------------------------------------------- fixtures


@pytest.fixture
def store_url(tmp_path: Path) -> str:
    """A fresh SQLite store, migrated so tests and the operator can both use it at once."""
    url = f"sqlite:///{tmp_path / 'store.sqlite3'}"
    run(_migrate(url))
    return url


async def _migrate(url: str) -> None:
    db = await Database.open(url)
    await db.close()


@pytest.fixture
def operator_proc(
    control_plane: ControlPlane, kube_namespace: str, store_url: str, tmp_path: Path
) -> Iterator[OperatorProcess]:
    """An operator watching only this test's namespace, started; logs shown on failure."""
    assert control_plane.kubeconfig is not None
    op = OperatorProcess(
        control_plane.kubeconfig, store_url, tmp_path, namespaces=(kube_namespace,)
    ).start()
    try:
        yield op
    finally:
        op.stop()
        print(op.logs())  # shown by pytest for failing tests


# ---------------------------------------------------------------- waiting and kubectl


def run(coro: Awaitable[T]) -> T:
    return asyncio.run(coro)  # type: ignore[arg-type]


def apply(cp: ControlPlane, ns: str, obj: dict[str, Any]) -> None:
    cp.kubectl("apply", "-n", ns, "-f", "-", input=json.dumps(obj))


def get_obj(cp: ControlPlane, ns: str | None, kind: str, name: str) -> dict[str, Any] | None:
    """The object as JSON, None when it does not exist (`ns` None: a cluster-scoped kind)."""
    in_ns = ["-n", ns] if ns else []
    proc = cp.kubectl("get", *in_ns, kind, name, "-o", "json", check=False)
    if proc.returncode != 0:
        if "NotFound" in proc.stderr:
            return None
        raise AssertionError(proc.stderr)
    out: dict[str, Any] = json.loads(proc.stdout)
    return out


def list_objs(
    cp: ControlPlane, ns: str, kind: str, selector: str = "", timeout: float = 60
) -> list[dict[str, Any]]:
    args = ["get", "-n", ns, kind, "-o", "json"]
    if selector:
        args += ["-l", selector]
    items: list[dict[str, Any]] = json.loads(cp.kubectl(*args, timeout=timeout).stdout)["items"]
    return items


def registration(name: str, **spec: Any) -> dict[str, Any]:
    return {"apiVersion": API, "kind": "AcmeRegistration", "metadata": {"name": name}, "spec": spec}


def allowed_domain(name: str, registration_name: str, domain: str, **spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": API,
        "kind": "AllowedDomain",
        "metadata": {"name": name},
        "spec": {"registrationName": registration_name, "domain": domain, **spec},
    }


def condition(obj: dict[str, Any] | None, type_: str = "Ready") -> dict[str, Any] | None:
    if obj is None:
        return None
    for cond in (obj.get("status") or {}).get("conditions") or []:
        if cond.get("type") == type_:
            return dict(cond)
    return None


def wait_condition(
    cp: ControlPlane,
    ns: str,
    kind: str,
    name: str,
    status: str,
    reason: str | None = None,
    timeout: float = 60,
) -> dict[str, Any]:
    def probe() -> dict[str, Any] | None:
        obj = get_obj(cp, ns, kind, name)
        cond = condition(obj)
        if cond and cond["status"] == status and (reason is None or cond["reason"] == reason):
            assert obj is not None
            return obj
        return None

    return wait_for(f"{kind}/{name} Ready={status} ({reason})", probe, timeout)


def secret_text(secret: dict[str, Any], key: str) -> str:
    return base64.b64decode(secret["data"][key]).decode()


def events_for(cp: ControlPlane, ns: str, name: str) -> list[dict[str, Any]]:
    items = list_objs(cp, ns, "events")
    return [e for e in items if e["involvedObject"].get("name") == name]


# ---------------------------------------------------------------- the store


def store_registration(url: str, name: str) -> registrations.Registration | None:
    async def go() -> registrations.Registration | None:
        db = await Database.open(url, migrate=False)
        try:
            return await registrations.get(db, name)
        finally:
            await db.close()

    return run(go())


def store_execute(url: str, fn: Callable[[sa.Connection], T]) -> T:
    """Run `fn` with a synchronous connection inside one transaction (a store unit)."""

    async def go() -> T:
        db = await Database.open(url, migrate=False)
        try:
            return await db.write(fn)
        finally:
            await db.close()

    return run(go())


@dataclass(frozen=True)
class IssuedCertificate:
    id: str
    serial: str
    chain_pem: str
    account_id: str
    names: list[str]


def self_signed_pem(names: list[str]) -> tuple[str, int]:
    key = ec.generate_private_key(ec.SECP256R1())
    now = dt.datetime.now(dt.UTC)
    serial = x509.random_serial_number()
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, names[0])]))
        .issuer_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "test issuer")]))
        .public_key(key.public_key())
        .serial_number(serial)
        .not_valid_before(now - dt.timedelta(minutes=1))
        .not_valid_after(now + dt.timedelta(days=30))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName(n) for n in names]), False)
        .sign(key, hashes.SHA256())
    )
    return cert.public_bytes(serialization.Encoding.PEM).decode(), serial


def ensure_ca_root(url: str) -> str:
    """The CA root PEM the server would have recorded (a fresh self-signed one if none)."""

    async def go() -> str:
        db = await Database.open(url, migrate=False)
        try:
            pem = await meta.get(db, meta.CA_ROOT_PEM)
            if pem is None:
                pem, _ = self_signed_pem(["root.acme-gateway.test"])
                await meta.put(db, meta.CA_ROOT_PEM, pem)
            return pem
        finally:
            await db.close()

    return run(go())


def insert_certificate(
    url: str, registration_name: str, names: list[str], account_id: str | None = None
) -> IssuedCertificate:
    """Account (when new), order and certificate rows like an issuance does; the account and
    the certificate through the store's own functions (accounts.create, certificates.insert)."""
    reg = store_registration(url, registration_name)
    assert reg is not None, f"no store registration {registration_name}"
    pem, serial_int = self_signed_pem(names)
    cert = x509.load_pem_x509_certificate(pem.encode())
    spki = cert.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    now = dt.datetime.now(dt.UTC)
    order_id, cert_id = "ord-" + secrets.token_hex(8), "crt-" + secrets.token_hex(8)

    async def go() -> str:
        db = await Database.open(url, migrate=False)
        try:

            def _unit(conn: sa.Connection) -> Any:
                if account_id is None:
                    account = account_store.create(
                        conn,
                        thumbprint="tp-" + secrets.token_hex(16),
                        jwk={"kty": "EC"},
                        contact=[],
                        tos_agreed=True,
                        registration_id=reg.id,
                        eab_kid=reg.kid,
                        eab_binding=None,
                    )
                else:
                    found = account_store.by_id(conn, account_id)
                    assert found is not None, f"no account {account_id}"
                    account = found
                # The order exists only for the certificate's foreign key.
                conn.execute(
                    orders.insert().values(
                        id=order_id,
                        account_id=account.id,
                        status="valid",
                        identifiers=[{"type": "dns", "value": n} for n in names],
                        certificate_id=cert_id,
                        expires_at=now + dt.timedelta(days=1),
                        created_at=now,
                    )
                )
                cert_store.insert(
                    conn,
                    id=cert_id,
                    serial=format(serial_int, "x"),
                    order_id=order_id,
                    account_id=account.id,
                    registration_id=reg.id,
                    names=names,
                    chain_pem=pem,
                    spki_sha256=hashlib.sha256(spki).hexdigest(),
                    not_before=cert.not_valid_before_utc,
                    not_after=cert.not_valid_after_utc,
                )
                return account.id

            return await db.write(_unit)
        finally:
            await db.close()

    acct = run(go())
    return IssuedCertificate(cert_id, format(serial_int, "x"), pem, acct, names)


def certificate_row(url: str, cert_id: str) -> Any:
    return store_execute(
        url,
        lambda conn: conn.execute(
            sa.select(certificates).where(certificates.c.id == cert_id)
        ).one(),
    )


# ---------------------------------------------------------------- least privilege

RBAC_DOC = Path(__file__).resolve().parents[2] / "operator" / "rbac.md"


def documented_cluster_role() -> str:
    """The ClusterRole manifest in operator/rbac.md (its only ```yaml block)."""
    text = RBAC_DOC.read_text()
    start = text.index("```yaml\n") + len("```yaml\n")
    return text[start : text.index("```", start)]


def store_hmac_keys(url: str, ns: str) -> dict[str, str]:
    """The HMAC key of every store registration of namespace `ns`, by registration name."""

    def read(conn: sa.Connection) -> dict[str, str]:
        table = schema.registrations
        rows = conn.execute(
            sa.select(table.c.name, table.c.hmac_key).where(table.c.name.like(f"{ns}/%"))
        )
        return {r.name: r.hmac_key for r in rows}

    return store_execute(url, read)
