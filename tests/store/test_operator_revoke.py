"""`OperatorStore.revoke_certificate` against a real SQLite store: the rules ACME
revocation obeys, scoped to the registration the Secret belongs to."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import sqlalchemy as sa

from acme_server.store import accounts, certificates, crls
from acme_server.store.database import Database
from acme_server.store.operator_facade import OperatorStore, Refusal, generate_hmac_key
from acme_server.store.schema import certificates as cert_table


async def _registration(store: OperatorStore, name: str) -> int:
    reg = await store.upsert_registration(
        name,
        kid=name.replace("/", "."),
        hmac_key=generate_hmac_key(),
        max_accounts=None,
        suspended=False,
        domains=[],
        any_domain=True,
        max_pending_orders=None,
        max_pending_authorizations=None,
    )
    return reg.id


async def test_revoke_certificate_rules(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'store.sqlite3'}"
    server = await Database.open(url)
    store = await OperatorStore.open(url)
    try:
        mine = await _registration(store, "ns/web")
        theirs = await _registration(store, "other/web")
        now = datetime.now(UTC)

        def seed(conn: sa.Connection) -> None:
            for reg_id, tp, serials in ((mine, "tp1", ("0a", "0b")), (theirs, "tp2", ("0c",))):
                account = accounts.create(
                    conn, thumbprint=tp, jwk={"kty": "EC"}, contact=[], tos_agreed=True,
                    registration_id=reg_id, eab_kid=None, eab_binding=None,
                )  # fmt: skip
                for serial in serials:
                    expired = serial == "0b"
                    certificates.insert(
                        conn, id=f"crt-{serial}", serial=serial, order_id=None,
                        account_id=account.id, registration_id=reg_id, names=["a.example"],
                        chain_pem="", spki_sha256="00",
                        not_before=now - timedelta(days=2),
                        not_after=now - timedelta(days=1) if expired else now + timedelta(days=1),
                    )  # fmt: skip

        await server.write(seed)
        await server.write(lambda conn: crls.mark_stale(conn))

        # Another namespace's certificate cannot be reached through this registration.
        foreign = await store.revoke_certificate("ns/web", "0c", 1)
        assert foreign.refusal is Refusal.UNKNOWN and foreign.current is None
        expired = await store.revoke_certificate("ns/web", "0b", 1)
        assert expired.refusal is Refusal.EXPIRED and expired.current is not None
        bad = await store.revoke_certificate("ns/web", "0a", 2)  # cACompromise: not allowed
        assert bad.refusal is Refusal.BAD_REASON

        done = await store.revoke_certificate("ns/web", "0A", 1)
        assert done.refusal is None and done.current is not None
        assert done.current.revocation_reason == 1
        again = await store.revoke_certificate("ns/web", "0a", 4)
        assert again.refusal is Refusal.ALREADY_REVOKED
        assert again.current is not None and again.current.revocation_reason == 1

        rows = await server.read(
            lambda conn: {
                r.serial: r
                for r in conn.execute(
                    sa.select(cert_table.c.serial, cert_table.c.revoked_at, cert_table.c.revision)
                )
            }
        )
        assert rows["0a"].revoked_at is not None and rows["0a"].revision == 2  # re-exported
        assert rows["0b"].revoked_at is None and rows["0c"].revoked_at is None
    finally:
        await store.close()
        await server.close()
