"""Migration 0005_profiles and the registration profile columns on real SQLite and
PostgreSQL stores: the CLI's and the operator's write paths."""

from __future__ import annotations

from pathlib import Path

import pytest
import sqlalchemy as sa
from alembic import command
from alembic.config import Config

from acme_server.store import registrations
from acme_server.store.database import MIGRATIONS_DIR, Database
from acme_server.store.operator_facade import OperatorStore
from acme_server.store.registrations import RegistrationError, RowSpec, generate_hmac_key


def _url(backend: str, request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if backend == "sqlite":
        return f"sqlite:///{tmp_path / 'store.sqlite3'}"
    return str(request.getfixturevalue("postgres_url"))


def _to(conn: sa.Connection, down: bool, target: str) -> None:
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS_DIR))
    cfg.attributes["connection"] = conn
    (command.downgrade if down else command.upgrade)(cfg, target)


def _profile_columns(conn: sa.Connection) -> set[str]:
    inspector = sa.inspect(conn)
    found = {f"orders.{c['name']}" for c in inspector.get_columns("orders")}
    found |= {f"registrations.{c['name']}" for c in inspector.get_columns("registrations")}
    return found & {
        "orders.profile",
        "registrations.allowed_profiles",
        "registrations.default_profile",
    }


def _up_down_up(conn: sa.Connection) -> None:
    _to(conn, False, "0005_profiles")
    assert len(_profile_columns(conn)) == 3
    _to(conn, True, "0004_revocation_info")
    assert _profile_columns(conn) == set()
    _to(conn, False, "0005_profiles")
    assert len(_profile_columns(conn)) == 3


@pytest.mark.parametrize("backend", ["sqlite", "postgres"])
async def test_migration_up_down_up(
    backend: str, request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    db = await Database.open(_url(backend, request, tmp_path), migrate=False)
    try:
        await db.write(_up_down_up)
    finally:
        await db.close()


@pytest.mark.parametrize("backend", ["sqlite", "postgres"])
async def test_registration_profiles_round_trip(
    backend: str, request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    url = _url(backend, request, tmp_path)
    db = await Database.open(url)
    store = await OperatorStore.open(url)
    try:
        reg = await registrations.create(
            db, "cli", any_domain=True, allowed_profiles=("default", "shortlived")
        )
        assert reg.allowed_profiles == ("default", "shortlived") and reg.default_profile is None
        reg = await registrations.set_profiles(db, "cli", default_profile="shortlived")
        assert reg.default_profile == "shortlived"
        with pytest.raises(RegistrationError, match="not among the allowed profiles"):
            await registrations.set_profiles(db, "cli", allowed_profiles=("default",))
        # Limits changed elsewhere leave the profiles alone.
        reg = await registrations.set_limits(db, "cli", max_pending_orders=3)
        assert reg.allowed_profiles == ("default", "shortlived")
        reg = await registrations.set_profiles(db, "cli", allowed_profiles=None)
        assert reg.allowed_profiles is None and reg.default_profile == "shortlived"

        spec = RowSpec(
            name="ns/web",
            kid="ns.web",
            hmac_key=generate_hmac_key(),
            max_accounts=None,
            suspended=False,
            domains=(),
            any_domain=True,
            allowed_profiles=("tlsclient",),
            default_profile="tlsclient",
        )
        bad = RowSpec(
            **{**spec.__dict__, "name": "ns/bad", "kid": "ns.bad", "default_profile": "x"}
        )
        written, refused = await store.upsert_registrations([spec, bad])
        assert not isinstance(written, RegistrationError)
        assert written.allowed_profiles == ("tlsclient",)
        assert written.default_profile == "tlsclient"
        assert isinstance(refused, RegistrationError) and "'x'" in str(refused)
        again = await store.registration("ns/web")
        assert again == written
        cleared = (
            await store.upsert_registrations(
                [RowSpec(**{**spec.__dict__, "allowed_profiles": None, "default_profile": None})]
            )
        )[0]
        assert not isinstance(cleared, RegistrationError)
        assert cleared.allowed_profiles is None and cleared.default_profile is None
    finally:
        await store.close()
        await db.close()
