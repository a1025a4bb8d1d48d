"""`acme-gateway registration ...`: pre-registrations (EAB key IDs, HMAC keys, domains)."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import click

from acme_server.cli.options import LIMIT, Limit, limit_options, limit_value, store_options, with_db
from acme_server.store import registrations


def _profile_options(func: Callable[..., None]) -> Callable[..., None]:
    """--profiles / --default-profile: which certificate profiles the registration may use."""
    func = click.option(
        "--default-profile",
        default=None,
        help="Profile its orders get without 'profile' ('server' = the server's default).",
    )(func)
    return click.option(
        "--profiles",
        "profiles",
        default=None,
        help="Comma-separated certificate profiles it may use ('any' = every profile that "
        "needs no explicit grant).",
    )(func)


def _profile_changes(profiles: str | None, default_profile: str | None) -> dict[str, Any]:
    changes: dict[str, Any] = {}
    if profiles is not None:
        names = tuple(p.strip() for p in profiles.split(",") if p.strip())
        if not names:
            raise click.UsageError("--profiles needs profile names (or 'any')")
        changes["allowed_profiles"] = None if names == ("any",) else names
    if default_profile is not None:
        changes["default_profile"] = None if default_profile == "server" else default_profile
    return changes


@click.group()
def registration() -> None:
    """Manage pre-registrations (EAB key IDs, HMAC keys, allowed domains)."""


@registration.command("create")
@click.argument("name")
@click.option(
    "--domain",
    "domains",
    multiple=True,
    help="Allowed domain with its subdomains and wildcards (repeatable).",
)
@click.option(
    "--any-domain",
    is_flag=True,
    help="Allow every DNS name (explicit; instead of --domain). Grants no IP address.",
)
@click.option(
    "--ip-range",
    "ip_ranges",
    multiple=True,
    help="Allowed IP range in CIDR form, e.g. 10.0.0.0/8: its addresses may be requested as "
    "ip identifiers (RFC 8738; repeatable).",
)
@click.option("--max-accounts", type=click.IntRange(min=1), default=None)
@limit_options
@click.option("--kid", default=None, help="Key ID to use (default: generated).")
@click.option("--hmac-key", default=None, help="HMAC key, base64url (default: 32 random bytes).")
@_profile_options
@store_options
def registration_create(
    name: str,
    domains: tuple[str, ...],
    any_domain: bool,
    ip_ranges: tuple[str, ...],
    max_accounts: int | None,
    max_pending_orders: Limit,
    max_pending_authorizations: Limit,
    kid: str | None,
    hmac_key: str | None,
    profiles: str | None,
    default_profile: str | None,
    data_dir: Path,
    database: str | None,
) -> None:
    """Create a pre-registration and print its EAB credentials as JSON.

    It grants exactly the --domain names, or every DNS name with --any-domain, and the
    addresses of the --ip-range CIDRs; one grant is required, so a registration never
    grants everything by omission.
    """
    if any_domain and domains:
        raise click.UsageError("--any-domain already allows every name; drop --domain")
    if not any_domain and not domains and not ip_ranges:
        raise click.UsageError(
            "a registration needs --domain DOMAIN (repeatable), an explicit --any-domain or "
            "--ip-range CIDR; without one it could not request any name"
        )
    reg = with_db(
        data_dir,
        database,
        lambda db: registrations.create(
            db,
            name,
            kid=kid,
            hmac_key=hmac_key,
            max_accounts=max_accounts,
            domains=list(domains),
            any_domain=any_domain,
            ip_ranges=tuple(ip_ranges),
            max_pending_orders=limit_value(max_pending_orders),
            max_pending_authorizations=limit_value(max_pending_authorizations),
            **_profile_changes(profiles, default_profile),
        ),
    )
    click.echo(json.dumps(reg.public_dict(with_key=True)))


@registration.command("update")
@click.argument("name")
@click.option(
    "--max-accounts",
    type=LIMIT,
    default=None,
    help="Most live accounts bound to the registration ('default' = unlimited).",
)
@limit_options
@_profile_options
@store_options
def registration_update(
    name: str,
    max_accounts: Limit,
    max_pending_orders: Limit,
    max_pending_authorizations: Limit,
    profiles: str | None,
    default_profile: str | None,
    data_dir: Path,
    database: str | None,
) -> None:
    """Change the registration's limits and profiles; options not given stay as they are."""
    given = {
        "max_accounts": max_accounts,
        "max_pending_orders": max_pending_orders,
        "max_pending_authorizations": max_pending_authorizations,
    }
    changes = {k: limit_value(v) for k, v in given.items() if v is not None}
    profile_changes = _profile_changes(profiles, default_profile)
    if not changes and not profile_changes:
        raise click.UsageError("nothing to update: give at least one limit or profile option")

    async def update(db: Any) -> registrations.Registration:
        reg = await registrations.set_limits(db, name, **changes)
        if profile_changes:
            reg = await registrations.set_profiles(db, name, **profile_changes)
        return reg

    reg = with_db(data_dir, database, update)
    click.echo(json.dumps(reg.public_dict()))


@registration.command("grant-any")
@click.argument("name")
@store_options
def registration_grant_any(name: str, data_dir: Path, database: str | None) -> None:
    """Allow the registration every name (its domain list is kept but no longer limits it)."""
    reg = with_db(data_dir, database, lambda db: registrations.set_any_domain(db, name, True))
    click.echo(json.dumps(reg.public_dict()))


@registration.command("revoke-any")
@click.argument("name")
@store_options
def registration_revoke_any(name: str, data_dir: Path, database: str | None) -> None:
    """Withdraw the any-name grant: only the listed domains stay allowed (maybe none)."""
    reg = with_db(data_dir, database, lambda db: registrations.set_any_domain(db, name, False))
    _warn_if_nothing_granted(reg)
    click.echo(json.dumps(reg.public_dict()))


def _warn_if_nothing_granted(reg: registrations.Registration) -> None:
    if reg.grants_nothing:
        click.echo(
            f"warning: registration {reg.name!r} now grants no names; its orders are refused "
            "until you run add-domain or grant-any",
            err=True,
        )


@registration.command("list")
@store_options
def registration_list(data_dir: Path, database: str | None) -> None:
    """One JSON object per line (HMAC keys are not shown)."""
    for reg in with_db(data_dir, database, registrations.list_all):
        click.echo(json.dumps(reg.public_dict()))


@registration.command("suspend")
@click.argument("name")
@store_options
def registration_suspend(name: str, data_dir: Path, database: str | None) -> None:
    """Refuse the registration's accounts until resumed."""
    reg = with_db(data_dir, database, lambda db: registrations.set_suspended(db, name, True))
    click.echo(json.dumps(reg.public_dict()))


@registration.command("resume")
@click.argument("name")
@store_options
def registration_resume(name: str, data_dir: Path, database: str | None) -> None:
    """Lift a suspension."""
    reg = with_db(data_dir, database, lambda db: registrations.set_suspended(db, name, False))
    click.echo(json.dumps(reg.public_dict()))


@registration.command("delete")
@click.argument("name")
@store_options
def registration_delete(name: str, data_dir: Path, database: str | None) -> None:
    """Delete the registration; its accounts are refused from then on."""
    if not with_db(data_dir, database, lambda db: registrations.delete(db, name)):
        raise click.ClickException(f"no registration named {name!r}")
    click.echo(json.dumps({"name": name, "deleted": True}))


@registration.command("add-domain")
@click.argument("name")
@click.argument("domain", required=False)
@click.option("--ip-range", default=None, help="Allow this CIDR's IP addresses instead of DOMAIN.")
@click.option(
    "--no-subdomains",
    is_flag=True,
    help="Allow only the name itself (needs --no-wildcard: *.DOMAIN names subdomains).",
)
@click.option("--no-wildcard", is_flag=True, help="Do not allow *.DOMAIN.")
@store_options
def registration_add_domain(
    name: str,
    domain: str | None,
    ip_range: str | None,
    no_subdomains: bool,
    no_wildcard: bool,
    data_dir: Path,
    database: str | None,
) -> None:
    """Allow DOMAIN (and its subdomains), or with --ip-range a CIDR's IP addresses."""
    if ip_range is not None:
        if domain is not None or no_subdomains or no_wildcard:
            raise click.UsageError("give either DOMAIN (with its options) or --ip-range CIDR")
        reg = with_db(data_dir, database, lambda db: registrations.add_ip_range(db, name, ip_range))
        click.echo(json.dumps(reg.public_dict()))
        return
    if domain is None:
        raise click.UsageError("give DOMAIN, or --ip-range CIDR")
    if no_subdomains and not no_wildcard:
        raise click.UsageError(
            "--no-subdomains needs --no-wildcard too: a wildcard *.DOMAIN covers subdomains"
        )
    reg = with_db(
        data_dir,
        database,
        lambda db: registrations.add_domain(
            db, name, domain, include_subdomains=not no_subdomains, allow_wildcard=not no_wildcard
        ),
    )
    click.echo(json.dumps(reg.public_dict()))


@registration.command("remove-domain")
@click.argument("name")
@click.argument("domain", required=False)
@click.option("--ip-range", default=None, help="Remove this CIDR grant instead of DOMAIN.")
@store_options
def registration_remove_domain(
    name: str, domain: str | None, ip_range: str | None, data_dir: Path, database: str | None
) -> None:
    """Remove DOMAIN (or --ip-range CIDR) from the registration's grant (the last: none)."""
    if (domain is None) == (ip_range is None):
        raise click.UsageError("give either DOMAIN or --ip-range CIDR")
    if ip_range is not None:
        reg = with_db(
            data_dir, database, lambda db: registrations.remove_ip_range(db, name, ip_range)
        )
    else:
        reg = with_db(
            data_dir, database, lambda db: registrations.remove_domain(db, name, domain or "")
        )
    _warn_if_nothing_granted(reg)
    click.echo(json.dumps(reg.public_dict()))
