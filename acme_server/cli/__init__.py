"""The `acme-gateway` console script: serve, registration admin, CA export, store schema."""

from __future__ import annotations

import logging
import sys

import click

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


main.add_command(serve)
main.add_command(registration)
main.add_command(ca)
main.add_command(store)
