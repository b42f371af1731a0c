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
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from decimal import ROUND_CEILING, Decimal
from typing import Any

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from dianfei.collections.fieldwork_models import (
    CHANNELS,
    OUTCOMES,
    CollectionVisit,
    PaymentPromise,
)
from dianfei.collections.fieldwork_rules import FieldworkPolicy, fieldwork_policy
from dianfei.collections.models import CollectionEvent, CollectionTask, DunningState
from dianfei.collections.ticket_models import Ticket
from dianfei.core.clock import BUSINESS_TZ, Clock, business_date
from dianfei.core.errors import ConflictError, ValidationError
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
    from dianfei.customers import service as customers

    if not request_id or not request_id.strip():
        raise ValidationError("a visit needs a request id (the retry key)")
    if len(request_id) > 64:
        raise ValidationError(f"a request id is at most 64 characters, got {len(request_id)}")
    same = _by_request(session, request_id)
    if same is not None:
        return _replay(session, same, account_id)
    pol = policy or fieldwork_policy()
    now = clock.now()
    _check_fields(channel, outcome, at, now, recorded_by, promise_on, promise_amount_fen, bill_id)
    conn = session.connection()
    # one account's visits are stored one at a time (PostgreSQL: its account row stays locked
    # until the commit), so their events follow the visits' order in the account's history
    session.execute(select(customers.Account.account_id)
                    .where(customers.Account.account_id == account_id).with_for_update())
    customer_id = customers.customer_of_account(conn, account_id)
    customers.collector(conn, collector_id)
    _check_on_duty(conn, collector_id)
    stood: DunningState | None = None
    if outcome == "promise":
        assert promise_on is not None and promise_amount_fen is not None
        _check_promise(conn, account_id, promise_on, promise_amount_fen, business_date(now), pol)
        stood = session.get(DunningState, account_id)
    if bill_id is not None and outcome == "dispute":
        from dianfei.ledger import service as ledger

        ledger.entry_id_for(session, "bill", bill_id)  # NotFoundError names the bill
    visit = CollectionVisit(request_id=request_id, account_id=account_id, customer_id=customer_id,
                            collector_id=collector_id, channel=channel, outcome=outcome, at=at,
                            recorded_at=now, recorded_by=recorded_by, bill_id=bill_id, note=note)
    try:
        with session.begin_nested():
            session.add(visit)
            session.flush()
    except IntegrityError:
        # a concurrent retry of the same request committed first: that one is the visit
        same = _by_request(session, request_id)
        if same is None:
            raise
        return _replay(session, same, account_id)
    # the timeline shows the visit when it took place; the promise from when it was recorded
    _event(session, visit, "visit_recorded", f"visit:{visit.visit_id}", at=at, channel=channel,
           detail={"visit_id": visit.visit_id, "outcome": outcome, "collector": collector_id,
                   "visit_channel": channel, "by": recorded_by})
    promise = ticket = task = None
    if outcome == "promise":
        assert promise_on is not None and promise_amount_fen is not None
        promise = PaymentPromise(visit_id=visit.visit_id, account_id=account_id,
                                 customer_id=customer_id, made_at=now, made_on=business_date(now),
                                 due_on=promise_on, amount=int(promise_amount_fen),
                                 ladder_at=stood.ladder if stood else None,
                                 level_at=stood.level if stood else None, status="open")
        session.add(promise)
        session.flush()
        _event(session, visit, "promise_made", f"promise:{promise.promise_id}:made", at=now,
               amount=promise.amount, detail={
                   "promise_id": promise.promise_id, "visit_id": visit.visit_id,
                   "due_on": promise_on.isoformat(), "level_at": promise.level_at})
    elif outcome == "dispute":
        from dianfei.collections.tickets import open_checked_ticket

        # account and bill were checked above; the request id is new with the visit
        ticket = open_checked_ticket(session, Ticket(
            customer_id=customer_id, account_id=account_id, category="billing_dispute",
            summary=note, opened_at=now, status="open", request_id=f"visit:{visit.visit_id}",
            bill_id=bill_id, visit_id=visit.visit_id, opened_by=recorded_by), pol)
    elif outcome in FOLLOW_UP_TASKS:
        kind, department = FOLLOW_UP_TASKS[outcome]
        task = CollectionTask(
            key=f"visit:{visit.visit_id}:{kind}", account_id=account_id, customer_id=customer_id,
            kind=kind, status="open", created_at=now, due_at=now + TASK_DUE,
            detail=json.dumps({"visit_id": visit.visit_id, "department": department,
                               "collector": collector_id, "note": note}, ensure_ascii=False))
        session.add(task)
    session.flush()
    from dianfei.audit import service as audit

    audit.record(conn, "visit.recorded", account_id, {
        "visit_id": visit.visit_id, "request_id": request_id, "collector_id": collector_id,
        "channel": channel, "outcome": outcome, "at": at.isoformat(), "recorded_by": recorded_by,
        "promise_id": promise.promise_id if promise else None,
        "promise_amount_fen": promise.amount if promise else None,
        "promise_on": promise_on.isoformat() if promise_on else None,
        "ticket_id": ticket.ticket_id if ticket else None, "bill_id": bill_id,
        "task": task.key if task else None})
    return RecordedVisit(visit, promise, ticket, task)


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


def _check_promise(conn: Any, account_id: str, promise_on: date, amount: int, today: date,
                   pol: FieldworkPolicy) -> None:
    from dianfei.collections.account import owed

    if promise_on < today:
        raise ValidationError(f"a promise to pay cannot be dated in the past: {promise_on} is "
                              f"before today ({today})")
    latest = today + timedelta(days=pol.promise_max_days)
    if promise_on > latest:
        raise ValidationError(f"a promise to pay is dated at most {pol.promise_max_days} days "
                              f"ahead (by {latest}), got {promise_on}")
    due = owed(conn, [account_id]).get(account_id, 0)
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


def _event(session: Session, visit: CollectionVisit, kind: str, key: str, *, at: datetime,
           amount: int | None = None, channel: str | None = None,
           detail: dict[str, Any]) -> None:
    session.add(CollectionEvent(key=key, account_id=visit.account_id,
                                customer_id=visit.customer_id, type=kind, at=at,
                                business_date=business_date(at), amount=amount, channel=channel,
                                bill_id=visit.bill_id,
                                detail=json.dumps(detail, ensure_ascii=False)))


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
