"""Payment plans (分期缴费协议) and late-fee waivers (违约金减免).

A plan spreads what an account owes over dated instalments. While it is kept, the dunning ladder
pauses (levels match only accounts without an open plan) and any stop is cancelled or the supply
reconnected. Each day the plan is checked against the payments made since it was agreed
(:mod:`plan_watch`): a missed instalment breaks it after the plan's grace days (none for a plan
agreed here) and the ladder resumes; when the payments reach the total, it is completed.

:func:`agree_plan` records a plan as agreed, without the policy check; plans within policy, with
four-eyes approval when the policy asks for it, are proposed through :mod:`plan_workflow`.

A waiver cancels the late fees posted on one bill and stops further accrual on it. It needs a
reason and an approver who is not the requester (four-eyes), and is posted as a ledger
``reversal`` of each fee entry, so the ledger keeps both the fee and its waiver and payment
allocation (which nets reversals) no longer sees the fee as open.
"""

from __future__ import annotations

import json
from datetime import date

from sqlalchemy.orm import Session

from dianfei.audit import service as audit
from dianfei.collections.models import (
    CollectionEvent,
    LateFeeAccrual,
    LateFeeWaiver,
    PaymentPlan,
    PlanInstalment,
)
from dianfei.core.clock import Clock, business_date
from dianfei.core.errors import ConflictError, NotFoundError, ValidationError
from dianfei.customers import service as customers
from dianfei.ledger import service as ledger


def four_eyes(requested_by: str, approved_by: str | None, what: str) -> None:
    if not requested_by.strip():
        raise ValidationError(f"a {what} names who requested it")
    if approved_by is not None and (not approved_by.strip() or approved_by == requested_by):
        raise ValidationError(f"a {what} is approved by someone other than the requester "
                              f"({requested_by!r})")


def agree_plan(session: Session, *, account_id: str, instalments: list[tuple[date, int]],
               requested_by: str, clock: Clock, approved_by: str | None = None) -> PaymentPlan:
    """Record an agreed plan and its ``plan_agreed`` event. One active plan per account."""
    four_eyes(requested_by, approved_by, "payment plan")
    if not instalments:
        raise ValidationError("a payment plan needs at least one instalment")
    if any(a <= 0 for _, a in instalments):
        raise ValidationError("every instalment amount must be positive")
    dates = [d for d, _ in instalments]
    if dates != sorted(dates) or len(set(dates)) != len(dates):
        raise ValidationError("instalment dates must be strictly increasing")
    customer_id = customers.customer_of_account(session.connection(), account_id)
    now = clock.now()
    today = business_date(now)
    if dates[0] < today:
        raise ValidationError(f"the first instalment ({dates[0]}) is before today ({today})")
    # payments count towards the plan by time (posted since ``agreed_at``), not by ledger ids
    plan = PaymentPlan(account_id=account_id, customer_id=customer_id, status="active",
                       agreed_at=now, agreed_on=today, ledger_mark=0, kind="pay_plan",
                       total=sum(a for _, a in instalments), requested_by=requested_by,
                       approved_by=approved_by)
    from sqlalchemy.exc import IntegrityError

    try:
        with session.begin_nested():
            session.add(plan)
            session.flush()
    except IntegrityError:
        raise ConflictError(f"account {account_id} already has an open (proposed or active) "
                            "payment plan") from None
    for i, (d, a) in enumerate(instalments, start=1):
        session.add(PlanInstalment(plan_id=plan.plan_id, seq=i, due_on=d, amount=a))
    session.add(CollectionEvent(
        key=f"plan:{plan.plan_id}:agreed", account_id=account_id, customer_id=customer_id,
        type="plan_agreed", at=now, business_date=today, amount=plan.total,
        detail=json.dumps({"plan_id": plan.plan_id, "instalments": [
            {"due_on": d.isoformat(), "amount": a} for d, a in instalments]})))
    session.flush()
    audit.record(session.connection(), "plan.agreed", account_id, {
        "plan_id": plan.plan_id, "total_fen": plan.total, "requested_by": requested_by,
        "approved_by": approved_by,
        "instalments": [{"due_on": d.isoformat(), "amount_fen": a} for d, a in instalments]})
    return plan


def waive_late_fees(session: Session, *, bill_id: str, reason: str, requested_by: str,
                    approved_by: str, clock: Clock) -> LateFeeWaiver:
    """Waive every late fee posted on ``bill_id`` so far and stop further accrual on it.

    Each not-yet-reversed ``late_fee`` entry of the bill gets a ledger ``reversal`` (the reason is
    the waiver's). Payments read open items as debits less their reversals less allocations, so a
    reversed fee is no longer open and no later payment can pay it; money a payment had already
    put on a waived fee goes back to the customer's credit and on to whatever else is open — all
    in the reversal's posting (:mod:`dianfei.ledger.posting`)."""
    if not reason.strip():
        raise ValidationError("a waiver needs a reason")
    four_eyes(requested_by, approved_by, "waiver")
    accrual = session.get(LateFeeAccrual, bill_id, with_for_update=True)
    fees = ledger.unreversed_entries(session, "late_fee", f"LF:{bill_id}:")
    if not fees and accrual is None:
        raise NotFoundError(f"bill {bill_id} has no late fees")
    if fees:
        account_id, customer_id = str(fees[0][1]), str(fees[0][2])
    else:
        assert accrual is not None
        account_id, customer_id = accrual.account_id, accrual.customer_id
    # the fees posted to the ledger and those accrued since but not posted yet
    pending = 0
    if accrual is not None and not accrual.waived:
        pending = max(int(accrual.accrued or 0) - int(accrual.posted), 0)
    amount = sum(int(f[3]) for f in fees) + pending
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
    reversals = [ledger.reverse_entry(session, clock=clock, entry_id=int(f[0]), reason=reason).entry_id
                 for f in fees]
    if accrual is not None:
        accrual.waived = True
        accrual.accrued = accrual.posted  # the pending part is dropped, not posted
    session.flush()
    session.add(CollectionEvent(
        key=f"waiver:{bill_id}", account_id=account_id, customer_id=customer_id, type="waiver",
        at=now, business_date=business_date(now), amount=amount, bill_id=bill_id,
        detail=json.dumps({"reason": reason, "requested_by": requested_by,
                           "approved_by": approved_by, "waiver_id": waiver.waiver_id,
                           "reversals": reversals}, ensure_ascii=False)))
    session.flush()
    audit.record(session.connection(), "late_fee.waived", account_id, {
        "bill_id": bill_id, "amount_fen": amount, "reason": reason,
        "requested_by": requested_by, "approved_by": approved_by,
        "waiver_id": waiver.waiver_id, "reversals": reversals})
    return waiver
