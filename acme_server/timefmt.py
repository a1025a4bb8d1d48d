"""The one RFC 3339 formatter: ACME resources, operator status and Secret annotations all
print instants the same way (UTC, whole seconds, `Z`)."""

from __future__ import annotations

from datetime import UTC, datetime


def rfc3339(value: datetime) -> str:
    """`2026-11-30T10:00:00Z`; a naive value is refused rather than guessed."""
    if value.tzinfo is None:
        raise ValueError("rfc3339 needs an aware datetime")
    return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
