"""The `ensure-ca-secret` subcommand (the Helm chart's CA hook Job runs it)."""

from __future__ import annotations

import sys
from pathlib import Path

import click
import kubernetes.client
from kubernetes.client.exceptions import ApiException

from acme_operator.ca_secret import CASecretError, ensure_ca_secret
from acme_operator.kube import load_configuration

POD_NAMESPACE_FILE = Path("/var/run/secrets/kubernetes.io/serviceaccount/namespace")


def _labels(pairs: tuple[str, ...]) -> dict[str, str]:
    out = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise click.BadParameter(f"{pair!r}: expected KEY=VALUE", param_hint="--label")
        out[key] = value
    return out


@click.command("ensure-ca-secret")
@click.option(
    "--namespace",
    envvar="ACME_GATEWAY_CA_SECRET_NAMESPACE",
    default=None,
    help="Namespace of the Secret; default: the Pod's own namespace.",
)
@click.option(
    "--name",
    envvar="ACME_GATEWAY_CA_SECRET_NAME",
    required=True,
    help="Name of the kubernetes.io/tls Secret (tls.crt, tls.key) to create when absent.",
)
@click.option(
    "--common-name",
    envvar="ACME_GATEWAY_CA_COMMON_NAME",
    default="acme-gateway CA",
    show_default=True,
    help="Subject common name of a newly generated CA.",
)
@click.option("--label", "labels", multiple=True, help="KEY=VALUE label of a new Secret.")
def ensure_ca_secret_command(
    namespace: str | None, name: str, common_name: str, labels: tuple[str, ...]
) -> None:
    """Create the CA Secret once (a new ECDSA P-256 CA); an existing one is never changed."""
    if namespace is None:
        try:
            namespace = POD_NAMESPACE_FILE.read_text().strip()
        except OSError:
            raise click.UsageError("--namespace is required outside a Pod") from None
    api = kubernetes.client.ApiClient(load_configuration())
    try:
        result = ensure_ca_secret(
            kubernetes.client.CoreV1Api(api), namespace, name, common_name, _labels(labels)
        )
    except CASecretError as exc:
        click.echo(f"error: {exc}", err=True)
        sys.exit(1)
    except ApiException as exc:
        click.echo(f"error: the API server refused ({exc.status} {exc.reason})", err=True)
        sys.exit(1)
    finally:
        api.close()
    click.echo(result.message)
