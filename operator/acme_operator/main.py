"""`acme-gateway-operator`: run the Kopf operator against the store the ACME server uses."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
from pathlib import Path
from typing import Any

import click
import kopf

from acme_operator import leader, log_setup, metrics, standby
from acme_operator.ca_cli import ensure_ca_secret_command
from acme_operator.config import OperatorConfig
from acme_operator.context import OperatorContext
from acme_operator.handlers import register_all
from acme_operator.kube import KubeClient, load_configuration
from acme_server import logs
from acme_server.store.operator_facade import OperatorStore, SchemaMismatch, default_database_url

log = logging.getLogger("acme_operator")


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
    elector: leader.Elector | None = None
    try:
        kube_cfg = load_configuration()
        if config.leader_election:
            elector = _elector(config, kube_cfg)
        traces = [leader.fence_trace(elector.acting)] if elector is not None else []
        kube = KubeClient(kube_cfg, traces)
    except BaseException:
        await store.close()
        raise
    ctx = OperatorContext(store=store, config=config, kube=kube, traces=traces)
    metrics_runner = None
    try:
        if config.metrics_listen:
            listen = metrics.parse_listen(config.metrics_listen, "--metrics-listen")
            metrics_runner = await metrics.start(listen, store, config.namespaces)
        if elector is not None and not await _wait_for_lease(elector, config, store):
            return  # stopped while standing by
        await _run_active(config, registry, ctx, elector)
    finally:
        if metrics_runner is not None:
            await metrics_runner.cleanup()
        await store.close()
        await kube.aclose()
        if elector is not None:
            await elector.api.aclose()


def _elector(config: OperatorConfig, kube_cfg: Any) -> leader.Elector:
    namespace = config.lease_namespace or leader.default_namespace()
    if not namespace:
        raise click.UsageError("--leader-election needs --lease-namespace outside a cluster")
    settings = leader.LeaseSettings(
        name=config.lease_name,
        namespace=namespace,
        identity=leader.default_identity(),
        lease_duration=config.lease_duration,
        renew_deadline=config.lease_renew_deadline,
        retry_period=config.lease_retry_period,
    )
    api = leader.LeaseApi(kube_cfg, namespace, config.lease_name)
    return leader.Elector(api, settings, on_lost=leader.exit_now)


async def _wait_for_lease(
    elector: leader.Elector, config: OperatorConfig, store: OperatorStore
) -> bool:
    """The standby: live (/healthz), acting on nothing, until it holds the lease. False when
    SIGTERM/SIGINT came first."""
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    lease = elector.settings
    log.info(
        "leader election on: %s stands by for lease %s/%s",
        lease.identity,
        lease.namespace,
        lease.name,
    )
    try:
        async with standby.health(config.health_listen, store):
            acquire = asyncio.create_task(elector.acquire(), name="lease acquire")
            stopped = asyncio.create_task(stop.wait(), name="stop signal")
            await asyncio.wait({acquire, stopped}, return_when=asyncio.FIRST_COMPLETED)
            for task in (acquire, stopped):
                task.cancel()
            await asyncio.gather(acquire, stopped, return_exceptions=True)
    finally:
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.remove_signal_handler(sig)
    if stop.is_set():
        await elector.release()  # in case it won in the same instant
        return False
    if not elector.leading:
        acquire.result()  # it failed: raise that, never act without the lease
        raise RuntimeError("leader election ended without the lease")
    return True


async def _run_active(
    config: OperatorConfig,
    registry: kopf.OperatorRegistry,
    ctx: OperatorContext,
    elector: leader.Elector | None,
) -> None:
    """Kopf, its handlers and the operator-wide tasks, from a full re-sync; with an
    elector, renewing the lease meanwhile and handing it back after kopf stopped."""
    watchdog = hold = None
    if elector is not None:
        watchdog = leader.Watchdog(elector)
        watchdog.start()
        hold = asyncio.create_task(elector.hold(), name="lease renewal")
    metrics.set_leader(True)
    try:
        await kopf.operator(
            registry=registry,
            clusterwide=not config.namespaces,
            namespaces=list(config.namespaces),
            liveness_endpoint=_health_url(config.health_listen),
            memo=kopf.Memo(ctx=ctx),
        )
    finally:
        metrics.set_leader(False)
        if hold is not None:
            hold.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await hold
        if watchdog is not None:
            watchdog.stopped.set()
        if elector is not None:
            await elector.release()


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
@click.option(
    "--leader-election/--no-leader-election",
    envvar="ACME_GATEWAY_LEADER_ELECTION",
    default=False,
    show_default=True,
    help="Run as one of several replicas: only the holder of a Lease acts.",
)
@click.option(
    "--lease-name",
    envvar="ACME_GATEWAY_LEASE_NAME",
    default="acme-gateway-operator",
    show_default=True,
    help="The coordination.k8s.io Lease the replicas compete for.",
)
@click.option(
    "--lease-namespace",
    envvar="ACME_GATEWAY_LEASE_NAMESPACE",
    default=None,
    help="Namespace of the Lease; default: the Pod's own (in a cluster).",
)
@click.option(
    "--lease-duration",
    envvar="ACME_GATEWAY_LEASE_DURATION",
    default=15.0,
    show_default=True,
    type=click.FloatRange(min=1),
    help="Seconds a standby waits on an unrenewed Lease before taking it.",
)
@click.option(
    "--lease-renew-deadline",
    envvar="ACME_GATEWAY_LEASE_RENEW_DEADLINE",
    default=10.0,
    show_default=True,
    type=click.FloatRange(min=0.5),
    help="Seconds the leader acts after its last renewal; less than --lease-duration.",
)
@click.option(
    "--lease-retry-period",
    envvar="ACME_GATEWAY_LEASE_RETRY_PERIOD",
    default=2.0,
    show_default=True,
    type=click.FloatRange(min=0.1),
    help="Seconds between renewals (leader) and attempts (standby).",
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
    leader_election: bool,
    lease_name: str,
    lease_namespace: str | None,
    lease_duration: float,
    lease_renew_deadline: float,
    lease_retry_period: float,
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
        leader_election=leader_election,
        lease_name=lease_name,
        lease_namespace=lease_namespace or None,
        lease_duration=lease_duration,
        lease_renew_deadline=lease_renew_deadline,
        lease_retry_period=lease_retry_period,
    )
    if leader_election:
        try:
            leader.LeaseSettings(
                lease_name, "-", "-", lease_duration, lease_renew_deadline, lease_retry_period
            )
        except ValueError as exc:
            raise click.BadParameter(str(exc), param_hint="--lease-renew-deadline") from None
    # The kubernetes client logs response bodies at DEBUG (Secret data included) and
    # SQLAlchemy parameters (HMAC keys): acme_server.logs keeps both at WARNING.
    log_setup.configure("DEBUG" if verbose else log_level, log_format)
    try:
        asyncio.run(run_operator(config))
    except (SchemaMismatch, metrics.ListenError) as exc:
        raise click.ClickException(str(exc)) from None


main.add_command(ensure_ca_secret_command)

if __name__ == "__main__":
    main()
