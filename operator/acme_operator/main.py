"""`acme-gateway-operator`: run the Kopf operator against the store the ACME server uses."""

from __future__ import annotations

import asyncio
from pathlib import Path

import click
import kopf

from acme_operator import log_setup, metrics
from acme_operator.ca_cli import ensure_ca_secret_command
from acme_operator.config import OperatorConfig
from acme_operator.context import OperatorContext
from acme_operator.handlers import register_all
from acme_operator.kube import KubeClient, load_configuration
from acme_server import logs
from acme_server.store.operator_facade import OperatorStore, SchemaMismatch, default_database_url


def _health_url(listen: str) -> str:
    host, sep, port = listen.rpartition(":")
    if not sep or not port.isdigit() or not host:
        raise click.BadParameter("expected HOST:PORT", param_hint="--health-listen")
    return f"http://{host}:{port}/healthz"


async def run_operator(config: OperatorConfig) -> None:
    # The operator never migrates (the server and `acme-gateway store migrate` do): it
    # refuses, before touching the cluster, a store at any other schema revision.
    store = await OperatorStore.open(config.database_url)
    registry = kopf.OperatorRegistry()
    register_all(registry, config)
    try:
        kube = KubeClient(load_configuration())
    except BaseException:
        await store.close()
        raise
    ctx = OperatorContext(store=store, config=config, kube=kube)
    metrics_runner = None
    try:
        if config.metrics_listen:
            listen = metrics.parse_listen(config.metrics_listen, "--metrics-listen")
            metrics_runner = await metrics.start(listen, store, config.namespaces)
        await kopf.operator(
            registry=registry,
            clusterwide=not config.namespaces,
            namespaces=list(config.namespaces),
            liveness_endpoint=_health_url(config.health_listen),
            memo=kopf.Memo(ctx=ctx),
        )
    finally:
        if metrics_runner is not None:
            await metrics_runner.cleanup()
        await store.close()
        await kube.aclose()


@click.group(invoke_without_command=True, context_settings={"help_option_names": ["-h", "--help"]})
@click.option(
    "--database",
    envvar="ACME_GATEWAY_DATABASE",
    default=None,
    help="Store URL (sqlite:///PATH or postgresql://...); default SQLite in --data-dir.",
)
@click.option(
    "--data-dir",
    envvar="ACME_GATEWAY_DATA_DIR",
    default="./acme-gateway-data",
    show_default=True,
    type=click.Path(file_okay=False, path_type=Path),
    help="Where the default SQLite store lives.",
)
@click.option(
    "--namespace",
    "namespaces",
    multiple=True,
    envvar="ACME_GATEWAY_NAMESPACE",
    help="Watch only this namespace (repeatable); default: all namespaces.",
)
@click.option(
    "--health-listen",
    envvar="ACME_GATEWAY_HEALTH_LISTEN",
    default="127.0.0.1:8081",
    show_default=True,
    help="HOST:PORT of the liveness endpoint (/healthz).",
)
@click.option(
    "--export-interval",
    envvar="ACME_GATEWAY_EXPORT_INTERVAL",
    default=2.0,
    show_default=True,
    type=click.FloatRange(min=0.1),
    help="Seconds between polls of the certificate outbox.",
)
@click.option(
    "--acme-base-url",
    envvar=["ACME_GATEWAY_ACME_BASE_URL", "ACME_GATEWAY_BASE_URL"],
    default=None,
    help="The ACME server's base URL, to show account URLs in status.",
)
@click.option(
    "--resync-interval",
    envvar="ACME_GATEWAY_RESYNC_INTERVAL",
    default=30.0,
    show_default=True,
    type=click.FloatRange(min=1),
    help="Seconds between full re-syncs of each registration (Secret, allow-list).",
)
@click.option(
    "--status-interval",
    envvar="ACME_GATEWAY_STATUS_INTERVAL",
    default=10.0,
    show_default=True,
    type=click.FloatRange(min=1),
    help="Seconds between refreshes of status (accounts, certificate counts).",
)
@click.option(
    "--metrics-listen",
    envvar="ACME_GATEWAY_OPERATOR_METRICS_LISTEN",
    default=None,
    help="HOST:PORT of the Prometheus /metrics listener (its own port); default: off.",
)
@click.option(
    "--log-level",
    envvar="ACME_GATEWAY_OPERATOR_LOG_LEVEL",
    default="INFO",
    show_default=True,
    type=click.Choice(["DEBUG", "INFO", "WARNING", "ERROR"], case_sensitive=False),
)
@click.option(
    "--log-format",
    envvar="ACME_GATEWAY_OPERATOR_LOG_FORMAT",
    default="text",
    show_default=True,
    type=click.Choice(logs.FORMATS),
    help="text: readable lines; json: one JSON object per line, with the object's kind, "
    "namespace and name as fields (the server's format).",
)
@click.option("--verbose", "-v", is_flag=True, help="Debug logging (same as --log-level debug).")
@click.pass_context
def main(
    click_ctx: click.Context,
    database: str | None,
    data_dir: Path,
    namespaces: tuple[str, ...],
    health_listen: str,
    export_interval: float,
    acme_base_url: str | None,
    resync_interval: float,
    status_interval: float,
    metrics_listen: str | None,
    log_level: str,
    log_format: str,
    verbose: bool,
) -> None:
    """Reconcile AcmeRegistration/AllowedDomain resources into the acme-gateway store and
    export issued certificates as Secrets (without a command), or run one command."""
    if click_ctx.invoked_subcommand is not None:
        return
    _health_url(health_listen)
    if metrics_listen:
        try:
            metrics.parse_listen(metrics_listen, "--metrics-listen")
        except ValueError as exc:
            raise click.BadParameter(str(exc)) from None
        if metrics_listen == health_listen:
            raise click.BadParameter(
                "must differ from --health-listen", param_hint="--metrics-listen"
            )
    config = OperatorConfig(
        database_url=database or default_database_url(data_dir),
        namespaces=tuple(namespaces),
        health_listen=health_listen,
        export_interval=export_interval,
        acme_base_url=acme_base_url,
        resync_interval=resync_interval,
        status_interval=status_interval,
        metrics_listen=metrics_listen or None,
    )
    # The kubernetes client logs response bodies at DEBUG (Secret data included) and
    # SQLAlchemy parameters (HMAC keys): acme_server.logs keeps both at WARNING.
    log_setup.configure("DEBUG" if verbose else log_level, log_format)
    try:
        asyncio.run(run_operator(config))
    except SchemaMismatch as exc:
        raise click.ClickException(str(exc)) from None


main.add_command(ensure_ca_secret_command)

if __name__ == "__main__":
    main()
