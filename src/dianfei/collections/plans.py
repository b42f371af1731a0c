"""Payment plans (分期缴费协议) and late-fee waivers (违约金减免).

A plan spreads what an account owes over dated instalments. While it is kept, the dunning ladder
pauses (levels match only accounts without an open plan) and any stop is cancelled or the supply
reconnected. Each day the plan is checked against the payments made since it was agreed: when the
instalments due before today exceed them, the plan is broken (``plan_broken``) and the ladder
resumes; when the payments reach the total, it is completed.

A waiver cancels the late fees posted on one bill and stops further accrual on it. It needs a
reason and an approver who is not the requester (four-eyes), and is posted as a credit
``adjustment`` so the ledger keeps both the fee and its waiver.
"""

from __future__ import annotations

import json
from datetime import date

from sqlalchemy import func, select, text
from sqlalchemy.orm import Session

from dianfei.collections.models import (
    CollectionEvent,
    LateFeeAccrual,
    LateFeeWaiver,
    PaymentPlan,
    PlanInstalment,
)
from dianfei.core.clock import Clock, business_date
from dianfei.core.errors import ConflictError, NotFoundError, ValidationError
from dianfei.ledger import service as ledger


def _account(session: Session, account_id: str) -> str:
    row = session.execute(text("SELECT customer_id FROM accounts WHERE account_id = :a"),
                          {"a": account_id}).first()
    if row is None:
        raise NotFoundError(f"account {account_id} does not exist")
    return str(row[0])


def _four_eyes(requested_by: str, approved_by: str | None, what: str) -> None:
    if not requested_by.strip():
        raise ValidationError(f"a {what} names who requested it")
    if approved_by is not None and (not approved_by.strip() or approved_by == requested_by):
        raise ValidationError(f"a {what} is approved by someone other than the requester "
                              f"({requested_by!r})")


def agree_plan(session: Session, *, account_id: str, instalments: list[tuple[date, int]],
               requested_by: str, clock: Clock, approved_by: str | None = None) -> PaymentPlan:
    """Record an agreed plan and its ``plan_agreed`` event. One active plan per account."""
    _four_eyes(requested_by, approved_by, "payment plan")
    if not instalments:
        raise ValidationError("a payment plan needs at least one instalment")
    if any(a <= 0 for _, a in instalments):
        raise ValidationError("every instalment amount must be positive")
    dates = [d for d, _ in instalments]
    if dates != sorted(dates) or len(set(dates)) != len(dates):
        raise ValidationError("instalment dates must be strictly increasing")
    customer_id = _account(session, account_id)
    now = clock.now()
    today = business_date(now)
    if dates[0] < today:
        raise ValidationError(f"the first instalment ({dates[0]}) is before today ({today})")
    mark = session.execute(select(func.coalesce(func.max(text("entry_id")), 0)).select_from(
        text("ledger_entries")).where(text("account_id = :a")), {"a": account_id}).scalar_one()
    plan = PaymentPlan(account_id=account_id, customer_id=customer_id, status="active",
                       agreed_at=now, agreed_on=today, ledger_mark=int(mark),
                       total=sum(a for _, a in instalments), requested_by=requested_by,
                       approved_by=approved_by)
    from sqlalchemy.exc import IntegrityError

    try:
        with session.begin_nested():
            session.add(plan)
            session.flush()
    except IntegrityError:
        raise ConflictError(f"account {account_id} already has an active payment plan") from None
    for i, (d, a) in enumerate(instalments, start=1):
        session.add(PlanInstalment(plan_id=plan.plan_id, seq=i, due_on=d, amount=a))
    session.add(CollectionEvent(
        key=f"plan:{plan.plan_id}:agreed", account_id=account_id, customer_id=customer_id,
        type="plan_agreed", at=now, business_date=today, amount=plan.total,
        detail=json.dumps({"plan_id": plan.plan_id, "instalments": [
            {"due_on": d.isoformat(), "amount": a} for d, a in instalments]})))
    session.flush()
    return plan


def waive_late_fees(session: Session, *, bill_id: str, reason: str, requested_by: str,
                    approved_by: str, clock: Clock) -> LateFeeWaiver:
    """Waive every late fee posted on ``bill_id`` so far and stop further accrual on it."""
    if not reason.strip():
        raise ValidationError("a waiver needs a reason")
    _four_eyes(requested_by, approved_by, "waiver")
    rows = session.execute(text(
        "SELECT account_id, customer_id, COALESCE(SUM(amount), 0) FROM ledger_entries "
        "WHERE kind = 'late_fee' AND reference LIKE :p GROUP BY account_id, customer_id"),
        {"p": f"LF:{bill_id}:%"}).all()
    accrual = session.get(LateFeeAccrual, bill_id)
    if not rows and accrual is None:
        raise NotFoundError(f"bill {bill_id} has no late fees")
    account_id, customer_id, amount = (str(rows[0][0]), str(rows[0][1]), int(rows[0][2])) if rows \
        else (accrual.account_id, accrual.customer_id, 0)  # type: ignore[union-attr]
    now = clock.now()
    waiver = LateFeeWaiver(bill_id=bill_id, account_id=account_id, amount=amount, reason=reason,
                           requested_by=requested_by, approved_by=approved_by, created_at=now)
    from sqlalchemy.exc import IntegrityError

    try:
        with session.begin_nested():
            session.add(waiver)
            session.flush()
    except IntegrityError:
        raise ConflictError(f"the late fees of bill {bill_id} are already waived") from None
    if amount:
        ledger.post_entry(session, clock=clock, account_id=account_id, customer_id=customer_id,
                          kind="adjustment", amount=-amount, reference=f"LFW:{bill_id}",
                          reason=f"late fee waiver: {reason} (approved by {approved_by})")
    if accrual is not None:
        accrual.waived = True
    session.add(CollectionEvent(
        key=f"waiver:{bill_id}", account_id=account_id, customer_id=customer_id, type="waiver",
        at=now, business_date=business_date(now), amount=amount, bill_id=bill_id,
        detail=json.dumps({"reason": reason, "requested_by": requested_by,
                           "approved_by": approved_by}, ensure_ascii=False)))
    session.flush()
    return waiver
