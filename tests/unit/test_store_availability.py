"""Which failures count as "the store is unavailable" (503 + Retry-After, one log line) and
which stay bugs (500 with a traceback)."""

from __future__ import annotations

import errno
import logging

import asyncpg.exceptions
import pytest
import sqlalchemy as sa

from acme_server.store.availability import log_failure, store_unavailable


def _wrapped(orig: BaseException, *, invalidated: bool = False) -> sa.exc.DBAPIError:
    return sa.exc.DBAPIError("SELECT 1", {}, orig, connection_invalidated=invalidated)


@pytest.mark.parametrize(
    "exc",
    [
        ConnectionRefusedError(errno.ECONNREFUSED, "Connect call failed"),
        ConnectionResetError(errno.ECONNRESET, "reset"),
        TimeoutError(),
        OSError(errno.EHOSTUNREACH, "No route to host"),
        OSError("Multiple exceptions: [Errno 111] refused, [Errno 99] not available"),
        sa.exc.TimeoutError("QueuePool limit of size 10 overflow 10 reached"),
        _wrapped(Exception("connection was closed"), invalidated=True),
        _wrapped(asyncpg.exceptions.CannotConnectNowError("the database system is starting up")),
        _wrapped(asyncpg.exceptions.AdminShutdownError("terminating connection")),
        _wrapped(asyncpg.exceptions.ConnectionDoesNotExistError("connection was closed")),
    ],
)
def test_outages_are_recognised(exc: BaseException) -> None:
    assert store_unavailable(exc)


def test_an_outage_seen_through_another_exception_is_recognised() -> None:
    try:
        try:
            raise ConnectionRefusedError(errno.ECONNREFUSED, "refused")
        except ConnectionRefusedError as inner:
            raise RuntimeError("while loading the account") from inner
    except RuntimeError as outer:
        assert store_unavailable(outer)


@pytest.mark.parametrize(
    "exc",
    [
        ValueError("a bug"),
        KeyError("x"),
        PermissionError(errno.EACCES, "Permission denied"),
        FileNotFoundError(errno.ENOENT, "missing"),
        sa.exc.IntegrityError("INSERT", {}, Exception("duplicate key")),
        _wrapped(asyncpg.exceptions.UndefinedTableError("relation does not exist")),
        _wrapped(asyncpg.exceptions.SerializationError("could not serialize")),
    ],
)
def test_other_failures_stay_failures(exc: BaseException) -> None:
    assert not store_unavailable(exc)


def test_log_failure_logs_an_outage_as_one_line_and_a_bug_with_its_traceback(
    caplog: pytest.LogCaptureFixture,
) -> None:
    log = logging.getLogger("test.availability")
    with caplog.at_level(logging.INFO, logger="test.availability"):
        log_failure(log, "round failed", ConnectionRefusedError(errno.ECONNREFUSED, "refused"))
        try:
            raise ValueError("a bug")
        except ValueError as exc:
            log_failure(log, "round failed", exc)
    outage, bug = caplog.records
    assert outage.levelno == logging.WARNING and outage.exc_info is None
    assert "the store is unavailable (ConnectionRefusedError" in outage.getMessage()
    assert bug.levelno == logging.ERROR and bug.exc_info is not None
