"""`acme-gateway serve`: run the ACME server with flags (or ACME_GATEWAY_* variables)."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import click

from acme_server.cli.ca import constraint_options, constraints_from
from acme_server.cli.options import (
    ENV,
    database_url,
    retention_limit_options,
    retention_limit_settings,
    split_list,
    store_options,
)
from acme_server.cli.revocation_options import revocation_options, revocation_settings
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
    "--tlsalpn01-port",
    envvar=ENV + "TLSALPN01_PORT",
    default=443,
    show_default=True,
    type=click.IntRange(1, 65535),
    help="Port tls-alpn-01 validation connects to.",
)
@click.option(
    "--dns-resolver",
    "dns_resolvers",
    envvar=ENV + "DNS_RESOLVER",
    multiple=True,
    help="HOST:PORT of a resolver for validation (repeatable; env: comma-separated). http-01 "
    "tries them in turn; dns-01 asks each on its own (--validation-quorum). Default: system "
    "resolver.",
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
@constraint_options
@click.option(
    "--client-auth-eku",
    "leaf_client_auth",
    envvar=ENV + "CLIENT_AUTH_EKU",
    is_flag=True,
    help="Also put the clientAuth EKU in issued certificates (default: serverAuth only).",
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
# Hostile input (issue 8): connection and request-read limits.
@click.option(
    "--request-head-timeout",
    envvar=ENV + "REQUEST_HEAD_TIMEOUT",
    default="10s",
    show_default=True,
    help="Close a connection without a complete TLS handshake / request head by then "
    "(also the keep-alive idle time).",
)
@click.option(
    "--body-timeout",
    envvar=ENV + "BODY_TIMEOUT",
    default="30s",
    show_default=True,
    help="Refuse a request whose body has not fully arrived by then (408).",
)
@click.option(
    "--max-connections",
    envvar=ENV + "MAX_CONNECTIONS",
    default=1024,
    show_default=True,
    type=click.IntRange(1),
    help="Concurrent client connections; more get a 503 and are closed.",
)
@retention_limit_options
@click.option(
    "--validation-allow-cidr",
    "validation_allow_cidrs",
    envvar=ENV + "VALIDATION_ALLOW_CIDR",
    multiple=True,
    help="Exempt a range from the built-in list of addresses validation refuses (loopback, "
    "link-local, ...); repeatable. --validation-deny-cidr wins over it.",
)
@click.option(
    "--validation-deny-cidr",
    "validation_deny_cidrs",
    envvar=ENV + "VALIDATION_DENY_CIDR",
    multiple=True,
    help="A range validation must never connect to, e.g. 10.0.0.0/8 (repeatable).",
)
@click.option(
    "--validation-concurrency-per-account",
    envvar=ENV + "VALIDATION_CONCURRENCY_PER_ACCOUNT",
    default=5,
    show_default=True,
    type=click.IntRange(1),
    help="Validations one account may have running at once in this process.",
)
@click.option(
    "--validation-concurrency-per-registration",
    envvar=ENV + "VALIDATION_CONCURRENCY_PER_REGISTRATION",
    default=10,
    show_default=True,
    type=click.IntRange(1),
    help="Validations one pre-registration's accounts may have running at once in this process.",
)
@click.option(
    "--dns01-retry-seconds",
    envvar=ENV + "DNS01_RETRY_SECONDS",
    default=10.0,
    show_default=True,
    type=click.FloatRange(0, 3600),
    help="How long a missing or different dns-01 TXT record is retried (attempts at 0, 1, 3, "
    "7 ... s and at the end) before the challenge fails; 0: no retry.",
)
@click.option(
    "--validation-quorum",
    envvar=ENV + "VALIDATION_QUORUM",
    default=0,
    show_default=True,
    type=click.IntRange(0),
    help="How many --dns-resolver (each asked on its own) must find a dns-01 record; "
    "0: all of them.",
)
@click.option(
    "--workers",
    envvar=ENV + "WORKERS",
    default=None,
    type=click.IntRange(1, 256),
    help="Server processes sharing the listening port and the store. "
    "[default: the number of CPUs this process may run on]",
)
@click.option(
    "--nonce-scope",
    envvar=ENV + "NONCE_SCOPE",
    default="server",
    show_default=True,
    type=click.Choice(["server", "store"]),
    help="server: nonces are spent in this server's shared memory (no store write), good on "
    "any of its workers; store: spent in the store, good on every server sharing it (for "
    "replicas behind a load balancer that does not keep a client on one).",
)
@click.option(
    "--account-cache-seconds",
    envvar=ENV + "ACCOUNT_CACHE_SECONDS",
    default=2.0,
    show_default=True,
    type=click.FloatRange(0, 300),
    help="How long an account and its pre-registration are served from memory: suspension or "
    "deletion of a pre-registration takes effect within this time (0: read on every request).",
)
@revocation_options  # issue 12: CRL/OCSP listener
# Observability (issue 14): metrics listener and graceful shutdown.
@click.option(
    "--metrics-listen",
    envvar=ENV + "METRICS_LISTEN",
    default=None,
    help="HOST:PORT of a plain-HTTP listener serving Prometheus /metrics (the whole server's "
    "numbers, whichever worker answers). Default: off. Never served on the ACME port.",
)
@click.option(
    "--shutdown-timeout",
    envvar=ENV + "SHUTDOWN_TIMEOUT",
    default="20s",
    show_default=True,
    help="On SIGTERM, stop accepting and give in-flight requests this long to finish; "
    "unfinished validations hand their leases back.",
)
@click.option(  # issue 12: certificate profiles
    "--profiles",
    "profiles_file",
    envvar=ENV + "PROFILES",
    default=None,
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="YAML file of certificate profiles (docs/profiles.md). Default: the built-ins.",
)
# CAA (issue 13 item 3, RFC 8659/8657).
@click.option(
    "--caa-identity",
    "caa_identities",
    envvar=ENV + "CAA_IDENTITIES",
    multiple=True,
    help="An issuer domain name of this CA that CAA issue/issuewild records may name "
    "(repeatable; the variable takes a comma-separated list). Default: none, CAA not checked.",
)
@click.option(
    "--caa-recheck-after",
    envvar=ENV + "CAA_RECHECK_AFTER",
    default="8h",
    show_default=True,
    help="Finalize checks CAA again for names whose last CAA check is older than this.",
)
@click.option(  # issue 13 item 2: RFC 8738 IP identifiers
    "--open-ip-range",
    "open_ip_ranges",
    envvar=ENV + "OPEN_IP_RANGE",
    multiple=True,
    help="CIDR whose addresses accounts without a pre-registration (open mode) may request "
    "as ip identifiers (repeatable). Default: none, so open mode refuses every address.",
)
@click.option(  # issue 14 item 5: replicas
    "--validation-lease",
    envvar=ENV + "VALIDATION_LEASE",
    default="30s",
    show_default=True,
    help="How long a process owns a challenge it validates: after a crash another replica "
    "takes the challenge over once this has passed. Must exceed the 10s validation timeout.",
)
def serve(
    listen: str,
    base_url: str | None,
    data_dir: Path,
    database: str | None,
    account_creation: str,
    http01_port: int,
    tlsalpn01_port: int,
    dns_resolvers: tuple[str, ...],
    tls_cert: Path | None,
    tls_key: Path | None,
    tls_names: tuple[str, ...],
    ca_cert: Path | None,
    ca_key: Path | None,
    ca_permitted_domains: tuple[str, ...],
    ca_excluded_domains: tuple[str, ...],
    leaf_client_auth: bool,
    cert_validity: str,
    order_lifetime: str,
    terms_of_service: str | None,
    website: str | None,
    replace_ca_root: bool,
    insecure_http: bool,
    request_head_timeout: str,
    body_timeout: str,
    max_connections: int,
    validation_allow_cidrs: tuple[str, ...],
    validation_deny_cidrs: tuple[str, ...],
    validation_concurrency_per_account: int,
    validation_concurrency_per_registration: int,
    dns01_retry_seconds: float,
    validation_quorum: int,
    workers: int | None,
    nonce_scope: str,
    account_cache_seconds: float,
    metrics_listen: str | None,
    shutdown_timeout: str,
    profiles_file: Path | None,
    caa_identities: tuple[str, ...],
    caa_recheck_after: str,
    open_ip_ranges: tuple[str, ...],
    validation_lease: str,
    **retention_limits: Any,
) -> None:
    """Run the ACME server."""
    from sqlalchemy.exc import DBAPIError

    from acme_server.ca import CAConfigError
    from acme_server.domain.caa import normalize_identity
    from acme_server.domain.identifiers import parse_ip_range
    from acme_server.profile_config import load_profiles
    from acme_server.server import StartupError, run_server
    from acme_server.validation.addresses import parse_cidrs
    from acme_server.validation.resolver import parse_nameserver
    from acme_server.workers import supervise

    try:
        host, port = parse_host_port(listen)
        resolvers = split_list(dns_resolvers)
        for resolver in resolvers:
            parse_nameserver(resolver)
        if validation_quorum > max(len(resolvers), 1):
            raise ValueError(
                f"--validation-quorum {validation_quorum} is more than the "
                f"{max(len(resolvers), 1)} DNS resolver(s) configured (--dns-resolver)"
            )
        validity = parse_duration(cert_validity)
        lifetime = parse_duration(order_lifetime)
        head_timeout = parse_duration(request_head_timeout).total_seconds()
        body_seconds = parse_duration(body_timeout).total_seconds()
        trust_store = retention_limit_settings(retention_limits)
        revocation = revocation_settings(retention_limits)  # the remaining flags, not only limits
        allow_cidrs, deny_cidrs = (
            split_list(validation_allow_cidrs),
            split_list(validation_deny_cidrs),
        )
        parse_cidrs(allow_cidrs + deny_cidrs)
        metrics_address = parse_host_port(metrics_listen) if metrics_listen else None
        shutdown_seconds = parse_duration(shutdown_timeout).total_seconds()
        profiles = load_profiles(profiles_file, validity)
        caa_names = tuple(dict.fromkeys(normalize_identity(i) for i in split_list(caa_identities)))
        caa_recheck = parse_duration(caa_recheck_after)
        ip_ranges = tuple(parse_ip_range(r) for r in split_list(open_ip_ranges))
        lease = parse_duration(validation_lease)
        if lease.total_seconds() <= Settings.validation_timeout:
            raise ValueError(
                f"--validation-lease {validation_lease} must exceed the "
                f"{Settings.validation_timeout:g}s validation timeout, or a slow attempt "
                "could be taken over while it still runs"
            )
    except ValueError as exc:
        raise click.BadParameter(str(exc)) from None
    constraints = constraints_from(ca_permitted_domains, ca_excluded_domains)
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
        request_head_timeout=head_timeout,
        body_timeout=body_seconds,
        max_connections=max_connections,
        **trust_store,
        validation_allow_cidrs=allow_cidrs,
        validation_deny_cidrs=deny_cidrs,
        validation_concurrency_per_account=validation_concurrency_per_account,
        validation_concurrency_per_registration=validation_concurrency_per_registration,
        leaf_client_auth=leaf_client_auth,
        ca_permitted_domains=constraints.permitted,
        ca_excluded_domains=constraints.excluded,
        tls_cert=tls_cert,
        tls_key=tls_key,
        insecure_http=insecure_http,
        ca_cert=ca_cert,
        ca_key=ca_key,
        replace_ca_root=replace_ca_root,
        workers=workers or len(os.sched_getaffinity(0)),
        nonce_scope=nonce_scope,
        account_cache_seconds=account_cache_seconds,
        **revocation,
        metrics_listen=metrics_address,
        shutdown_timeout=shutdown_seconds,
        profiles=profiles,
        tlsalpn01_port=tlsalpn01_port,
        dns01_retry_seconds=dns01_retry_seconds,
        validation_quorum=validation_quorum,
        caa_identities=caa_names,
        caa_recheck_after=caa_recheck,
        open_ip_ranges=ip_ranges,
        validation_lease=lease,
    )
    try:
        if settings.workers > 1:
            supervise(settings)
        else:
            asyncio.run(run_server(settings))
    except (StartupError, CAConfigError) as exc:
        raise click.ClickException(str(exc)) from None
    except DBAPIError as exc:
        raise click.ClickException(f"store error: {exc.orig}") from None
    except OSError as exc:
        raise click.ClickException(f"cannot start: {exc}") from None
