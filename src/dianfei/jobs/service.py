"""Queueing, claiming and running the calendar's jobs (``dianfei worker``, ``dianfei jobs …``).

How several workers share the work without running anything twice at once:

- **Queueing** is idempotent: each occurrence of a calendar entry has a key (job name and the
  instant it is scheduled for), unique in ``job_runs``; every worker may queue what is due, and an
  occurrence another worker queued first is simply there already. On first start a worker looks
  back ``catch_up`` (a day by default) for occurrences missed while nothing ran.
- **Claiming** takes the oldest due run of a job whose earlier runs are all finished and that
  has no run holding it. On PostgreSQL the candidate row is locked ``FOR UPDATE SKIP LOCKED`` so
  two workers never take the same run; a partial unique index (one ``running`` row per job) makes
  a second run of the same job at once impossible even if two workers race on different rows.
  Runs of a job go in order: day D+1's collections never start before day D's finished.
- **Leases**: a claimed run holds a lease that the worker renews while the job works; a worker
  that died (SIGKILL, a lost machine) stops renewing, and when the lease has run out the run is
  queued again — jobs are idempotent and resumable, so the next attempt finishes the work.
- **Failures** are recorded (the error in words) and retried with a growing backoff (1, 5, 25
  minutes … at most 6 hours) until the entry's ``max_attempts``; then the run is ``failed`` — the
  worklist (``dianfei jobs list --status failed``) — and holds the later runs of its job until a
  person retries (``jobs retry``) or skips it (``jobs skip``): a bill run or a collections day
  that failed must not be silently jumped over.
"""

from __future__ import annotations

import json
import logging
import os
import socket
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from typing import Any

from sqlalchemy import and_, exists, func, insert, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import aliased

from dianfei.core.clock import BUSINESS_TZ, Clock
from dianfei.core.errors import ConflictError, NotFoundError, ValidationError
from dianfei.core.logs import job_run
from dianfei.core.metrics import Metric
from dianfei.db.engine import Database
from dianfei.jobs.calendar import Entry
from dianfei.jobs.models import JobRun

log = logging.getLogger("dianfei.jobs")

#: how long a claim lasts without renewal; the worker renews it every third of this
LEASE = timedelta(minutes=5)
BACKOFF = (timedelta(minutes=1), timedelta(minutes=5), timedelta(minutes=25),
           timedelta(hours=2), timedelta(hours=6))


@dataclass(frozen=True)
class RunContext:
    """What a job kind is told: which run, for when, with which arguments."""

    run_id: int
    job: str
    scheduled_for: datetime
    args: Mapping[str, Any]
    clock: Clock

    @property
    def business_day(self) -> date:
        return self.scheduled_for.astimezone(BUSINESS_TZ).date()


#: a job kind: does the work for one run and returns its report (JSON-able counts)
JobKind = Callable[[Database, RunContext], Mapping[str, Any]]


@dataclass
class WorkReport:
    queued: int = 0
    requeued_stale: int = 0
    ran: list[dict[str, Any]] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        return {"queued": self.queued, "requeued_stale": self.requeued_stale, "ran": self.ran}


def worker_id() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


def backoff(attempts: int) -> timedelta:
    return BACKOFF[min(max(attempts, 1), len(BACKOFF)) - 1]


def _working_day() -> Callable[[date], bool]:
    from dianfei.collections.service import working_days

    return working_days()


# -- queueing ----------------------------------------------------------------------------------


def queue_due(db: Database, entries: list[Entry], *, clock: Clock,
              catch_up: timedelta = timedelta(days=1)) -> int:
    """Queue every occurrence due by now that is not queued yet; returns how many were new."""
    now = clock.now()
    working = _working_day()
    new = 0
    with db.engine.begin() as conn:
        for e in entries:
            if not e.enabled:
                continue
            last = conn.execute(select(JobRun.scheduled_for).where(
                JobRun.job == e.name, JobRun.triggered_by == "schedule")
                .order_by(JobRun.scheduled_for.desc()).limit(1)).scalar()
            since = max(last, now - catch_up) if last is not None else now - catch_up
            for at in e.occurrences(since, now, working):
                new += _insert_run(conn, e, at, now, "schedule", f"{e.name}@{at.isoformat()}")
    return new


def _insert_run(conn: Any, e: Entry, at: datetime, now: datetime, by: str, key: str) -> int:
    try:
        with conn.begin_nested():
            conn.execute(insert(JobRun).values(
                key=key, job=e.name, kind=e.kind, scheduled_for=at, status="queued", attempts=0,
                max_attempts=e.max_attempts, next_attempt_at=now, triggered_by=by,
                args=json.dumps(e.args, sort_keys=True)))
    except IntegrityError:
        return 0  # queued already (by another worker, or an earlier pass)
    return 1


def queue_manual(db: Database, entry: Entry, *, clock: Clock, user: str,
                 for_day: date | None = None) -> int:
    """Queue a run of ``entry`` asked for by a person (``jobs run``); returns its run id. With
    ``for_day`` the run is for that business day at the entry's time (e.g. a missed day)."""
    if not user.strip():
        raise ValidationError("a manual run names who asked for it")
    now = clock.now()
    at = datetime.combine(for_day, entry.at, tzinfo=BUSINESS_TZ) if for_day else now
    key = f"{entry.name}@{at.isoformat()}:manual:{now.isoformat()}"
    with db.engine.begin() as conn:
        if not _insert_run(conn, entry, at, now, f"user:{user}", key):
            raise ConflictError(f"a run of {entry.name} for {at.isoformat()} was just queued")
        return int(conn.execute(select(JobRun.run_id).where(JobRun.key == key)).scalar_one())


def queue_follow_up(db: Database, entries: list[Entry], kind: str, *, clock: Clock,
                    after: RunContext) -> int:
    """Queue, now, a run of the calendar's enabled job of ``kind`` because run ``after`` changed
    what it works from (a bill run ends: the dashboard's figures are refreshed). Keyed by the
    run it follows, so a retried run queues it once. Returns how many runs were queued (0: no
    such job in the calendar, or queued already)."""
    now = clock.now()
    with db.engine.begin() as conn:
        return sum(_insert_run(conn, e, now, now, f"job:{after.run_id}",
                               f"{e.name}@after:{after.run_id}")
                   for e in entries if e.kind == kind and e.enabled)


# -- claiming ----------------------------------------------------------------------------------


def requeue_stale(db: Database, *, clock: Clock) -> int:
    """Runs whose worker stopped renewing its lease go back to the queue (counted as an attempt:
    a job that kills its worker every time ends on the worklist, not in a loop)."""
    now = clock.now()
    with db.engine.begin() as conn:
        stale = conn.execute(select(JobRun.run_id, JobRun.attempts, JobRun.max_attempts,
                                    JobRun.claimed_by).where(
            JobRun.status == "running", JobRun.lease_until < now)).all()
        for run_id, attempts, max_attempts, who in stale:
            spent = attempts >= max_attempts
            conn.execute(update(JobRun).where(JobRun.run_id == run_id,
                                              JobRun.status == "running").values(
                status="failed" if spent else "queued", next_attempt_at=now, claimed_by=None,
                lease_until=None, error=f"worker {who} stopped before finishing (lease ran out)"))
    return len(stale)


def claim(db: Database, *, clock: Clock, worker: str) -> JobRun | None:
    """Take the next run to do, or None. See the module doc for the rules."""
    now = clock.now()
    earlier = aliased(JobRun)
    blocked = exists().where(and_(
        earlier.job == JobRun.job, earlier.status.in_(("queued", "running", "failed")),
        (earlier.scheduled_for < JobRun.scheduled_for)
        | ((earlier.scheduled_for == JobRun.scheduled_for) & (earlier.run_id < JobRun.run_id))
        | (earlier.status == "running")))
    q = (select(JobRun.run_id).where(JobRun.status == "queued", JobRun.next_attempt_at <= now,
                                     ~blocked)
         .order_by(JobRun.scheduled_for, JobRun.run_id).limit(1))
    with db.engine.begin() as conn:
        if conn.dialect.name == "postgresql":
            q = q.with_for_update(skip_locked=True, of=JobRun)
        run_id = conn.execute(q).scalar()
        if run_id is None:
            return None
        try:
            with conn.begin_nested():
                done = conn.execute(update(JobRun).where(
                    JobRun.run_id == run_id, JobRun.status == "queued").values(
                    status="running", claimed_by=worker, lease_until=now + LEASE,
                    started_at=now, attempts=JobRun.attempts + 1, error=None))
        except IntegrityError:
            return None  # another worker holds a run of this job (the one-running index)
        if done.rowcount != 1:
            return None
    with db.session() as s:
        return s.get(JobRun, run_id)


class _Lease:
    """Renews a run's lease every third of :data:`LEASE` while the job works."""

    def __init__(self, db: Database, run_id: int, worker: str, clock: Clock) -> None:
        self.db, self.run_id, self.worker, self.clock = db, run_id, worker, clock
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._renew, name=f"lease-{run_id}", daemon=True)

    def __enter__(self) -> _Lease:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        self.thread.join()

    def _renew(self) -> None:
        while not self.stop.wait(LEASE.total_seconds() / 3):
            with self.db.engine.begin() as conn:
                conn.execute(update(JobRun).where(
                    JobRun.run_id == self.run_id, JobRun.claimed_by == self.worker,
                    JobRun.status == "running").values(lease_until=self.clock.now() + LEASE))


def run_claimed(db: Database, run: JobRun, kinds: Mapping[str, JobKind], *, clock: Clock,
                worker: str) -> dict[str, Any]:
    """Do one claimed run and record how it went (done, queued again with a backoff, or failed
    onto the worklist). Returns the run's summary."""
    ctx = RunContext(run.run_id, run.job, run.scheduled_for, json.loads(run.args or "{}"), clock)
    kind = kinds.get(run.kind)
    result: Mapping[str, Any] | None = None
    error: str | None = None
    if kind is None:
        error = f"this worker knows no job kind {run.kind!r} (known: {', '.join(sorted(kinds))})"
    else:
        tag = job_run.set(f"{run.job}#{run.run_id}")  # every log line of the run carries it
        try:
            with _Lease(db, run.run_id, worker, clock):
                result = kind(db, ctx)
        except Exception as exc:  # recorded, retried and surfaced on the worklist, never dropped
            error = f"{type(exc).__name__}: {exc}"[:4000]
            log.error("job %s run %s failed (attempt %s of %s): %s", run.job, run.run_id,
                      run.attempts, run.max_attempts, error, exc_info=exc)
        finally:
            job_run.reset(tag)
    now = clock.now()
    if error is None:
        values: dict[str, Any] = {"status": "done", "finished_at": now,
                                  "result": json.dumps(result or {}, default=str, sort_keys=True)}
    elif run.attempts >= run.max_attempts:
        values = {"status": "failed", "finished_at": now, "error": error}
    else:
        values = {"status": "queued", "next_attempt_at": now + backoff(run.attempts),
                  "error": error}
    with db.engine.begin() as conn:
        conn.execute(update(JobRun).where(JobRun.run_id == run.run_id,
                                          JobRun.claimed_by == worker).values(
            claimed_by=None, lease_until=None, **values))
    return {"run_id": run.run_id, "job": run.job, "scheduled_for": _instant(run.scheduled_for),
            "status": values["status"], "attempt": run.attempts, "error": error,
            "result": result}


def work(db: Database, entries: list[Entry], kinds: Mapping[str, JobKind], *, clock: Clock,
         worker: str | None = None, max_runs: int | None = None) -> WorkReport:
    """One pass of a worker: requeue stale runs, queue what is due, then do runs until none is
    claimable (or ``max_runs`` were done)."""
    worker = worker or worker_id()
    report = WorkReport(requeued_stale=requeue_stale(db, clock=clock),
                        queued=queue_due(db, entries, clock=clock))
    while max_runs is None or len(report.ran) < max_runs:
        run = claim(db, clock=clock, worker=worker)
        if run is None:
            break
        report.ran.append(run_claimed(db, run, kinds, clock=clock, worker=worker))
    return report


# -- the worklist and history --------------------------------------------------------------------


def _instant(at: datetime | None) -> str | None:
    return at.astimezone(BUSINESS_TZ).isoformat(timespec="seconds") if at else None


def runs(db: Database, *, status: str | None = None, job: str | None = None,
         limit: int = 100) -> list[dict[str, Any]]:
    """The job history, newest first."""
    q = select(JobRun).order_by(JobRun.scheduled_for.desc(), JobRun.run_id.desc()).limit(limit)
    if status:
        q = q.where(JobRun.status == status)
    if job:
        q = q.where(JobRun.job == job)
    with db.session() as s:
        return [{"run_id": r.run_id, "job": r.job, "kind": r.kind,
                 "scheduled_for": _instant(r.scheduled_for), "status": r.status,
                 "attempts": r.attempts, "max_attempts": r.max_attempts,
                 "triggered_by": r.triggered_by, "started_at": _instant(r.started_at),
                 "finished_at": _instant(r.finished_at),
                 "next_attempt_at": _instant(r.next_attempt_at) if r.status == "queued" else None,
                 "result": json.loads(r.result) if r.result else None, "error": r.error}
                for r in s.scalars(q)]


def _change(db: Database, run_id: int, allowed: tuple[str, ...], what: str,
            values: dict[str, Any]) -> None:
    with db.engine.begin() as conn:
        status = conn.execute(select(JobRun.status).where(JobRun.run_id == run_id)).scalar()
        if status is None:
            raise NotFoundError(f"no job run {run_id}")
        if status not in allowed:
            raise ConflictError(f"job run {run_id} is {status}: only a run that is "
                                f"{' or '.join(allowed)} can be {what}")
        conn.execute(update(JobRun).where(JobRun.run_id == run_id,
                                          JobRun.status == status).values(**values))


def retry(db: Database, run_id: int, *, clock: Clock, user: str) -> None:
    """Put a failed run back in the queue now, with a fresh set of attempts."""
    _change(db, run_id, ("failed",), "retried", {
        "status": "queued", "attempts": 0, "next_attempt_at": clock.now(), "finished_at": None,
        "triggered_by": f"user:{user}"})


def skip(db: Database, run_id: int, *, clock: Clock, user: str, reason: str) -> None:
    """Give up a failed (or still queued) run on purpose, so the job's later runs may go on."""
    if not reason.strip():
        raise ValidationError("skipping a run needs a reason")
    _change(db, run_id, ("failed", "queued"), "skipped", {
        "status": "skipped", "finished_at": clock.now(),
        "error": f"skipped by {user}: {reason}"})


def operational_metrics(conn: Any) -> list[Metric]:
    """``/metrics``: job runs by status (queued is the queue depth, failed the worklist) and the
    duration of each job's last finished run."""
    from dianfei.core.metrics import Metric, grouped

    by_status = conn.execute(select(JobRun.status, func.count()).group_by(JobRun.status)).all()
    last = conn.execute(select(JobRun.job, JobRun.started_at, JobRun.finished_at).where(
        JobRun.status == "done").order_by(JobRun.job, JobRun.finished_at)).all()
    latest: dict[str, float] = {}
    for job, started, finished in last:
        if started is not None and finished is not None:
            latest[job] = (finished - started).total_seconds()
    return [grouped("dianfei_job_runs", "job runs, by status", "gauge", "status", by_status),
            Metric("dianfei_job_last_duration_seconds", "duration of each job's last finished run",
                   "gauge", tuple(({"job": j}, d) for j, d in sorted(latest.items())))]


#: the states a run can be in (queued → running → done; failed once its attempts are spent)
RUN_STATES = ("queued", "running", "done", "failed", "skipped")


def run_page(db: Database, *, status: str | None = None, kind: str | None = None,
             offset: int = 0, limit: int = 50) -> tuple[list[dict[str, Any]], int]:
    """One page of the job history (newest first, the rows of :func:`runs`) and how many runs
    match ``status`` / ``kind`` in all: the console's jobs page."""
    if status is not None and status not in RUN_STATES:
        raise ValidationError(f"state must be one of {', '.join(RUN_STATES)}, got {status!r}")
    where = []
    if status:
        where.append(JobRun.status == status)
    if kind:
        where.append(JobRun.kind == kind)
    q = (select(JobRun).where(*where)
         .order_by(JobRun.scheduled_for.desc(), JobRun.run_id.desc()).offset(offset).limit(limit))
    with db.session() as s:
        total = int(s.scalar(select(func.count()).select_from(JobRun).where(*where)) or 0)
        rows = [{"run_id": r.run_id, "job": r.job, "kind": r.kind,
                 "scheduled_for": _instant(r.scheduled_for), "status": r.status,
                 "attempts": r.attempts, "max_attempts": r.max_attempts,
                 "triggered_by": r.triggered_by, "started_at": _instant(r.started_at),
                 "finished_at": _instant(r.finished_at), "error": r.error}
                for r in s.scalars(q)]
    return rows, total


def kinds_seen(db: Database) -> list[str]:
    """The job kinds that have runs (the jobs page's filter)."""
    with db.session() as s:
        return [str(k) for k in s.scalars(select(JobRun.kind).distinct().order_by(JobRun.kind))]
