"""Telling "the database is unreachable or restarting" apart from every other failure.

A store outage is an operational state, not a bug: ACME clients get a 503 problem document
with `Retry-After` (web/middleware.py), background loops log one line and try again at
their next round, and nobody logs a traceback for it. Everything else stays a 500 with a
logged traceback, so real bugs remain loud.
"""

from __future__ import annotations

import errno
import logging

import sqlalchemy as sa

try:  # only with the PostgreSQL extra installed
    import asyncpg.exceptions as _pg

    _PG_UNAVAILABLE: tuple[type[BaseException], ...] = (
        _pg.PostgresConnectionError,  # connection failures, "too many connections"
        _pg.OperatorInterventionError,  # shutting down, starting up, crash recovery
        _pg.InterfaceError,  # the connection was closed under us
    )
except ImportError:  # pragma: no cover - SQLite-only installs
    _PG_UNAVAILABLE = ()

_NETWORK_ERRNOS = frozenset(
    {errno.EHOSTUNREACH, errno.ENETUNREACH, errno.ENETDOWN, errno.EHOSTDOWN, errno.ECONNABORTED}
)

# How long clients are told to wait: a restart of PostgreSQL takes a few seconds.
RETRY_AFTER_SECONDS = 2


def store_unavailable(exc: BaseException) -> bool:
    """True when `exc` (or what it wraps) says the store cannot be reached right now."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if isinstance(current, sa.exc.DBAPIError) and current.connection_invalidated:
            return True
        if isinstance(current, sa.exc.TimeoutError):  # the pool had no connection in time
            return True
        if isinstance(current, (ConnectionError, TimeoutError)):  # refused, reset, timed out
            return True
        if isinstance(current, OSError) and (
            current.errno in _NETWORK_ERRNOS
            # asyncio's connect to a name with several addresses, all refused
            or str(current).startswith("Multiple exceptions: ")
        ):
            return True
        if _PG_UNAVAILABLE and isinstance(current, _PG_UNAVAILABLE):
            return True
        if isinstance(current, sa.exc.DBAPIError):
            current = current.orig
        else:
            current = current.__cause__ or current.__context__
    return False


def describe(exc: BaseException) -> str:
    """One line naming the failure, without a traceback (and without the URL's password:
    drivers name host and port, never credentials)."""
    root: BaseException = exc
    if isinstance(exc, sa.exc.DBAPIError) and exc.orig is not None:
        root = exc.orig
    text = str(root).strip().splitlines()[0] if str(root).strip() else ""
    return f"{type(root).__name__}: {text}"[:300]


def log_failure(log: logging.Logger, what: str, exc: BaseException) -> None:
    """Log a background failure: one WARNING line for a store outage, a traceback otherwise."""
    if store_unavailable(exc):
        log.warning("%s: the store is unavailable (%s); retrying", what, describe(exc))
    else:
        log.error("%s", what, exc_info=exc)
