"""Store unit metrics (store/executors.py) on a real SQLite file: every unit is timed by
kind, a database failure is counted, and a lost constraint race or an ACME refusal raised
inside a unit is not (those are the unit doing its job)."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
import sqlalchemy as sa

from acme_server import metrics
from acme_server.store.executors import SqliteThreads


def _errors(kind: str) -> float:
    for metric in metrics.STORE_UNIT_ERRORS.collect():
        for sample in metric.samples:
            if sample.name.endswith("_total") and sample.labels == {"kind": kind}:
                return float(sample.value)
    return 0.0


def test_units_are_timed_and_only_database_failures_count(tmp_path: Path) -> None:
    async def scenario() -> None:
        runner = SqliteThreads(f"sqlite:///{tmp_path / 'm.sqlite3'}")
        try:
            await runner.write(
                lambda c: c.exec_driver_sql("CREATE TABLE t (id INTEGER PRIMARY KEY)")
            )
            await runner.write(lambda c: c.exec_driver_sql("INSERT INTO t VALUES (1)"))
            reads, writes = _observed("read"), _observed("write")
            read_errors, write_errors = _errors("read"), _errors("write")

            with pytest.raises(sa.exc.OperationalError):
                await runner.read(lambda c: c.exec_driver_sql("SELECT * FROM missing"))
            assert _errors("read") == read_errors + 1

            with pytest.raises(sa.exc.IntegrityError):
                await runner.write(lambda c: c.exec_driver_sql("INSERT INTO t VALUES (1)"))
            with pytest.raises(LookupError):
                await runner.write(_refuse)
            assert _errors("write") == write_errors  # a lost race, a refusal: not failures

            assert await runner.read(lambda c: c.exec_driver_sql("SELECT 1").scalar()) == 1
            assert _observed("read") == reads + 2
            assert _observed("write") == writes + 2
        finally:
            await runner.close()

    asyncio.run(scenario())


def _refuse(_conn: sa.Connection) -> None:
    raise LookupError("the handler's own refusal, rolled back")


def _observed(kind: str) -> float:
    """How many units of `kind` the histogram has seen (its +Inf bucket's count)."""
    for metric in metrics.STORE_UNIT_SECONDS.collect():
        for sample in metric.samples:
            if sample.name.endswith("_count") and sample.labels == {"kind": kind}:
                return float(sample.value)
    return 0.0
