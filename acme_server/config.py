"""Server settings: one frozen object built once by the CLI and shared by every handler."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path

_DURATION = re.compile(r"^(\d+)([smhd])$")
_UNITS = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days"}


def parse_duration(text: str) -> timedelta:
    """`90d`, `12h`, `30m`, `45s`."""
    match = _DURATION.match(text.strip())
    if not match or int(match.group(1)) == 0:
        raise ValueError(f"invalid duration {text!r}: use a positive number with s, m, h or d")
    return timedelta(**{_UNITS[match.group(2)]: int(match.group(1))})


def parse_host_port(text: str, *, default_port: int | None = None) -> tuple[str, int]:
    """`HOST:PORT`, `[v6]:PORT`, or `HOST` when a default port is given."""
    text = text.strip()
    if text.startswith("["):
        host, _, rest = text[1:].partition("]")
        port_text = rest[1:] if rest.startswith(":") else ""
    elif text.count(":") == 1:
        host, _, port_text = text.partition(":")
    else:
        host, port_text = text, ""
    if not port_text:
        if default_port is None:
            raise ValueError(f"{text!r} needs a port (HOST:PORT)")
        return host, default_port
    if not port_text.isdigit() or not 0 < int(port_text) < 65536:
        raise ValueError(f"{text!r} has an invalid port")
    if not host:
        raise ValueError(f"{text!r} has no host")
    return host, int(port_text)


@dataclass(frozen=True)
class Settings:
    base_url: str
    data_dir: Path
    database_url: str
    listen_host: str = "127.0.0.1"
    listen_port: int = 14000
    account_creation: str = "open"  # open | pre-registered
    http01_port: int = 80
    dns_resolvers: tuple[str, ...] = ()
    cert_validity: timedelta = timedelta(days=90)
    order_lifetime: timedelta = timedelta(hours=1)
    authz_lifetime: timedelta = timedelta(days=30)
    nonce_lifetime: timedelta = timedelta(minutes=30)
    terms_of_service: str | None = None
    website: str | None = None
    max_body_bytes: int = 64 * 1024
    orders_page_size: int = 50
    validation_timeout: float = 10.0
    validation_max_attempts: int = 6
    validation_concurrency: int = 20
    tls_names: tuple[str, ...] = field(default=("localhost", "127.0.0.1"))
    # trust-store (issue 8 item 17): retention and per-account caps (registrations may override)
    purge_after: timedelta = timedelta(days=30)
    max_pending_orders: int = 300
    max_pending_authorizations: int = 1000

    @property
    def eab_required(self) -> bool:
        return self.account_creation == "pre-registered"
