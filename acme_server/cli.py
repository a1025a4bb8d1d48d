"""The `acme-gateway` console script: serve, registration admin, CA export."""

from __future__ import annotations

import asyncio
import json
import logging
import sys
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import urlsplit

import click

from acme_server.config import Settings, parse_duration, parse_host_port
from acme_server.store import registrations
from acme_server.store.database import Database, default_database_url

T = TypeVar("T")
ENV = "ACME_GATEWAY_"


def _split(values: tuple[str, ...]) -> tuple[str, ...]:
    """Repeatable options also accept comma/space separated lists (handy in env vars)."""
    out: list[str] = []
    for value in values:
        out.extend(v for v in value.replace(",", " ").split() if v)
    return tuple(out)


def _store_options(func: Callable[..., Any]) -> Callable[..., Any]:
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


def _database_url(data_dir: Path, database: str | None) -> str:
    return database or default_database_url(data_dir)


def _with_db(
    data_dir: Path, database: str | None, work: Callable[[Database], Coroutine[Any, Any, T]]
) -> T:
    async def run() -> T:
        db = await Database.open(_database_url(data_dir, database))
        try:
            return await work(db)
        finally:
            await db.close()

    try:
        return asyncio.run(run())
    except registrations.RegistrationError as exc:
        raise click.ClickException(str(exc)) from None


@click.group()
@click.option(
    "--log-level",
    envvar=ENV + "LOG_LEVEL",
    default="INFO",
    show_default=True,
    type=click.Choice(["DEBUG", "INFO", "WARNING", "ERROR"], case_sensitive=False),
)
def main(log_level: str) -> None:
    """acme-gateway: a private ACME (RFC 8555) certificate authority."""
    # Alembic announces every plugin at INFO on each start; keep its news to warnings.
    logging.getLogger("alembic").setLevel(
        max(logging.WARNING, logging.getLevelName(log_level.upper()))
    )
    logging.basicConfig(
        level=log_level.upper(),
        stream=sys.stderr,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )


def _default_base_url(host: str, port: int, https: bool) -> str:
    if host in ("0.0.0.0", "::", ""):  # noqa: S104 - naming the wildcard, not binding it
        host = "localhost"
    if ":" in host:
        host = f"[{host}]"
    return f"{'https' if https else 'http'}://{host}:{port}"


@main.command()
@click.option(
    "--listen",
    envvar=ENV + "LISTEN",
    default="127.0.0.1:14000",
    show_default=True,
    help="HOST:PORT to listen on.",
)
@click.option(
    "--base-url",
    envvar=ENV + "BASE_URL",
    default=None,
    help="External base URL clients use (behind a proxy). Default: from --listen.",
)
@_store_options
@click.option(
    "--account-creation",
    envvar=ENV + "ACCOUNT_CREATION",
    default="open",
    show_default=True,
    type=click.Choice(["open", "pre-registered"]),
    help="open: anyone may create an account; pre-registered: a valid EAB is required.",
)
@click.option(
    "--http01-port",
    envvar=ENV + "HTTP01_PORT",
    default=80,
    show_default=True,
    type=click.IntRange(1, 65535),
    help="Port http-01 validation connects to.",
)
@click.option(
    "--dns-resolver",
    "dns_resolvers",
    envvar=ENV + "DNS_RESOLVER",
    multiple=True,
    help="HOST:PORT of a resolver for validation (repeatable). Default: system resolver.",
)
@click.option(
    "--tls-cert",
    envvar=ENV + "TLS_CERT",
    type=click.Path(dir_okay=False, exists=True, path_type=Path),
)
@click.option(
    "--tls-key",
    envvar=ENV + "TLS_KEY",
    type=click.Path(dir_okay=False, exists=True, path_type=Path),
)
@click.option(
    "--tls-name",
    "tls_names",
    envvar=ENV + "TLS_NAME",
    multiple=True,
    help="Name for the built-in serving certificate (repeatable). Default: localhost, 127.0.0.1.",
)
@click.option(
    "--ca-cert",
    envvar=ENV + "CA_CERT",
    type=click.Path(dir_okay=False, exists=True, path_type=Path),
)
@click.option(
    "--ca-key", envvar=ENV + "CA_KEY", type=click.Path(dir_okay=False, exists=True, path_type=Path)
)
@click.option(
    "--cert-validity",
    envvar=ENV + "CERT_VALIDITY",
    default="90d",
    show_default=True,
    help="Leaf certificate validity, e.g. 90d, 24h.",
)
@click.option(
    "--order-lifetime",
    envvar=ENV + "ORDER_LIFETIME",
    default="1h",
    show_default=True,
    help="How long an order stays usable.",
)
@click.option(
    "--terms-of-service",
    envvar=ENV + "TERMS_OF_SERVICE",
    default=None,
    help="URL of terms clients must agree to (meta.termsOfService).",
)
@click.option("--website", envvar=ENV + "WEBSITE", default=None, help="meta.website URL.")
@click.option(
    "--replace-ca-root",
    envvar=ENV + "REPLACE_CA_ROOT",
    is_flag=True,
    help="Make this process's CA the store's root even if another CA was recorded (CA rotation).",
)
@click.option(
    "--insecure-http",
    envvar=ENV + "INSECURE_HTTP",
    is_flag=True,
    help="Serve plain HTTP (only behind a TLS-terminating proxy; set --base-url).",
)
def serve(
    listen: str,
    base_url: str | None,
    data_dir: Path,
    database: str | None,
    account_creation: str,
    http01_port: int,
    dns_resolvers: tuple[str, ...],
    tls_cert: Path | None,
    tls_key: Path | None,
    tls_names: tuple[str, ...],
    ca_cert: Path | None,
    ca_key: Path | None,
    cert_validity: str,
    order_lifetime: str,
    terms_of_service: str | None,
    website: str | None,
    replace_ca_root: bool,
    insecure_http: bool,
) -> None:
    """Run the ACME server."""
    from sqlalchemy.exc import DBAPIError

    from acme_server.ca import CAConfigError
    from acme_server.server import StartupError
    from acme_server.server import serve as run_server
    from acme_server.validation.resolver import parse_nameserver

    try:
        host, port = parse_host_port(listen)
        resolvers = _split(dns_resolvers)
        for resolver in resolvers:
            parse_nameserver(resolver)
        validity = parse_duration(cert_validity)
        lifetime = parse_duration(order_lifetime)
    except ValueError as exc:
        raise click.BadParameter(str(exc)) from None
    if (tls_cert is None) != (tls_key is None):
        raise click.BadParameter("--tls-cert and --tls-key must be given together")
    if base_url:
        parts = urlsplit(base_url)
        if parts.scheme not in ("http", "https") or not parts.netloc or parts.query:
            raise click.BadParameter(f"--base-url {base_url!r} must be an http(s) URL")
    settings = Settings(
        base_url=(base_url or _default_base_url(host, port, not insecure_http)).rstrip("/"),
        data_dir=data_dir,
        database_url=_database_url(data_dir, database),
        listen_host=host,
        listen_port=port,
        account_creation=account_creation,
        http01_port=http01_port,
        dns_resolvers=resolvers,
        cert_validity=validity,
        order_lifetime=lifetime,
        terms_of_service=terms_of_service,
        website=website,
        tls_names=_split(tls_names) or ("localhost", "127.0.0.1"),
    )
    try:
        asyncio.run(
            run_server(
                settings,
                tls_cert=tls_cert,
                tls_key=tls_key,
                insecure_http=insecure_http,
                ca_cert=ca_cert,
                ca_key=ca_key,
                replace_ca_root=replace_ca_root,
            )
        )
    except (StartupError, CAConfigError) as exc:
        raise click.ClickException(str(exc)) from None
    except DBAPIError as exc:
        raise click.ClickException(f"store error: {exc.orig}") from None
    except OSError as exc:
        raise click.ClickException(f"cannot start: {exc}") from None


@main.group()
def registration() -> None:
    """Manage pre-registrations (EAB key IDs, HMAC keys, allowed domains)."""


@registration.command("create")
@click.argument("name")
@click.option("--domain", "domains", multiple=True, help="Allowed domain (repeatable; none = any).")
@click.option("--max-accounts", type=click.IntRange(min=1), default=None)
@click.option("--kid", default=None, help="Key ID to use (default: generated).")
@click.option("--hmac-key", default=None, help="HMAC key, base64url (default: 32 random bytes).")
@_store_options
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
    reg = _with_db(
        data_dir,
        database,
        lambda db: registrations.create(
            db, name, kid=kid, hmac_key=hmac_key, max_accounts=max_accounts, domains=list(domains)
        ),
    )
    click.echo(json.dumps(reg.public_dict(with_key=True)))


@registration.command("list")
@_store_options
def registration_list(data_dir: Path, database: str | None) -> None:
    """One JSON object per line (HMAC keys are not shown)."""
    for reg in _with_db(data_dir, database, registrations.list_all):
        click.echo(json.dumps(reg.public_dict()))


@registration.command("suspend")
@click.argument("name")
@_store_options
def registration_suspend(name: str, data_dir: Path, database: str | None) -> None:
    """Refuse the registration's accounts until resumed."""
    reg = _with_db(data_dir, database, lambda db: registrations.set_suspended(db, name, True))
    click.echo(json.dumps(reg.public_dict()))


@registration.command("resume")
@click.argument("name")
@_store_options
def registration_resume(name: str, data_dir: Path, database: str | None) -> None:
    """Lift a suspension."""
    reg = _with_db(data_dir, database, lambda db: registrations.set_suspended(db, name, False))
    click.echo(json.dumps(reg.public_dict()))


@registration.command("delete")
@click.argument("name")
@_store_options
def registration_delete(name: str, data_dir: Path, database: str | None) -> None:
    """Delete the registration; its accounts are refused from then on."""
    if not _with_db(data_dir, database, lambda db: registrations.delete(db, name)):
        raise click.ClickException(f"no registration named {name!r}")
    click.echo(json.dumps({"name": name, "deleted": True}))


@registration.command("add-domain")
@click.argument("name")
@click.argument("domain")
@click.option("--no-subdomains", is_flag=True, help="Allow only the name itself.")
@click.option("--no-wildcard", is_flag=True, help="Do not allow *.DOMAIN.")
@_store_options
def registration_add_domain(
    name: str,
    domain: str,
    no_subdomains: bool,
    no_wildcard: bool,
    data_dir: Path,
    database: str | None,
) -> None:
    """Allow DOMAIN (and its subdomains) for the registration."""
    reg = _with_db(
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
@_store_options
def registration_remove_domain(
    name: str, domain: str, data_dir: Path, database: str | None
) -> None:
    """Remove DOMAIN from the registration's allowed domains."""
    if not _with_db(data_dir, database, lambda db: registrations.remove_domain(db, name, domain)):
        raise click.ClickException(f"{domain!r} is not an allowed domain of {name!r}")
    reg = _with_db(data_dir, database, lambda db: registrations.get(db, name))
    click.echo(json.dumps(reg.public_dict() if reg else {"name": name}))


@main.group()
def ca() -> None:
    """The certificate authority."""


@ca.command("cert")
@click.option(
    "--data-dir",
    envvar=ENV + "DATA_DIR",
    default="./acme-gateway-data",
    show_default=True,
    type=click.Path(file_okay=False, path_type=Path),
)
@click.option(
    "--ca-cert",
    envvar=ENV + "CA_CERT",
    type=click.Path(dir_okay=False, exists=True, path_type=Path),
)
@click.option(
    "--ca-key", envvar=ENV + "CA_KEY", type=click.Path(dir_okay=False, exists=True, path_type=Path)
)
def ca_cert(data_dir: Path, ca_cert: Path | None, ca_key: Path | None) -> None:
    """Print the root CA certificate (PEM) that ACME clients must trust."""
    from acme_server.ca import CAConfigError, CertificateAuthority

    try:
        authority = CertificateAuthority.load_or_create(data_dir, ca_cert=ca_cert, ca_key=ca_key)
    except CAConfigError as exc:
        raise click.ClickException(str(exc)) from None
    click.echo(authority.root_pem, nl=False)


if __name__ == "__main__":
    main()
