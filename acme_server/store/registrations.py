"""Pre-registrations (EAB key ID + HMAC key) and their allowed domains.

Shared by the admin CLI and the Kubernetes operator (through its facade), so both write
exactly the rows the ACME server reads. Functions taking `db` are one transaction each;
`load_by_kid`/`load_by_id` take `conn` and run inside the caller's (see store/__init__.py).
"""

from __future__ import annotations

import dataclasses
import logging
import secrets
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa

from acme_server.domain.identifiers import (
    DomainRule,
    IdentifierError,
    normalise_dns_name,
    parse_ip_range,
)
from acme_server.encoding import b64url_decode, b64url_encode
from acme_server.store.database import Database
from acme_server.store.schema import accounts, allowed_domains, certificates, registrations

HMAC_KEY_BYTES = 32
log = logging.getLogger(__name__)
UNCHANGED: Any = object()
MAX_PROFILE_NAME = 64


class RegistrationError(ValueError):
    """An admin request the store refuses; the message says what to fix."""


@dataclass(frozen=True)
class Registration:
    id: int
    name: str
    kid: str
    hmac_key: str
    max_accounts: int | None
    suspended: bool
    created_at: datetime
    domains: tuple[DomainRule, ...] = field(default=())
    # Explicit "any name" grant; without it only `domains` grant names (none = nothing).
    any_domain: bool = False
    # Rate-limit overrides; None = the server-wide default.
    max_pending_orders: int | None = None
    max_pending_authorizations: int | None = None
    # Certificate profiles it may use (None = every one needing no explicit grant) and
    # the one its orders get without `profile` (None = the server's default).
    allowed_profiles: tuple[str, ...] | None = None
    default_profile: str | None = None
    # RFC 8738: CIDR ranges its orders may request ip identifiers in (any_domain grants none).
    ip_ranges: tuple[str, ...] = ()

    @property
    def grants_nothing(self) -> bool:
        """True when no order from this registration can name anything."""
        return not self.any_domain and not self.domains and not self.ip_ranges

    def public_dict(self, *, with_key: bool = False) -> dict[str, object]:
        out: dict[str, object] = {
            "name": self.name,
            "kid": self.kid,
            "max_accounts": self.max_accounts,
            "suspended": self.suspended,
            "created_at": self.created_at.isoformat(),
            "any_domain": self.any_domain,
            "max_pending_orders": self.max_pending_orders,
            "max_pending_authorizations": self.max_pending_authorizations,
            "profiles": list(self.allowed_profiles) if self.allowed_profiles is not None else None,
            "default_profile": self.default_profile,
            "ip_ranges": list(self.ip_ranges),
            "domains": [
                {
                    "domain": d.domain,
                    "include_subdomains": d.include_subdomains,
                    "allow_wildcard": d.allow_wildcard,
                }
                for d in self.domains
            ],
        }
        if with_key:
            out["hmac_key"] = self.hmac_key
        return out


@dataclass(frozen=True)
class BoundAccount:
    id: str
    status: str
    key_thumbprint: str
    created_at: datetime


def generate_hmac_key() -> str:
    """32 random bytes as unpadded base64url: the form cert-manager and certbot read."""
    return b64url_encode(secrets.token_bytes(HMAC_KEY_BYTES))


def generate_kid() -> str:
    return "kid-" + secrets.token_urlsafe(12)


def validate_hmac_key(key: str) -> str:
    """`key` if it is canonical unpadded base64url of at least 32 bytes: the EAB check
    decodes the stored key strictly, so a key it could not read must never be stored."""
    try:
        raw = b64url_decode(key)
    except ValueError as exc:
        raise RegistrationError(
            f"HMAC key must be unpadded base64url: {_key_fault(key, exc)}"
        ) from None
    if len(raw) < HMAC_KEY_BYTES:
        raise RegistrationError(
            f"HMAC key must hold at least {HMAC_KEY_BYTES} bytes, it holds {len(raw)}"
        )
    return key


def _key_fault(key: str, exc: ValueError) -> str:
    """What is wrong with a key text, in words an operator can act on."""
    if key.endswith("="):
        return "drop the trailing '=' padding"
    if bad := sorted({c for c in key if not (c.isascii() and (c.isalnum() or c in "-_"))}):
        shown = " ".join(repr(c) for c in bad)
        return f"{shown} not allowed (only A-Z a-z 0-9 - _; '+' and '/' are plain base64)"
    return str(exc)


def _check_positive(what: str, value: int | None) -> None:
    if value is not None and value < 1:
        raise RegistrationError(f"{what} must be at least 1")


def check_rule(rule: DomainRule) -> DomainRule:
    """Refuse the contradictory rule "no subdomains, but wildcards": `*.x` names subdomains."""
    if rule.allow_wildcard and not rule.include_subdomains:
        raise RegistrationError(
            f"allowed domain {rule.domain!r}: a wildcard covers subdomains, so allowing "
            "wildcards needs subdomains included (drop --no-subdomains or add --no-wildcard)"
        )
    return rule


def check_profiles(
    allowed: tuple[str, ...] | list[str] | None, default: str | None
) -> tuple[tuple[str, ...] | None, str | None]:
    """Profile names of 1..64 characters; a default that the allowed list includes."""
    names = list(allowed or ()) + ([default] if default is not None else [])
    for name in names:
        if not isinstance(name, str) or not 0 < len(name) <= MAX_PROFILE_NAME:
            raise RegistrationError(f"profile name {name!r} must be 1..64 characters")
    clean = tuple(dict.fromkeys(allowed)) if allowed is not None else None
    if default is not None and clean is not None and default not in clean:
        raise RegistrationError(
            f"default profile {default!r} is not among the allowed profiles {list(clean)}"
        )
    return clean, default


def _rule(domain: str, include_subdomains: bool, allow_wildcard: bool) -> DomainRule:
    try:
        name = normalise_dns_name(domain, allow_wildcard=False)
    except ValueError as exc:
        raise RegistrationError(f"invalid allowed domain: {exc}") from None
    return check_rule(DomainRule(name, include_subdomains, allow_wildcard))


def check_ip_ranges(ranges: Any) -> tuple[str, ...]:
    """Canonical, de-duplicated CIDRs in the order given; a bad one is refused by name."""
    out: list[str] = []
    for text in ranges or ():
        try:
            cidr = parse_ip_range(text)
        except (IdentifierError, AttributeError) as exc:
            raise RegistrationError(f"invalid IP range: {exc}") from None
        if cidr not in out:
            out.append(cidr)
    return tuple(out)


def _registration(row: Any, rules: tuple[DomainRule, ...]) -> Registration:
    return Registration(
        id=row.id,
        name=row.name,
        kid=row.kid,
        hmac_key=row.hmac_key,
        max_accounts=row.max_accounts,
        suspended=row.suspended,
        created_at=row.created_at,
        domains=rules,
        any_domain=row.any_domain,
        max_pending_orders=row.max_pending_orders,
        max_pending_authorizations=row.max_pending_authorizations,
        allowed_profiles=tuple(row.allowed_profiles) if row.allowed_profiles is not None else None,
        default_profile=row.default_profile,
        ip_ranges=tuple(row.ip_ranges or ()),
    )


def _rules_query() -> sa.Select[Any]:
    return sa.select(allowed_domains).order_by(allowed_domains.c.domain)


def _rule_of(row: Any) -> DomainRule:
    return DomainRule(row.domain, row.include_subdomains, row.allow_wildcard)


def _load(conn: sa.Connection, where: sa.ColumnElement[bool]) -> Registration | None:
    row = (conn.execute(sa.select(registrations).where(where))).first()
    if row is None:
        return None
    doms = conn.execute(_rules_query().where(allowed_domains.c.registration_id == row.id))
    return _registration(row, tuple(_rule_of(d) for d in doms))


def load_by_kid(conn: sa.Connection, kid: str) -> Registration | None:
    return _load(conn, registrations.c.kid == kid)


def load_by_id(conn: sa.Connection, registration_id: int) -> Registration | None:
    return _load(conn, registrations.c.id == registration_id)


async def get(db: Database, name: str) -> Registration | None:
    return await db.read(lambda conn: _load(conn, registrations.c.name == name))


async def create(
    db: Database,
    name: str,
    *,
    kid: str | None = None,
    hmac_key: str | None = None,
    max_accounts: int | None = None,
    domains: tuple[str | DomainRule, ...] | list[str | DomainRule] = (),
    any_domain: bool = False,
    max_pending_orders: int | None = None,
    max_pending_authorizations: int | None = None,
    allowed_profiles: tuple[str, ...] | None = None,
    default_profile: str | None = None,
    ip_ranges: tuple[str, ...] | list[str] = (),
) -> Registration:
    """A new registration; it grants `domains`, or every name only with `any_domain`,
    and addresses in `ip_ranges`."""
    return await upsert(
        db,
        name,
        kid=kid or generate_kid(),
        hmac_key=hmac_key or generate_hmac_key(),
        max_accounts=max_accounts,
        suspended=False,
        domains=[d if isinstance(d, DomainRule) else _rule(d, True, True) for d in domains],
        any_domain=any_domain,
        max_pending_orders=max_pending_orders,
        max_pending_authorizations=max_pending_authorizations,
        allowed_profiles=allowed_profiles,
        default_profile=default_profile,
        ip_ranges=tuple(ip_ranges),
        create_only=True,
    )


async def upsert(
    db: Database,
    name: str,
    *,
    kid: str,
    hmac_key: str,
    max_accounts: int | None,
    suspended: bool,
    domains: list[DomainRule] | None = None,
    any_domain: bool = False,
    max_pending_orders: int | None = None,
    max_pending_authorizations: int | None = None,
    allowed_profiles: tuple[str, ...] | None = UNCHANGED,
    default_profile: str | None = UNCHANGED,
    create_only: bool = False,
    ip_ranges: tuple[str, ...] | None = UNCHANGED,
) -> Registration:
    """Create or update one registration; `domains` (when given) replaces the allow-list.

    `any_domain` is stored as given (it is never inferred from an empty list): a
    registration with neither a grant nor domains grants nothing.
    """
    if not name or len(name) > 255:
        raise RegistrationError("registration name must be 1..255 characters")
    if not kid or len(kid) > 255:
        raise RegistrationError("key ID must be 1..255 characters")
    _check_positive("max accounts", max_accounts)
    _check_positive("max pending orders", max_pending_orders)
    _check_positive("max pending authorizations", max_pending_authorizations)
    hmac_key = validate_hmac_key(hmac_key)
    profile_values: dict[str, Any] = {}
    if allowed_profiles is not UNCHANGED or default_profile is not UNCHANGED:
        allowed, default = check_profiles(
            None if allowed_profiles is UNCHANGED else allowed_profiles,
            None if default_profile is UNCHANGED else default_profile,
        )
        profile_values = {"allowed_profiles": allowed, "default_profile": default}
    if ip_ranges is not UNCHANGED:
        profile_values["ip_ranges"] = list(check_ip_ranges(ip_ranges)) or None
    now = datetime.now(UTC)

    def unit(conn: sa.Connection) -> Registration:
        existing = _load(conn, registrations.c.name == name)
        if existing is not None and create_only:
            raise RegistrationError(f"registration {name!r} already exists")
        other = load_by_kid(conn, kid)
        if other is not None and other.name != name:
            raise RegistrationError(f"key ID {kid!r} is already used by {other.name!r}")
        values = {
            "kid": kid,
            "hmac_key": hmac_key,
            "max_accounts": max_accounts,
            "suspended": suspended,
            "any_domain": any_domain,
            "max_pending_orders": max_pending_orders,
            "max_pending_authorizations": max_pending_authorizations,
            **profile_values,
            "updated_at": now,
        }
        if existing is None:
            result = conn.execute(
                registrations.insert().values(name=name, created_at=now, **values)
            )
            reg_id = result.inserted_primary_key[0]  # type: ignore[index]
        else:
            reg_id = existing.id
            conn.execute(
                registrations.update().where(registrations.c.id == reg_id).values(**values)
            )
        if domains is not None:
            _replace_domains(conn, reg_id, domains)
        loaded = load_by_id(conn, reg_id)
        assert loaded is not None
        return loaded

    return await db.write(unit)


def _replace_domains(conn: sa.Connection, reg_id: int, rules: list[DomainRule]) -> None:
    conn.execute(allowed_domains.delete().where(allowed_domains.c.registration_id == reg_id))
    seen: dict[str, DomainRule] = {}
    for rule in rules:
        seen[rule.domain] = rule
    if seen:
        conn.execute(
            allowed_domains.insert(),
            [
                {
                    "registration_id": reg_id,
                    "domain": r.domain,
                    "include_subdomains": r.include_subdomains,
                    "allow_wildcard": r.allow_wildcard,
                }
                for r in seen.values()
            ],
        )


async def names_granting_nothing(db: Database) -> list[str]:
    """Registrations without an any-name grant, domains or IP ranges: every order is refused."""
    has_domain = sa.exists().where(allowed_domains.c.registration_id == registrations.c.id)
    query = (
        sa.select(registrations.c.name, registrations.c.ip_ranges)
        .where(registrations.c.any_domain.is_(False), ~has_domain)
        .order_by(registrations.c.name)
    )
    return await db.read(lambda conn: [r.name for r in conn.execute(query) if not r.ip_ranges])


async def warn_ungranted(db: Database) -> None:
    """One startup WARNING naming registrations that grant nothing.

    Before migration 0002 an empty allow-list meant "any name"; it now means none, so an
    admin who relied on that must grant it explicitly.
    """
    names = await names_granting_nothing(db)
    if names:
        shown = ", ".join(repr(n) for n in names[:20]) + (" ..." if len(names) > 20 else "")
        log.warning(
            "%d pre-registration(s) grant no names, so every order from them is refused: %s. "
            "Grant domains (registration add-domain, or AllowedDomain objects) or every name "
            "explicitly (registration grant-any NAME).",
            len(names),
            shown,
        )


async def list_all(db: Database) -> list[Registration]:
    """Every registration with its allow-list, in two queries."""

    def unit(conn: sa.Connection) -> list[Registration]:
        rules: dict[int, list[DomainRule]] = {}
        for d in conn.execute(_rules_query()):
            rules.setdefault(d.registration_id, []).append(_rule_of(d))
        rows = conn.execute(sa.select(registrations).order_by(registrations.c.name))
        return [_registration(r, tuple(rules.get(r.id, ()))) for r in rows]

    return await db.read(unit)


async def _update(db: Database, name: str, **values: Any) -> Registration:
    def unit(conn: sa.Connection) -> Registration:
        result = conn.execute(
            registrations.update()
            .where(registrations.c.name == name)
            .values(updated_at=datetime.now(UTC), **values)
        )
        if result.rowcount == 0:
            raise RegistrationError(f"no registration named {name!r}")
        reg = _load(conn, registrations.c.name == name)
        assert reg is not None
        return reg

    return await db.write(unit)


async def set_suspended(db: Database, name: str, suspended: bool) -> Registration:
    return await _update(db, name, suspended=suspended)


async def set_any_domain(db: Database, name: str, any_domain: bool) -> Registration:
    """Grant (or withdraw) every name; withdrawing leaves only the listed domains."""
    return await _update(db, name, any_domain=any_domain)


async def set_limits(
    db: Database,
    name: str,
    *,
    max_accounts: int | None = UNCHANGED,
    max_pending_orders: int | None = UNCHANGED,
    max_pending_authorizations: int | None = UNCHANGED,
) -> Registration:
    """Change the given limits only (None = back to the server-wide default / no cap)."""
    values = {
        "max_accounts": max_accounts,
        "max_pending_orders": max_pending_orders,
        "max_pending_authorizations": max_pending_authorizations,
    }
    values = {k: v for k, v in values.items() if v is not UNCHANGED}
    for key, value in values.items():
        _check_positive(key.replace("_", " "), value)
    if not values:
        reg = await get(db, name)
        if reg is None:
            raise RegistrationError(f"no registration named {name!r}")
        return reg
    return await _update(db, name, **values)


async def set_profiles(
    db: Database,
    name: str,
    *,
    allowed_profiles: tuple[str, ...] | None = UNCHANGED,
    default_profile: str | None = UNCHANGED,
) -> Registration:
    """Change the allowed profiles and/or the default profile (None = no restriction /
    the server's default); the pair is checked as it will be stored."""
    reg = await get(db, name)
    if reg is None:
        raise RegistrationError(f"no registration named {name!r}")
    allowed = reg.allowed_profiles if allowed_profiles is UNCHANGED else allowed_profiles
    default = reg.default_profile if default_profile is UNCHANGED else default_profile
    allowed, default = check_profiles(allowed, default)
    return await _update(db, name, allowed_profiles=allowed, default_profile=default)


async def delete(db: Database, name: str) -> bool:
    """Remove a registration; its accounts stay but are refused from then on."""
    query = registrations.delete().where(registrations.c.name == name)
    return await db.write(lambda conn: bool(conn.execute(query).rowcount))


async def add_domain(
    db: Database,
    name: str,
    domain: str,
    *,
    include_subdomains: bool = True,
    allow_wildcard: bool = True,
) -> Registration:
    rule = _rule(domain, include_subdomains, allow_wildcard)

    def unit(conn: sa.Connection) -> Registration:
        reg = _load(conn, registrations.c.name == name)
        if reg is None:
            raise RegistrationError(f"no registration named {name!r}")
        conn.execute(
            allowed_domains.delete().where(
                allowed_domains.c.registration_id == reg.id,
                allowed_domains.c.domain == rule.domain,
            )
        )
        conn.execute(
            allowed_domains.insert().values(
                registration_id=reg.id,
                domain=rule.domain,
                include_subdomains=rule.include_subdomains,
                allow_wildcard=rule.allow_wildcard,
            )
        )
        loaded = load_by_id(conn, reg.id)
        assert loaded is not None
        return loaded

    return await db.write(unit)


async def remove_domain(db: Database, name: str, domain: str) -> Registration:
    """The registration without `domain`; refused when `domain` was not on its list."""
    rule = _rule(domain, True, True)

    def unit(conn: sa.Connection) -> Registration:
        reg = _load(conn, registrations.c.name == name)
        if reg is None:
            raise RegistrationError(f"no registration named {name!r}")
        result = conn.execute(
            allowed_domains.delete().where(
                allowed_domains.c.registration_id == reg.id,
                allowed_domains.c.domain == rule.domain,
            )
        )
        if not result.rowcount:
            raise RegistrationError(f"{domain!r} is not an allowed domain of {name!r}")
        return dataclasses.replace(
            reg, domains=tuple(d for d in reg.domains if d.domain != rule.domain)
        )

    return await db.write(unit)


async def add_ip_range(db: Database, name: str, cidr: str) -> Registration:
    """Grant the addresses of `cidr` (RFC 8738 ip identifiers) to the registration."""
    (canonical,) = check_ip_ranges([cidr])

    def unit(conn: sa.Connection) -> Registration:
        reg = _load(conn, registrations.c.name == name)
        if reg is None:
            raise RegistrationError(f"no registration named {name!r}")
        ranges = [*reg.ip_ranges, canonical] if canonical not in reg.ip_ranges else reg.ip_ranges
        _set_ip_ranges(conn, reg.id, ranges)
        return dataclasses.replace(reg, ip_ranges=tuple(ranges))

    return await db.write(unit)


async def remove_ip_range(db: Database, name: str, cidr: str) -> Registration:
    """The registration without `cidr`; refused when it was not granted."""
    (canonical,) = check_ip_ranges([cidr])

    def unit(conn: sa.Connection) -> Registration:
        reg = _load(conn, registrations.c.name == name)
        if reg is None:
            raise RegistrationError(f"no registration named {name!r}")
        if canonical not in reg.ip_ranges:
            raise RegistrationError(f"{cidr!r} is not an IP range granted to {name!r}")
        ranges = [r for r in reg.ip_ranges if r != canonical]
        _set_ip_ranges(conn, reg.id, ranges)
        return dataclasses.replace(reg, ip_ranges=tuple(ranges))

    return await db.write(unit)


def _set_ip_ranges(conn: sa.Connection, reg_id: int, ranges: Any) -> None:
    conn.execute(
        registrations.update()
        .where(registrations.c.id == reg_id)
        .values(ip_ranges=list(ranges) or None, updated_at=datetime.now(UTC))
    )


async def bound_accounts(db: Database, name: str) -> list[BoundAccount]:
    query = (
        sa.select(
            accounts.c.id, accounts.c.status, accounts.c.key_thumbprint, accounts.c.created_at
        )
        .join(registrations, registrations.c.id == accounts.c.registration_id)
        .where(registrations.c.name == name)
        .order_by(accounts.c.created_at)
    )
    rows = await db.read(lambda conn: conn.execute(query).all())
    return [BoundAccount(r.id, r.status, r.key_thumbprint, r.created_at) for r in rows]


async def certificate_count(db: Database, name: str) -> tuple[int, datetime | None]:
    """How many certificates a registration's accounts were issued, and the newest's time."""
    query = (
        sa.select(sa.func.count(certificates.c.id), sa.func.max(certificates.c.created_at))
        .join(registrations, registrations.c.id == certificates.c.registration_id)
        .where(registrations.c.name == name)
    )
    row = await db.read(lambda conn: conn.execute(query).one())
    return int(row[0]), row[1]


# ---------------------------------------------------------------- the operator's batches
# The Kubernetes operator reconciles thousands of registrations at once: these read and write
# many rows per transaction (a few statements per batch instead of a few per registration).


def _load_many(conn: sa.Connection, where: sa.ColumnElement[bool]) -> list[Registration]:
    rows = list(conn.execute(sa.select(registrations).where(where)))
    if not rows:
        return []
    rules: dict[int, list[DomainRule]] = {}
    ids = [r.id for r in rows]
    for chunk in _chunks(ids):
        doms = conn.execute(_rules_query().where(allowed_domains.c.registration_id.in_(chunk)))
        for d in doms:
            rules.setdefault(d.registration_id, []).append(_rule_of(d))
    return [_registration(r, tuple(rules.get(r.id, ()))) for r in rows]


def _chunks(items: list[Any], size: int = 500) -> list[list[Any]]:
    """IN lists stay below SQLite's bound-parameter limit."""
    return [items[i : i + size] for i in range(0, len(items), size)]


async def get_many(db: Database, names: list[str]) -> dict[str, Registration]:
    """The registrations named (absent ones are missing from the result), in one transaction."""

    def unit(conn: sa.Connection) -> dict[str, Registration]:
        out: dict[str, Registration] = {}
        for chunk in _chunks(sorted(set(names))):
            for reg in _load_many(conn, registrations.c.name.in_(chunk)):
                out[reg.name] = reg
        return out

    return await db.read(unit)


async def kid_holders(db: Database, kids: list[str]) -> dict[str, str]:
    """key ID -> name of the registration using it, for those in use."""

    def unit(conn: sa.Connection) -> dict[str, str]:
        out: dict[str, str] = {}
        for chunk in _chunks(sorted(set(kids))):
            rows = conn.execute(
                sa.select(registrations.c.kid, registrations.c.name).where(
                    registrations.c.kid.in_(chunk)
                )
            )
            out.update({r.kid: r.name for r in rows})
        return out

    return await db.read(unit)


@dataclass(frozen=True)
class RowSpec:
    """One registration as the operator wants it stored (see `upsert_many`)."""

    name: str
    kid: str
    hmac_key: str
    max_accounts: int | None
    suspended: bool
    domains: tuple[DomainRule, ...]
    any_domain: bool
    max_pending_orders: int | None = None
    max_pending_authorizations: int | None = None
    allowed_profiles: tuple[str, ...] | None = None  # certificate profiles (issue 12)
    default_profile: str | None = None
    ip_ranges: tuple[str, ...] = ()  # RFC 8738 ip identifiers (issue 13)


def _check_spec(spec: RowSpec) -> None:
    if not spec.name or len(spec.name) > 255:
        raise RegistrationError("registration name must be 1..255 characters")
    if not spec.kid or len(spec.kid) > 255:
        raise RegistrationError("key ID must be 1..255 characters")
    _check_positive("max accounts", spec.max_accounts)
    _check_positive("max pending orders", spec.max_pending_orders)
    _check_positive("max pending authorizations", spec.max_pending_authorizations)
    validate_hmac_key(spec.hmac_key)
    check_profiles(spec.allowed_profiles, spec.default_profile)
    check_ip_ranges(spec.ip_ranges)


async def upsert_many(db: Database, specs: list[RowSpec]) -> list[Registration | RegistrationError]:
    """Create or update each registration exactly as given (allow-list replaced), in one
    transaction; per item the stored registration, or the RegistrationError refusing it
    (invalid values, or a key ID another registration holds) while the others go ahead."""
    results: list[Registration | RegistrationError | None] = [None] * len(specs)
    last: dict[str, int] = {}
    for i, spec in enumerate(specs):
        try:
            _check_spec(spec)
        except RegistrationError as exc:
            results[i] = exc
            continue
        last[spec.name] = i  # the newest wish for a name wins
    now = datetime.now(UTC)

    def unit(conn: sa.Connection) -> tuple[dict[str, Registration], list[RowSpec]]:
        names = sorted(last)
        existing: dict[str, int] = {}
        kid_of: dict[str, str] = {}
        for chunk in _chunks(names):
            rows = conn.execute(
                sa.select(registrations.c.id, registrations.c.name).where(
                    registrations.c.name.in_(chunk)
                )
            )
            existing.update({r.name: r.id for r in rows})
        for chunk in _chunks(sorted({specs[i].kid for i in last.values()})):
            rows = conn.execute(
                sa.select(registrations.c.kid, registrations.c.name).where(
                    registrations.c.kid.in_(chunk)
                )
            )
            kid_of.update({r.kid: r.name for r in rows})
        claimed: dict[str, str] = {}
        ok: list[RowSpec] = []
        for name in names:
            spec = specs[last[name]]
            holder = claimed.get(spec.kid) or kid_of.get(spec.kid)
            if holder is not None and holder != name:
                results[last[name]] = RegistrationError(
                    f"key ID {spec.kid!r} is already used by {holder!r}"
                )
                continue
            claimed[spec.kid] = name
            ok.append(spec)
        values = [
            {
                "kid": s.kid,
                "hmac_key": s.hmac_key,
                "max_accounts": s.max_accounts,
                "suspended": s.suspended,
                "any_domain": s.any_domain,
                "max_pending_orders": s.max_pending_orders,
                "max_pending_authorizations": s.max_pending_authorizations,
                "allowed_profiles": list(s.allowed_profiles)
                if s.allowed_profiles is not None
                else None,
                "default_profile": s.default_profile,
                "ip_ranges": list(check_ip_ranges(s.ip_ranges)) or None,
                "updated_at": now,
            }
            for s in ok
        ]
        new = [
            {"name": s.name, "created_at": now, **v}
            for s, v in zip(ok, values, strict=True)
            if s.name not in existing
        ]
        if new:
            conn.execute(registrations.insert(), new)
        old = [
            {"b_id": existing[s.name], **v}
            for s, v in zip(ok, values, strict=True)
            if s.name in existing
        ]
        if old:
            conn.execute(
                registrations.update()
                .where(registrations.c.id == sa.bindparam("b_id"))
                .values({k: sa.bindparam(k) for k in values[0]}),
                old,
            )
        ids: dict[str, int] = dict(existing)
        fresh = [s.name for s in ok if s.name not in existing]
        for chunk in _chunks(fresh):
            rows = conn.execute(
                sa.select(registrations.c.id, registrations.c.name).where(
                    registrations.c.name.in_(chunk)
                )
            )
            ids.update({r.name: r.id for r in rows})
        all_ids = [ids[s.name] for s in ok]
        for chunk in _chunks(all_ids):
            conn.execute(
                allowed_domains.delete().where(allowed_domains.c.registration_id.in_(chunk))
            )
        doms = [
            {
                "registration_id": ids[s.name],
                "domain": r.domain,
                "include_subdomains": r.include_subdomains,
                "allow_wildcard": r.allow_wildcard,
            }
            for s in ok
            for r in {d.domain: d for d in s.domains}.values()
        ]
        if doms:
            conn.execute(allowed_domains.insert(), doms)
        loaded: dict[str, Registration] = {}
        for chunk in _chunks(all_ids):
            for reg in _load_many(conn, registrations.c.id.in_(chunk)):
                loaded[reg.name] = reg
        return loaded, ok

    loaded, ok = await db.write(unit)
    for s in ok:
        results[last[s.name]] = loaded[s.name]
    for i, spec in enumerate(specs):
        if results[i] is None:  # superseded by a later wish for the same name in this batch
            results[i] = results[last[spec.name]]
    return [r for r in results if r is not None]


@dataclass(frozen=True)
class RegistrationUsage:
    accounts: list[BoundAccount]
    certificates_issued: int
    last_issuance: datetime | None


async def usage_many(db: Database, names: list[str]) -> dict[str, RegistrationUsage]:
    """Bound accounts and certificate counts of many registrations, in two grouped queries
    per chunk (the operator's status refresh)."""

    def unit(conn: sa.Connection) -> dict[str, RegistrationUsage]:
        out: dict[str, RegistrationUsage] = {}
        for chunk in _chunks(sorted(set(names))):
            accts: dict[str, list[BoundAccount]] = {}
            rows = conn.execute(
                sa.select(
                    registrations.c.name,
                    accounts.c.id,
                    accounts.c.status,
                    accounts.c.key_thumbprint,
                    accounts.c.created_at,
                )
                .join(registrations, registrations.c.id == accounts.c.registration_id)
                .where(registrations.c.name.in_(chunk))
                .order_by(accounts.c.created_at)
            )
            for r in rows:
                accts.setdefault(r.name, []).append(
                    BoundAccount(r.id, r.status, r.key_thumbprint, r.created_at)
                )
            counts: dict[str, tuple[int, datetime | None]] = {}
            rows = conn.execute(
                sa.select(
                    registrations.c.name,
                    sa.func.count(certificates.c.id),
                    sa.func.max(certificates.c.created_at),
                )
                .join(registrations, registrations.c.id == certificates.c.registration_id)
                .where(registrations.c.name.in_(chunk))
                .group_by(registrations.c.name)
            )
            for r in rows:
                counts[r[0]] = (int(r[1]), r[2])
            for name in chunk:
                issued, last = counts.get(name, (0, None))
                out[name] = RegistrationUsage(accts.get(name, []), issued, last)
        return out

    return await db.read(unit)
