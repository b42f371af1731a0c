"""The job-run register: one row per occurrence of a scheduled (or manually started) job."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import BigInteger, Index, Integer, String, Text, text
from sqlalchemy.orm import Mapped, mapped_column

from dianfei.db.base import Base
from dianfei.db.types import UTCDateTime


class JobRun(Base):
    """One occurrence of a job: queued → running → done, or back to queued with a backoff after
    a failure, and ``failed`` (the worklist) once its attempts are spent. ``key`` (job name and
    the instant it was scheduled for) is unique, so however many workers look at the calendar an
    occurrence is queued once."""

    __tablename__ = "job_runs"
    __table_args__ = (
        Index("uq_job_runs_key", "key", unique=True),
        Index("ix_job_runs_claimable", "status", "next_attempt_at"),
        Index("ix_job_runs_job", "job", "scheduled_for"),
        # at most one run of a job holds the job at a time (see service.claim)
        Index("uq_job_runs_one_running", "job", unique=True,
              sqlite_where=text("status = 'running'"), postgresql_where=text("status = 'running'")),
    )
    run_id: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"),
                                        primary_key=True, autoincrement=True)
    key: Mapped[str] = mapped_column(String(160))
    #: the calendar entry's name (e.g. "collections")
    job: Mapped[str] = mapped_column(String(64))
    kind: Mapped[str] = mapped_column(String(32))
    #: the instant the calendar scheduled it for (a manual run: when it was asked for)
    scheduled_for: Mapped[datetime] = mapped_column(UTCDateTime)
    #: queued, running, done, failed (attempts spent: on the worklist), skipped
    status: Mapped[str] = mapped_column(String(10))
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    max_attempts: Mapped[int] = mapped_column(Integer)
    next_attempt_at: Mapped[datetime] = mapped_column(UTCDateTime)
    #: "schedule", or "user:NAME" for a manual run or retry
    triggered_by: Mapped[str] = mapped_column(String(80))
    #: the worker holding it (host:pid) and until when its lease runs (renewed while it works)
    claimed_by: Mapped[str | None] = mapped_column(String(120))
    lease_until: Mapped[datetime | None] = mapped_column(UTCDateTime)
    started_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    finished_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    #: JSON: the job's own report (counts) when done
    result: Mapped[str | None] = mapped_column(Text)
    #: the last failure, in words
    error: Mapped[str | None] = mapped_column(Text)
    #: JSON arguments from the calendar entry
    args: Mapped[str | None] = mapped_column(Text)
