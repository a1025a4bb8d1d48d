"""The log module (acme_server/logs.py): JSON and text lines with the request context, the
context confined to its request, noisy libraries held back, no aiohttp needed to import."""

from __future__ import annotations

import asyncio
import io
import json
import logging
import subprocess
import sys

import pytest

from acme_server import logs


def test_json_line_carries_context_and_extras(stream: io.StringIO) -> None:
    logs.configure("DEBUG", "json", stream)
    with logs.scope(request_id="abc123", order="o1"):
        logs.bind(account="a1", registration=None)
        logging.getLogger("acme_server.t").info("hello %s", "world", extra={"status": 201})
    logging.getLogger("acme_server.t").warning("outside")
    first, second = (json.loads(line) for line in stream.getvalue().splitlines())
    assert first["message"] == "hello world" and first["level"] == "INFO"
    assert first["logger"] == "acme_server.t" and first["status"] == 201
    assert (first["request_id"], first["order"], first["account"]) == ("abc123", "o1", "a1")
    assert "registration" not in first  # None values are not bound
    assert "request_id" not in second and "account" not in second


def test_json_exception_is_one_line(stream: io.StringIO) -> None:
    logs.configure("INFO", "json", stream)
    try:
        raise ValueError("boom")
    except ValueError:
        logging.getLogger("x").exception("failed")
    (line,) = stream.getvalue().splitlines()
    assert "ValueError: boom" in json.loads(line)["exception"]


def test_text_line_appends_context(stream: io.StringIO) -> None:
    logs.configure("INFO", "text", stream)
    with logs.scope(request_id="r1", account="a1"):
        logging.getLogger("acme_server.t").info("issued")
    line = stream.getvalue().strip()
    assert line.endswith("INFO acme_server.t: issued [request_id=r1 account=a1]"), line


def test_context_does_not_leak_between_concurrent_requests() -> None:
    seen: dict[str, dict[str, str]] = {}

    async def request(name: str, delay: float) -> None:
        with logs.scope(request_id=name):
            await asyncio.sleep(delay)
            logs.bind(account=f"acct-{name}")
            await asyncio.sleep(delay)
            seen[name] = dict(logs.current())

    async def both() -> None:
        await asyncio.gather(request("one", 0.02), request("two", 0.01))

    asyncio.run(both())
    assert seen == {
        "one": {"request_id": "one", "account": "acct-one"},
        "two": {"request_id": "two", "account": "acct-two"},
    }
    assert dict(logs.current()) == {}


def test_libraries_that_log_data_stay_at_warning(stream: io.StringIO) -> None:
    logs.configure("DEBUG", "json", stream)
    for name in ("sqlalchemy.engine.Engine", "sqlalchemy.pool", "alembic.runtime"):
        assert not logging.getLogger(name).isEnabledFor(logging.INFO), name
    assert logging.getLogger("acme_server.web").isEnabledFor(logging.DEBUG)


def test_unknown_format_is_refused() -> None:
    with pytest.raises(ValueError, match="log format"):
        logs.configure("INFO", "xml")


def test_importable_without_aiohttp() -> None:
    """The operator will configure its logs with this module: no web stack behind it."""
    code = "import sys, acme_server.logs; assert 'aiohttp' not in sys.modules, 'aiohttp'"
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)
