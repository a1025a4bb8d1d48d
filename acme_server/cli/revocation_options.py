"""`serve` flags for revocation information (issue 12): the plain-HTTP CRL/OCSP listener,
the URL leaves point at, and how often ARI clients ask again."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any
from urllib.parse import urlsplit

import click

from acme_server.cli.options import ENV

DEFAULT_CRL_PORT = 14080


def revocation_options(func: Callable[..., Any]) -> Callable[..., Any]:
    options = [
        click.option(
            "--crl-listen",
            envvar=ENV + "CRL_LISTEN",
            default=None,
            help="HOST:PORT of the plain-HTTP listener serving CRLs, OCSP and the issuer "
            f"certificate (port {DEFAULT_CRL_PORT} when only HOST is given). Default: off.",
        ),
        click.option(
            "--crl-base-url",
            envvar=ENV + "CRL_BASE_URL",
            default=None,
            help="http:// URL relying parties reach that listener at; leaves then carry the "
            "CRL distribution point and AIA (OCSP, caIssuers). Default: from --crl-listen; "
            "neither set: leaves carry no revocation pointers.",
        ),
        click.option(
            "--crl-validity",
            envvar=ENV + "CRL_VALIDITY",
            default="24h",
            show_default=True,
            help="CRL nextUpdate after thisUpdate; a CRL is rebuilt when half of it is left "
            "and after every revocation.",
        ),
        click.option(
            "--ocsp-validity",
            envvar=ENV + "OCSP_VALIDITY",
            default="12h",
            show_default=True,
            help="OCSP response nextUpdate after thisUpdate (also its Cache-Control max-age).",
        ),
        click.option(
            "--ari-retry-after",
            envvar=ENV + "ARI_RETRY_AFTER",
            default="6h",
            show_default=True,
            help="Retry-After of renewalInfo answers (RFC 9773): how soon clients ask again, "
            "so how soon they notice a revocation.",
        ),
    ]
    for option in reversed(options):
        func = option(func)
    return func


def revocation_settings(values: dict[str, Any]) -> dict[str, Any]:
    """Settings fields from the revocation_options values (ValueError when invalid)."""
    from acme_server.config import parse_duration, parse_host_port

    listen = values.get("crl_listen")
    base_url = values.get("crl_base_url")
    address = parse_host_port(listen, default_port=DEFAULT_CRL_PORT) if listen else None
    if base_url:
        parts = urlsplit(base_url)
        if parts.scheme != "http" or not parts.netloc or parts.query or parts.fragment:
            raise ValueError(
                f"--crl-base-url {base_url!r} must be a plain http:// URL (relying parties "
                "fetch CRLs and OCSP without TLS, RFC 5280 4.2.1.13 / RFC 6960 A.1)"
            )
    elif address is not None:
        host, port = address
        if host in ("0.0.0.0", "::", ""):  # noqa: S104 - naming the wildcard, not binding it
            raise ValueError("--crl-listen on a wildcard address needs --crl-base-url")
        base_url = f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"
    return {
        "crl_listen": address,
        "crl_base_url": base_url.rstrip("/") if base_url else None,
        "crl_validity": parse_duration(str(values["crl_validity"])),
        "ocsp_validity": parse_duration(str(values["ocsp_validity"])),
        "ari_retry_after": parse_duration(str(values["ari_retry_after"])),
    }
