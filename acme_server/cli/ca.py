"""`acme-gateway ca cert`: the root clients must trust."""

from __future__ import annotations

from pathlib import Path

import click

from acme_server.cli.options import ENV


@click.group()
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
