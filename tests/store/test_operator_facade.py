"""The operator's store facade against a real SQLite and PostgreSQL store: every call it offers."""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from acme_server.domain.identifiers import DomainRule
from acme_server.store import accounts, certificates, meta
from acme_server.store.database import Database
from acme_server.store.operator_facade import (
    OperatorStore,
    RegistrationError,
    generate_hmac_key,
)


async def test_operator_store_round_trip(tmp_path: Path) -> None:
    await _round_trip(f"sqlite:///{tmp_path / 'store.sqlite3'}")


async def test_operator_store_round_trip_postgres(postgres_url: str) -> None:
    await _round_trip(postgres_url)


async def _round_trip(url: str) -> None:
    server = await Database.open(url)  # the server side migrates
    store = await OperatorStore.open(url)
    try:
        await store.ping()
        rule = DomainRule("example.com", True, True)
        reg = await store.upsert_registration(
            "ns/web",
            kid="ns.web",
            hmac_key=generate_hmac_key(),
            max_accounts=None,
            suspended=False,
            domains=[rule],
            any_domain=False,
            max_pending_orders=None,
            max_pending_authorizations=3,
        )
        assert (await store.registration("ns/web")) == reg
        assert reg.domains == (rule,) and reg.max_pending_authorizations == 3
        assert await store.kid_holder("ns.web") == "ns/web"
        assert await store.kid_holder("ns.other") is None
        with pytest.raises(RegistrationError, match="already used"):
            await store.upsert_registration(
                "ns/other",
                kid="ns.web",
                hmac_key=generate_hmac_key(),
                max_accounts=None,
                suspended=False,
                domains=[],
                any_domain=False,
                max_pending_orders=None,
                max_pending_authorizations=None,
            )
        empty = await store.usage("ns/web")
        assert (empty.accounts, empty.certificates_issued, empty.last_issuance) == ([], 0, None)

        now = datetime.now(UTC)

        def _unit(conn: sa.Connection) -> Any:
            account = accounts.create(
                conn,
                thumbprint="tp",
                jwk={"kty": "EC"},
                contact=[],
                tos_agreed=True,
                registration_id=reg.id,
                eab_kid=reg.kid,
                eab_binding=None,
            )
            certificates.insert(
                conn,
                id="crt-1",
                serial="0a",
                order_id=None,
                account_id=account.id,
                registration_id=reg.id,
                names=["www.example.com"],
                chain_pem="PEM",
                spki_sha256=hashlib.sha256(b"k").hexdigest(),
                not_before=now,
                not_after=now + timedelta(days=1),
            )
            return account

        account = await server.write(_unit)
        used = await store.usage("ns/web")
        assert [a.id for a in used.accounts] == [account.id]
        assert used.certificates_issued == 1 and used.last_issuance is not None

        pending = await store.pending_exports(("ns",), limit=10)
        assert [(c.id, c.registration_name, c.revision) for c in pending] == [
            ("crt-1", "ns/web", 1)
        ]
        assert await store.pending_exports(("elsewhere",), limit=10) == []
        oldest = await store.oldest_pending_export(("ns",))  # the export lag's start
        assert oldest is not None and abs(oldest - now) < timedelta(seconds=5)
        assert await store.oldest_pending_export(("elsewhere",)) is None
        assert await store.mark_exported("crt-1", 1) is True
        assert await store.mark_exported("crt-1", 1) is False
        assert await store.pending_exports((), limit=10) == []
        assert await store.oldest_pending_export(()) is None

        assert await store.ca_root_pem() is None
        await meta.put(server, meta.CA_ROOT_PEM, "ROOT")
        assert await store.ca_root_pem() == "ROOT"

        assert await store.delete_registration("ns/web") is True
        assert await store.delete_registration("ns/web") is False
        assert await store.registration("ns/web") is None
    finally:
        await store.close()
        await server.close()
