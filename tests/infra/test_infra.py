"""The test servers themselves work: real named answers and takes signed updates only,
real PostgreSQL takes connections and our schema, and databases are isolated."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import asyncpg
import dns.query
import dns.rcode
import dns.tsig
import dns.tsigkeyring
import dns.update
import pytest
import sqlalchemy as sa

from acme_server.store.database import Database
from tests.infra import bind, postgres
from tests.infra.bind import BindServer
from tests.infra.postgres import PostgresServer

pytest_plugins = ["tests.infra.fixtures"]


# -- BIND ---------------------------------------------------------------------------------


def test_wildcard_and_apex_answer_loopback(bind_server: BindServer) -> None:
    assert bind_server.query("acme.test", "A") == ["127.0.0.1"]
    assert bind_server.query("anything.acme.test", "A") == ["127.0.0.1"]
    assert bind_server.query("deep.Name.Acme.Test.", "A") == ["127.0.0.1"]
    assert bind_server.query("nothing-here.acme.test", "TXT") == []


def test_resolver_helper_uses_the_server(bind_server: BindServer) -> None:
    answer = bind_server.resolver().resolve("via-resolver.acme.test", "A")
    assert [r.to_text() for r in answer] == ["127.0.0.1"]
    host, port = bind_server.resolver_address.rsplit(":", 1)
    assert (host, int(port)) == ("127.0.0.1", bind_server.port)


def test_nsupdate_txt_add_and_delete(bind_server: BindServer) -> None:
    name = "_acme-challenge.add-delete.acme.test"
    bind_server.nsupdate_add_txt(name, "first-value")
    bind_server.nsupdate_add_txt(name, "second-value")
    assert sorted(bind_server.query(name, "TXT")) == ["first-value", "second-value"]
    # The challenged name itself must keep resolving for http-01 while the TXT exists.
    assert bind_server.query("add-delete.acme.test", "A") == ["127.0.0.1"]
    bind_server.nsupdate_delete_txt(name)
    assert bind_server.query(name, "TXT") == []


def test_unsigned_update_is_refused(bind_server: BindServer) -> None:
    name = "_acme-challenge.unsigned.acme.test"
    assert bind_server.unsigned_update_rcode(name, "forged") == dns.rcode.REFUSED
    assert bind_server.query(name, "TXT") == []


def test_update_signed_with_a_wrong_secret_is_rejected(bind_server: BindServer) -> None:
    wrong = dns.tsigkeyring.from_text({bind_server.key_name: "c2VjcmV0IHRoYXQgaXMgd3Jvbmc="})
    update = dns.update.UpdateMessage(
        "acme.test.", keyring=wrong, keyalgorithm=dns.tsig.HMAC_SHA256
    )
    update.add("_acme-challenge.wrong-key.acme.test.", 1, "TXT", '"forged"')
    try:
        response = dns.query.tcp(update, "127.0.0.1", port=bind_server.port, timeout=5)
        rcode = response.rcode()
    except dns.tsig.PeerBadSignature:
        rcode = dns.rcode.NOTAUTH
    assert rcode != dns.rcode.NOERROR
    assert bind_server.query("_acme-challenge.wrong-key.acme.test", "TXT") == []


def test_exposed_tsig_key_signs_updates(bind_server: BindServer) -> None:
    """What an RFC 2136 client such as cert-manager does with name/algorithm/secret."""
    assert bind_server.key_algorithm == "hmac-sha256"
    keyring = dns.tsigkeyring.from_text({bind_server.key_name: bind_server.key_secret})
    update = dns.update.UpdateMessage(
        "acme.test.", keyring=keyring, keyalgorithm=dns.tsig.HMAC_SHA256
    )
    name = "_acme-challenge.dnspython.acme.test."
    update.add(name, 1, "TXT", '"signed-by-dnspython"')
    response = dns.query.tcp(update, "127.0.0.1", port=bind_server.port, timeout=5)
    assert response.rcode() == dns.rcode.NOERROR
    assert bind_server.query(name, "TXT") == ["signed-by-dnspython"]
    bind_server.nsupdate_delete_txt(name)
    assert bind_server.query(name, "TXT") == []


def test_certbot_hook_scripts(bind_server: BindServer, tmp_path: Path) -> None:
    auth, cleanup = bind_server.hook_scripts(tmp_path / "hooks")
    assert os.access(auth, os.X_OK) and os.access(cleanup, os.X_OK)
    name = "_acme-challenge.hooked.acme.test"
    env = dict(os.environ, CERTBOT_DOMAIN="hooked.acme.test")
    # A wildcard order and its base name share one TXT owner: both values must coexist.
    for value in ("value-for-base", "value-for-wildcard"):
        result = subprocess.run(
            [str(auth)],
            env={**env, "CERTBOT_VALIDATION": value},
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert result.returncode == 0, result.stderr
    assert sorted(bind_server.query(name, "TXT")) == ["value-for-base", "value-for-wildcard"]
    result = subprocess.run(
        [str(cleanup)],
        env={**env, "CERTBOT_VALIDATION": "value-for-base"},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert bind_server.query(name, "TXT") == ["value-for-wildcard"]
    bind_server.nsupdate_delete_txt(name)


def test_extra_zones_and_clean_stop(tmp_path: Path) -> None:
    with BindServer(zones=["acme.test", "example.internal"]).start(tmp_path) as server:
        assert server.query("host.example.internal", "A") == ["127.0.0.1"]
        server.nsupdate_add_txt("_acme-challenge.host.example.internal", "in-second-zone")
        assert server.query("_acme-challenge.host.example.internal", "TXT") == ["in-second-zone"]
        assert list(tmp_path.glob("example.internal.zone.jnl")), "journal must be in workdir"
        proc = server._proc
    assert proc is not None and proc.poll() is not None, "named must be stopped"


# -- PostgreSQL ---------------------------------------------------------------------------


async def test_asyncpg_connects_with_password(postgres_server: PostgresServer) -> None:
    assert postgres_server.url.startswith("postgresql://acme:")
    conn = await asyncpg.connect(postgres_server.url)
    try:
        assert await conn.fetchval("SELECT current_database()") == "acme"
        assert (await conn.fetchval("SHOW server_version")).startswith("15")
    finally:
        await conn.close()


async def test_wrong_password_is_refused(postgres_server: PostgresServer) -> None:
    bad = postgres_server.url.replace(postgres_server.password, "not-the-password")
    try:
        conn = await asyncpg.connect(bad)
    except asyncpg.InvalidPasswordError:
        return
    await conn.close()
    raise AssertionError("a wrong password was accepted")


async def test_database_open_migrates_schema(postgres_url: str) -> None:
    db = await Database.open(postgres_url)
    try:
        assert db.dialect == "postgresql"
        tables = set(await db.read(lambda c: sa.inspect(c).get_table_names()))
    finally:
        await db.close()
    assert {"registrations", "allowed_domains", "alembic_version"} <= tables


async def test_created_databases_are_isolated(postgres_server: PostgresServer) -> None:
    first, second = postgres_server.create_database(), postgres_server.create_database()
    assert first != second
    db = await Database.open(first)
    await db.close()
    conn = await asyncpg.connect(second)
    try:
        tables = await conn.fetch("SELECT tablename FROM pg_tables WHERE schemaname='public'")
    finally:
        await conn.close()
    assert tables == [], "a migration in one database leaked into another"
    conn = await asyncpg.connect(first)
    try:
        assert await conn.fetchval("SELECT to_regclass('public.registrations')") is not None
    finally:
        await conn.close()


# -- missing binaries fail loudly with the install command ----------------------------------


def test_missing_named_names_the_install_script(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setattr(bind, "NAMED", str(tmp_path / "no-named"))
    with pytest.raises(bind.BindError, match=r"install-system-deps\.sh"):
        BindServer().start(tmp_path)


def test_missing_postgres_names_the_install_script(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setattr(postgres, "PG_BINDIR", tmp_path / "no-bin")
    with pytest.raises(postgres.PostgresError, match=r"install-system-deps\.sh"):
        PostgresServer().start(tmp_path)
