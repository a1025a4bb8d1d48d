"""The operator's log lines in the server's formats (`acme_server.logs`): `--log-format
text|json`, with the object kopf names in a record (its `k8s_ref`) as context fields.

kopf attaches `k8s_ref`, `k8s_skip` and its whole `settings` to the records of its
per-object loggers (the `logger` handlers get, and its own "Handler ... succeeded" lines);
the JSON format leaves those out and shows `kind`, `namespace`, `name` instead, plus
`registration` ("namespace/name", the store's key) for an AcmeRegistration.
"""

from __future__ import annotations

import logging
from typing import IO, Any

from acme_operator.constants import REGISTRATION_KIND
from acme_server import logs

# Extras kopf puts on records: the settings object (big, no news per line) and the
# reference and skip flag its Kubernetes Event poster reads.
KOPF_EXTRAS = ("settings", "k8s_ref", "k8s_skip")


class KopfObject(logging.Filter):
    """Adds the kind, namespace and name of kopf's object reference to `record.context`
    (a fresh dict: the record's other handlers, e.g. kopf's Event poster, see no change)."""

    def filter(self, record: logging.LogRecord) -> bool:
        ref: Any = getattr(record, "k8s_ref", None)
        if not isinstance(ref, dict):
            return True
        context = dict(getattr(record, "context", None) or {})
        fields = {k: ref.get(k) for k in ("kind", "namespace", "name")}
        context.update({k: str(v) for k, v in fields.items() if v})
        if ref.get("kind") == REGISTRATION_KIND and ref.get("namespace") and ref.get("name"):
            context["registration"] = f"{ref['namespace']}/{ref['name']}"
        record.context = context
        return True


class QuietTimers(logging.Filter):
    """Drop kopf's per-event "Timer 'x' succeeded." / "Handler 'gone' succeeded." lines:
    one per object and event, no news."""

    def filter(self, record: logging.LogRecord) -> bool:
        msg = record.getMessage()
        if msg == "Handler 'gone' succeeded.":
            return False
        return not (msg.startswith("Timer '") and msg.endswith("' succeeded."))


def configure(level: str, fmt: str, stream: IO[str] | None = None) -> None:
    """Every logger to stderr (or `stream`) in `fmt`; above DEBUG, kopf's per-event chatter
    is dropped."""
    numeric = logging.getLevelName(level.upper())
    filters: list[logging.Filter] = [KopfObject()]
    if numeric > logging.DEBUG:
        filters.append(QuietTimers())
    logs.configure(level, fmt, stream, filters=filters, omit=KOPF_EXTRAS)
    if numeric > logging.DEBUG:
        logging.getLogger("aiohttp.access").setLevel(logging.WARNING)
