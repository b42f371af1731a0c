"""Suspension for arrears (欠费停电), lawfully: the arrears flow of the stop cases.

The life cycle of a case (``noticing → noticed → ordered → suspended → reconnecting → closed``),
the notice period, the re-check before a trip, meter commands and reconnection are the public
stop-case API of :mod:`dianfei.collections.stops`, shared with smart prepayment
(:mod:`dianfei.collections.prepay`). This module decides, from the day's arrears snapshot and
the dunning ladder, when an account in arrears gets a case and how its case moves:

- **notice**: the stop notice (停电通知) is queued when the ladder reaches a level with a
  ``stop_notice`` or ``suspension_order`` action (one case per account and oldest bill). The notice
  period runs from when notify SENT it (N days per class: 7 residential, 3 others).
- **order**: when that time has passed, the account's level carries ``suspension_order``, it is at
  least ``min_days_overdue`` past due, it is not protected, and the clock is inside the stop window
  on a working day, the pre-stop notice (停电前提醒) goes out and the order is raised
  (``suspension_ordered``); it executes no earlier than ``pre_stop_minutes`` later, after approval
  where configured.
- **cancel / reconnect**: an account that paid (balance ≤ 0, late fees pending included) or
  agreed a plan leaves its case: a case not yet carried out is cancelled, a suspended supply is
  reconnected at once.

Protected customers are never stopped: the ladder loader refuses stop actions for them and every
step checks the flag again.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from sqlalchemy.orm import Session

from dianfei.collections import account, stops
from dianfei.collections.context import arrears_context
from dianfei.collections.notices import KEY_PREFIX, Notice

# public names of this module before the stop-case API moved to ``stops``
from dianfei.collections.stops import FieldCrew as FieldCrew
from dianfei.collections.stops import approve as approve
from dianfei.collections.stops import complete_task as complete_task
from dianfei.core.clock import business_date
from dianfei.customers import service as customers

if TYPE_CHECKING:
    import polars as pl

    from dianfei.collections.context import Context


def _level_actions(ctx: Context, ladder: str | None, level: str | None) -> set[str]:
    if not ladder or not level:
        return set()
    for ld in ctx.ladders:
        if ld.ladder_id == ladder:
            return {a.type for a in ld.level(level).actions}
    return set()


def open_cases(ctx: Context, session: Session, snapshot: pl.DataFrame) -> None:
    """Open a case (and queue the stop notice) for accounts whose level asks for one."""
    import polars as pl

    from dianfei.collections.ladder import evaluate

    levels = evaluate(snapshot, ctx.ladders).filter(pl.col("level").is_not_null())
    want = []
    for ld in ctx.ladders:
        for lv in ld.levels:
            if {a.type for a in lv.actions} & {"stop_notice", "suspension_order"}:
                want.append((ld.ladder_id, lv.name))
    if not want:
        return
    hits = levels.filter(pl.struct("ladder", "level").is_in(
        [{"ladder": a, "level": b} for a, b in want]))
    if hits.height == 0:
        return
    live = stops.live_accounts(session)
    rows = hits.join(snapshot, on="account_id").filter(~pl.col("account_id").is_in(list(live))
                                                       & ~pl.col("protected")
                                                       & ~pl.col("open_plan"))
    if rows.height == 0:
        return
    rows = rows.with_columns(pl.format(f"{KEY_PREFIX}stop:{{}}:{{}}", "account_id", "oldest_bill")
                             .alias("notice_key"))
    # a case closed because its notice could not be delivered is not reopened for the same bill
    # every day (the worklist task stands); a new oldest bill opens a new case
    rows = stops.open_cases(session, rows.select(
        "account_id", "customer_id", "customer_class", pl.col("oldest_bill").alias("bill_id"),
        "notice_key", pl.col("customer_class").is_in(list(ctx.policy.approval_required_for))
        .alias("approval_required"), "amount_overdue", "oldest_due", "oldest_bill",
        "open_total"), mode="postpaid", opened_at=ctx.now)
    rows = ctx.with_names(rows)
    for row in rows.iter_rows(named=True):
        days = ctx.policy.notice_days_for(row["customer_class"])
        context = arrears_context(row)
        context["stop_on"] = (ctx.day + timedelta(days=days + 1)).isoformat()
        ctx.notices.append(Notice(row["notice_key"], row["account_id"], row["customer_id"],
                                  "stop_notice", "sms", context))
        ctx.report.stop_notices += 1


def _action(ctx: Context, status: str, f: dict[str, Any] | None, owed: int,
            stop_at: datetime | None) -> str | None:
    """What the rules do with a live case now: ``cancel`` (a case not yet carried out whose
    account paid, agreed a plan or is protected), ``order`` (a noticed case whose notice period
    is over, at a level with ``suspension_order``, far enough past due, inside the stop window),
    ``execute`` (every order: the trip re-checks), ``reconnect`` (a suspended supply whose
    account cleared), or None (it waits)."""
    cleared = f is None or bool(f["open_plan"]) or owed <= 0
    if status in ("noticing", "noticed", "ordered") and (
            cleared or (f is not None and bool(f["protected"]))):
        return "cancel"
    if status == "noticed":
        assert f is not None and stop_at is not None
        now = ctx.now
        if ("suspension_order" in _level_actions(ctx, f["ladder"], f["level"])
                and now >= stop_at and f["days_overdue"] >= ctx.policy.min_days_overdue
                and ctx.policy.stop_allowed_at(now)):
            return "order"
        return None
    if status == "ordered":
        return "execute"
    if status == "suspended" and cleared:
        return "reconnect"
    return None


def screen_cases(ctx: Context, live: pl.DataFrame, facts: pl.DataFrame,
                 owed: dict[str, int]) -> pl.DataFrame:
    """The live cases (case_id, account_id, status, earliest_stop_at) that :func:`_action` moves
    now, as columns — exactly those (a property test holds it to that), so only they are loaded.
    ``facts``: the ladder's facts of the accounts in arrears (ladder, level, days_overdue,
    open_plan, protected); ``owed``: what each account owes.

    A noticed case is screened in only when it would be ordered — its level orders a suspension,
    its notice period is over, the bill is far enough past due and the stop window is open: at a
    million accounts ~18,000 noticed cases a day wait at a level without an order (or for the
    window), and were loaded one ORM object each to be left alone."""
    import polars as pl

    now = ctx.now
    owed_frame = pl.DataFrame({"account_id": list(owed), "owed": list(owed.values())},
                              schema={"account_id": pl.String, "owed": pl.Int64})
    # whether each (ladder, level) in the facts orders a suspension: a handful of pairs
    pairs = facts.select("ladder", "level").unique().drop_nulls()
    orders = pairs.with_columns(pl.Series(
        "orders", ["suspension_order" in _level_actions(ctx, ld, lv)
                   for ld, lv in pairs.iter_rows()], dtype=pl.Boolean))
    screen = (live.join(facts.select("account_id", "ladder", "level", "days_overdue",
                                     "open_plan", "protected"), on="account_id", how="left")
              .join(orders, on=["ladder", "level"], how="left")
              .join(owed_frame, on="account_id", how="left"))
    # no facts (nothing overdue), a plan, or nothing owed: cleared, as in _action
    cleared = pl.col("open_plan").fill_null(True) | (pl.col("owed").fill_null(0) <= 0)
    status = pl.col("status")
    may_order = (pl.col("orders").fill_null(False)
                 & (pl.col("earliest_stop_at") <= now)
                 & (pl.col("days_overdue") >= ctx.policy.min_days_overdue)
                 & pl.lit(bool(ctx.policy.stop_allowed_at(now))))
    return screen.filter(
        (status.is_in(["noticing", "noticed", "ordered"])
         & (cleared | pl.col("protected").fill_null(False)))
        | ((status == "noticed") & may_order.fill_null(False))
        | (status == "ordered")
        | ((status == "suspended") & cleared)).select(live.columns)


def advance_cases(ctx: Context, session: Session, snapshot: pl.DataFrame) -> None:
    """Move every live arrears case as far as the rules allow now. The cases are screened as
    columns first and only those that move are loaded: most live cases wait for their notice
    period or stay cut off, hundreds a day."""

    from dianfei.collections.ladder import evaluate

    now = ctx.now
    live = stops.live_case_frame(session, "postpaid")
    # the facts of the accounts with a live case only (the ladder's levels of the others are
    # the dunning step's business)
    snapshot = snapshot.join(live.select("account_id").unique(), on="account_id", how="semi")
    levels = evaluate(snapshot, ctx.ladders).join(snapshot, on="account_id")
    balances = account.owed(session.connection(), sorted(set(live["account_id"].to_list())))
    # screened as columns (tens of thousands of live cases at a million accounts, most of them
    # waiting): a superset of the cases _action moves, which decides for each below
    moving = screen_cases(ctx, live, levels, balances)
    facts = {r["account_id"]: r for r in ctx.with_names(levels.join(
        moving.select("account_id").unique(), on="account_id", how="semi")).select(
        "account_id", "ladder", "level", "days_overdue", "protected", "open_plan", "name",
        "amount_overdue", "oldest_bill", "oldest_due", "open_total").iter_rows(named=True)}
    cases = stops.cases_by_id(session, moving["case_id"].to_list())
    # moved together: their events written at once, their meters read at once
    events = stops.CaseEvents()
    meters = customers.active_meters(session.connection(),
                                     [c.account_id for c in cases if c.status == "ordered"])
    actions = [(case, facts.get(case.account_id),
                _action(ctx, case.status, facts.get(case.account_id),
                        balances.get(case.account_id, 0), case.earliest_stop_at))
               for case in cases]
    # the orders due now are re-checked right before they are carried out — all of them in one
    # fresh read (stops.stoppable), not one read of the ledger per order; an order the read
    # does not clear is re-checked on its own (and cancelled) by execute_order
    fresh = stops.stoppable(session.connection(), [
        case for case, _f, action in actions if action == "execute" and stops.due_now(ctx, case)],
        ctx.policy, now)
    for case, f, action in actions:
        if action == "cancel":
            stops.cancel(ctx, session, case, "plan" if f is not None and f["open_plan"] else "paid",
                         events=events)
        elif action == "order":
            assert f is not None
            stops.order_stop(ctx, session, case, execute_after=now + ctx.policy.pre_stop,
                             events=events)
            c = arrears_context(f)
            c["stop_on"] = business_date(now + ctx.policy.pre_stop).isoformat()
            ctx.notices.append(Notice(f"{KEY_PREFIX}prestop:{case.case_id}", case.account_id,
                                      case.customer_id, "pre_stop", "sms", c))
            if case.approval_required:
                stops.add_task(session, f"approval:{case.case_id}", case, "approval", now,
                               None, {"what": "suspension order"})
        elif action == "execute":
            stops.execute_order(ctx, session, case, checked=case.case_id in fresh, events=events,
                                meters=meters)
        elif action == "reconnect":
            stops.order_reconnection(ctx, session, case, events=events)
    stops.record_batch(session, events)
    session.flush()
