"""`acme-gateway serve`: run the ACME server with flags (or ACME_GATEWAY_* variables)."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import click

from acme_server.cli.options import (
    ENV,
    database_url,
    retention_limit_options,
    retention_limit_settings,
    split_list,
    store_options,
)
from acme_server.config import Settings, parse_duration, parse_host_port


def _default_base_url(host: str, port: int, https: bool) -> str:
    if host in ("0.0.0.0", "::", ""):  # noqa: S104 - naming the wildcard, not binding it
        host = "localhost"
    if ":" in host:
        host = f"[{host}]"
    return f"{'https' if https else 'http'}://{host}:{port}"


@click.command()
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
@store_options
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
@retention_limit_options
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
    **retention_limits: Any,
) -> None:
    """Run the ACME server."""
    from sqlalchemy.exc import DBAPIError

    from acme_server.ca import CAConfigError
    from acme_server.server import StartupError
    from acme_server.server import serve as run_server
    from acme_server.validation.resolver import parse_nameserver

    try:
        host, port = parse_host_port(listen)
        resolvers = split_list(dns_resolvers)
        for resolver in resolvers:
            parse_nameserver(resolver)
        validity = parse_duration(cert_validity)
        lifetime = parse_duration(order_lifetime)
        trust_store = retention_limit_settings(retention_limits)
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
        database_url=database_url(data_dir, database),
        listen_host=host,
        listen_port=port,
        account_creation=account_creation,
        http01_port=http01_port,
        dns_resolvers=resolvers,
        cert_validity=validity,
        order_lifetime=lifetime,
        terms_of_service=terms_of_service,
        website=website,
        tls_names=split_list(tls_names) or ("localhost", "127.0.0.1"),
        **trust_store,
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
