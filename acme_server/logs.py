"""Log setup shared by the server and the operator: text or one JSON object a line, every
line stamped with the request context (request ID, account, order, registration; the
operator adds the Kubernetes object, see `acme_operator.log_setup`).

The context lives in a `ContextVar`, so it follows a request through its handler's awaits
and the tasks it starts, without passing anything around; this module needs no aiohttp
state. Nothing here knows secrets, and nothing logs structures that hold them (a
registration's HMAC key, the nonce MAC key): `configure` also holds back the libraries
that would log SQL parameters and result rows at DEBUG (SQLAlchemy), whatever the level.
"""

from __future__ import annotations

import contextlib
import contextvars
import json
import logging
import sys
from collections.abc import Iterable, Iterator, Mapping, Sequence
from datetime import UTC, datetime
from types import MappingProxyType
from typing import IO, Any

FORMATS = ("text", "json")

# Libraries whose DEBUG/INFO output is either noise or carries data (SQLAlchemy logs
# statement parameters at INFO and rows at DEBUG, which includes HMAC keys): WARNING at least.
QUIET_LOGGERS = ("sqlalchemy", "alembic", "asyncio", "kubernetes", "urllib3")

# Context fields, in the order the text format prints them.
CONTEXT_FIELDS = (
    "request_id",
    "account",
    "registration",
    "order",
    "authz",
    "challenge",
    "cert",
    "kind",  # the operator's object: kind, namespace, name
    "namespace",
    "name",
)

_EMPTY: Mapping[str, str] = MappingProxyType({})
_context: contextvars.ContextVar[Mapping[str, str]] = contextvars.ContextVar(
    "acme_gateway_log_context", default=_EMPTY
)

# LogRecord's own attributes: everything else on a record came from `extra=` and is logged.
_RECORD_ATTRS = frozenset(
    logging.LogRecord("", 0, "", 0, "", None, None).__dict__.keys()
    | {"message", "asctime", "context", "taskName"}
)


def current() -> Mapping[str, str]:
    """The context of the running request (empty outside one)."""
    return _context.get()


def bind(**fields: object) -> None:
    """Add fields (None values are skipped) to the current context, for this request only."""
    add = {k: str(v) for k, v in fields.items() if v is not None}
    if add:
        _context.set({**_context.get(), **add})


@contextlib.contextmanager
def scope(**fields: object) -> Iterator[None]:
    """A fresh context for the block (one request), restored afterwards."""
    token = _context.set({k: str(v) for k, v in fields.items() if v is not None})
    try:
        yield
    finally:
        _context.reset(token)


class ContextFilter(logging.Filter):
    """Stamps each record with the context current where it was logged (or the one given
    as `extra={"context": ...}`, e.g. by the access log, which runs after the request)."""

    def filter(self, record: logging.LogRecord) -> bool:
        if not hasattr(record, "context"):
            record.context = dict(_context.get())
        return True


class JsonFormatter(logging.Formatter):
    """One JSON object a line: time, level, logger, message, context, extras, exception.
    `omit`: extras a library attaches to records that are not for the log (kopf's)."""

    def __init__(self, omit: Iterable[str] = ()) -> None:
        super().__init__()
        self._omit = _RECORD_ATTRS | frozenset(omit)

    def format(self, record: logging.LogRecord) -> str:
        doc: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        doc.update(getattr(record, "context", None) or {})
        for key, value in record.__dict__.items():
            if key not in self._omit and not key.startswith("_"):
                doc[key] = value
        if record.exc_info:
            doc["exception"] = self.formatException(record.exc_info)
        if record.stack_info:
            doc["stack"] = self.formatStack(record.stack_info)
        return json.dumps(doc, default=str, ensure_ascii=False)


class TextFormatter(logging.Formatter):
    """The classic line, with the context appended as key=value."""

    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)s %(name)s: %(message)s")

    def format(self, record: logging.LogRecord) -> str:
        line = super().format(record)
        context = getattr(record, "context", None) or {}
        fields = " ".join(f"{k}={context[k]}" for k in CONTEXT_FIELDS if k in context)
        if not fields:
            return line
        head, sep, tail = line.partition("\n")  # keep a traceback below the fields
        return f"{head} [{fields}]{sep}{tail}"


def configure(
    level: str = "INFO",
    fmt: str = "text",
    stream: IO[str] | None = None,
    *,
    filters: Sequence[logging.Filter] = (),
    omit: Iterable[str] = (),
) -> None:
    """Route every logger to one stream handler in `fmt`; safe to call again (replaces it).
    `filters` run after the context is stamped (they may add to `record.context`); `omit`
    names record extras the JSON format leaves out."""
    if fmt not in FORMATS:
        raise ValueError(f"log format {fmt!r}: use one of {', '.join(FORMATS)}")
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.setFormatter(JsonFormatter(omit) if fmt == "json" else TextFormatter())
    handler.addFilter(ContextFilter())
    for extra_filter in filters:
        handler.addFilter(extra_filter)
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    numeric = logging.getLevelName(level.upper())
    root.setLevel(numeric)
    for name in QUIET_LOGGERS:
        logging.getLogger(name).setLevel(max(logging.WARNING, numeric))
    logging.captureWarnings(True)
