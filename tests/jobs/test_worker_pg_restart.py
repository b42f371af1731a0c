"""A PostgreSQL restart during a job is survived: every connection of the database is cut in the
middle of a run (as a server restart does); the run fails with the database's own error, is
recorded and retried after its backoff by the same worker (the pool re-connects), and the retry
completes once."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime, time
from typing import Any

import psycopg
import pytest
from sqlalchemy import text

from dianfei.core.clock import BUSINESS_TZ, FixedClock
from dianfei.db.engine import Database
from dianfei.jobs import service as jobs
from dianfei.jobs.calendar import Entry
from tests.conftest import backend

pytestmark = [pytest.mark.db,
              pytest.mark.skipif(backend() != "postgresql", reason="a PostgreSQL server's restart")]

JOB = Entry("collections", "collections_day", "day", time(9), max_attempts=3)


def cut_every_connection(db: Database) -> int:
    """What a restart does to the clients: every backend of this database is terminated."""
    url = db.engine.url.set(drivername="postgresql").render_as_string(hide_password=False)
    name = db.engine.url.database
    admin = url.rsplit("/", 1)[0] + "/postgres"
    with psycopg.connect(admin, autocommit=True) as conn:
        return len(conn.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
            "WHERE datname = %s AND pid <> pg_backend_pid()", (name,)).fetchall())


def test_a_database_restart_in_the_middle_of_a_job_is_retried(db: Database) -> None:
    calls: list[int] = []

    def kind(database: Database, ctx: jobs.RunContext) -> Mapping[str, Any]:
        with database.engine.begin() as conn:
            conn.execute(text("SELECT 1"))
            calls.append(ctx.run_id)
            if len(calls) == 1:
                assert cut_every_connection(database) >= 1
                conn.execute(text("SELECT 1"))  # the server is gone under the job
        return {"calls": len(calls)}

    clock = FixedClock(datetime(2026, 3, 4, 9, 30, tzinfo=BUSINESS_TZ))
    first = jobs.work(db, [JOB], {"collections_day": kind}, clock=clock, worker="w1")
    assert [r["status"] for r in first.ran] == ["queued"]  # recorded through a new connection
    assert "terminat" in str(first.ran[0]["error"]).lower() or "closed" in str(
        first.ran[0]["error"]).lower()
    later = FixedClock(clock.now() + jobs.backoff(1))
    again = jobs.work(db, [JOB], {"collections_day": kind}, clock=later, worker="w1")
    assert [(r["status"], r["attempt"]) for r in again.ran] == [("done", 2)]
    assert len(calls) == 2 and calls[0] == calls[1]  # the same run, twice
    assert [r["status"] for r in jobs.runs(db, job="collections")] == ["done"]
