"""`acme-gateway store ...`: the store's schema, migrated from one place.

`store migrate` is what a Helm init step (or an admin before upgrading) runs; `store check`
says whether the store is at this version's revision, exiting 1 with the reason if not.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import click

from acme_server.cli.options import database_url, store_options
from acme_server.store.database import (
    Database,
    SchemaMismatch,
    head_revision,
    redact_url,
)
from acme_server.store.files import private_dir


@click.group()
def store() -> None:
    """The store's schema: migrate it, or check its revision."""


async def _migrate(url: str) -> str | None:
    db = await Database.open(url, migrate=True)
    try:
        return await db.schema_revision()
    finally:
        await db.close()


async def _check(url: str) -> None:
    db = await Database.open(url, migrate=False)
    try:
        await db.check_schema()
    finally:
        await db.close()


@store.command()
@store_options
def migrate(data_dir: Path, database: str | None) -> None:
    """Upgrade the store to this version's schema (idempotent; safe to run concurrently)."""
    if database is None:  # the default SQLite store lives in the data dir
        private_dir(data_dir)
    url = database_url(data_dir, database)
    revision = asyncio.run(_migrate(url))
    click.echo(f"store {redact_url(url)} is at schema revision {revision}")


@store.command()
@store_options
def check(data_dir: Path, database: str | None) -> None:
    """Exit 0 when the store is at this version's schema revision, else 1 with the reason."""
    url = database_url(data_dir, database)
    try:
        asyncio.run(_check(url))
    except SchemaMismatch as exc:
        raise click.ClickException(str(exc)) from None
    click.echo(f"store {redact_url(url)} is at schema revision {head_revision()}")
