"""The operator's batch calls (issue 10): many registrations per transaction, same rules."""

from __future__ import annotations

from pathlib import Path

from acme_server.domain.identifiers import DomainRule
from acme_server.store.database import Database
from acme_server.store.operator_facade import (
    OperatorStore,
    RegistrationError,
    RowSpec,
    generate_hmac_key,
)


def _spec(name: str, kid: str, *domains: str, **kw: object) -> RowSpec:
    rules = tuple(DomainRule(d, True, True) for d in domains)
    return RowSpec(
        name=name,
        kid=kid,
        hmac_key=str(kw.pop("hmac_key", generate_hmac_key())),
        max_accounts=None,
        suspended=bool(kw.pop("suspended", False)),
        domains=rules,
        any_domain=False,
    )


async def test_upsert_many_writes_each_and_refuses_per_item(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'store.sqlite3'}"
    server = await Database.open(url)
    store = await OperatorStore.open(url)
    try:
        first = await store.upsert_registrations(
            [_spec(f"ns/r{i}", f"ns.r{i}", f"r{i}.example") for i in range(600)]
        )
        assert all(not isinstance(r, RegistrationError) for r in first)
        got = await store.registrations([f"ns/r{i}" for i in range(600)] + ["ns/none"])
        assert len(got) == 600 and "ns/none" not in got
        assert got["ns/r599"].domains == (DomainRule("r599.example", True, True),)

        # Per item: a taken key ID, an invalid key and a valid update in one batch.
        results = await store.upsert_registrations(
            [
                _spec("ns/thief", "ns.r1"),
                _spec("ns/bad", "ns.bad", hmac_key="short"),
                _spec("ns/r2", "ns.r2", "a.example", "b.example", suspended=True),
            ]
        )
        assert isinstance(results[0], RegistrationError)
        assert "already used" in str(results[0])
        assert isinstance(results[1], RegistrationError)
        updated = results[2]
        assert not isinstance(updated, RegistrationError)
        assert updated.suspended and {d.domain for d in updated.domains} == {
            "a.example",
            "b.example",
        }
        assert await store.registration("ns/thief") is None
        assert await store.registration("ns/bad") is None
        holders = await store.kid_holders(["ns.r1", "ns.r2", "ns.none"])
        assert holders == {"ns.r1": "ns/r1", "ns.r2": "ns/r2"}

        usage = await store.usage_many(["ns/r1", "ns/none"])
        assert usage["ns/r1"].accounts == [] and usage["ns/r1"].certificates_issued == 0
        assert usage["ns/none"].certificates_issued == 0
        assert await store.mark_exported_many([]) == 0
    finally:
        await store.close()
        await server.close()
