"""Per-tenant caps on running validations, so one account cannot starve the others.

A validation whose target never answers holds its slot for the whole timeout. Without a
cap, one account that accepts many such challenges fills every slot of the process and
every other account waits behind it. The scheduler asks this object which accounts and
registrations are at their cap and leaves their due challenges in the store (unleased)
until a slot frees. The counts are per process: with several processes on PostgreSQL an
account may run up to `processes x cap` validations in all.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field


@dataclass(frozen=True)
class Tenant:
    """Who a validation is run for: the account and, when bound, its pre-registration."""

    account_id: str
    registration_id: int | None


@dataclass
class TenantSlots:
    per_account: int
    per_registration: int
    _accounts: Counter[str] = field(default_factory=Counter)
    _registrations: Counter[int] = field(default_factory=Counter)

    def full_accounts(self) -> list[str]:
        return [a for a, n in self._accounts.items() if n >= self.per_account]

    def full_registrations(self) -> list[int]:
        return [r for r, n in self._registrations.items() if n >= self.per_registration]

    def fits(self, tenant: Tenant) -> bool:
        if self._accounts[tenant.account_id] >= self.per_account:
            return False
        reg = tenant.registration_id
        return reg is None or self._registrations[reg] < self.per_registration

    def take(self, tenant: Tenant) -> None:
        self._accounts[tenant.account_id] += 1
        if tenant.registration_id is not None:
            self._registrations[tenant.registration_id] += 1

    def release(self, tenant: Tenant) -> None:
        self._accounts[tenant.account_id] -= 1
        if self._accounts[tenant.account_id] <= 0:
            del self._accounts[tenant.account_id]
        reg = tenant.registration_id
        if reg is not None:
            self._registrations[reg] -= 1
            if self._registrations[reg] <= 0:
                del self._registrations[reg]
