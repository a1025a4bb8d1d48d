"""Per-tenant validation caps (issue 8, item 8): the in-process bookkeeping."""

from __future__ import annotations

from acme_server.validation.fairness import Tenant, TenantSlots


def test_account_cap() -> None:
    slots = TenantSlots(per_account=2, per_registration=10)
    a = Tenant("acct-a", None)
    assert slots.fits(a)
    slots.take(a)
    slots.take(a)
    assert not slots.fits(a)
    assert slots.full_accounts() == ["acct-a"]
    assert slots.full_registrations() == []
    assert slots.fits(Tenant("acct-b", None))
    slots.release(a)
    assert slots.fits(a)
    assert slots.full_accounts() == []


def test_registration_cap_spans_its_accounts() -> None:
    slots = TenantSlots(per_account=5, per_registration=3)
    for account in ("x", "y", "z"):
        slots.take(Tenant(account, 7))
    assert not slots.fits(Tenant("w", 7))  # a fresh account of the full registration
    assert slots.fits(Tenant("w", 8))
    assert slots.fits(Tenant("w", None))
    assert slots.full_registrations() == [7]
    slots.release(Tenant("x", 7))
    assert slots.fits(Tenant("w", 7))
    assert slots.full_registrations() == []


def test_release_forgets_idle_tenants() -> None:
    slots = TenantSlots(per_account=1, per_registration=1)
    t = Tenant("a", 1)
    for _ in range(3):
        slots.take(t)
        slots.release(t)
    assert slots.fits(t)
    assert slots._accounts == {} and slots._registrations == {}
