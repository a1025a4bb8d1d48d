"""Options and helpers shared by the subcommands: env prefix, store selection, list flags."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any, Literal, TypeVar

import click

from acme_server.store import registrations
from acme_server.store.database import Database, default_database_url
from acme_server.store.files import private_dir

T = TypeVar("T")
ENV = "ACME_GATEWAY_"


def split_list(values: tuple[str, ...]) -> tuple[str, ...]:
    """Repeatable options also accept comma/space separated lists (handy in env vars)."""
    out: list[str] = []
    for value in values:
        out.extend(v for v in value.replace(",", " ").split() if v)
    return tuple(out)


def store_options(func: Callable[..., Any]) -> Callable[..., Any]:
    func = click.option(
        "--database",
        envvar=ENV + "DATABASE",
        default=None,
        help="Store URL (sqlite:///path or postgresql://...). Default: SQLite in the data dir.",
    )(func)
    func = click.option(
        "--data-dir",
        envvar=ENV + "DATA_DIR",
        default="./acme-gateway-data",
        show_default=True,
        type=click.Path(file_okay=False, path_type=Path),
        help="Directory for the CA, TLS and SQLite files.",
    )(func)
    return func


Limit = int | Literal["default"] | None


class LimitType(click.ParamType):
    """A positive count, or `default` to fall back to the server-wide setting."""

    name = "N|default"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Any:
        if isinstance(value, int) or value == "default":
            return value
        try:
            number = int(value)
        except (TypeError, ValueError):
            self.fail(f"{value!r} is neither a positive number nor 'default'", param, ctx)
        if number < 1:
            self.fail(f"{number} is not at least 1", param, ctx)
        return number


LIMIT = LimitType()


def limit_value(value: Limit) -> int | None:
    """The store value of a limit option: a number, or None for the server default."""
    return None if value in (None, "default") else int(value)


def limit_options(func: Callable[..., Any]) -> Callable[..., Any]:
    """Per-registration rate limits (issue 8 item 17)."""
    func = click.option(
        "--max-pending-authorizations",
        type=LIMIT,
        default=None,
        help="Pending authorizations per account ('default' = the server's setting).",
    )(func)
    func = click.option(
        "--max-pending-orders",
        type=LIMIT,
        default=None,
        help="Pending orders per account ('default' = the server's setting).",
    )(func)
    return func


def database_url(data_dir: Path, database: str | None) -> str:
    return database or default_database_url(data_dir)


def with_db(
    data_dir: Path, database: str | None, work: Callable[[Database], Coroutine[Any, Any, T]]
) -> T:
    async def run() -> T:
        if database is None:  # the default SQLite store lives in the data dir
            private_dir(data_dir)
        db = await Database.open(database_url(data_dir, database))
        try:
            return await work(db)
        finally:
            await db.close()

    try:
        return asyncio.run(run())
    except registrations.RegistrationError as exc:
        raise click.ClickException(str(exc)) from None


def retention_limit_options(func: Callable[..., Any]) -> Callable[..., Any]:
    """`serve` flags for retention and the per-account caps (issue 8 item 17)."""
    func = click.option(
        "--max-pending-authorizations",
        envvar=ENV + "MAX_PENDING_AUTHORIZATIONS",
        type=click.IntRange(min=1),
        default=1000,
        show_default=True,
        help="Pending authorizations per account (a registration may override it).",
    )(func)
    func = click.option(
        "--max-pending-orders",
        envvar=ENV + "MAX_PENDING_ORDERS",
        type=click.IntRange(min=1),
        default=300,
        show_default=True,
        help="Unfinished orders per account (a registration may override it).",
    )(func)
    func = click.option(
        "--purge-after",
        envvar=ENV + "PURGE_AFTER",
        default="30d",
        show_default=True,
        help="Delete invalid/expired orders and authorizations once this old, e.g. 30d.",
    )(func)
    return func


def retention_limit_settings(values: dict[str, Any]) -> dict[str, Any]:
    """Settings fields from the retention_limit_options values (ValueError when invalid)."""
    from acme_server.config import parse_duration

    return {
        "purge_after": parse_duration(str(values["purge_after"])),
        "max_pending_orders": int(values["max_pending_orders"]),
        "max_pending_authorizations": int(values["max_pending_authorizations"]),
    }
