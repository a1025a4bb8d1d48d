"""`acme-gateway ca cert`: the root clients must trust."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from acme_server.cli.options import ENV, split_list

if TYPE_CHECKING:  # the CLI imports the CA lazily, to start fast
    from acme_server.ca.constraints import NameConstraintsSpec


def constraint_options(func: Callable[..., Any]) -> Callable[..., Any]:
    """--ca-permitted-domain / --ca-excluded-domain, shared by `serve` and `ca cert`."""
    func = click.option(
        "--ca-excluded-domain",
        "ca_excluded_domains",
        envvar=ENV + "CA_EXCLUDED_DOMAIN",
        multiple=True,
        help="Create the CA name-constrained to never sign this domain or below (repeatable).",
    )(func)
    return click.option(
        "--ca-permitted-domain",
        "ca_permitted_domains",
        envvar=ENV + "CA_PERMITTED_DOMAIN",
        multiple=True,
        help="Create the CA name-constrained to this domain and its subdomains (repeatable). "
        "Fixed at CA creation: an existing CA with other constraints is refused.",
    )(func)


def constraints_from(permitted: tuple[str, ...], excluded: tuple[str, ...]) -> NameConstraintsSpec:
    """The NameConstraintsSpec the flags ask for (click.BadParameter when malformed)."""
    from acme_server.ca import CAConfigError
    from acme_server.ca.constraints import NameConstraintsSpec

    try:
        return NameConstraintsSpec.from_domains(split_list(permitted), split_list(excluded))
    except CAConfigError as exc:
        raise click.BadParameter(str(exc)) from None


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
@constraint_options
def ca_cert(
    data_dir: Path,
    ca_cert: Path | None,
    ca_key: Path | None,
    ca_permitted_domains: tuple[str, ...],
    ca_excluded_domains: tuple[str, ...],
) -> None:
    """Print the root CA certificate (PEM) that ACME clients must trust (creating the CA in
    the data dir on first use, with the name constraints given)."""
    from acme_server.ca import CAConfigError, CertificateAuthority

    constraints = constraints_from(ca_permitted_domains, ca_excluded_domains)
    try:
        authority = CertificateAuthority.load_or_create(
            data_dir, ca_cert=ca_cert, ca_key=ca_key, constraints=constraints
        )
    except CAConfigError as exc:
        raise click.ClickException(str(exc)) from None
    click.echo(authority.root_pem, nl=False)
