"""`acme-gateway store ...`: the store's schema, migrated from one place.

`store migrate` is what a Helm init step (or an admin before upgrading) runs; `store check`
says whether the store is at this version's revision, exiting 1 with the reason if not.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import click

from acme_server.cli.options import database_url, store_options
from acme_server.store import backup
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


def _sqlite_file(data_dir: Path, database: str | None) -> Path:
    try:
        return backup.sqlite_path(database_url(data_dir, database))
    except backup.BackupError as exc:
        raise click.ClickException(str(exc)) from None


@store.command(name="backup")
@store_options
@click.argument("out", type=click.Path(dir_okay=False, path_type=Path))
def backup_command(data_dir: Path, database: str | None, out: Path) -> None:
    """Write a consistent copy of the SQLite store to OUT (0600) while servers keep running.

    PostgreSQL stores are refused: use `pg_dump -Fc` (see docs/operations.md)."""
    db_path = _sqlite_file(data_dir, database)
    try:
        revision = backup.backup_sqlite(db_path, out)
    except backup.BackupError as exc:
        raise click.ClickException(str(exc)) from None
    click.echo(f"backed up {db_path} to {out} (schema revision {revision})")


@store.command(name="restore")
@store_options
@click.argument("backup_file", metavar="IN", type=click.Path(dir_okay=False, path_type=Path))
def restore_command(data_dir: Path, database: str | None, backup_file: Path) -> None:
    """Replace the SQLite store with the backup IN; every server and the operator must be stopped.

    A backup from an older version is migrated to this version's schema first."""
    db_path = _sqlite_file(data_dir, database)
    try:
        revision = backup.check_backup(backup_file)
        staged = backup.stage_restore(db_path, backup_file)
    except backup.BackupError as exc:
        raise click.ClickException(str(exc)) from None
    try:
        head = head_revision()
        if revision != head:
            click.echo(f"the backup is at schema revision {revision}: migrating it to {head}")
            asyncio.run(_migrate(f"sqlite:///{staged}"))
        backup.swap_in(db_path, staged)
    except backup.BackupError as exc:
        raise click.ClickException(str(exc)) from None
    finally:
        for suffix in ("", "-wal", "-shm", ".write-lock"):
            staged.with_name(staged.name + suffix).unlink(missing_ok=True)
    click.echo(f"restored {db_path} from {backup_file} (schema revision {head})")
