"""Tables of the collections domain (催费): the event history, late-fee accrual state, dunning
state, worklist tasks, stop cases (停电流程), the meter command outbox, payment plans, waivers,
prepay state and the daily runs.

``collection_events`` is append-only (database triggers refuse UPDATE and DELETE) and unique on
an idempotency key, so re-running a day can never record anything twice.
"""

from __future__ import annotations

from datetime import date, datetime

from sqlalchemy import BigInteger, Boolean, Date, Index, Integer, String, Text, text
from sqlalchemy.orm import Mapped, mapped_column

from dianfei.db.base import Base
from dianfei.db.types import UTCDateTime

_ID = BigInteger().with_variant(Integer, "sqlite")

EVENT_TYPES = ("payment_received", "late_fee_accrued", "dunning_level", "notice_sent",
               "suspension_ordered", "suspension_cancelled", "suspended", "reconnection_ordered",
               "reconnected", "plan_agreed", "plan_broken", "plan_completed", "waiver",
               "prepay_balance",
               # payment plans (collections.plans): proposed, approved by a second person, an
               # instalment missed (within the grace period), cancelled
               "plan_proposed", "plan_approved", "instalment_missed", "plan_cancelled",
               # field work (collections/visits.py, promises.py, tickets.py, surveys.py)
               "visit_recorded", "promise_made", "promise_kept", "promise_broken",
               "ticket_opened", "ticket_escalated", "ticket_decided", "survey",
               # collector operations (C): contact data, tasks between departments, ratings
               "contact_flagged", "contact_verified", "task_opened", "task_assigned", "task_done",
               "task_escalated", "rating_changed")


class CollectionEvent(Base):
    """One thing that happened to an account in collections — what ``collect events`` shows."""

    __tablename__ = "collection_events"
    __table_args__ = (
        Index("uq_collection_events_key", "key", unique=True),
        # (an account's events are found through the (account_id, type, …) index below: a
        # second index led by the account cost a daily rewrite of every page, migration 0048)
        # a day's rating and contact checks read the events of a few business days
        Index("ix_collection_events_day", "business_date"),
        # an account's facts of some types over a window (the daily rating of the accounts whose
        # facts changed): without it, every event the account ever had is read
        Index("ix_collection_events_account_type", "account_id", "type", "business_date"),
    )
    event_id: Mapped[int] = mapped_column(_ID, primary_key=True, autoincrement=True)
    #: idempotency key, e.g. "pay:{payment ref}", "lf:{bill}:{day}", "dun:{acct}:{level}:{bill}"
    key: Mapped[str] = mapped_column(String(120))
    account_id: Mapped[str] = mapped_column(String(32))
    customer_id: Mapped[str] = mapped_column(String(32))
    #: payment_received, late_fee_accrued, dunning_level, notice_sent, suspension_ordered, …
    type: Mapped[str] = mapped_column(String(24))
    #: when it happened (a payment's posting, a notice's SENT time, a meter's acknowledgement)
    at: Mapped[datetime] = mapped_column(UTCDateTime)
    business_date: Mapped[date] = mapped_column(Date)
    #: fen: the payment, the late fee, the waiver
    amount: Mapped[int | None] = mapped_column(BigInteger)
    #: fen still owed right after a payment (≤ 0 when nothing is)
    balance_after: Mapped[int | None] = mapped_column(BigInteger)
    level: Mapped[str | None] = mapped_column(String(40))
    notice: Mapped[str | None] = mapped_column(String(24))
    channel: Mapped[str | None] = mapped_column(String(16))
    bill_id: Mapped[str | None] = mapped_column(String(64))
    #: JSON text with anything else worth keeping (case id, method, reason …)
    detail: Mapped[str | None] = mapped_column(Text)


class LateFeeAccrual(Base):
    """Per overdue bill: how far late fees are accrued. ``raw`` is the exact unrounded fee in
    micro-fen (fen × ppm) so that each day posts only the change of the once-rounded total."""

    __tablename__ = "late_fee_accruals"
    __table_args__ = (
        # a day reads the accruals still open (and a year of late history by due date)
        Index("ix_late_fee_accruals_open", "bill_id",
              sqlite_where=text("closed_on IS NULL"), postgresql_where=text("closed_on IS NULL")),
        Index("ix_late_fee_accruals_due", "due_on"),
        # the daily rating reads the accruals opened since its last pass (incentives.py)
        Index("ix_late_fee_accruals_opened", "opened_on"),
    )
    bill_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    account_id: Mapped[str] = mapped_column(String(32), index=True)
    customer_id: Mapped[str] = mapped_column(String(32))
    customer_class: Mapped[str] = mapped_column(String(20))
    due_on: Mapped[date] = mapped_column(Date)
    #: last day accrued (inclusive)
    through: Mapped[date] = mapped_column(Date)
    raw: Mapped[int] = mapped_column(BigInteger)
    #: fen posted to the ledger so far for this bill
    posted: Mapped[int] = mapped_column(BigInteger)
    #: fen accrued through ``through`` (the once-rounded total). What exceeds ``posted`` is
    #: pending: owed and shown on the account, but it reaches the ledger only at month end or
    #: when the bill's accrual closes (principal paid) — a few entries, not one a day
    accrued: Mapped[int] = mapped_column(BigInteger, default=0)
    #: a waiver stops further accrual on the bill
    waived: Mapped[bool] = mapped_column(Boolean, default=False)
    #: the day the principal was found fully paid (accrual finished)
    closed_on: Mapped[date | None] = mapped_column(Date)
    #: the collections day that opened the accrual (the bill's first day overdue, or the day an
    #: old bill re-issued was first found overdue); null only for rows made outside a run
    opened_on: Mapped[date | None] = mapped_column(Date)


class DunningState(Base):
    """The level an account stands at on its ladder, for the oldest overdue bill."""

    __tablename__ = "dunning_state"
    account_id: Mapped[str] = mapped_column(String(32), primary_key=True)
    ladder: Mapped[str] = mapped_column(String(40))
    level: Mapped[str] = mapped_column(String(40))
    bill_id: Mapped[str] = mapped_column(String(64))
    since: Mapped[date] = mapped_column(Date)


class CollectionTask(Base):
    """Worklist (工单): collector visits, field stops and reconnections, approvals, referrals,
    failed meter commands, undeliverable stop notices. Unique on ``key``: raised once."""

    __tablename__ = "collection_tasks"
    __table_args__ = (Index("uq_collection_tasks_key", "key", unique=True),
                      Index("ix_collection_tasks_status", "status", "kind"),
                      Index("ix_collection_tasks_owner", "owner", "status"),
                      # the daily steps' questions, each answered from the few rows concerned
                      # rather than from every task ever raised
                      Index("ix_collection_tasks_unrouted", "task_id",
                            sqlite_where=text("department IS NULL"),
                            postgresql_where=text("department IS NULL")),
                      Index("ix_collection_tasks_undated", "kind",
                            sqlite_where=text("due_at IS NULL"),
                            postgresql_where=text("due_at IS NULL")),
                      Index("ix_collection_tasks_to_escalate", "due_at",
                            sqlite_where=text("status = 'open' AND escalated_at IS NULL"),
                            postgresql_where=text("status = 'open' AND escalated_at IS NULL")))
    task_id: Mapped[int] = mapped_column(_ID, primary_key=True, autoincrement=True)
    key: Mapped[str] = mapped_column(String(120))
    account_id: Mapped[str] = mapped_column(String(32))
    customer_id: Mapped[str] = mapped_column(String(32))
    #: collector_visit, referral, field_stop, field_reconnect, approval, meter_command_failed,
    #: notice_failed, plan_approval
    kind: Mapped[str] = mapped_column(String(24))
    #: open, done, cancelled
    status: Mapped[str] = mapped_column(String(10), default="open")
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    due_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    done_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    done_by: Mapped[str | None] = mapped_column(String(64))
    case_id: Mapped[int | None] = mapped_column(BigInteger)
    detail: Mapped[str | None] = mapped_column(Text)
    #: collections, marketing, customer_service (tasks.toml maps kind → department; null until
    #: the daily run routes a task another module raised)
    department: Mapped[str | None] = mapped_column(String(20))
    #: who works it (a user name)
    owner: Mapped[str | None] = mapped_column(String(64))
    #: how it ended (tasks.toml lists each kind's outcomes)
    outcome: Mapped[str | None] = mapped_column(String(40))
    escalated_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    #: the department's supervisor it went to when overdue
    escalated_to: Mapped[str | None] = mapped_column(String(64))


class StopCase(Base):
    """One arrears stop (欠费停电) from the stop notice to reconnection or cancellation.

    Status: ``noticing`` (stop notice queued, not yet sent) → ``noticed`` (sent; the stop may
    not happen before ``earliest_stop_at``) → ``ordered`` (pre-stop notice sent, suspension
    ordered) → ``suspended`` → ``reconnecting`` → ``closed``; or ``closed`` at any point when
    the customer pays or agrees a plan. At most one live case per account."""

    __tablename__ = "stop_cases"
    __table_args__ = (
        Index("uq_stop_cases_live_account", "account_id", unique=True,
              sqlite_where=text("status != 'closed'"), postgresql_where=text("status != 'closed'")),
        Index("ix_stop_cases_status", "status"),
        # "was this stop notice already given?" — asked of each day's candidates
        Index("ix_stop_cases_notice_key", "notice_key"),
    )
    case_id: Mapped[int] = mapped_column(_ID, primary_key=True, autoincrement=True)
    account_id: Mapped[str] = mapped_column(String(32))
    customer_id: Mapped[str] = mapped_column(String(32))
    customer_class: Mapped[str] = mapped_column(String(20))
    #: the oldest overdue bill when the case opened
    bill_id: Mapped[str] = mapped_column(String(64))
    #: postpaid (arrears) or prepaid (smart prepayment cut-off)
    mode: Mapped[str] = mapped_column(String(10), default="postpaid")
    status: Mapped[str] = mapped_column(String(12))
    opened_at: Mapped[datetime] = mapped_column(UTCDateTime)
    notice_key: Mapped[str] = mapped_column(String(120))
    #: when the stop notice was actually SENT (notify's sent_at), not when it was queued
    notice_sent_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    earliest_stop_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    ordered_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    #: the stop may not be executed before this (the pre-stop notice's lead time)
    execute_after: Mapped[datetime | None] = mapped_column(UTCDateTime)
    approval_required: Mapped[bool] = mapped_column(Boolean, default=False)
    approved_by: Mapped[str | None] = mapped_column(String(64))
    #: remote (meter trip) or field (crew task)
    method: Mapped[str | None] = mapped_column(String(8))
    suspended_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    reconnect_ordered_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    reconnected_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    closed_reason: Mapped[str | None] = mapped_column(String(40))


class MeterCommand(Base):
    """Outbox of remote trip/close commands (费控指令). Unique on ``key`` (never sent twice);
    retried up to the policy's attempts, then ``failed`` and put on the worklist."""

    __tablename__ = "meter_commands"
    __table_args__ = (Index("uq_meter_commands_key", "key", unique=True),
                      Index("ix_meter_commands_status", "status", "next_attempt_at"))
    command_id: Mapped[int] = mapped_column(_ID, primary_key=True, autoincrement=True)
    key: Mapped[str] = mapped_column(String(120))
    case_id: Mapped[int] = mapped_column(BigInteger)
    account_id: Mapped[str] = mapped_column(String(32))
    meter_id: Mapped[str] = mapped_column(String(32))
    #: trip or close
    action: Mapped[str] = mapped_column(String(8))
    #: pending, done, failed, cancelled
    status: Mapped[str] = mapped_column(String(10), default="pending")
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    next_attempt_at: Mapped[datetime] = mapped_column(UTCDateTime)
    last_error: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    done_at: Mapped[datetime | None] = mapped_column(UTCDateTime)


class PaymentPlan(Base):
    """A payment plan (分期缴费协议): dated instalments; pauses dunning while kept.

    ``kind``: ``pay_plan`` (its own dates) or ``instalment`` (分期: the instalments fall due with
    the coming bills and appear on them). Status: ``proposed`` (awaiting a second person's
    approval) → ``active`` → ``completed`` | ``broken``; or ``cancelled``. At most one proposed or
    active plan per account."""

    __tablename__ = "payment_plans"
    __table_args__ = (
        Index("uq_payment_plans_open_account", "account_id", unique=True,
              sqlite_where=text("status IN ('proposed', 'active')"),
              postgresql_where=text("status IN ('proposed', 'active')")),
        Index("uq_payment_plans_request_key", "request_key", unique=True),
    )
    plan_id: Mapped[int] = mapped_column(_ID, primary_key=True, autoincrement=True)
    account_id: Mapped[str] = mapped_column(String(32))
    customer_id: Mapped[str] = mapped_column(String(32))
    #: proposed, active, completed, broken, cancelled
    status: Mapped[str] = mapped_column(String(10))
    #: when the customer agreed (proposal time): payments posted since then count towards it
    agreed_at: Mapped[datetime] = mapped_column(UTCDateTime)
    agreed_on: Mapped[date] = mapped_column(Date)
    #: no longer read or meaningful (payments count by time, ``agreed_at``); written 0. Kept
    #: because dropping a NOT NULL column means rebuilding the table on SQLite
    ledger_mark: Mapped[int] = mapped_column(BigInteger, default=0)
    #: fen: everything the plan spreads (down payment included)
    total: Mapped[int] = mapped_column(BigInteger)
    requested_by: Mapped[str] = mapped_column(String(64))
    approved_by: Mapped[str | None] = mapped_column(String(64))
    ended_on: Mapped[date | None] = mapped_column(Date)
    #: pay_plan or instalment
    kind: Mapped[str] = mapped_column(String(12), default="pay_plan", server_default="pay_plan")
    #: the policy row it was checked against: customer class and segment (standard, low_income)
    customer_class: Mapped[str | None] = mapped_column(String(20))
    segment: Mapped[str | None] = mapped_column(String(20))
    #: fen due first (seq 0), part of ``total``
    down_payment: Mapped[int] = mapped_column(BigInteger, default=0, server_default="0")
    #: days after a missed instalment before the plan is broken
    grace_days: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    approved_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    ended_by: Mapped[str | None] = mapped_column(String(64))
    end_reason: Mapped[str | None] = mapped_column(Text)
    #: the caller's idempotency key: a retried proposal is stored once
    request_key: Mapped[str | None] = mapped_column(String(120))


class PlanInstalment(Base):
    """One instalment (期) of a plan. ``seq`` 0 is the down payment (首付). On an ``instalment``
    plan, ``period`` names the bill it falls due with; ``bill_id`` is set and ``due_on`` becomes
    that bill's due date once the bill is issued (until then ``due_on`` is provisional)."""

    __tablename__ = "plan_instalments"
    plan_id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    seq: Mapped[int] = mapped_column(Integer, primary_key=True)
    due_on: Mapped[date] = mapped_column(Date)
    amount: Mapped[int] = mapped_column(BigInteger)
    period: Mapped[str | None] = mapped_column(String(7))
    bill_id: Mapped[str | None] = mapped_column(String(64))


class LateFeeWaiver(Base):
    """A waiver (违约金减免) of a bill's late fees: a reason and an approver who is not the
    requester; posted as a ledger reversal of each late-fee entry of the bill (so payment
    allocation no longer sees them as open); stops further accrual on the bill."""

    __tablename__ = "late_fee_waivers"
    waiver_id: Mapped[int] = mapped_column(_ID, primary_key=True, autoincrement=True)
    bill_id: Mapped[str] = mapped_column(String(64), unique=True)
    account_id: Mapped[str] = mapped_column(String(32))
    amount: Mapped[int] = mapped_column(BigInteger)
    reason: Mapped[str] = mapped_column(Text)
    requested_by: Mapped[str] = mapped_column(String(64))
    approved_by: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)


class PrepayState(Base):
    """Smart prepayment (智能交费): the last computed available balance and the stage reached."""

    __tablename__ = "prepay_state"
    account_id: Mapped[str] = mapped_column(String(32), primary_key=True)
    #: ok, warned (below the warning threshold), cutoff (at or below zero)
    stage: Mapped[str] = mapped_column(String(10))
    since_at: Mapped[datetime] = mapped_column(UTCDateTime)
    #: fen the customer can still spend: −(ledger balance) − ``accrued``
    available: Mapped[int] = mapped_column(BigInteger)
    as_of: Mapped[date] = mapped_column(Date)
    #: fen of charges accrued since the last bill, priced by the account's tariff, up to the
    #: daily frozen read ``read_at`` (the re-check before a trip subtracts it from a fresh balance)
    accrued: Mapped[int | None] = mapped_column(BigInteger)
    read_at: Mapped[datetime | None] = mapped_column(UTCDateTime)


class CollectionRun(Base):
    """One day of collections. ``payment_mark``: the highest ledger entry id already turned into
    ``payment_received`` events."""

    __tablename__ = "collection_runs"
    day: Mapped[date] = mapped_column(Date, primary_key=True)
    started_at: Mapped[datetime] = mapped_column(UTCDateTime)
    finished_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    payment_mark: Mapped[int] = mapped_column(BigInteger, default=0)
    report: Mapped[str | None] = mapped_column(Text)
