"""`acme-gateway registration ...`: pre-registrations (EAB key IDs, HMAC keys, domains)."""

from __future__ import annotations

import json
from pathlib import Path

import click

from acme_server.cli.options import store_options, with_db
from acme_server.store import registrations


@click.group()
def registration() -> None:
    """Manage pre-registrations (EAB key IDs, HMAC keys, allowed domains)."""


@registration.command("create")
@click.argument("name")
@click.option("--domain", "domains", multiple=True, help="Allowed domain (repeatable; none = any).")
@click.option("--max-accounts", type=click.IntRange(min=1), default=None)
@click.option("--kid", default=None, help="Key ID to use (default: generated).")
@click.option("--hmac-key", default=None, help="HMAC key, base64url (default: 32 random bytes).")
@store_options
def registration_create(
    name: str,
    domains: tuple[str, ...],
    max_accounts: int | None,
    kid: str | None,
    hmac_key: str | None,
    data_dir: Path,
    database: str | None,
) -> None:
    """Create a pre-registration and print its EAB credentials as JSON."""
    reg = with_db(
        data_dir,
        database,
        lambda db: registrations.create(
            db, name, kid=kid, hmac_key=hmac_key, max_accounts=max_accounts, domains=list(domains)
        ),
    )
    click.echo(json.dumps(reg.public_dict(with_key=True)))


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
@click.argument("domain")
@click.option("--no-subdomains", is_flag=True, help="Allow only the name itself.")
@click.option("--no-wildcard", is_flag=True, help="Do not allow *.DOMAIN.")
@store_options
def registration_add_domain(
    name: str,
    domain: str,
    no_subdomains: bool,
    no_wildcard: bool,
    data_dir: Path,
    database: str | None,
) -> None:
    """Allow DOMAIN (and its subdomains) for the registration."""
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
@click.argument("domain")
@store_options
def registration_remove_domain(
    name: str, domain: str, data_dir: Path, database: str | None
) -> None:
    """Remove DOMAIN from the registration's allowed domains."""
    reg = with_db(data_dir, database, lambda db: registrations.remove_domain(db, name, domain))
    click.echo(json.dumps(reg.public_dict()))
