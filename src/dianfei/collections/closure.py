"""Account closure (销户) of a supply left off for six months, its arrears written off as bad debt
(呆账核销).

The Electricity Supply Business Rules (供电营业规则) end a supply contract that has gone unused for
six consecutive months without an application to suspend it: the supplier closes the account
(销户), and a customer who wants electricity again applies for a new connection. An account cut
off for arrears whose household never paid is exactly that case. Until it is closed it stays in
every daily list — a live stop case, the ladder, its late fees, the collectors' worklists — for
ever, for a debt no one is collecting. The branch closes it through the approvals core (kind
``account_closure``: a billing clerk asks, a supervisor decides) and what the account owed is
written off, visibly: the bad-debt and write-off KPIs show it.

:func:`close_account` does it in the caller's transaction (the approval's): the late fees accrued
but not posted yet are posted (the debt is what the customer owed, to the fen), everything open
is written off in one posting (``ledger.service.write_off_account``), the live stop case is closed
(``account_closed``) with its pending commands and open tasks, the account's other open tasks,
its place on the ladder and its prepayment state go, and the account is closed (customers'
service) as of the last day of the last billed period — the supply has been off since, and no
later bill run bills it. The supply interruption stays open: the supply is not restored. One
``account_closed`` collection event and one ``account.closed`` audit record tell the story.
"""

from __future__ import annotations

from datetime import date, datetime, timedelta
from typing import TYPE_CHECKING, Any

from sqlalchemy import Connection, Engine

from dianfei.audit import service as audit
from dianfei.billing.service import latest_billed_period
from dianfei.collections import repository
from dianfei.collections.context import event_frame, write_events
from dianfei.core.clock import BUSINESS_TZ, Clock, Period, business_date, start_of_day
from dianfei.core.errors import ConflictError, NotFoundError, ValidationError
from dianfei.customers import service as customers
from dianfei.ledger import service as ledger

if TYPE_CHECKING:
    import polars as pl
    from sqlalchemy.orm import Session

#: months without supply after which the contract ends (供电营业规则: six consecutive months
#: without use and no application to suspend)
CLOSE_AFTER_MONTHS = 6


def months_before(day: date, months: int) -> date:
    """The same day ``months`` calendar months earlier (the month's last day when it is
    shorter): 2026-08-31 less 6 months is 2026-02-28."""
    period = Period(day.year, day.month)
    for _ in range(months):
        period = period.prev()
    return date(period.year, period.month, min(day.day, period.last_day.day))


def off_since(conn: Connection, account_id: str) -> datetime | None:
    """When the account's supply went off, if it is off now (the open interruption's start)."""
    off: datetime | None = customers.off_since(conn, account_id)
    return off


def closure_candidates(engine: Engine | Connection, as_of: date, *,
               months: int = CLOSE_AFTER_MONTHS) -> pl.DataFrame:
    """The open accounts whose supply has been off since ``months`` calendar months before
    ``as_of`` or earlier, still off: account_id, customer_id, reason (arrears or prepayment),
    off_at (UTC), owed (fen, as posted: a closure adds the late fees accrued since the last
    month end), longest off first."""
    import polars as pl

    limit = start_of_day(months_before(as_of, months) + timedelta(days=1))
    spans = customers.supply_interruptions(engine).filter(
        pl.col("on_at").is_null() & (pl.col("off_at") < limit))
    schema: dict[str, Any] = {"account_id": pl.String, "customer_id": pl.String,
                              "reason": pl.String, "off_at": pl.Datetime("us", "UTC"),
                              "owed": pl.Int64}
    if spans.height == 0:
        return pl.DataFrame(schema=schema)
    profiles = customers.account_profiles(engine if isinstance(engine, Engine) else engine.engine)
    open_ = profiles.filter(pl.col("closed_on").is_null()).select("account_id", "customer_id")
    spans = (spans.group_by("account_id").agg(pl.col("reason").sort_by("off_at").first(),
                                              pl.col("off_at").min())
             .join(open_, on="account_id"))
    if spans.height == 0:
        return pl.DataFrame(schema=schema)
    accounts = spans["account_id"].to_list()
    if isinstance(engine, Engine):
        with engine.connect() as conn:
            owed = ledger.balances(conn, accounts)
    else:
        owed = ledger.balances(engine, accounts)
    return (spans.with_columns(pl.col("account_id").replace_strict(owed, return_dtype=pl.Int64)
                               .alias("owed"))
            .select(list(schema)).cast(pl.Schema(schema)).sort("off_at", "account_id"))


def closure_check(conn: Connection, account_id: str, as_of: date, *,
          months: int = CLOSE_AFTER_MONTHS) -> dict[str, Any]:
    """Whether the account may be closed on ``as_of``: open, supply off for at least ``months``
    months, the month before billed, no credit to refund, no active payment plan. Returns
    account_id, customer_id, off_at, owed (fen, posted and accrued) and closed_on (the last day
    of the last billed period: the contract ends with it); refuses with the reason otherwise."""
    state = customers.account_state(conn, account_id)
    if state is None:
        raise NotFoundError(f"account {account_id} does not exist")
    if state["closed_on"] is not None:
        raise ConflictError(f"account {account_id} is closed already (since {state['closed_on']})")
    off = off_since(conn, account_id)
    if off is None:
        raise ConflictError(f"account {account_id} is supplied: an account is closed here only "
                            f"after its supply has been off for {months} months")
    since = off.astimezone(BUSINESS_TZ).date()
    if since > months_before(as_of, months):
        raise ConflictError(f"account {account_id} has been off supply since {since}: not "
                            f"{months} months yet (from {_add_months(since, months)})")
    balance = ledger.balances(conn, [account_id])[account_id]
    if balance < 0:
        raise ConflictError(f"account {account_id} holds credit ({-balance} fen): refund it "
                            "before closing the account")
    # the contract ends with the last billed period: the supply has been off since, so nothing
    # more is owed for use, and no later bill run bills a closed account (it bills an account
    # in the periods it was open); that period's bill is written off with the rest
    last = Period(as_of.year, as_of.month).prev()
    billed = latest_billed_period(conn.engine)
    if billed is None or billed < str(last):
        raise ConflictError(f"the bill run of {last} has not issued yet: close account "
                            f"{account_id} after it, so that its last bill is settled with the rest")
    plan = repository.active_plan(conn, account_id)
    if plan is not None:
        raise ConflictError(f"account {account_id} has an active payment plan ({plan[0]}): "
                            "cancel it or let it break before closing the account")
    pending = sum(p[2] for p in repository.pending_fees_of(conn, account_id))
    return {"account_id": account_id, "customer_id": state["customer_id"], "off_at": off,
            "owed": balance + pending, "closed_on": last.last_day}


def _add_months(day: date, months: int) -> date:
    period = Period(day.year, day.month)
    for _ in range(months):
        period = period.next()
    return date(period.year, period.month, min(day.day, period.last_day.day))


def close_account(session: Session, account_id: str, *, clock: Clock, reason: str,
                  requested_by: str, approved_by: str) -> dict[str, Any]:
    """Close the account and write off what it owes (see the module), in the caller's
    transaction. Returns account_id, customer_id, closed_on, written_off (fen), items (how many
    written off), customer_closed, case_id (the stop case closed, or None)."""
    import polars as pl

    from dianfei.collections.service import post_late_fees
    from dianfei.collections.stops import close_for_account_closure

    if not reason.strip():
        raise ValidationError("closing an account needs a reason")
    session.flush()
    # the account row first, as the payment paths take it (PostgreSQL: a payment for this
    # account waits for the closure, or the closure for it — never each for the other)
    from sqlalchemy import select

    session.execute(select(customers.Account.account_id)
                    .where(customers.Account.account_id == account_id).with_for_update())
    conn = session.connection()
    now = clock.now()
    day = business_date(now)
    facts = closure_check(conn, account_id, day)
    customer_id = facts["customer_id"]
    pending = repository.pending_fees_of(conn, account_id)
    if pending:
        post_late_fees(conn, pl.DataFrame(
            {"bill_id": [p[0] for p in pending], "account_id": account_id,
             "customer_id": [p[1] for p in pending], "delta": [p[2] for p in pending]},
            schema={"bill_id": pl.String, "account_id": pl.String, "customer_id": pl.String,
                    "delta": pl.Int64}), day=day, now=now)
    repository.close_accruals_of(conn, account_id, day)
    written = ledger.write_off_account(
        conn, now=now, account_id=account_id, customer_id=customer_id,
        reason=f"account closed (销户), arrears written off as bad debt: {reason}")
    total = sum(w[1] for w in written)
    case_id = close_for_account_closure(session, account_id)
    tasks = repository.cancel_open_tasks_of(conn, account_id)
    repository.forget_account_state(conn, account_id)
    customer_closed = customers.close_account(conn, account_id, facts["closed_on"])
    detail = {"reason": reason, "requested_by": requested_by, "approved_by": approved_by,
              "off_since": facts["off_at"].isoformat(), "items": len(written),
              "late_fees_posted": sum(p[2] for p in pending), "case_id": case_id,
              "tasks_cancelled": tasks, "customer_closed": customer_closed}
    write_events(conn, event_frame([{
        "key": f"closed:{account_id}", "account_id": account_id, "customer_id": customer_id,
        "type": "account_closed", "at": now, "business_date": day, "amount": total,
        "balance_after": 0, "detail": _json(detail)}]))
    audit.record(conn, "account.closed", account_id, {**detail, "written_off": total,
                                                      "closed_on": facts["closed_on"].isoformat()})
    return {"account_id": account_id, "customer_id": customer_id, "closed_on": facts["closed_on"],
            "written_off": total, "items": len(written), "customer_closed": customer_closed,
            "case_id": case_id}


def _json(detail: dict[str, Any]) -> str:
    import json

    return json.dumps(detail, ensure_ascii=False, sort_keys=True)
