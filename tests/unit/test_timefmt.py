"""One RFC 3339 form for every instant we print."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest

from acme_server.timefmt import rfc3339


def test_utc_whole_seconds_with_z() -> None:
    assert rfc3339(datetime(2026, 11, 30, 10, 0, 5, 999_999, tzinfo=UTC)) == "2026-11-30T10:00:05Z"


def test_other_offsets_are_converted() -> None:
    plus_two = timezone(timedelta(hours=2))
    assert rfc3339(datetime(2026, 11, 30, 12, 0, tzinfo=plus_two)) == "2026-11-30T10:00:00Z"


def test_naive_values_are_refused() -> None:
    with pytest.raises(ValueError):
        rfc3339(datetime(2026, 11, 30, 10, 0))
