"""The worker: occurrences queued once, runs of a job in order and never two at once, failures
retried with a backoff and then on the worklist, dead workers' runs taken over."""

from __future__ import annotations

import threading
from collections.abc import Mapping
from datetime import datetime, time, timedelta
from typing import Any

import pytest
from sqlalchemy import func, select

from dianfei.core.clock import BUSINESS_TZ, FixedClock
from dianfei.core.errors import ConflictError
from dianfei.db.engine import Database
from dianfei.jobs import service as jobs
from dianfei.jobs.calendar import Entry
from dianfei.jobs.models import JobRun

pytestmark = pytest.mark.db

COLLECT = Entry("collections", "collections_day", "day", time(9), max_attempts=3)
VEE = Entry("vee", "vee_run", "day", time(2))


def clock_at(y: int, m: int, d: int, hh: int, mm: int = 0) -> FixedClock:
    return FixedClock(datetime(y, m, d, hh, mm, tzinfo=BUSINESS_TZ))


class Kinds:
    """Job kinds that record what they were asked to do (the runner is under test here; the real
    kinds are exercised by tests/jobs/test_jobs_cli.py)."""

    def __init__(self, fail: int = 0) -> None:
        self.calls: list[tuple[str, str]] = []
        self.fail = fail

    def kind(self, db: Database, ctx: jobs.RunContext) -> Mapping[str, Any]:
        self.calls.append((ctx.job, str(ctx.business_day)))
        if self.fail:
            self.fail -= 1
            raise RuntimeError("the statement server refused the connection")
        return {"day": str(ctx.business_day)}

    def mapping(self) -> dict[str, jobs.JobKind]:
        return {"collections_day": self.kind, "vee_run": self.kind}


def count(db: Database, **where: Any) -> int:
    q = select(func.count()).select_from(JobRun)
    for k, v in where.items():
        q = q.where(getattr(JobRun, k) == v)
    with db.engine.connect() as conn:
        return int(conn.execute(q).scalar_one())


def test_due_runs_are_queued_once_and_run_in_order(db: Database) -> None:
    clock = clock_at(2026, 3, 4, 10)
    assert jobs.queue_due(db, [COLLECT, VEE], clock=clock, catch_up=timedelta(days=2)) == 4
    assert jobs.queue_due(db, [COLLECT, VEE], clock=clock, catch_up=timedelta(days=2)) == 0
    kinds = Kinds()
    report = jobs.work(db, [COLLECT, VEE], kinds.mapping(), clock=clock, worker="w1")
    assert report.queued == 0 and [r["status"] for r in report.ran] == ["done"] * 4
    # each job's days in order: the 3rd before the 4th
    assert [c for c in kinds.calls if c[0] == "collections"] == [
        ("collections", "2026-03-03"), ("collections", "2026-03-04")]
    # the next pass a day later queues only the new day
    later = jobs.work(db, [COLLECT, VEE], kinds.mapping(), clock=clock_at(2026, 3, 5, 10),
                      worker="w1")
    assert later.queued == 2 and count(db) == 6


def test_a_failing_run_is_retried_with_backoff_then_on_the_worklist(db: Database) -> None:
    clock = clock_at(2026, 3, 4, 9, 30)
    kinds = Kinds(fail=10)
    first = jobs.work(db, [COLLECT], kinds.mapping(), clock=clock, worker="w1")
    assert [r["status"] for r in first.ran] == ["queued"]
    assert "refused the connection" in str(first.ran[0]["error"])
    # not before the backoff
    assert jobs.work(db, [COLLECT], kinds.mapping(), clock=clock, worker="w1").ran == []
    t = clock.now()
    for attempt in (2, 3):
        t += jobs.backoff(attempt - 1)
        got = jobs.work(db, [COLLECT], kinds.mapping(), clock=FixedClock(t), worker="w1").ran
        assert [r["attempt"] for r in got] == [attempt]
    assert count(db, status="failed") == 1
    failed = jobs.runs(db, status="failed")
    assert failed[0]["attempts"] == 3 and "refused" in failed[0]["error"]
    # a failed day holds the next day's run of the same job (collections go in order)
    t2 = FixedClock(datetime(2026, 3, 5, 9, 30, tzinfo=BUSINESS_TZ))
    assert jobs.work(db, [COLLECT], kinds.mapping(), clock=t2, worker="w1").ran == []
    # a person retries it: it runs (fresh attempts), then the held day follows
    kinds.fail = 0
    jobs.retry(db, failed[0]["run_id"], clock=t2, user="lin")
    done = jobs.work(db, [COLLECT], kinds.mapping(), clock=t2, worker="w1").ran
    assert [(r["status"], r["scheduled_for"][:10]) for r in done] == [
        ("done", "2026-03-04"), ("done", "2026-03-05")]
    with pytest.raises(ConflictError):
        jobs.retry(db, failed[0]["run_id"], clock=t2, user="lin")


def test_a_skipped_run_lets_the_job_go_on(db: Database) -> None:
    clock = clock_at(2026, 3, 5, 9, 30)
    jobs.queue_due(db, [COLLECT], clock=clock, catch_up=timedelta(days=1, hours=1))
    first = jobs.runs(db, job="collections")[-1]
    jobs.skip(db, first["run_id"], clock=clock, user="lin", reason="day replayed by hand")
    kinds = Kinds()
    jobs.work(db, [COLLECT], kinds.mapping(), clock=clock, worker="w1")
    assert kinds.calls == [("collections", "2026-03-05")]


def test_a_dead_workers_run_is_taken_over_after_its_lease(db: Database) -> None:
    clock = clock_at(2026, 3, 4, 9, 30)
    jobs.queue_due(db, [COLLECT], clock=clock, catch_up=timedelta(hours=1))
    run = jobs.claim(db, clock=clock, worker="dead")
    assert run is not None
    kinds = Kinds()
    # while the lease holds nobody else runs it, nor any other run of the job
    assert jobs.work(db, [COLLECT], kinds.mapping(), clock=clock, worker="w2").ran == []
    later = FixedClock(clock.now() + jobs.LEASE + timedelta(seconds=1))
    report = jobs.work(db, [COLLECT], kinds.mapping(), clock=later, worker="w2")
    assert report.requeued_stale == 1
    assert [(r["status"], r["attempt"]) for r in report.ran] == [("done", 2)]


def test_two_workers_never_run_the_same_job_at_once(db: Database) -> None:
    clock = clock_at(2026, 3, 10, 10)
    entries = [Entry(f"j{i}", "vee_run", "day", time(2)) for i in range(4)]
    jobs.queue_due(db, entries, clock=clock, catch_up=timedelta(days=3))
    running: set[str] = set()
    overlap: list[str] = []
    done: list[int] = []
    lock = threading.Lock()

    def kind(db_: Database, ctx: jobs.RunContext) -> Mapping[str, Any]:
        with lock:
            if ctx.job in running:
                overlap.append(ctx.job)
            running.add(ctx.job)
        threading.Event().wait(0.01)
        with lock:
            running.discard(ctx.job)
            done.append(ctx.run_id)
        return {}

    def worker(name: str) -> None:
        jobs.work(db, entries, {"vee_run": kind}, clock=clock, worker=name)

    threads = [threading.Thread(target=worker, args=(f"w{i}",)) for i in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    # every run done exactly once, no job ran twice at once
    assert overlap == [] and sorted(done) == sorted(set(done)) and len(done) == 12
    assert count(db, status="done") == 12


def test_a_manual_run_is_recorded_with_who_asked(db: Database) -> None:
    clock = clock_at(2026, 3, 4, 15)
    run_id = jobs.queue_manual(db, COLLECT, clock=clock, user="wang",
                               for_day=datetime(2026, 3, 2).date())
    kinds = Kinds()
    jobs.work(db, [], kinds.mapping(), clock=clock, worker="w1")
    assert kinds.calls == [("collections", "2026-03-02")]
    row = next(r for r in jobs.runs(db) if r["run_id"] == run_id)
    assert row["triggered_by"] == "user:wang" and row["status"] == "done"
