"""Server settings: one frozen object built once by the CLI and shared by every handler."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path

from acme_server.domain.profiles import ProfileSet, builtin_profiles

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
    # validation: where it may connect (validation/addresses.py) and per-tenant fairness
    validation_allow_cidrs: tuple[str, ...] = ()
    validation_deny_cidrs: tuple[str, ...] = ()
    validation_concurrency_per_account: int = 5
    validation_concurrency_per_registration: int = 10
    # CA (issue 8 item 5): clientAuth EKU on leaves is opt-in; X.509 name constraints
    # written into a newly generated CA (an existing CA must already carry them).
    leaf_client_auth: bool = False
    ca_permitted_domains: tuple[str, ...] = ()
    ca_excluded_domains: tuple[str, ...] = ()
    # Hostile input (issue 8, items 9-16): connection and request-read limits.
    request_head_timeout: float = 10.0  # TLS handshake + request head, and keep-alive idle
    body_timeout: float = 30.0  # a whole request body
    max_connections: int = 1024  # concurrent client connections per process
    # Start-up (issue 9 item 5): TLS and CA files, once keyword arguments beside Settings.
    tls_cert: Path | None = None  # with tls_key: serve this pair instead of our own leaf
    tls_key: Path | None = None
    insecure_http: bool = False  # plain HTTP, only behind a TLS-terminating proxy
    ca_cert: Path | None = None  # with ca_key: issue under this CA, not the generated one
    ca_key: Path | None = None
    replace_ca_root: bool = False  # make this CA the store's root even if another was recorded
    # Performance (issue 10): worker processes on one port, where nonces are spent, and how
    # long an account and its pre-registration may be served from memory.
    workers: int = 1
    nonce_scope: str = "server"  # server: shared memory of this serve's workers | store
    account_cache_seconds: float = 2.0
    # Revocation information (issue 12): a plain-HTTP listener for CRL/OCSP/issuer, and the
    # base URL written into leaves (CRL DP, AIA). Neither set: no listener, leaves without them.
    crl_listen: tuple[str, int] | None = None
    crl_base_url: str | None = None
    crl_validity: timedelta = timedelta(hours=24)  # CRL nextUpdate - thisUpdate
    ocsp_validity: timedelta = timedelta(hours=12)  # OCSP response nextUpdate - thisUpdate
    ari_retry_after: timedelta = timedelta(hours=6)  # renewalInfo Retry-After (RFC 9773 4.3)
    # Observability (issue 14): the metrics listener (None: off), and how long SIGTERM lets
    # in-flight requests finish before they are cancelled.
    metrics_listen: tuple[str, int] | None = None
    shutdown_timeout: float = 20.0
    # Certificate profiles (issue 12 items 6-8, `--profiles FILE`); None: the built-ins,
    # whose `default` lasts `cert_validity`.
    profiles: ProfileSet | None = None
    # tls-alpn-01 (issue 13 item 1): the port its validator connects to.
    tlsalpn01_port: int = 443
    # dns-01 (issue 13 item 4): how long a missing or different TXT record is retried
    # (seconds of planned retries, validation/dns01.retry_delay), and how many of the
    # `dns_resolvers`, each asked on its own, must find it (0: all of them).
    dns01_retry_seconds: float = 10.0
    validation_quorum: int = 0
    # CAA (issue 13 item 3, RFC 8659/8657): our issuer domain names; none = CAA checking off.
    # Finalize re-checks names whose last CAA check is older than caa_recheck_after.
    caa_identities: tuple[str, ...] = ()
    caa_recheck_after: timedelta = timedelta(hours=8)
    # IP identifiers (issue 13 item 2): CIDRs open mode (no pre-registration) may request
    # addresses in; empty: open mode refuses every ip identifier.
    open_ip_ranges: tuple[str, ...] = ()
    # Replicas (issue 14 item 5): how long a process owns a challenge it validates; after a
    # crash (SIGKILL) another process takes the challenge over once this has passed.
    validation_lease: timedelta = timedelta(seconds=30)

    @property
    def profile_set(self) -> ProfileSet:
        return self.profiles if self.profiles is not None else builtin_profiles(self.cert_validity)

    @property
    def eab_required(self) -> bool:
        return self.account_creation == "pre-registered"
