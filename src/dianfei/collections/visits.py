"""Visits and calls (走访/电话催收) and the follow-up each outcome implies.

:func:`record_visit` stores what a collector reports — insert-only, so two collectors recording
on the same account at once both keep their row, in order — and in the same transaction:

- ``promise`` (承诺缴费): a promise to pay an amount by a date, watched by the daily run
  (:mod:`dianfei.collections.promises`); the ladder pauses while it is open;
- ``dispute`` (电费争议): a ``billing_dispute`` ticket linked to the visit and the bill; the bill's
  dunning pauses until the ticket is decided;
- ``hardship`` (困难户): a ``plan_offer`` task for the plan team;
- ``wrong_contact`` (联系方式错误): a ``contact_update`` task for customer service;
- ``vacant`` (空置): a ``meter_check`` task for marketing;
- ``paid`` and ``refused``: nothing further (a payment arrives through payments; a refusal
  leaves the ladder as it is).

Every visit is a ``visit_recorded`` event (and a promise a ``promise_made``) in
``collection_events`` and a record in the audit chain. A retried request (same ``request_id``)
returns the visit stored the first time.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from decimal import ROUND_CEILING, Decimal
from typing import Any

from sqlalchemy import insert, select
from sqlalchemy.orm import Session

from dianfei.collections.account import owed
from dianfei.collections.fieldwork_models import (
    CHANNELS,
    OUTCOMES,
    CollectionVisit,
    PaymentPromise,
)
from dianfei.collections.fieldwork_rules import FieldworkPolicy, fieldwork_policy
from dianfei.collections.models import CollectionEvent, CollectionTask
from dianfei.collections.ticket_models import Ticket
from dianfei.core.clock import BUSINESS_TZ, Clock, business_date
from dianfei.core.errors import ConflictError, DianfeiError, NotFoundError, ValidationError
from dianfei.core.money import fmt_yuan

#: outcome → (task kind, the department that does it)
FOLLOW_UP_TASKS = {"hardship": ("plan_offer", "plan_team"),
                   "wrong_contact": ("contact_update", "customer_service"),
                   "vacant": ("meter_check", "marketing")}
#: a follow-up task is due this long after the visit is recorded
TASK_DUE = timedelta(days=3)


@dataclass(frozen=True)
class RecordedVisit:
    visit: CollectionVisit
    promise: PaymentPromise | None = None
    ticket: Ticket | None = None
    task: CollectionTask | None = None
    #: True when this was a retry of a request already stored
    replayed: bool = False


@dataclass(frozen=True)
class VisitRequest:
    """What a collector reports about one visit or call (the fields of :func:`record_visit`)."""

    request_id: str
    account_id: str
    collector_id: str
    channel: str
    outcome: str
    at: datetime
    recorded_by: str
    promise_on: date | None = None
    promise_amount_fen: int | None = None
    bill_id: str | None = None
    note: str | None = None


def record_visit(session: Session, *, request_id: str, account_id: str, collector_id: str,
                 channel: str, outcome: str, at: datetime, recorded_by: str, clock: Clock,
                 promise_on: date | None = None, promise_amount_fen: int | None = None,
                 bill_id: str | None = None, note: str | None = None,
                 policy: FieldworkPolicy | None = None) -> RecordedVisit:
    """Record a visit or call and create the follow-up its outcome implies (see the module).
    Refuses — naming the rule, storing nothing — an unknown outcome or channel, an unknown
    account or collector, a time in the future, a promise without date and amount, dated in the
    past or beyond the policy's days ahead, or below its minimum share of what is owed, a
    dispute without its bill."""
    return record_visits(session, [VisitRequest(
        request_id=request_id, account_id=account_id, collector_id=collector_id,
        channel=channel, outcome=outcome, at=at, recorded_by=recorded_by, promise_on=promise_on,
        promise_amount_fen=promise_amount_fen, bill_id=bill_id, note=note)],
        clock=clock, policy=policy)[0]


def record_visits(session: Session, requests: Sequence[VisitRequest], *, clock: Clock,
                  policy: FieldworkPolicy | None = None) -> list[RecordedVisit]:
    """Record ``requests`` in order, as :func:`record_visit` records one (the same checks, rows,
    events and audit records), in the session's transaction — what a caller holding a day's
    visits uses (the demo's collectors; an app that syncs a day recorded offline would). Every
    request is checked before anything is stored, so one that is refused refuses them all (the
    message names its request id) and nothing is stored; a request id already stored is
    answered with the visit stored then (``replayed``).

    Why not one :func:`record_visit` after the other: the facts every visit checks (its
    account, collector, what is owed) are read once for all, and rows go out as plain
    statements rather than through the ORM's unit of work — ~15 statements and three flushes a
    visit made the demo's hundred visits a day a fifth of its simulated day."""
    reqs = list(requests)
    for r in reqs:
        if not r.request_id or not r.request_id.strip():
            raise ValidationError("a visit needs a request id (the retry key)")
        if len(r.request_id) > 64:
            raise ValidationError(f"a request id is at most 64 characters, got {len(r.request_id)}")
    ids = [r.request_id for r in reqs]
    if len(set(ids)) != len(ids):
        twice = sorted({i for i in ids if ids.count(i) > 1})
        raise ValidationError(f"request id {twice[0]!r} is given twice: each visit has its own")
    session.flush()  # the session's pending objects go first: what follows are plain statements
    conn = session.connection()
    stored = _stored_requests(conn, ids)
    fresh = [r for r in reqs if r.request_id not in stored]
    written: dict[str, RecordedVisit] = {}
    if fresh:
        try:
            written = _write_visits(session, conn, fresh, clock.now(),
                                    policy or fieldwork_policy(), single=len(reqs) == 1)
        except _Refused as e:
            raise e.error from None
    out = []
    for r in reqs:
        done = written.get(r.request_id)
        if done is None:  # stored before, or by a concurrent retry that committed first
            same = _by_request(session, r.request_id)
            if same is None:
                raise RuntimeError(f"visit request {r.request_id!r} was neither stored nor found")
            done = _replay(session, same, r.account_id)
        out.append(done)
    return out


class _Refused(Exception):
    """A request refused before anything was written (carries the error the caller sees)."""

    def __init__(self, error: DianfeiError) -> None:
        super().__init__(str(error))
        self.error = error


def _refuse(r: VisitRequest, single: bool, error: DianfeiError) -> _Refused:
    if single:
        return _Refused(error)
    return _Refused(type(error)(f"visit request {r.request_id!r}: {error}"))


def _write_visits(session: Session, conn: Any, reqs: list[VisitRequest], now: datetime,
                  pol: FieldworkPolicy, *, single: bool) -> dict[str, RecordedVisit]:
    """Check every request, then store them; the recorded visits by request id (a request that a
    concurrent retry stored first is left out: the caller replays it)."""
    from dianfei.audit import service as audit
    from dianfei.customers import service as customers

    for r in reqs:
        try:
            _check_fields(r.channel, r.outcome, r.at, now, r.recorded_by, r.promise_on,
                          r.promise_amount_fen, r.bill_id)
        except ValidationError as e:
            raise _refuse(r, single, e) from None
    # the accounts' rows stay locked until the commit (PostgreSQL): one account's visits are
    # stored one transaction at a time, so their events follow the visits' order
    customer_of = customers.lock_accounts(conn, sorted({r.account_id for r in reqs}))
    collectors_ok: dict[str, DianfeiError | None] = {}
    for c in sorted({r.collector_id for r in reqs}):
        try:
            customers.collector(conn, c)
            _check_on_duty(conn, c)
            collectors_ok[c] = None
        except (NotFoundError, ValidationError) as e:
            collectors_ok[c] = e
    today = business_date(now)
    promised = sorted({r.account_id for r in reqs if r.outcome == "promise"})
    owed_now = owed(conn, promised) if promised else {}
    stood = _standing(conn, promised)
    for r in reqs:
        if r.account_id not in customer_of:
            raise _refuse(r, single, NotFoundError(f"account {r.account_id} does not exist"))
        if (err := collectors_ok[r.collector_id]) is not None:
            raise _refuse(r, single, err)
        try:
            if r.outcome == "promise":
                assert r.promise_on is not None and r.promise_amount_fen is not None
                _check_promise(r.account_id, r.promise_on, r.promise_amount_fen, today, pol,
                               owed_now.get(r.account_id, 0))
            if r.bill_id is not None and r.outcome == "dispute":
                from dianfei.ledger import service as ledger

                ledger.entry_id_for(session, "bill", r.bill_id)  # NotFoundError names the bill
        except (NotFoundError, ValidationError) as e:
            raise _refuse(r, single, e) from None
    out: dict[str, RecordedVisit] = {}
    for r in reqs:
        done = _store(session, conn, r, customer_of[r.account_id], now, pol,
                      stood.get(r.account_id))
        if done is None:
            continue
        out[r.request_id] = done
        p, t, k = done.promise, done.ticket, done.task
        audit.record(conn, "visit.recorded", r.account_id, {
            "visit_id": done.visit.visit_id, "request_id": r.request_id,
            "collector_id": r.collector_id, "channel": r.channel, "outcome": r.outcome,
            "at": r.at.isoformat(), "recorded_by": r.recorded_by,
            "promise_id": p.promise_id if p else None,
            "promise_amount_fen": p.amount if p else None,
            "promise_on": r.promise_on.isoformat() if r.promise_on else None,
            "ticket_id": t.ticket_id if t else None, "bill_id": r.bill_id,
            "task": k.key if k else None})
    return out


def _store(session: Session, conn: Any, r: VisitRequest, customer_id: str, now: datetime,
           pol: FieldworkPolicy, stood: tuple[str, str] | None) -> RecordedVisit | None:
    """One checked visit's rows: the visit, its event, and its promise, ticket or task. None
    when a concurrent retry of the same request stored it first (nothing written here)."""
    row = {"request_id": r.request_id, "account_id": r.account_id, "customer_id": customer_id,
           "collector_id": r.collector_id, "channel": r.channel, "outcome": r.outcome,
           "at": r.at, "recorded_at": now, "recorded_by": r.recorded_by, "bill_id": r.bill_id,
           "note": r.note}
    got = conn.execute(_statement(conn, "visit"), row).first()
    if got is None:
        return None
    visit = CollectionVisit(visit_id=int(got[0]), **row)
    events = [_event_row(visit, "visit_recorded", f"visit:{visit.visit_id}", at=r.at,
                         channel=r.channel, detail={
                             "visit_id": visit.visit_id, "outcome": r.outcome,
                             "collector": r.collector_id, "visit_channel": r.channel,
                             "by": r.recorded_by})]
    promise = ticket = task = None
    if r.outcome == "promise":
        assert r.promise_on is not None and r.promise_amount_fen is not None
        prow = {"visit_id": visit.visit_id, "account_id": r.account_id,
                "customer_id": customer_id, "made_at": now, "made_on": business_date(now),
                "due_on": r.promise_on, "amount": int(r.promise_amount_fen),
                "ladder_at": stood[0] if stood else None, "level_at": stood[1] if stood else None,
                "status": "open"}
        pid = conn.execute(_statement(conn, "promise"), prow).scalar_one()
        promise = PaymentPromise(promise_id=int(pid), **prow)
        events.append(_event_row(visit, "promise_made", f"promise:{pid}:made", at=now,
                                 amount=promise.amount, detail={
                                     "promise_id": pid, "visit_id": visit.visit_id,
                                     "due_on": r.promise_on.isoformat(),
                                     "level_at": promise.level_at}))
    elif r.outcome == "dispute":
        from dianfei.collections.tickets import open_checked_ticket

        conn.execute(insert(CollectionEvent), events)
        events = []
        # account and bill were checked above; the request id is new with the visit
        ticket = open_checked_ticket(session, Ticket(
            customer_id=customer_id, account_id=r.account_id, category="billing_dispute",
            summary=r.note, opened_at=now, status="open",
            request_id=f"visit:{visit.visit_id}", bill_id=r.bill_id, visit_id=visit.visit_id,
            opened_by=r.recorded_by), pol)
    elif r.outcome in FOLLOW_UP_TASKS:
        kind, department = FOLLOW_UP_TASKS[r.outcome]
        trow = {"key": f"visit:{visit.visit_id}:{kind}", "account_id": r.account_id,
                "customer_id": customer_id, "kind": kind, "status": "open", "created_at": now,
                "due_at": now + TASK_DUE,
                "detail": json.dumps({"visit_id": visit.visit_id, "department": department,
                                      "collector": r.collector_id, "note": r.note},
                                     ensure_ascii=False)}
        tid = conn.execute(_statement(conn, "task"), trow).scalar_one()
        task = CollectionTask(task_id=int(tid), **trow)
    if events:
        conn.execute(insert(CollectionEvent), events)
    return RecordedVisit(visit, promise, ticket, task)


_STATEMENTS: dict[tuple[str, str], Any] = {}


def _statement(conn: Any, which: str) -> Any:
    """The INSERT … RETURNING of a visit (ON CONFLICT on its request id DO NOTHING: a concurrent
    retry that committed first returns no row), a promise or a task; built once per dialect."""
    name = conn.dialect.name
    stmt = _STATEMENTS.get((name, which))
    if stmt is None:
        from sqlalchemy.dialects import postgresql, sqlite

        dialect: Any = postgresql if name == "postgresql" else sqlite
        if which == "visit":
            stmt = (dialect.insert(CollectionVisit)
                    .on_conflict_do_nothing(index_elements=["request_id"])
                    .returning(CollectionVisit.visit_id))
        elif which == "promise":
            stmt = insert(PaymentPromise).returning(PaymentPromise.promise_id)
        else:
            stmt = insert(CollectionTask).returning(CollectionTask.task_id)
        _STATEMENTS[(name, which)] = stmt
    return stmt


def _stored_requests(conn: Any, request_ids: list[str]) -> set[str]:
    from dianfei.db.lists import rows_in

    return {str(r[0]) for r in rows_in(
        conn, "SELECT request_id FROM collection_visits WHERE {member}", "request_id",
        request_ids)}


def _standing(conn: Any, accounts: list[str]) -> dict[str, tuple[str, str]]:
    """Where each of ``accounts`` stands on its dunning ladder (ladder, level), if it does."""
    if not accounts:
        return {}
    from dianfei.db.lists import rows_in

    return {str(r[0]): (str(r[1]), str(r[2])) for r in rows_in(
        conn, "SELECT account_id, ladder, level FROM dunning_state WHERE {member}",
        "account_id", accounts)}


def _check_on_duty(conn: Any, collector_id: str) -> None:
    """A collector the roster marks inactive (left, on leave) records nothing in their name."""
    from dianfei.collections.worklist_repository import roster_row

    row = roster_row(conn, collector_id)
    if row is not None and not row[1]:
        raise ValidationError(f"collector {collector_id} is inactive on the roster: a visit is "
                              "recorded by an active collector (dianfei worklist roster)")


def _check_fields(channel: str, outcome: str, at: datetime, now: datetime, recorded_by: str,
                  promise_on: date | None, amount: int | None, bill_id: str | None) -> None:
    if outcome not in OUTCOMES:
        raise ValidationError(f"visit outcome must be one of {', '.join(OUTCOMES)}, got {outcome!r}")
    if channel not in CHANNELS:
        raise ValidationError(f"visit channel must be one of {', '.join(CHANNELS)}, got {channel!r}")
    if at.tzinfo is None:
        raise ValidationError(f"the visit time needs a time zone, got {at.isoformat()}")
    if at > now:
        raise ValidationError(f"a visit is recorded after it took place: {at.isoformat()} is in "
                              f"the future (now {now.isoformat()})")
    if not recorded_by.strip():
        raise ValidationError("a visit names who recorded it")
    if outcome == "promise":
        if promise_on is None or amount is None:
            raise ValidationError("a promise to pay needs a date and an amount (promise_on, "
                                  f"promise_amount), got {promise_on!r} and {amount!r}")
        if isinstance(amount, bool) or not isinstance(amount, int) or amount <= 0:
            raise ValidationError(f"a promised amount is a positive number of fen, got {amount!r}")
    elif promise_on is not None or amount is not None:
        raise ValidationError(f"a promise date or amount belongs to outcome 'promise', not {outcome!r}")
    if outcome == "dispute" and not bill_id:
        raise ValidationError("a dispute names the disputed bill (bill_id)")


def _check_promise(account_id: str, promise_on: date, amount: int, today: date,
                   pol: FieldworkPolicy, due: int) -> None:
    """A promise by ``promise_on`` of ``amount`` fen on ``account_id``, which owes ``due``."""
    if promise_on < today:
        raise ValidationError(f"a promise to pay cannot be dated in the past: {promise_on} is "
                              f"before today ({today})")
    latest = today + timedelta(days=pol.promise_max_days)
    if promise_on > latest:
        raise ValidationError(f"a promise to pay is dated at most {pol.promise_max_days} days "
                              f"ahead (by {latest}), got {promise_on}")
    if due <= 0:
        raise ValidationError(f"account {account_id} owes nothing: there is nothing to promise")
    least = int((Decimal(due) * pol.promise_min_share).to_integral_value(ROUND_CEILING))
    if amount < least:
        raise ValidationError(
            f"a promise covers at least {pol.promise_min_share:%} of what account {account_id} "
            f"owes ({fmt_yuan(due)} yuan): at least {fmt_yuan(least)} yuan, got {fmt_yuan(amount)}")


def _by_request(session: Session, request_id: str) -> CollectionVisit | None:
    return session.execute(select(CollectionVisit).where(CollectionVisit.request_id == request_id)
                           ).scalar_one_or_none()


def _replay(session: Session, visit: CollectionVisit, account_id: str) -> RecordedVisit:
    if visit.account_id != account_id:
        raise ConflictError(f"request id {visit.request_id!r} was already used for visit "
                            f"{visit.visit_id} of account {visit.account_id}")
    promise = session.execute(select(PaymentPromise).where(
        PaymentPromise.visit_id == visit.visit_id)).scalar_one_or_none()
    ticket = session.execute(select(Ticket).where(Ticket.visit_id == visit.visit_id)
                             ).scalar_one_or_none()
    task = session.execute(select(CollectionTask).where(
        CollectionTask.key.like(f"visit:{visit.visit_id}:%"))).scalar_one_or_none()
    return RecordedVisit(visit, promise, ticket, task, replayed=True)


def _event_row(visit: CollectionVisit, kind: str, key: str, *, at: datetime,
               amount: int | None = None, channel: str | None = None,
               detail: dict[str, Any]) -> dict[str, Any]:
    return {"key": key, "account_id": visit.account_id, "customer_id": visit.customer_id,
            "type": kind, "at": at, "business_date": business_date(at), "amount": amount,
            "balance_after": None, "level": None, "notice": None, "channel": channel,
            "bill_id": visit.bill_id, "detail": json.dumps(detail, ensure_ascii=False)}


# -- reading -----------------------------------------------------------------------------------


def _instant(v: datetime | None) -> str | None:
    return None if v is None else v.astimezone(BUSINESS_TZ).isoformat(timespec="seconds")


def visit_json(r: RecordedVisit) -> dict[str, Any]:
    v = r.visit
    out: dict[str, Any] = {
        "visit_id": v.visit_id, "request_id": v.request_id, "account": v.customer_id,
        "account_id": v.account_id, "collector": v.collector_id, "channel": v.channel,
        "outcome": v.outcome, "at": _instant(v.at), "recorded_at": _instant(v.recorded_at),
        "recorded_by": v.recorded_by, "bill_id": v.bill_id, "note": v.note,
        "replayed": r.replayed}
    if r.promise is not None:
        p = r.promise
        out["promise"] = {"promise_id": p.promise_id, "due_on": p.due_on.isoformat(),
                          "amount": fmt_yuan(p.amount), "status": p.status,
                          "level_at": p.level_at}
    if r.ticket is not None:
        out["ticket_id"] = r.ticket.ticket_id
    if r.task is not None:
        out["task"] = {"key": r.task.key, "kind": r.task.kind}
    return out


def list_visits(session: Session, *, account_id: str | None = None,
                collector_id: str | None = None, limit: int = 500) -> list[RecordedVisit]:
    """Visits in the order they were stored (oldest first), of one account and/or collector."""
    q = select(CollectionVisit).order_by(CollectionVisit.visit_id)
    if account_id is not None:
        q = q.where(CollectionVisit.account_id == account_id)
    if collector_id is not None:
        q = q.where(CollectionVisit.collector_id == collector_id)
    visits = list(session.scalars(q.limit(limit)))
    ids = [v.visit_id for v in visits]
    promises = {p.visit_id: p for p in session.scalars(
        select(PaymentPromise).where(PaymentPromise.visit_id.in_(ids)))} if ids else {}
    tickets = {t.visit_id: t for t in session.scalars(
        select(Ticket).where(Ticket.visit_id.in_(ids)))} if ids else {}
    return [RecordedVisit(v, promises.get(v.visit_id), tickets.get(v.visit_id)) for v in visits]
