"""`store backup` / `store restore` against a real running `acme-gateway serve` (SQLite), and
the documented `pg_dump -Fc` / `pg_restore` commands against a real PostgreSQL."""

from __future__ import annotations

import asyncio
import os
import re
import shutil
import sqlite3
import stat
import subprocess
import threading
from pathlib import Path

import sqlalchemy as sa
from alembic import command
from alembic.config import Config

from acme_server.store.database import MIGRATIONS_DIR, Database, head_revision
from acme_server.store.schema import accounts, certificates
from tests.gateway_proc import GATEWAY, GatewayProcess, client_env
from tests.infra.bind import BindServer
from tests.infra.postgres import PostgresServer
from tests.protocol.support import new_account, unique

DOCS = Path(__file__).resolve().parents[2] / "docs" / "operations.md"


def cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [GATEWAY, "store", *args], capture_output=True, text=True, timeout=120, env=client_env()
    )


def counts(path: Path) -> tuple[int, int]:
    """(accounts, certificates) in the SQLite file at `path`."""
    conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        n_acc = conn.execute(f"SELECT count(*) FROM {accounts.name}").fetchone()[0]
        n_cert = conn.execute(f"SELECT count(*) FROM {certificates.name}").fetchone()[0]
        return int(n_acc), int(n_cert)
    finally:
        conn.close()


def check_file(path: Path) -> None:
    """The backup opens on its own, is intact, 0600, and at this code's schema head."""
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert not Path(f"{path}-wal").exists(), "a backup is one self-contained file"
    check_store(path)


def check_store(path: Path) -> None:
    """Intact and at this code's schema head."""
    conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        assert conn.execute("PRAGMA integrity_check").fetchall() == [("ok",)]
        assert conn.execute("SELECT version_num FROM alembic_version").fetchall() == [
            (head_revision(),)
        ]
    finally:
        conn.close()


def test_backup_while_server_writes(tmp_path: Path) -> None:
    gw = GatewayProcess(tmp_path / "data", workers=2).start()
    stop = threading.Event()
    made: list[str] = []
    errors: list[BaseException] = []

    def write_loop() -> None:
        try:
            while not stop.is_set() and len(made) < 400:
                made.append(new_account(gw).account)
        except BaseException as exc:  # reported by the test thread below
            errors.append(exc)

    writer = threading.Thread(target=write_loop)
    writer.start()
    try:
        seen = []
        for i in range(3):
            while len(made) < 5 * (i + 1) and writer.is_alive():
                stop.wait(0.05)
            out = tmp_path / f"backup-{i}.sqlite3"
            result = cli("backup", "--data-dir", str(gw.data_dir), str(out))
            assert result.returncode == 0, result.stderr
            assert "schema revision" in result.stdout
            check_file(out)
            seen.append(counts(out)[0])
    finally:
        stop.set()
        writer.join(timeout=60)
        gw.stop()
    assert not errors, errors
    # Each backup saw the writes made before it started, and the server kept writing.
    assert seen[0] >= 5 and seen[0] <= seen[1] <= seen[2] <= len(made)
    assert len(made) > seen[0]


def test_restore_brings_back_the_backup(tmp_path: Path, bind_server: BindServer) -> None:
    dns = (bind_server.resolver_address,)
    data = tmp_path / "data"
    db_file = data / "acme-gateway.sqlite3"
    backup = tmp_path / "before.sqlite3"
    gw = GatewayProcess(data, workers=1, dns_resolvers=dns).start()
    try:
        kept = new_account(gw)
        kept.issue([unique("kept")])
        assert cli("backup", "--data-dir", str(data), str(backup)).returncode == 0
        before = counts(backup)
        later = new_account(gw)
        later.issue([unique("later")])
        assert counts(db_file) == (before[0] + 1, before[1] + 1)
        refused = cli("restore", "--data-dir", str(data), str(backup))
        assert refused.returncode == 1
        assert "refusing to restore while the store is in use" in refused.stderr
        assert "stop every server" in refused.stderr
        assert counts(db_file) == (before[0] + 1, before[1] + 1)  # untouched
    finally:
        gw.stop()

    restored = cli("restore", "--data-dir", str(data), str(backup))
    assert restored.returncode == 0, restored.stderr
    assert "restored" in restored.stdout
    assert stat.S_IMODE(db_file.stat().st_mode) == 0o600
    assert not Path(f"{db_file}-wal").exists() or Path(f"{db_file}-wal").stat().st_size == 0
    assert not [p for p in data.iterdir() if p.name.endswith(".tmp")]

    gw = GatewayProcess(
        data, workers=1, port=gw.port, http01_port=gw.http01_port, dns_resolvers=dns
    ).start()
    try:
        assert counts(db_file) == before
        assert kept.get(kept.account).status_code == 200
        gone = later.get(later.account)
        assert gone.status_code in (400, 401, 403), gone.text
        assert gone.json()["type"] == "urn:ietf:params:acme:error:accountDoesNotExist"
        kept.issue([unique("again")])  # the restored store is fully usable
        assert counts(db_file) == (before[0], before[1] + 1)
    finally:
        gw.stop()


def _store_at(url: str, revision: str) -> None:
    async def build() -> None:
        db = await Database.open(url, migrate=False)
        try:

            def upgrade(conn: sa.Connection) -> None:
                cfg = Config()
                cfg.set_main_option("script_location", str(MIGRATIONS_DIR))
                cfg.attributes["connection"] = conn
                command.upgrade(cfg, revision)

            await db.write(upgrade)
        finally:
            await db.close()

    asyncio.run(build())


def test_restore_migrates_an_older_backup(tmp_path: Path) -> None:
    old = tmp_path / "old.sqlite3"
    _store_at(f"sqlite:///{old}", "0002")
    for suffix in ("-wal", "-shm", ".write-lock"):
        Path(f"{old}{suffix}").unlink(missing_ok=True)
    result = cli("restore", "--data-dir", str(tmp_path / "data"), str(old))
    assert result.returncode == 0, result.stderr
    assert f"migrating it to {head_revision()}" in result.stdout
    assert stat.S_IMODE((tmp_path / "data").stat().st_mode) == 0o700
    check_file_db = tmp_path / "data" / "acme-gateway.sqlite3"
    conn = sqlite3.connect(check_file_db)
    try:
        assert conn.execute("SELECT version_num FROM alembic_version").fetchone() == (
            head_revision(),
        )
    finally:
        conn.close()


def test_restore_refuses_what_is_not_a_known_store(tmp_path: Path) -> None:
    data = tmp_path / "data"
    assert cli("migrate", "--data-dir", str(data)).returncode == 0
    good = tmp_path / "good.sqlite3"
    assert cli("backup", "--data-dir", str(data), str(good)).returncode == 0

    nowhere = cli("backup", "--data-dir", str(data), str(tmp_path / "no" / "such.sqlite3"))
    assert nowhere.returncode == 1 and "no directory" in nowhere.stderr

    junk = tmp_path / "junk"
    junk.write_text("not a database")
    result = cli("restore", "--data-dir", str(data), str(junk))
    assert result.returncode == 1 and "is not a SQLite database" in result.stderr

    plain = tmp_path / "plain.sqlite3"
    sqlite3.connect(plain).execute("CREATE TABLE x (y)").connection.close()
    result = cli("restore", "--data-dir", str(data), str(plain))
    assert result.returncode == 1 and "is not an acme-gateway store" in result.stderr

    future = tmp_path / "future.sqlite3"
    future.write_bytes(good.read_bytes())
    conn = sqlite3.connect(future)
    conn.execute("UPDATE alembic_version SET version_num = '9999_future'")
    conn.commit()
    conn.close()
    result = cli("restore", "--data-dir", str(data), str(future))
    assert result.returncode == 1 and "unknown to this code" in result.stderr
    check_store(data / "acme-gateway.sqlite3")  # the store itself was left alone


def test_postgres_is_refused_with_pg_dump_pointer(tmp_path: Path) -> None:
    url = "postgresql://acme@127.0.0.1:1/acme"
    for sub in (("backup",), ("restore",)):
        result = cli(*sub, "--data-dir", str(tmp_path), "--database", url, str(tmp_path / "f"))
        assert result.returncode == 1
        assert "pg_dump -Fc" in result.stderr and "docs/operations.md" in result.stderr


def _documented_pg_commands() -> str:
    """The shell block of docs/operations.md marked `tested: pg-backup-restore`."""
    text = DOCS.read_text()
    match = re.search(r"<!-- tested: pg-backup-restore -->\s*```sh\n(.*?)```", text, re.S)
    assert match, "docs/operations.md lost its tested pg_dump/pg_restore block"
    return match.group(1)


def test_documented_pg_dump_and_restore(
    postgres_server: PostgresServer, bind_server: BindServer, tmp_path: Path
) -> None:
    dns = (bind_server.resolver_address,)
    source = postgres_server.create_database()
    target = postgres_server.create_database()
    gw = GatewayProcess(tmp_path / "data", database=source, workers=1, dns_resolvers=dns).start()
    try:
        acct = new_account(gw)
        acct.issue([unique("pg")])
    finally:
        gw.stop()
    for tool in ("pg_dump", "pg_restore"):
        assert shutil.which(tool), (
            f"{tool} missing: run tools/install-system-deps.sh (postgresql-client)"
        )
    base = client_env()
    env = {
        **base,
        "PATH": f"{Path(GATEWAY).parent}:{base.get('PATH', '')}",
        "DATABASE_URL": source,
        "RESTORE_URL": target,
        "BACKUP_FILE": str(tmp_path / "acme-gateway.dump"),
    }
    subprocess.run(
        ["bash", "-euo", "pipefail", "-c", _documented_pg_commands()],
        env=env,
        cwd=tmp_path,
        check=True,
        timeout=120,
    )
    assert os.path.getsize(env["BACKUP_FILE"]) > 0
    check = cli("check", "--data-dir", str(tmp_path / "data"), "--database", target)
    assert check.returncode == 0, check.stderr

    async def count(url: str) -> tuple[int, int]:
        db = await Database.open(url, migrate=False)
        try:

            def unit(conn: sa.Connection) -> tuple[int, int]:
                a = conn.execute(sa.select(sa.func.count()).select_from(accounts)).scalar_one()
                c = conn.execute(sa.select(sa.func.count()).select_from(certificates)).scalar_one()
                return int(a), int(c)

            return await db.read(unit)
        finally:
            await db.close()

    assert asyncio.run(count(target)) == asyncio.run(count(source)) == (1, 1)
    gw = GatewayProcess(
        tmp_path / "data",
        database=target,
        workers=1,
        port=gw.port,
        http01_port=gw.http01_port,
        dns_resolvers=dns,
    ).start()
    try:
        assert acct.get(acct.account).status_code == 200  # the restored store serves it
    finally:
        gw.stop()
