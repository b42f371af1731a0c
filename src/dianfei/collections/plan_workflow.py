"""Proposing, approving and cancelling payment plans (分期缴费协议) within policy.

Two kinds:

- ``pay_plan``: a down payment and instalments on dates of their own;
- ``instalment`` (分期): a down payment, then one instalment with each of the coming bills — the
  instalment is printed on that bill's document (``bill_document_instalments``) and falls due on
  the bill's due date once the bill is issued (a provisional date until then).

:func:`propose_plan` checks the plan against the policy row of the customer's class and segment
(``plans.toml``, :mod:`plan_policy`) and refuses it naming the rule and the limit, storing
nothing. A plan the policy lets the collector agree alone is ``active`` at once; one that needs a
second person is ``proposed``, a ``plan_approval`` task is opened for supervisors, and only
:func:`approve_plan` by someone other than the requester makes it active (four-eyes).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import Any

from sqlalchemy import Connection, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from dianfei.audit import service as audit
from dianfei.collections.account import owed
from dianfei.collections.models import CollectionEvent, CollectionTask, PaymentPlan, PlanInstalment
from dianfei.collections.plan_policy import (
    KINDS,
    PlanPolicy,
    PlanRules,
    check_plan,
    plan_policy,
    segment_of,
    spread,
    suggest,
)
from dianfei.collections.plans import four_eyes
from dianfei.core.clock import Clock, Period, business_date
from dianfei.core.errors import ConflictError, NotFoundError, ValidationError
from dianfei.core.money import fmt_yuan
from dianfei.customers import service as customers

#: how long supervisors have to look at a plan awaiting approval
APPROVAL_DUE = timedelta(days=2)

Schedule = list[tuple[date, int, str | None]]


def _conn(source: Session | Connection) -> Connection:
    return source.connection() if isinstance(source, Session) else source


@dataclass(frozen=True)
class Terms:
    """What a plan for an account is checked against."""

    customer_id: str
    customer_class: str
    segment: str
    #: fen owed now (open items and late fees accrued but not yet posted)
    owed: int
    rules: PlanRules


def account_terms(conn: Connection, account_id: str, policy: PlanPolicy | None = None) -> Terms:
    customer_id = customers.customer_of_account(conn, account_id)  # NotFoundError
    facts = customers.customers_by_id(conn, [customer_id]).get(customer_id)
    if facts is None:
        raise NotFoundError(f"account {account_id}: customer {customer_id} does not exist")
    segment = segment_of(bool(facts["low_income"]))
    cls = str(facts["customer_class"])
    rules = (policy or plan_policy()).rules_for(cls, segment)
    return Terms(customer_id, cls, segment, owed(conn, [account_id])[account_id], rules)


def coming_bill_periods(conn: Connection, account_id: str, today: date, n: int) -> list[Period]:
    """The periods of the account's next ``n`` bills: after its latest live bill, and from last
    month on (the bill of last month is issued early this month)."""
    from dianfei.billing.service import bills_of_accounts

    bills = bills_of_accounts(conn, [account_id])
    live = [Period.parse(p) for p, st in zip(bills["period"].to_list(),
                                             bills["status"].to_list(), strict=True)
            if st != "cancelled"]
    first = Period(today.year, today.month).prev()
    if live and max(live).next() > first:
        first = max(live).next()
    out = [first]
    while len(out) < n:
        out.append(out[-1].next())
    return out


def candidate_dates(conn: Connection, account_id: str, kind: str, rules: PlanRules,
                    policy: PlanPolicy, today: date) -> list[tuple[date, str | None]]:
    """Due dates an instalment may take (up to the policy's most instalments): every
    ``interval_days`` for a pay plan; the coming bills' (provisional) due dates for an
    instalment arrangement, with their periods."""
    n = rules.instalments_max
    if kind == "pay_plan":
        return [(today + timedelta(days=rules.interval_days * i), None) for i in range(1, n + 1)]
    return [(p.end_date + timedelta(days=policy.unbilled_due_days), str(p))
            for p in coming_bill_periods(conn, account_id, today, n)]


def _kind(kind: str) -> str:
    if kind not in KINDS:
        raise ValidationError(f"plan kind must be one of {', '.join(KINDS)}, got {kind!r}")
    return kind


def suggest_schedule(source: Session | Connection, *, account_id: str, kind: str = "pay_plan",
                     clock: Clock, policy: PlanPolicy | None = None) -> dict[str, Any]:
    """A policy-conforming schedule for what the account owes now: the smallest down payment
    and as many instalments as the policy allows. What the hardship follow-up of a visit offers
    and what :func:`propose_plan` accepts as is. Nothing is stored."""
    conn = _conn(source)
    pol = policy or plan_policy()
    _kind(kind)
    terms = account_terms(conn, account_id, pol)
    segment, total, rules = terms.segment, terms.owed, terms.rules
    today = business_date(clock.now())
    cands = candidate_dates(conn, account_id, kind, rules, pol, today)
    periods = dict(cands)
    down, inst = suggest(rules, total, today, [d for d, _ in cands])
    return {"account": account_id, "account_id": account_id, "kind": kind, "segment": segment,
            "policy": rules.row, "total": fmt_yuan(total), "total_fen": total,
            "down_payment": fmt_yuan(down), "down_payment_fen": down,
            "down_payment_due_on": (today + timedelta(days=rules.down_payment_days)).isoformat(),
            "instalments": [{"due_on": d.isoformat(), "amount": fmt_yuan(a), "amount_fen": a,
                             "period": periods[d]} for d, a in inst],
            "approval_required": rules.needs_approval(total)}


def _schedule(conn: Connection, account_id: str, kind: str, rules: PlanRules,
              policy: PlanPolicy, today: date, rest: int,
              instalments: int | Sequence[int] | Sequence[tuple[date, int]]) -> Schedule:
    """The instalments after the down payment: (due date, fen, period of the bill or None)."""
    if isinstance(instalments, int):
        if instalments < 1:
            raise ValidationError(f"a plan needs at least one instalment, got {instalments}")
        amounts = spread(rest, instalments)
        if kind == "pay_plan":
            return [(today + timedelta(days=rules.interval_days * i), a, None)
                    for i, a in enumerate(amounts, start=1)]
        periods = coming_bill_periods(conn, account_id, today, len(amounts))
        return [(p.end_date + timedelta(days=policy.unbilled_due_days), a, str(p))
                for p, a in zip(periods, amounts, strict=True)]
    items: list[object] = list(instalments)
    if not items:
        raise ValidationError("a payment plan needs at least one instalment")
    if kind == "pay_plan":
        pairs = [i for i in items if isinstance(i, tuple) and len(i) == 2
                 and isinstance(i[0], date) and isinstance(i[1], int)]
        if len(pairs) != len(items):
            raise ValidationError("a pay plan's instalments are (date, amount) pairs")
        return [(d, a, None) for d, a in pairs]
    amounts = [i for i in items if isinstance(i, int)]
    if len(amounts) != len(items):
        raise ValidationError("an instalment arrangement's instalments are amounts: their dates "
                              "are the coming bills' due dates")
    periods = coming_bill_periods(conn, account_id, today, len(amounts))
    return [(p.end_date + timedelta(days=policy.unbilled_due_days), a, str(p))
            for p, a in zip(periods, amounts, strict=True)]


def _event(plan: PaymentPlan, kind: str, now: datetime, amount: int | None,
           detail: dict[str, Any]) -> CollectionEvent:
    suffix = kind.removeprefix("plan_")
    return CollectionEvent(key=f"plan:{plan.plan_id}:{suffix}", account_id=plan.account_id,
                           customer_id=plan.customer_id, type=kind, at=now,
                           business_date=business_date(now), amount=amount,
                           detail=json.dumps({"plan_id": plan.plan_id, "kind": plan.kind,
                                              **detail}, ensure_ascii=False))


def propose_plan(session: Session, *, account_id: str, kind: str, down_payment_fen: int,
                 instalments: int | Sequence[int] | Sequence[tuple[date, int]],
                 requested_by: str, clock: Clock, request_key: str | None = None,
                 policy: PlanPolicy | None = None) -> PaymentPlan:
    """Propose a plan for everything the account owes now (``total``), within policy.

    ``instalments``: how many (the rest after the down payment spread evenly to the fen), or
    the amounts — with dates for a ``pay_plan``, without for an ``instalment`` arrangement (its
    dates are the coming bills'). Refused, storing nothing, when outside the policy row (naming
    the rule and the limit) or when the account already has an open plan. ``request_key``: a
    retried proposal with the same key returns the stored plan."""
    _kind(kind)
    if not requested_by.strip():
        raise ValidationError("a payment plan names who requested it")
    if request_key is not None:
        known = session.scalars(select(PaymentPlan).where(
            PaymentPlan.request_key == request_key)).first()
        if known is not None:
            if known.account_id != account_id:
                raise ConflictError(f"request key {request_key!r} was used for account "
                                    f"{known.account_id}")
            return known
    pol = policy or plan_policy()
    conn = session.connection()
    terms = account_terms(conn, account_id, pol)
    customer_id, total, rules = terms.customer_id, terms.owed, terms.rules
    now = clock.now()
    today = business_date(now)
    if total <= 0:
        raise ValidationError(f"account {account_id} owes nothing ({fmt_yuan(total)} yuan): no "
                              "plan to agree")
    if down_payment_fen >= total:
        raise ValidationError(f"the down payment {fmt_yuan(down_payment_fen)} covers the whole "
                              f"{fmt_yuan(total)} owed: take it as a payment, not a plan")
    sched = _schedule(conn, account_id, kind, rules, pol, today, total - down_payment_fen,
                      instalments)
    check_plan(rules, total=total, down_payment=down_payment_fen,
               instalments=[(d, a) for d, a, _ in sched], today=today)
    approval = rules.needs_approval(total)
    plan = PaymentPlan(account_id=account_id, customer_id=customer_id,
                       status="proposed" if approval else "active", agreed_at=now,
                       agreed_on=today, ledger_mark=0, total=total, requested_by=requested_by,
                       kind=kind, customer_class=terms.customer_class, segment=terms.segment,
                       down_payment=down_payment_fen, grace_days=rules.grace_days,
                       request_key=request_key)
    try:
        with session.begin_nested():
            session.add(plan)
            session.flush()
    except IntegrityError:
        raise ConflictError(f"account {account_id} already has an open (proposed or active) "
                            "payment plan") from None
    rows: Schedule = []
    if down_payment_fen > 0:
        rows.append((today + timedelta(days=rules.down_payment_days), down_payment_fen, None))
    rows += sched
    first_seq = 0 if down_payment_fen > 0 else 1
    for seq, (d, a, period) in enumerate(rows, start=first_seq):
        session.add(PlanInstalment(plan_id=plan.plan_id, seq=seq, due_on=d, amount=a,
                                   period=period))
    schedule = [{"seq": seq, "due_on": d.isoformat(), "amount": fmt_yuan(a), "period": period}
                for seq, (d, a, period) in enumerate(rows, start=first_seq)]
    why = ("always for " + rules.row) if rules.approval_always else \
        f"total above {fmt_yuan(rules.approval_above)}"
    if approval:
        session.add(_event(plan, "plan_proposed", now, total, {
            "requested_by": requested_by, "approval": why, "instalments": schedule}))
        session.add(CollectionTask(
            key=f"plan:{plan.plan_id}:approval", account_id=account_id, customer_id=customer_id,
            kind="plan_approval", status="open", created_at=now, due_at=now + APPROVAL_DUE,
            detail=json.dumps({"plan_id": plan.plan_id, "kind": kind, "total": fmt_yuan(total),
                               "requested_by": requested_by, "why": why}, ensure_ascii=False)))
    else:
        session.add(_event(plan, "plan_agreed", now, total, {
            "requested_by": requested_by, "instalments": schedule}))
    session.flush()
    audit.record(conn, "plan.proposed" if approval else "plan.agreed", account_id, {
        "plan_id": plan.plan_id, "kind": kind, "total_fen": total,
        "down_payment_fen": down_payment_fen, "policy": rules.row,
        "requested_by": requested_by, "approval_required": approval,
        "instalments": [{"due_on": d.isoformat(), "amount_fen": a, "period": period}
                        for d, a, period in rows]})
    return plan


def _plan_for_update(session: Session, plan_id: int) -> PaymentPlan:
    plan = session.get(PaymentPlan, plan_id, with_for_update=True)
    if plan is None:
        raise NotFoundError(f"payment plan {plan_id} does not exist")
    return plan


def _close_task(session: Session, plan: PaymentPlan, status: str, by: str, now: datetime) -> None:
    task = session.scalars(select(CollectionTask).where(
        CollectionTask.key == f"plan:{plan.plan_id}:approval")).first()
    if task is not None and task.status == "open":
        task.status, task.done_at, task.done_by = status, now, by


def approve_plan(session: Session, plan_id: int, approved_by: str, clock: Clock) -> PaymentPlan:
    """A second person approves a proposed plan: it becomes active (dunning pauses, a stopped
    supply is reconnected). The requester cannot approve their own plan. Approving again by
    the same approver returns the plan unchanged."""
    plan = _plan_for_update(session, plan_id)
    if plan.status == "active" and plan.approved_by == approved_by:
        return plan
    if plan.status != "proposed":
        raise ConflictError(f"payment plan {plan_id} is {plan.status}, not awaiting approval")
    if not approved_by.strip():
        raise ValidationError("an approval names who approves")
    four_eyes(plan.requested_by, approved_by, "payment plan")
    now = clock.now()
    today = business_date(now)
    first = session.scalars(select(PlanInstalment.due_on).where(
        PlanInstalment.plan_id == plan_id).order_by(PlanInstalment.due_on)).first()
    if first is not None and first < today:
        raise ValidationError(f"payment plan {plan_id}'s first instalment ({first}) is already "
                              f"past ({today}): cancel it and propose a new one")
    plan.status, plan.approved_by, plan.approved_at = "active", approved_by, now
    try:
        with session.begin_nested():
            session.flush()
    except IntegrityError:
        raise ConflictError(f"account {plan.account_id} already has an active payment plan") \
            from None
    session.add(_event(plan, "plan_approved", now, plan.total, {"approved_by": approved_by,
                                                                "requested_by": plan.requested_by}))
    session.add(_event(plan, "plan_agreed", now, plan.total, {"approved_by": approved_by}))
    _close_task(session, plan, "done", approved_by, now)
    session.flush()
    audit.record(session.connection(), "plan.approved", plan.account_id, {
        "plan_id": plan_id, "total_fen": plan.total, "requested_by": plan.requested_by,
        "approved_by": approved_by})
    return plan


def cancel_plan(session: Session, plan_id: int, *, cancelled_by: str, reason: str,
                clock: Clock) -> PaymentPlan:
    """Cancel a proposed or active plan (the customer withdrew, the terms were wrong): dunning
    resumes from the next daily run."""
    if not reason.strip():
        raise ValidationError("cancelling a payment plan needs a reason")
    if not cancelled_by.strip():
        raise ValidationError("cancelling a payment plan names who cancels it")
    plan = _plan_for_update(session, plan_id)
    if plan.status == "cancelled":
        return plan
    if plan.status not in ("proposed", "active"):
        raise ConflictError(f"payment plan {plan_id} is {plan.status}: only a proposed or "
                            "active plan can be cancelled")
    now = clock.now()
    plan.status, plan.ended_on = "cancelled", business_date(now)
    plan.ended_by, plan.end_reason = cancelled_by, reason
    session.add(_event(plan, "plan_cancelled", now, None, {"cancelled_by": cancelled_by,
                                                           "reason": reason}))
    _close_task(session, plan, "cancelled", cancelled_by, now)
    session.flush()
    audit.record(session.connection(), "plan.cancelled", plan.account_id, {
        "plan_id": plan_id, "cancelled_by": cancelled_by, "reason": reason})
    return plan
