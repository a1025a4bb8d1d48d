"""The `acme-gateway` console script: serve, registration admin, CA export, store schema."""

from __future__ import annotations

import click

from acme_server import logs
from acme_server.cli.ca import ca
from acme_server.cli.options import ENV
from acme_server.cli.registration import registration
from acme_server.cli.serve import serve
from acme_server.cli.store import store


@click.group()
@click.option(
    "--log-level",
    envvar=ENV + "LOG_LEVEL",
    default="INFO",
    show_default=True,
    type=click.Choice(["DEBUG", "INFO", "WARNING", "ERROR"], case_sensitive=False),
)
@click.option(
    "--log-format",
    envvar=ENV + "LOG_FORMAT",
    default="text",
    show_default=True,
    type=click.Choice(logs.FORMATS),
    help="text: one readable line per event; json: one JSON object per line, with the "
    "request ID, account, order and registration as fields.",
)
def main(log_level: str, log_format: str) -> None:
    """acme-gateway: a private ACME (RFC 8555) certificate authority."""
    logs.configure(log_level, log_format)


main.add_command(serve)
main.add_command(registration)
main.add_command(ca)
main.add_command(store)
