"""Stop cases (停电 / 费控停电) and reconnection (复电): the public stop-case API that both the arrears
flow (:mod:`dianfei.collections.suspension`) and smart prepayment
(:mod:`dianfei.collections.prepay`) use. The flows decide WHEN a case opens and moves on; this
module is the case itself, lawfully:

A stop case moves ``noticing → noticed → ordered → suspended → reconnecting → closed``
(``mode`` postpaid: arrears; prepaid: a smart-prepayment cut-off):

- **open** (:func:`open_cases`): one live case per account (partial unique
  index), named by the key of its notice; the flow queues that notice.
- **notice sent** (:func:`record_sent`): the notice period runs from when notify SENT the notice
  (postpaid: N days per class; prepaid: the cut-off wait); a notice that could not go out (nor
  its fallback letter) closes the case and puts it on the worklist.
- **order** (:func:`order_stop`): ``suspension_ordered``; the order executes no earlier than
  ``execute_after``, after approval where configured.
- **execution** (:func:`execute_order`): right before the meter is tripped (or a field crew task is
  raised, or a crew reports the stop done), the balance is read again (:func:`stoppable`); an
  account that paid after the order was raised is never stopped (``suspension_cancelled``). The
  trip goes through the command outbox (``meter_commands``, :func:`process_commands`): tried,
  retried, then on the worklist; never sent twice.
- **cancel / reconnection** (:func:`cancel`, :func:`order_reconnection`): a case not carried out
  is cancelled; a suspended supply is reconnected (``reconnection_ordered``): the meter is closed
  remotely in the same run (within minutes), or a field task is due within ``field_hours``
  (default 24 h).

Protected customers are never stopped: every step here checks the flag again.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from sqlalchemy import Connection, select, update
from sqlalchemy.orm import Session

from dianfei.audit import service as audit
from dianfei.collections import repository
from dianfei.collections.account import owed
from dianfei.collections.context import event_schema, write_events
from dianfei.collections.models import CollectionEvent, CollectionTask, MeterCommand, StopCase
from dianfei.collections.notices import KEY_PREFIX, Notice, Notifier
from dianfei.collections.rules import Policy
from dianfei.core.clock import BUSINESS_TZ, Clock, business_date
from dianfei.core.errors import ConflictError, NotFoundError, ValidationError
from dianfei.core.faults import kill_point
from dianfei.customers import service as customers
from dianfei.ledger import service as ledger
from dianfei.notify import service as notify

if TYPE_CHECKING:
    import polars as pl

    from dianfei.collections.context import Context, DayReport
    from dianfei.db.engine import Database
    from dianfei.metering.service import CommandResult, RemoteSwitch

#: the key suffix notify gives the paper letter that replaces an undeliverable legal notice
LETTER = "#letter"
#: the statuses of a live case (one per account at most)
LIVE = ("noticing", "noticed", "ordered", "suspended", "reconnecting")


#: INSERT … ON CONFLICT (key) DO NOTHING per (dialect, table), built once: a statement built per
#: row (``.values(**row)``) cost more to construct and cache-key than to execute — thousands of
#: events a day at a million accounts
_INSERT_NEW: dict[tuple[str, str], Any] = {}


def _insert_new(session: Session, model: Any, row: dict[str, Any]) -> bool:
    """INSERT … ON CONFLICT (key) DO NOTHING on the session's connection: no check-then-insert,
    no autoflush of the session's pending objects. Returns whether a row was added."""
    conn = session.connection()
    name = conn.dialect.name
    stmt = _INSERT_NEW.get((name, model.__tablename__))
    if stmt is None:
        from sqlalchemy.dialects import postgresql, sqlite

        dialect: Any = postgresql if name == "postgresql" else sqlite
        stmt = dialect.insert(model.__table__).on_conflict_do_nothing(index_elements=["key"])
        _INSERT_NEW[(name, model.__tablename__)] = stmt
    return bool(conn.execute(stmt, row).rowcount)


def record_event(session: Session, key: str, case: StopCase, type_: str, at: datetime,
                 **extra: Any) -> bool:
    """Add a collection event of the case unless its key is already recorded (``notice``,
    ``channel``, ``amount`` go to their columns, anything else to ``detail``). Returns whether
    it was added."""
    return key in record_events(session, [(key, case, type_, at, extra)])


@dataclass
class CaseEvents:
    """Events of cases moved in one pass, collected and written together by
    :func:`record_events` in the same transaction (thousands a day at a million accounts). The
    functions below take one as ``events``; without one they write at once."""

    items: list[tuple[str, StopCase, str, datetime, dict[str, Any]]] = field(default_factory=list)
    #: meter commands (``meter_commands`` rows) raised in the pass
    commands: list[dict[str, Any]] = field(default_factory=list)
    #: cases closed in the pass: their pending commands and open tasks are cancelled together
    cancelled: list[int] = field(default_factory=list)

    def add(self, key: str, case: StopCase, type_: str, at: datetime, **extra: Any) -> None:
        self.items.append((key, case, type_, at, extra))


def record_batch(session: Session, batch: CaseEvents) -> None:
    """Write what a pass over cases collected, in the caller's transaction: its meter commands
    (one insert), then its events (:func:`record_events`)."""
    if batch.commands:
        from sqlalchemy import insert

        session.connection().execute(insert(MeterCommand.__table__), batch.commands)  # type: ignore[arg-type]
        batch.commands = []
    _cancel_pending(session, batch.cancelled)
    batch.cancelled = []
    record_events(session, batch.items)
    batch.items = []


#: case ids per statement when a pass's closed cases are cancelled together
CANCEL_CHUNK = 1000


def _cancel_pending(session: Session, case_ids: list[int]) -> None:
    """The pending meter commands and open tasks of closed cases cancelled: two statements per
    thousand cases (it was two queries and an autoflush of the whole session per case). The
    ORM statements bring objects of this session up to date as well."""
    for i in range(0, len(case_ids), CANCEL_CHUNK):
        part = case_ids[i:i + CANCEL_CHUNK]
        session.execute(update(MeterCommand).where(MeterCommand.case_id.in_(part))
                        .where(MeterCommand.status == "pending").values(status="cancelled"))
        session.execute(update(CollectionTask).where(CollectionTask.case_id.in_(part))
                        .where(CollectionTask.status == "open").values(status="cancelled"))


def _command(session: Session, events: CaseEvents | None, row: dict[str, Any]) -> None:
    if events is None:
        session.add(MeterCommand(**row))
    else:
        events.commands.append(row)


def _emit(session: Session, events: CaseEvents | None, key: str, case: StopCase, type_: str,
          at: datetime, **extra: Any) -> None:
    if events is None:
        record_event(session, key, case, type_, at, **extra)
    else:
        events.add(key, case, type_, at, **extra)


#: INSERT … ON CONFLICT (key) DO NOTHING RETURNING key, per dialect (built once)
_INSERT_EVENTS: dict[str, Any] = {}
#: rows per INSERT (13 columns: well below SQLite's 32,766 bound variables)
EVENT_CHUNK = 1000


def record_events(session: Session, items: Sequence[tuple[str, StopCase, str, datetime,
                                                          dict[str, Any]]]) -> set[str]:
    """Add the events (key, case, type, at, extra — as :func:`record_event` takes them) whose
    keys are not recorded yet, in order; a supply change added is audited and a trip queued for
    the next rating, in the caller's transaction, as one at a time would. Returns the keys
    added."""
    if not items:
        return set()
    conn = session.connection()
    name = conn.dialect.name
    stmt = _INSERT_EVENTS.get(name)
    if stmt is None:
        from sqlalchemy.dialects import postgresql, sqlite

        dialect: Any = postgresql if name == "postgresql" else sqlite
        table = CollectionEvent.__table__
        stmt = (dialect.insert(table).on_conflict_do_nothing(index_elements=["key"])
                .returning(table.c.key))
        _INSERT_EVENTS[name] = stmt
    rows, details = [], []
    for key, case, type_, at, extra in items:
        detail = {"case_id": case.case_id, **{k: v for k, v in extra.items()
                                              if k not in ("notice", "channel", "amount")}}
        if case.mode == "prepaid":
            detail.setdefault("reason", "prepay")  # a smart-prepayment cut-off, not an arrears stop
        details.append(detail)
        rows.append({
            "key": key, "account_id": case.account_id, "customer_id": case.customer_id,
            "type": type_, "at": at, "business_date": business_date(at),
            "notice": extra.get("notice"), "channel": extra.get("channel"),
            "amount": extra.get("amount"), "bill_id": case.bill_id or None,
            "detail": json.dumps(detail, ensure_ascii=False)})
    added: set[str] = set()
    for i in range(0, len(rows), EVENT_CHUNK):
        added |= {str(r[0]) for r in conn.execute(stmt, rows[i:i + EVENT_CHUNK])}
    tripped = [case.account_id for key, case, type_, _, _ in items
               if type_ == "suspended" and key in added]
    if tripped:
        # a rating fact; a field crew may report the trip days after it happened, so the date
        # alone does not tell the next rating about it
        from dianfei.collections.incentives import queue_for_rating

        queue_for_rating(conn, tripped)
    # a change of supply state is audited in the transaction that makes it
    audit.record_many(conn, [
        (f"supply.{type_}", case.account_id,
         {"case_id": case.case_id, "at": at.isoformat(), "mode": case.mode,
          "bill_id": case.bill_id or None, **{k: v for k, v in detail.items() if k != "case_id"}})
        for (key, case, type_, at, _), detail in zip(items, details, strict=True)
        if key in added and type_ in SUPPLY_CHANGES])
    return added


#: the collection events that change (or order a change of) an account's supply state
SUPPLY_CHANGES = frozenset({"suspension_ordered", "suspended", "suspension_cancelled",
                            "reconnection_ordered", "reconnected"})


def add_task(session: Session, key: str, case: StopCase, kind: str, now: datetime,
             due_at: datetime | None, detail: dict[str, Any]) -> None:
    """Put a task of the case on the worklist, once per key."""
    _insert_new(session, CollectionTask, {
        "key": key, "account_id": case.account_id, "customer_id": case.customer_id, "kind": kind,
        "status": "open", "created_at": now, "due_at": due_at, "case_id": case.case_id,
        "detail": json.dumps(detail, ensure_ascii=False)})


def live_accounts(session: Session) -> set[str]:
    """Accounts with a live case (any mode)."""
    return repository.live_case_accounts(session.connection())


def live_cases(session: Session, mode: str, statuses: tuple[str, ...] = LIVE) -> list[StopCase]:
    """The cases of ``mode`` in ``statuses`` (default: every live one), oldest first."""
    # sorted here: ORDER BY case_id lets SQLite walk every case ever opened in id order
    # instead of the status index (closed cases are most of them after a year)
    return sorted(session.scalars(select(StopCase).where(StopCase.status.in_(statuses))
                                  .where(StopCase.mode == mode)), key=lambda c: c.case_id)


def live_case_frame(session: Session, mode: str) -> pl.DataFrame:
    """The live cases of ``mode`` as columns (case_id, account_id, status, earliest_stop_at),
    oldest first: read without loading a case, to pick those that move today."""
    session.flush()
    return repository.live_case_frame(session.connection(), mode, LIVE)


def cases_by_id(session: Session, case_ids: list[int]) -> list[StopCase]:
    """The cases ``case_ids`` (loaded to be moved), oldest first."""
    out: list[StopCase] = []
    for i in range(0, len(case_ids), 500):
        out += session.scalars(select(StopCase).where(StopCase.case_id.in_(case_ids[i:i + 500])))
    return sorted(out, key=lambda c: c.case_id)


def open_cases(session: Session, rows: pl.DataFrame, *, mode: str,
               opened_at: datetime) -> pl.DataFrame:
    """Open a case (``noticing``) for each row (account_id, customer_id, customer_class, bill_id,
    notice_key, approval_required; other columns are ignored) in one bulk insert, except where
    the notice key already opened a case: a notice is given once (a case closed because its
    notice could not be delivered is not reopened for the same key; the worklist task stands).
    Returns the rows that opened a case: the caller queues their notices."""
    import polars as pl

    from dianfei.db.bulk import write_frame

    seen = repository.case_notice_keys(session.connection(), rows["notice_key"].to_list())
    rows = rows.filter(~pl.col("notice_key").is_in(list(seen)))
    session.flush()
    # the partial unique index keeps one live case per account
    write_frame(session.connection(), "stop_cases", rows.select(
        "account_id", "customer_id", "customer_class", "bill_id", pl.lit(mode).alias("mode"),
        pl.lit("noticing").alias("status"), pl.lit(opened_at).alias("opened_at"), "notice_key",
        "approval_required"))
    return rows


def close_for_account_closure(session: Session, account_id: str) -> int | None:
    """Close the account's live case, if any, because the account is being closed (销户,
    :mod:`dianfei.collections.closure`): ``closed_reason`` ``account_closed``, its pending meter
    commands and open tasks cancelled. The supply stays off (no reconnection): the account's
    interruption stays open. Returns the case closed, or None."""
    case = session.scalars(select(StopCase).where(StopCase.account_id == account_id)
                           .where(StopCase.status.in_(LIVE))).first()
    if case is None:
        return None
    case.status, case.closed_reason = "closed", "account_closed"
    session.flush()
    _cancel_pending(session, [case.case_id])
    return case.case_id


def order_stop(ctx: Context, session: Session, case: StopCase, *, execute_after: datetime,
               events: CaseEvents | None = None) -> None:
    """Raise the order (``suspension_ordered``): it executes no earlier than ``execute_after``."""
    now = ctx.now
    case.status, case.ordered_at, case.execute_after = "ordered", now, execute_after
    ctx.report.suspension_orders += 1
    _emit(session, events, f"so:{case.case_id}", case, "suspension_ordered", now)


#: from how many finished notices in the window :func:`record_sent` reads the recorded ones by
#: date range instead of by key (measured: ~7 µs a key lookup against ~2 µs an event of the range)
RANGE_READ_FROM = 20_000


def record_sent(ctx: Context, session: Session, conn: Connection) -> None:
    """``notice_sent`` events for our notices the outbox sent, at their SENT time; a stop notice
    that went out starts its case's notice period; one that could not go out goes to the
    worklist (the stop cannot lawfully proceed)."""
    from sqlalchemy import func

    oldest = session.execute(select(func.min(StopCase.opened_at))
                             .where(StopCase.status == "noticing")).scalar()
    since = ctx.now - timedelta(days=3)
    if oldest is not None:
        since = min(since, oldest - timedelta(minutes=1))
    sent = notify.finished_since(ctx.db.engine, since, KEY_PREFIX)
    if sent.height == 0:
        return
    import polars as pl

    # a batch of only failures has an all-null sent_at column: give it its type
    sent = sent.with_columns(pl.col("sent_at").cast(pl.Datetime("us", "UTC")),
                             pl.format("ns:{}", "key").alias("ev_key"))
    went = sent.filter(pl.col("status").is_in(["sent", "delivered"])
                       & pl.col("sent_at").is_not_null())
    if went.height > RANGE_READ_FROM:
        # the window re-reads the notices of the last days (a notice whose transaction
        # committed late is not missed): when they are many (a million accounts' first day),
        # those already recorded are found by their events' business dates — a notice_sent
        # event is dated by its notice's sent_at — in one range read, not by a lookup per key
        first = business_date(went["sent_at"].min())
        have = repository.notice_sent_keys_since(conn, first)
        went = went.join(have, left_on="ev_key", right_on="key", how="anti")
    elif went.height:
        # a few thousand: a key lookup each is cheaper than every event of the window's days
        seen = repository.existing_keys(conn, "collection_events", went["ev_key"].to_list())
        went = went.filter(~pl.col("ev_key").is_in(list(seen)))
    session.flush()
    write_events(conn, went.select(
        pl.col("ev_key").alias("key"), "account_id", "customer_id",
        pl.lit("notice_sent").alias("type"), pl.col("sent_at").alias("at"),
        pl.col("sent_at").dt.convert_time_zone(str(BUSINESS_TZ)).dt.date().alias("business_date"),
        pl.lit(None, pl.Int64).alias("amount"), pl.lit(None, pl.Int64).alias("balance_after"),
        pl.lit(None, pl.String).alias("level"), "notice", "channel",
        pl.lit(None, pl.String).alias("bill_id"), pl.lit(None, pl.String).alias("detail"))
        .cast(event_schema()))
    cases = {c.notice_key: c for c in session.scalars(
        select(StopCase).where(StopCase.status == "noticing"))}
    # only the notices of cases still waiting for theirs move a case (a few a day: the window
    # holds every notice of the last days)
    sent = sent.filter(pl.col("key").str.strip_suffix(LETTER).is_in(list(cases)))
    # a legally required notice that could not go out on its channel is replaced by notify with
    # a paper letter (key "<key>#letter"): the case waits for the letter, and the notice period
    # runs from when the letter went out; only when there is no letter, or it failed too, is the
    # case closed and put on the worklist
    failed = [r["key"] for r in sent.iter_rows(named=True) if r["key"] in cases
              and not (r["status"] in ("sent", "delivered") and r["sent_at"] is not None)]
    letters = notify.queued_keys(conn, [f"{k}{LETTER}" for k in failed])
    for r in sent.iter_rows(named=True):
        ok = r["status"] in ("sent", "delivered") and r["sent_at"] is not None
        key = str(r["key"])
        case = cases.get(key.removesuffix(LETTER))
        if case is None or case.status != "noticing":
            continue
        if ok:
            case.status = "noticed"
            case.notice_sent_at = r["sent_at"]
            case.earliest_stop_at = r["sent_at"] + (
                ctx.policy.prepay_cutoff_wait if case.mode == "prepaid"
                else timedelta(days=ctx.policy.notice_days_for(case.customer_class)))
        elif not key.endswith(LETTER) and f"{key}{LETTER}" in letters:
            continue  # the fallback letter is on its way
        else:
            case.status, case.closed_reason = "closed", "notice_undeliverable"
            add_task(session, f"notice_failed:{case.case_id}", case, "notice_failed", ctx.now, None,
                     {"notice": "cutoff_notice" if case.mode == "prepaid" else "stop_notice",
                      "status": r["status"], "channel": r["channel"]})
    session.flush()


def still_stoppable(conn: Connection, case: StopCase, policy: Policy, now: datetime) -> bool:
    """The re-check right before acting: a fresh read of the ledger and open items (for a
    prepaid cut-off: a fresh balance less the charges accrued, see ``prepay.still_cut_off``)."""
    return case.case_id in stoppable(conn, [case], policy, now)


def stoppable(conn: Connection, cases: list[StopCase], policy: Policy, now: datetime) -> set[int]:
    """:func:`still_stoppable` for many cases in a few set-based reads: the case ids that may
    still be stopped. Postpaid: something is owed, an item is at least ``min_days_overdue`` past
    due, not protected, no active plan. Prepaid: fresh balance less the accrued charge ≤ 0, not
    protected."""
    if not cases:
        return set()
    accounts = [c.account_id for c in cases]
    balance = owed(conn, accounts)
    protected = customers.protected_customers(conn, [c.customer_id for c in cases])
    post = [c for c in cases if c.mode != "prepaid" and balance[c.account_id] > 0
            and c.customer_id not in protected]
    pre = [c for c in cases if c.mode == "prepaid" and c.customer_id not in protected]
    ok: set[int] = set()
    if pre:
        accrued = repository.prepay_accrued_of(conn, [c.account_id for c in pre])
        ok |= {c.case_id for c in pre if c.account_id in accrued
               and -balance[c.account_id] - accrued[c.account_id] <= 0}
    if post:
        today = business_date(now)
        oldest: dict[str, Any] = {}
        for i in range(0, len(post), 500):
            items = ledger.open_items(conn, [c.account_id for c in post[i:i + 500]])
            for r in items.iter_rows(named=True):
                d = r["due_on"]
                if r["open_amount"] > 0 and d is not None and d < today:
                    a = r["account_id"]
                    oldest[a] = min(d, oldest.get(a, d))
        planned = repository.accounts_with_plan(conn, [c.account_id for c in post])
        ok |= {c.case_id for c in post if c.account_id in oldest and c.account_id not in planned
               and (today - oldest[c.account_id]).days >= policy.min_days_overdue}
    return ok


def cancel(ctx: Context, session: Session, case: StopCase, reason: str, *,
           events: CaseEvents | None = None) -> None:
    """Close a case not carried out (``reason``: paid, plan, topped_up …) with its pending
    commands and open tasks; an order that was raised gets ``suspension_cancelled``."""
    was_ordered = case.status == "ordered"
    case.status, case.closed_reason = "closed", reason
    if events is None:
        _cancel_pending(session, [case.case_id])
    else:  # with the pass's other closed cases, when the pass is recorded
        events.cancelled.append(case.case_id)
    if was_ordered:
        _emit(session, events, f"sc:{case.case_id}", case, "suspension_cancelled", ctx.now,
              reason=reason)


def due_now(ctx: Context, case: StopCase) -> bool:
    """Whether an ordered stop may be carried out now: its pre-stop wait is over, the stop window
    is open and, where an approval is required, it was given."""
    now = ctx.now
    if case.execute_after is None or now < case.execute_after or not ctx.policy.stop_allowed_at(now):
        return False
    return not (case.approval_required and not case.approved_by)


def execute_order(ctx: Context, session: Session, case: StopCase, *, checked: bool = False,
                  events: CaseEvents | None = None,
                  meters: dict[str, tuple[str, str | None]] | None = None) -> None:
    """Hand an order to the meter (command outbox) or a crew. ``checked``: the caller has just
    established from a fresh read that the stop is still due (the trip re-checks again).
    ``meters``: the accounts' active meters read for a batch of cases
    (``customers.active_meters``; an account not in it has none)."""
    now = ctx.now
    if not due_now(ctx, case):
        return
    conn = session.connection()
    if not checked and not still_stoppable(conn, case, ctx.policy, now):
        cancel(ctx, session, case, "paid", events=events)
        return
    if case.method is not None:
        return  # already handed to the meter or a crew
    if meters is None:
        meter = customers.active_meter(conn, case.account_id, remote=True)
        first = None if meter is not None else customers.active_meter(conn, case.account_id)
    else:
        first, meter = meters.get(case.account_id, (None, None))
    if meter is not None:
        case.method = "remote"
        _command(session, events, {
            "key": f"trip:{case.case_id}", "case_id": case.case_id, "account_id": case.account_id,
            "meter_id": meter, "action": "trip", "status": "pending", "attempts": 0,
            "next_attempt_at": now, "created_at": now})
    else:
        case.method = "field"
        add_task(session, f"field_stop:{case.case_id}", case, "field_stop", now,
                 now + timedelta(days=1), {"meter_id": first})


def order_reconnection(ctx: Context, session: Session, case: StopCase, *,
                       events: CaseEvents | None = None) -> None:
    """Reconnect a suspended supply at once (``reconnection_ordered``): a close command for a
    remotely stopped meter, else a field task due within ``field_reconnect``."""
    now = ctx.now
    case.status, case.reconnect_ordered_at = "reconnecting", now
    _emit(session, events, f"ro:{case.case_id}", case, "reconnection_ordered", now)
    conn = session.connection()
    meter = customers.active_meter(conn, case.account_id, remote=True) if case.method == "remote" else None
    if meter is not None:
        _command(session, events, {
            "key": f"close:{case.case_id}", "case_id": case.case_id,
            "account_id": case.account_id, "meter_id": meter, "action": "close",
            "status": "pending", "attempts": 0, "next_attempt_at": now, "created_at": now})
    else:
        add_task(session, f"field_reconnect:{case.case_id}", case, "field_reconnect", now,
                 now + ctx.policy.field_reconnect,
                 {"meter_id": customers.active_meter(conn, case.account_id)})


def supply_key(case: StopCase) -> str:
    """The key of the supply interruption a stop case carried out (customers' service)."""
    return f"stop_case:{case.case_id}"


def _suspended(session: Session, case: StopCase, at: datetime, method: str,
               events: CaseEvents | None = None) -> None:
    case.status, case.suspended_at = "suspended", at
    _emit(session, events, f"su:{case.case_id}", case, "suspended", at, method=method)
    # the account's supply is off from now: kept with the account, where the readers of its
    # consumption (theft warnings, below collections) find it
    customers.supply_off(session.connection(), supply_key(case), case.account_id,
                         "prepayment" if case.mode == "prepaid" else "arrears", at)


def _reconnected(session: Session, case: StopCase, at: datetime, method: str,
                 notices: list[Notice], events: CaseEvents | None = None) -> None:
    case.status, case.reconnected_at, case.closed_reason = "closed", at, "reconnected"
    _emit(session, events, f"rc:{case.case_id}", case, "reconnected", at, method=method)
    customers.supply_restored(session.connection(), supply_key(case), at)
    name = customers.customer_names(session.connection(), [case.customer_id]).get(case.customer_id)
    notices.append(Notice(f"{KEY_PREFIX}reconnected:{case.case_id}", case.account_id,
                          case.customer_id, "reconnected", "sms",
                          {"account_id": case.account_id,
                           "customer_name": name if name is not None else case.customer_id,
                           "amount_due": "0.00",
                           "due_on": "", "bill_id": case.bill_id, "bill_link": "", "stop_on": "",
                           "balance": "0.00", "pay_channels": ""}))


#: meter commands handled per transaction (rows locked, re-checked in bulk, then sent)
COMMAND_CHUNK = 200

NO_METER_CONTROL = "no meter control (collect run --no-meter-control)"


class FieldCrew:
    """The "switch" of a run without meter control (``collect run --no-meter-control``): nothing
    is sent to a meter; :func:`process_commands` hands every owed trip and close to the field
    crew instead (``field_stop`` / ``field_reconnect`` tasks, see :func:`_to_field_crew`). Called
    directly it refuses, so it can never pass for a meter that confirmed."""

    def trip(self, meter_id: str) -> CommandResult:
        return self._refuse(meter_id, "trip")

    def close(self, meter_id: str) -> CommandResult:
        return self._refuse(meter_id, "close")

    @staticmethod
    def _refuse(meter_id: str, action: str) -> CommandResult:
        from dianfei.metering.service import CommandResult

        return CommandResult(meter_id, action, False, NO_METER_CONTROL, False)


def _to_field_crew(session: Session, cmd: MeterCommand, case: StopCase, now: datetime,
                   policy_: Policy) -> None:
    """Hand a meter command to the field crew instead of sending it: the command is cancelled
    (saying why), the case becomes a field case, and a worklist task is raised once — a stop due
    within a day (the crew's report re-checks the balance, ``complete_task``), a reconnection
    due within ``field_reconnect`` (24 h) of when it was ordered."""
    if cmd.action == "trip":
        kind, due = "field_stop", now + timedelta(days=1)
    else:
        kind, due = "field_reconnect", (case.reconnect_ordered_at or now) + policy_.field_reconnect
    cmd.status = "cancelled"
    cmd.last_error = f"{NO_METER_CONTROL}: handed to the field crew ({kind} task)"
    case.method = "field"
    add_task(session, f"{kind}:{case.case_id}", case, kind, now, due,
             {"meter_id": cmd.meter_id, "command_id": cmd.command_id, "reason": NO_METER_CONTROL})


def process_commands(db: Database, *, clock: Clock, switch: RemoteSwitch | None, policy_: Policy,
                     report: DayReport | None, notifier: Notifier) -> int:
    """Try the due meter commands in short transactions of up to ``COMMAND_CHUNK`` commands,
    their rows locked (``SKIP LOCKED`` on PostgreSQL, so several processes share the work).

    Trips are re-checked against a fresh balance right before they are sent, in one set-based
    read per chunk. A process that dies mid-chunk leaves those commands pending: they are sent
    again by the next pass, which is harmless for a trip or a close (the meter is simply in
    the state asked for) and is exactly what a retry does.

    ``switch`` None: nothing is tried (the commands wait). A :class:`FieldCrew` (no meter
    control): each due command is handed to the field crew instead of being sent, a trip only
    after the same window and balance re-check as a real one."""
    if switch is None:
        return 0
    field_crew = isinstance(switch, FieldCrew)
    now = clock.now()
    with db.session() as s:
        ids = list(s.scalars(select(MeterCommand.command_id).where(MeterCommand.status == "pending")
                             .where(MeterCommand.next_attempt_at <= now)
                             .order_by(MeterCommand.command_id)))
    done = 0
    for i in range(0, len(ids), COMMAND_CHUNK):
        notices: list[Notice] = []
        events = CaseEvents()
        with db.session() as s:
            cmds = list(s.scalars(select(MeterCommand)
                                  .where(MeterCommand.command_id.in_(ids[i:i + COMMAND_CHUNK]))
                                  .where(MeterCommand.status == "pending")
                                  .order_by(MeterCommand.command_id)
                                  .with_for_update(skip_locked=True)))
            if not cmds:
                continue
            cases = {c.case_id: c for c in s.scalars(
                select(StopCase).where(StopCase.case_id.in_({c.case_id for c in cmds})))}
            now = clock.now()
            in_window = policy_.stop_allowed_at(now)
            trips = [cases[c.case_id] for c in cmds if c.action == "trip"
                     and cases[c.case_id].status == "ordered"]
            # the re-check RIGHT before acting: never stop an account that paid
            may_stop = stoppable(s.connection(), trips, policy_, now) if in_window else set()
            for cmd in cmds:
                case = cases[cmd.case_id]
                if cmd.action == "trip":
                    if not in_window:
                        continue  # wait for the window; the next run tries again
                    if case.status != "ordered" or case.case_id not in may_stop:
                        cmd.status = "cancelled"
                        if case.status == "ordered":
                            _cancel_from_command(s, case, now, events)
                        continue
                if field_crew:
                    _to_field_crew(s, cmd, case, now, policy_)
                    continue
                result = switch.trip(cmd.meter_id) if cmd.action == "trip" else switch.close(cmd.meter_id)
                if result.ok:
                    # the crash tests die here: the meter obeyed, the command is still pending
                    kill_point("collections.command_sent")
                now = clock.now()
                cmd.attempts += 1
                if result.ok:
                    cmd.status, cmd.done_at = "done", now
                    done += 1
                    if cmd.action == "trip":
                        _suspended(s, case, now, "remote", events)
                        if report:
                            report.suspended += 1
                    else:
                        _reconnected(s, case, now, "remote", notices, events)
                        if report:
                            report.reconnected += 1
                else:
                    cmd.last_error = result.detail
                    if result.retryable and cmd.attempts < policy_.max_attempts:
                        cmd.next_attempt_at = now + policy_.retry_delay(cmd.attempts)
                    else:
                        cmd.status = "failed"
                        add_task(s, f"command_failed:{cmd.command_id}", case, "meter_command_failed",
                                 now, None, {"command_id": cmd.command_id, "action": cmd.action,
                                             "meter_id": cmd.meter_id, "attempts": cmd.attempts,
                                             "error": result.detail})
            record_batch(s, events)
            if notices:
                notifier.enqueue(s, notices, clock=clock)
    return done


def _cancel_from_command(session: Session, case: StopCase, now: datetime,
                         events: CaseEvents | None = None) -> None:
    case.status, case.closed_reason = "closed", "paid"
    _emit(session, events, f"sc:{case.case_id}", case, "suspension_cancelled", now, reason="paid")


def approve(session: Session, case_id: int, *, approver: str, clock: Clock) -> StopCase:
    """Approve a suspension order (停电审批) where the policy requires it."""
    case = session.get(StopCase, case_id)
    if case is None:
        raise NotFoundError(f"stop case {case_id} does not exist")
    if case.status != "ordered":
        raise ConflictError(f"stop case {case_id} is {case.status}, not awaiting approval")
    if not approver.strip():
        raise ValidationError("an approval names the approver")
    case.approved_by = approver
    audit.record(session.connection(), "supply.stop_approved", case.account_id,
                 {"case_id": case_id, "approved_by": approver})
    for t in session.scalars(select(CollectionTask).where(CollectionTask.key == f"approval:{case_id}")):
        t.status, t.done_at, t.done_by = "done", clock.now(), approver
    session.flush()
    return case


def complete_task(session: Session, task_id: int, *, done_by: str, clock: Clock,
                  policy_: Policy) -> CollectionTask:
    """A crew or collector reports a task done. A field stop is re-checked first (window,
    balance): when the customer paid meanwhile, the stop is cancelled instead."""
    task = session.execute(select(CollectionTask).where(CollectionTask.task_id == task_id)
                           .with_for_update()).scalar_one_or_none()
    if task is None:
        raise NotFoundError(f"task {task_id} does not exist")
    if task.status != "open":
        raise ConflictError(f"task {task_id} is already {task.status}")
    now = clock.now()
    case = session.get(StopCase, task.case_id) if task.case_id else None
    if task.kind == "field_stop" and case is not None:
        if not policy_.stop_allowed_at(now):
            raise ConflictError("a stop may only be carried out in the stop window on a working day")
        if case.status != "ordered" or not still_stoppable(session.connection(), case, policy_, now):
            task.status, task.done_at, task.done_by = "cancelled", now, done_by
            if case.status == "ordered":
                _cancel_from_command(session, case, now)
            session.flush()
            return task
        _suspended(session, case, now, "field")
    elif task.kind == "field_reconnect" and case is not None:
        _reconnected(session, case, now, "field", [])
    task.status, task.done_at, task.done_by = "done", now, done_by
    session.flush()
    return task
