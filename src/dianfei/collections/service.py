"""Entry points of collections (催费): one day of collections, the event history, worklists.

``run_day(db, day, clock=…)`` evaluates one business day against a snapshot, in this order:

1. ``payment_received`` events for the payments the money core posted since the last run (with
   the account's balance right after each): collections consumes the ``payment_posted`` events
   of the event outbox, marking each one handled in the transaction that records it — no
   high-water mark on ids, so a payment whose transaction committed late is never skipped;
2. payment plans: broken when an instalment date passed unpaid, completed when paid; promises
   to pay kept or broken, tickets past their SLA escalated (``fieldwork_day``);
3. late fees: each overdue bill's fee accrued through today (new ledger entries of kind
   ``late_fee``, reference ``LF:{bill}:{day}``, only the change of the once-rounded total);
4. the dunning ladder: each account's level from the snapshot (days past the DUE date, amount,
   class, segment, risk band, protected, open plan); a new (level, oldest bill) fires its actions
   once; an account that paid or agreed a plan leaves the ladder at once;
5. notices go out through notify; ``notice_sent`` events carry the SENT time;
6. stop cases (the stop-case API of ``stops``, driven by the arrears flow of ``suspension`` and
   the prepayment flow of ``prepay``): notice → order → stop, with the balance checked again
   right before the meter is tripped; reconnection after full payment or a plan; smart
   prepayment: available balances, warnings, cut-off after the wait, close after a top-up;
7. meter commands: tried, retried, then on the worklist.

Re-running a day does nothing new: every event, task, notice and command has an idempotency
key, and state changes only when the snapshot changes.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from datetime import UTC, date, datetime, timedelta
from typing import TYPE_CHECKING, Any

from sqlalchemy import select, update

from dianfei.collections import repository
from dianfei.collections.account import owed

# account closure (销户) after six months without supply: the approvals kind, the CLI list
from dianfei.collections.closure import CLOSE_AFTER_MONTHS as CLOSE_AFTER_MONTHS
from dianfei.collections.closure import close_account as close_account
from dianfei.collections.closure import closure_candidates as closure_candidates
from dianfei.collections.closure import closure_check as closure_check

# the run's context, report and event helpers (collections.context), public here too
from dianfei.collections.context import PAY_CHANNELS as PAY_CHANNELS
from dianfei.collections.context import Context as Context
from dianfei.collections.context import DayReport as DayReport
from dianfei.collections.context import arrears_context, event_schema, write_events
from dianfei.collections.context import event_frame as event_frame

# payment plans (分期缴费协议), public here: the bill document's instalment hook, the workflow
from dianfei.collections.incentives import bill_document_ratings as bill_document_ratings
from dianfei.collections.ladder import TASK_ACTIONS, Ladder, evaluate, ladders
from dianfei.collections.late_fees import accrue_frame
from dianfei.collections.models import CollectionRun
from dianfei.collections.notices import KEY_PREFIX, Notice, Notifier, NotifyOutbox
from dianfei.collections.plan_report import bill_document_instalments as bill_document_instalments
from dianfei.collections.plan_workflow import approve_plan as approve_plan
from dianfei.collections.plan_workflow import cancel_plan as cancel_plan
from dianfei.collections.plan_workflow import propose_plan as propose_plan
from dianfei.collections.plan_workflow import suggest_schedule as suggest_schedule
from dianfei.collections.rules import Policy, policy, with_settings

# the risk segments (客户分类) of the accounts in arrears, as the daily runs recorded them
from dianfei.collections.segments import arrears_by_segment as arrears_by_segment

# the service-ticket register (complaints, satisfaction): KPIs count its rows
from dianfei.collections.surveys import surveys_between as surveys_between
from dianfei.collections.ticket_models import COMPLAINT_CATEGORIES as COMPLAINT_CATEGORIES
from dianfei.collections.ticket_models import TICKET_CATEGORIES as TICKET_CATEGORIES
from dianfei.collections.tickets import decide_ticket as decide_ticket
from dianfei.collections.tickets import record_ticket as record_ticket
from dianfei.collections.tickets import tickets_between as tickets_between

# one debit written off (核销) with the late fee accrued on it (approvals kind write_off)
from dianfei.collections.write_offs import WrittenOff as WrittenOff
from dianfei.collections.write_offs import pending_fee as pending_fee
from dianfei.collections.write_offs import write_off_debt as write_off_debt
from dianfei.core.clock import BUSINESS_TZ, Clock, business_date, start_of_day
from dianfei.core.faults import kill_point
from dianfei.core.metrics import Metric
from dianfei.core.money import fmt_yuan

if TYPE_CHECKING:
    from concurrent.futures import Future

    import polars as pl

    from dianfei.db.background import Background
    from dianfei.db.engine import Database
    from dianfei.metering.service import RemoteSwitch
    from dianfei.risk.service import RiskScorer

def run_day(db: Database, day: date, *, clock: Clock, switch: RemoteSwitch | None = None,
            senders: Any = None, notifier: Notifier | None = None,
            policy_: Policy | None = None, ladder_list: list[Ladder] | None = None,
            scorer: RiskScorer | None = None) -> DayReport:
    """One day of collections (idempotent per day). Call it once a day, best in the stop window
    (e.g. 09:00): stops are only carried out when the clock is inside the window on a working
    day; outside it, orders wait for the next run (or :func:`process_commands`)."""
    ctx = Context(db, day, clock, policy_ or with_settings(policy(), db.settings.raw),
                  ladder_list or ladders(),
                  notifier or NotifyOutbox(), switch, DayReport(day))
    t = time.perf_counter()

    def lap(name: str) -> None:
        nonlocal t
        now = time.perf_counter()
        ctx.report.timings[name] = now - t
        t = now

    with db.engine.begin() as conn:
        import polars as pl

        from dianfei.db.bulk import write_frame

        repository.delete_run(conn, day)
        write_frame(conn, "collection_runs", pl.DataFrame({
            "day": [day], "started_at": [ctx.now], "payment_mark": [0]},
            schema={"day": pl.Date, "started_at": pl.Datetime("us", "UTC"),
                    "payment_mark": pl.Int64}))
    consume_events(ctx)
    lap("payments")
    with db.engine.begin() as conn:
        _check_plans(ctx, conn)
    lap("plans")
    fieldwork_day(ctx)
    lap("fieldwork")
    # the day works on what is overdue: every debit past its due date, not the whole book (the
    # month's bills not yet due are most of it); fees posted today fall due today, so they
    # join tomorrow's. Read on the second core while the ratings run: they write only ratings,
    # their events and tasks, never the money core's open items this reads (docs/architecture.md,
    # "The collections day on two cores")
    from dianfei.db.background import Background

    with Background(db.engine, "collections-day") as pool:
        overdue = pool.submit(overdue_items, db.engine, day)
        # then the prepaid accounts' charges accrued since their last bill: they read customers,
        # bills and reads only, which the day does not write (their balances, which the day's
        # late fees move, are joined later)
        from dianfei.collections import prepay

        charges = pool.submit(prepay.accrued_charges, ctx)
        # collector operations (C): ratings before the snapshot, which reads the repeat defaulters
        from dianfei.collections import operations

        operations.before_snapshot(ctx)
        lap("ratings")
        items, ctx.report.background["overdue_items"] = overdue.result()
        ctx.accounts = sorted(set(items["account_id"].to_list()))
        lap("snapshot")
        _day_after_snapshot(ctx, items, scorer, senders, pool, charges, lap)
    return ctx.report


def _day_after_snapshot(ctx: Context, items: pl.DataFrame, scorer: RiskScorer | None,
                        senders: Any, pool: Background,
                        charges: Future[tuple[pl.DataFrame, float]],
                        lap: Callable[[str], None]) -> None:
    """The rest of :func:`run_day` once the day's overdue items are read."""
    from dianfei.collections import operations, prepay, stops, suspension

    db, day, clock, switch = ctx.db, ctx.day, ctx.clock, ctx.switch
    # the ladder's visit and referral tasks of accounts that paid are done: no collector is
    # sent to (and no worklist shows) a customer who owes nothing overdue
    from dianfei.collections.tasks import close_settled

    with db.session() as s:
        ctx.report.operations["tasks_settled"] = close_settled(s, ctx.accounts or [], clock=clock)
    lap("tasks_settled")
    with db.engine.begin() as conn:
        _late_fees(ctx, conn, items)
    kill_point("collections.late_fees_posted")  # the crash tests die here (core/faults.py)
    lap("late_fees")
    # the prepaid accounts' balances on the second core while the arrears snapshot is built:
    # both only read, after the day's late fees are committed (they move balances); the
    # charges were read there since the day's start (one worker: they come first)
    def prepaid_balances() -> pl.DataFrame:
        accrued, ctx.report.background["prepay_charges"] = charges.result()
        return prepay.with_balances(ctx, accrued)

    prepaid = pool.submit(prepaid_balances)
    snapshot = build_snapshot(ctx, items, scorer)
    lap("risk_snapshot")
    balances, ctx.report.background["prepay_balances"] = prepaid.result()
    lap("prepay_balances")
    with db.engine.begin() as conn, db.sessions(bind=conn) as session:
        _dunning(ctx, conn, snapshot)
        suspension.open_cases(ctx, session, snapshot)
        suspension.advance_cases(ctx, session, snapshot)
        prepay.run(ctx, session, balances)
        ctx.notifier.enqueue(session, ctx.notices, clock=clock)
        ctx.report.notices += len(ctx.notices)
        ctx.notices = []
        session.flush()
    # the crash tests die here: the ladder's events, tasks, notices and stop cases are committed,
    # nothing of them dispatched yet
    kill_point("collections.dunning_written")
    lap("dunning")
    ctx.notifier.dispatch(db, clock=clock, senders=senders)
    lap("dispatch")
    with db.engine.begin() as conn, db.sessions(bind=conn) as session:
        stops.record_sent(ctx, session, conn)
        suspension.advance_cases(ctx, session, snapshot)
        prepay.advance_cases(ctx, session)
        ctx.notifier.enqueue(session, ctx.notices, clock=clock)
        ctx.report.notices += len(ctx.notices)
        ctx.notices = []
        session.flush()
    process_commands(db, clock=clock, switch=switch, policy_=ctx.policy, report=ctx.report,
                     notifier=ctx.notifier)
    lap("suspension")
    if ctx.notices:
        with db.engine.begin() as conn, db.sessions(bind=conn) as session:
            ctx.notifier.enqueue(session, ctx.notices, clock=clock)
            ctx.report.notices += len(ctx.notices)
            ctx.notices = []
    ctx.notifier.dispatch(db, clock=clock, senders=senders)
    operations.after_dispatch(ctx)  # contact flags from today's bounces; overdue tasks escalate
    lap("operations")
    with db.engine.begin() as conn, db.sessions(bind=conn) as session:
        stops.record_sent(ctx, session, conn)
        conn.execute(update(CollectionRun).where(CollectionRun.day == day).values(
            finished_at=ctx.now, report=json.dumps(ctx.report.to_json())))
    lap("finish")
    # the day's collector worklists, from the tasks the ladder raised (idempotent per day)
    from dianfei.collections.worklist import build_worklists

    # from the morning's overdue items, as the ladder was: the lists and the ladder read the same
    # snapshot (the day's fees fall due today; a payment posted since shows on tomorrow's lists)
    ctx.report.worklist_accounts = build_worklists(db, day, clock=clock, scorer=scorer,
                                                   overdue=items,
                                                   history=ctx.late_history)["accounts"]
    lap("worklists")
    with db.engine.begin() as conn:  # the report again, with the worklists' count and time
        conn.execute(update(CollectionRun).where(CollectionRun.day == day).values(
            report=json.dumps(ctx.report.to_json())))


def working_days() -> Callable[[date], bool]:
    """Whether a business day is a working day of the collections calendar (Monday–Friday,
    not a public holiday of ``calendar.toml``) — the scheduler's ``every = "working_day"``."""
    return policy().is_stop_day


def overdue_items(engine: Any, day: date) -> pl.DataFrame:
    """The open bills and late fees due before ``day``: account_id, customer_id, item_kind
    ('bill'|'late_fee'), reference, bill_id, due_on, amount, open_amount (fen > 0)."""
    from dianfei.ledger.service import overdue_items as overdue

    return overdue(engine, day)


# -- 1. payments -------------------------------------------------------------------------------


CONSUMER = "collections"


def consume_events(ctx: Context, *, batch: int = 5000) -> int:
    """Handle the money core's events for collections: each ``payment_posted`` becomes a
    ``payment_received`` collection event (amount and balance right after the payment, as the
    posting computed them); reversals need no record here (the snapshot reads open items). Each
    batch of events is recorded and marked handled in one transaction, so a crash handles none
    of the batch and a rerun handles each once. Only payments posted by the clock's now count:
    a replayed day does not see the future."""
    import polars as pl

    from dianfei.events import service as events

    handled = 0
    while True:
        with ctx.db.engine.begin() as conn:
            claimed = events.claim(conn, CONSUMER, limit=batch)
            got = [e for e in claimed if e.occurred_at <= ctx.now]
            if not got:
                return handled
            pays = [e for e in got if e.type == "payment_posted"]
            if pays:
                # what is still owed includes late fees accrued but not yet posted
                pending = repository.pending_fees(conn, [str(e.account_id) for e in pays])
                frame = pl.DataFrame({
                    "key": [f"pay:{e.payload.get('payment_id')}" for e in pays],
                    "account_id": [e.account_id for e in pays],
                    "customer_id": [e.customer_id for e in pays],
                    "at": [e.occurred_at for e in pays],
                    "amount": [e.amount for e in pays],
                    "balance_after": [(e.balance_after or 0) + pending.get(str(e.account_id), 0)
                                      for e in pays]},
                    schema={"key": pl.String, "account_id": pl.String, "customer_id": pl.String,
                            "at": pl.Datetime("us", "UTC"), "amount": pl.Int64,
                            "balance_after": pl.Int64})
                have = repository.existing_keys(conn, "collection_events", frame["key"].to_list())
                frame = frame.filter(~pl.col("key").is_in(list(have)))
                # a payment dated before yesterday (a bank file, an imported history) changes a
                # rating fact the next rating cannot find by date: queue its account
                late_dated = frame.filter(
                    pl.col("at").dt.convert_time_zone(str(BUSINESS_TZ)).dt.date()
                    < ctx.day - timedelta(days=1))
                if late_dated.height:
                    from dianfei.collections.incentives import queue_for_rating

                    queue_for_rating(conn, late_dated["account_id"].to_list())
                ctx.report.payments += write_events(conn, frame.select(
                    "key", "account_id", "customer_id", pl.lit("payment_received").alias("type"),
                    "at", pl.col("at").dt.convert_time_zone(str(BUSINESS_TZ)).dt.date()
                    .alias("business_date"), "amount", "balance_after",
                    pl.lit(None, pl.String).alias("level"), pl.lit(None, pl.String).alias("notice"),
                    pl.lit(None, pl.String).alias("channel"), pl.lit(None, pl.String).alias("bill_id"),
                    pl.lit(None, pl.String).alias("detail")).cast(event_schema()))
            handled += events.mark_handled(conn, CONSUMER, [e.event_id for e in got], ctx.now)
            if len(claimed) < batch:
                return handled


# -- 2. plans ----------------------------------------------------------------------------------


def _check_plans(ctx: Context, conn: Any) -> None:
    # completed, missed (within grace) or broken: see collections.plan_watch
    from dianfei.collections.plan_watch import check_plans

    check_plans(ctx, conn)


def fieldwork_day(ctx: Context) -> None:
    """Promises to pay kept or broken; tickets past their SLA escalated to a supervisor."""
    from dianfei.collections.promises import check_promises
    from dianfei.collections.tickets import escalate_overdue

    with ctx.db.engine.begin() as conn, ctx.db.sessions(bind=conn) as session:
        check_promises(ctx, conn)
        ctx.report.tickets_escalated += escalate_overdue(session, clock=ctx.clock)
        session.flush()


# -- 3. late fees ------------------------------------------------------------------------------


def _late_fees(ctx: Context, conn: Any, items: pl.DataFrame) -> None:
    """Accrue each overdue bill's fee through today (see late_fees.py for the arithmetic).

    The fee accrues every day in ``late_fee_accruals`` (``accrued``, shown as pending on the
    account), but reaches the ledger — as an open item that payments and credit clear — only
    when the rules need it there: at the end of each month and when the bill's principal is paid
    (the accrual closes). So an overdue bill costs a handful of ledger entries, not one a day,
    with the same once-rounded totals to the fen."""
    import polars as pl

    from dianfei.ledger.service import cleared_on_bills_since

    day = ctx.day
    bills = items.filter((pl.col("item_kind") == "bill") & (pl.col("due_on") < day))
    # the principal of the day is what was owed at its start: add back today's payments
    paid_today = cleared_on_bills_since(ctx.db.engine, start_of_day(day))
    state = repository.accruals(ctx.db.engine)
    cust = ctx.customers().select("account_id", "customer_class")
    principal = (bills.select("bill_id", "account_id", "customer_id", "due_on", "open_amount")
                 .join(paid_today, on="bill_id", how="left")
                 .with_columns((pl.col("open_amount") + pl.col("paid_today").fill_null(0))
                               .alias("open_principal")))
    # bills fully paid before today that still have open state: accrual is finished
    closing = (state.join(principal, on="bill_id", how="anti")
               .filter(pl.col("through") < day).with_columns(pl.lit(day).alias("closed_on")))
    work = (principal.join(state.select("bill_id", "customer_class", "through", "raw", "posted",
                                        "accrued", "waived"), on="bill_id", how="left")
            .join(cust.rename({"customer_class": "cc"}), on="account_id", how="left")
            .with_columns(pl.coalesce("customer_class", "cc").alias("customer_class"),
                          pl.coalesce("through", "due_on").alias("through"),
                          pl.col("raw").fill_null(0), pl.col("posted").fill_null(0),
                          pl.col("accrued").fill_null(0), pl.col("waived").fill_null(False))
            .filter((pl.col("through") < day) & ~pl.col("waived")
                    & pl.col("customer_class").is_not_null()))
    month_end = (day + timedelta(days=1)).month != day.month
    post: list[pl.DataFrame] = []
    if work.height:
        acc = accrue_frame(work.select("bill_id", "account_id", "customer_id", "customer_class",
                                       "due_on", "through", "open_principal", "raw", "posted"), day)
        if month_end:
            post.append(acc.filter(pl.col("delta") > 0).select(
                "bill_id", "account_id", "customer_id", "delta"))
        rows = acc.select(
            "bill_id", "account_id", "customer_id", "customer_class", "due_on",
            pl.lit(day).alias("through"), pl.col("new_raw").alias("raw"),
            (pl.col("posted") + (pl.col("delta") if month_end else pl.lit(0))).alias("posted"),
            pl.lit(False).alias("waived"), pl.lit(None, pl.Date).alias("closed_on"),
            pl.max_horizontal("cumulative", "posted").alias("accrued"),
            # the day it opened: the rating finds the accounts whose late count moved by it
            pl.lit(day).alias("opened_on"))
        # the accruals already open change in place (the day moves on); new ones are added
        known = rows["bill_id"].is_in(state["bill_id"].implode())
        repository.update_rows(conn, "late_fee_accruals", "bill_id", rows.filter(known).select(
            "bill_id", "through", "raw", "posted", "accrued"))
        repository.replace_rows(conn, "late_fee_accruals", "bill_id", rows.filter(~known))
    if closing.height:
        post.append(closing.filter(~pl.col("waived") & (pl.col("accrued") > pl.col("posted")))
                    .select("bill_id", "account_id", "customer_id",
                            (pl.col("accrued") - pl.col("posted")).alias("delta")))
        repository.replace_rows(conn, "late_fee_accruals", "bill_id", closing.select(
            "bill_id", "account_id", "customer_id", "customer_class", "due_on", "through", "raw",
            pl.when(pl.col("waived")).then(pl.col("posted")).otherwise(pl.col("accrued"))
            .alias("posted"), "waived", "closed_on", "accrued", "opened_on"))
    fees = pl.concat(post) if post else None
    if fees is not None and fees.height:
        _post_fees(ctx, conn, fees)


def _post_fees(ctx: Context, conn: Any, fees: pl.DataFrame) -> None:
    post_late_fees(conn, fees, day=ctx.day, now=ctx.now)
    ctx.report.late_fees += fees.height
    ctx.report.late_fee_amount += int(fees["delta"].sum())


def post_late_fees(conn: Any, fees: pl.DataFrame, *, day: date, now: datetime) -> None:
    """Post accrued late fees (bill_id, account_id, customer_id, delta fen) to the ledger, one
    entry per bill, reference ``LF:{bill}:{day}``, with their ``late_fee_accrued`` events;
    credit the account holds clears them in the same posting."""
    import polars as pl

    from dianfei.ledger.service import post_frame

    naive_now = now.astimezone(UTC).replace(tzinfo=None)
    post_frame(conn, fees.select(
        "account_id", "customer_id", pl.lit("late_fee").alias("kind"),
        pl.col("delta").alias("amount"), pl.lit(naive_now).alias("posted_at"),
        pl.lit(business_date(now)).alias("business_date"), pl.lit(day).alias("due_on"),
        pl.format("LF:{}:{}", pl.col("bill_id"), pl.lit(day.isoformat())).alias("reference")),
        action="late_fee.posted", subject=day.isoformat())
    write_events(conn, fees.select(
        pl.format("lf:{}:{}", pl.col("bill_id"), pl.lit(day.isoformat())).alias("key"),
        "account_id", "customer_id", pl.lit("late_fee_accrued").alias("type"),
        pl.lit(now).alias("at"), pl.lit(day).alias("business_date"),
        pl.col("delta").alias("amount"), pl.lit(None, pl.Int64).alias("balance_after"),
        pl.lit(None, pl.String).alias("level"), pl.lit(None, pl.String).alias("notice"),
        pl.lit(None, pl.String).alias("channel"), "bill_id",
        pl.lit(None, pl.String).alias("detail")).cast(event_schema()))


# -- 4. snapshot, risk, ladder -----------------------------------------------------------------


def build_snapshot(ctx: Context, items: pl.DataFrame, scorer: RiskScorer | None) -> pl.DataFrame:
    """One row per account in arrears (postpaid, something overdue): the facts the ladder and
    the stop rules read. Columns: account_id, customer_id, customer_class, segment (the
    dunning segment), risk_segment, segment_label, segment_why (collections/segments.py),
    protected, payment_mode, days_overdue, amount_overdue, oldest_bill, oldest_due, balance,
    open_plan, risk_band, early_warning (on the day's risk early-warning list), open_promise and
    ladder_days (collections/promises.py). A bill under an undecided dispute is left out (its
    dunning pauses; the account's other overdue bills still dun). No names: the steps that
    write a notice read the names of its addressees (``Context.with_names``)."""
    import polars as pl

    from dianfei.collections.promises import ladder_columns
    from dianfei.collections.tickets import disputed_bills
    from dianfei.ledger.service import balances_frame
    from dianfei.risk.service import early_warnings, scorer_for

    day = ctx.day
    disputed = disputed_bills(ctx.db.engine)
    overdue = items.filter((pl.col("due_on") < day) & (pl.col("open_amount") > 0)
                           & ~pl.col("bill_id").is_in(disputed).fill_null(False))
    per = (overdue.sort("due_on", "reference").group_by("account_id").agg(
        pl.col("open_amount").sum().alias("amount_overdue"),
        pl.col("due_on").min().alias("oldest_due"),
        pl.col("bill_id").filter(pl.col("item_kind") == "bill").first().alias("oldest_bill"),
        pl.col("bill_id").first().alias("_any_bill"),
    ).with_columns(pl.coalesce("oldest_bill", "_any_bill").alias("oldest_bill"),
                   (pl.lit(day) - pl.col("oldest_due")).dt.total_days().alias("days_overdue"))
        .drop("_any_bill"))
    # what each owes in all (the month's bill not yet due and the fees posted today included),
    # from the money core's open items of these accounts only
    owed = balances_frame(ctx.db.engine, per["account_id"].to_list()).rename(
        {"balance": "open_total"})
    cust = ctx.customers()
    plans = repository.active_plans(ctx.db.engine).select("account_id").with_columns(
        pl.lit(True).alias("open_plan"))
    snap = (per.join(cust, on="account_id", how="inner")
            .filter(pl.col("payment_mode") == "postpaid")
            .join(owed, on="account_id", how="left")
            .join(plans, on="account_id", how="left")
            .with_columns(pl.col("open_plan").fill_null(False),
                          pl.when(pl.col("low_income")).then(pl.lit("low_income"))
                          .otherwise(pl.lit("standard")).alias("segment")))
    # repeat defaulters (屡欠户, incentives.py) are dunned on the shorter ladder
    from dianfei.collections.incentives import with_repeat_defaulters

    snap = with_repeat_defaulters(ctx.db.engine, snap)
    hist = ctx.late_history(snap["account_id"].to_list())
    # the risk segment (客户分类) by risk's rules, for the accounts in arrears only
    from dianfei.collections.segments import snapshot_segments

    snap = snap.join(snapshot_segments(ctx.db, day, snap, hist), on="account_id", how="left")
    # the arm of the strategy experiment the ladders name, if any (collections/arms.py)
    from dianfei.collections.arms import with_experiment_arms

    snap = with_experiment_arms(ctx.db, day, ctx.ladders, snap)
    feats = (snap.select("account_id", pl.col("amount_overdue").alias("arrears"))
             .join(hist, on="account_id", how="left")
             .join(repository.broken_plans(ctx.db.engine), on="account_id", how="left"))
    # the band comes from the latest trained model when there is one (the points score for
    # any account it did not score, and for all until a model is trained)
    scores = (scorer or scorer_for(ctx.db, day, plans=lambda: broken_plan_dates(ctx.db))).score(feats)
    warned = early_warnings(ctx.db, day).select("account_id", pl.lit(True).alias("early_warning"))
    return ladder_columns(ctx, snap.join(scores.select("account_id", pl.col("band").alias("risk_band")),
                                         on="account_id", how="left")
                          .join(warned, on="account_id", how="left")
                          .with_columns(pl.col("risk_band").fill_null("low"),
                                        pl.col("early_warning").fill_null(False)))


def _dunning(ctx: Context, conn: Any, snapshot: pl.DataFrame) -> None:
    import polars as pl

    from dianfei.db.bulk import write_frame

    levels = evaluate(snapshot, ctx.ladders).filter(pl.col("level").is_not_null())
    cur = levels.join(snapshot, on="account_id", how="inner")
    ctx.report.overdue_accounts = snapshot.height
    from dianfei.collections.segments import summary

    ctx.report.segments = summary(snapshot)
    prev = repository.dunning_state(ctx.db.engine)
    changed = cur.join(prev.select("account_id", pl.col("level").alias("p_level"),
                                   pl.col("bill_id").alias("p_bill")), on="account_id", how="left"
                       ).filter((pl.col("p_level").is_null()) | (pl.col("p_level") != pl.col("level"))
                                | (pl.col("p_bill") != pl.col("oldest_bill")))
    # accounts that paid, agreed a plan, or fell out of every level leave the ladder at once
    gone = prev.join(cur, on="account_id", how="anti")["account_id"].to_list()
    repository.delete_keys(conn, "dunning_state", "account_id", gone)
    if changed.height == 0:
        return
    repository.replace_rows(conn, "dunning_state", "account_id", changed.select(
        "account_id", "ladder", "level", pl.col("oldest_bill").alias("bill_id"),
        pl.lit(ctx.day).alias("since")))
    ctx.report.dunning_changes += changed.height
    keys = changed.select(pl.format("dun:{}:{}:{}", "account_id", "level", "oldest_bill").alias("key"))
    have = repository.existing_keys(conn, "collection_events", keys["key"].to_list())
    fresh = ctx.with_names(changed.with_columns(keys["key"]).filter(~pl.col("key").is_in(list(have))))
    write_events(conn, fresh.select(
        "key", "account_id", "customer_id", pl.lit("dunning_level").alias("type"),
        pl.lit(ctx.now).alias("at"), pl.lit(ctx.day).alias("business_date"),
        pl.col("amount_overdue").alias("amount"), pl.lit(None, pl.Int64).alias("balance_after"),
        "level", pl.lit(None, pl.String).alias("notice"), pl.lit(None, pl.String).alias("channel"),
        pl.col("oldest_bill").alias("bill_id"),
        # the risk segment beside the ladder: why this ladder, for the audit of each step
        (pl.format('{{"ladder": "{}", "days_overdue": {}, "segment": "{}"}}', "ladder",
                   "days_overdue", "risk_segment") if "risk_segment" in fresh.columns
         else pl.format('{{"ladder": "{}", "days_overdue": {}}}', "ladder", "days_overdue"))
        .alias("detail")).cast(event_schema()))
    by_id = {ld.ladder_id: ld for ld in ctx.ladders}
    tasks = []
    for row in fresh.iter_rows(named=True):
        lv = by_id[row["ladder"]].level(row["level"])
        base = f"{row['account_id']}:{row['level']}:{row['oldest_bill']}"
        for a in lv.actions:
            if a.type in ("sms", "email", "wechat", "letter"):
                context = arrears_context(row)
                if (a.notice or "reminder") == "stop_notice":
                    # a copy of the stop notice names the same earliest stop date as the notice
                    # the suspension rules send (day + notice period + 1)
                    days = ctx.policy.notice_days_for(row["customer_class"])
                    context["stop_on"] = (ctx.day + timedelta(days=days + 1)).isoformat()
                ctx.notices.append(Notice(f"{KEY_PREFIX}dun:{base}:{a.type}", row["account_id"],
                                          row["customer_id"], a.notice or "reminder", a.type,
                                          context))
            elif a.type in TASK_ACTIONS:
                tasks.append({"key": f"dun:{base}:{a.type}", "account_id": row["account_id"],
                              "customer_id": row["customer_id"], "kind": a.type, "status": "open",
                              # an inspection's time is the inspectors' (tasks.toml; routing
                              # fills it), a collector's visit is due in 3 days
                              "created_at": ctx.now, "due_at": None if a.type == "inspection"
                              else ctx.now + timedelta(days=3),
                              "detail": json.dumps({"level": row["level"],
                                                    "amount_overdue": row["amount_overdue"]})})
    if tasks:
        frame = pl.DataFrame(tasks, schema={"key": pl.String, "account_id": pl.String,
                                            "customer_id": pl.String, "kind": pl.String,
                                            "status": pl.String,
                                            "created_at": pl.Datetime("us", "UTC"),
                                            "due_at": pl.Datetime("us", "UTC"), "detail": pl.String})
        have_t = repository.existing_keys(conn, "collection_tasks", frame["key"].to_list())
        # one open ladder visit (or referral) per account: a new level or a new oldest bill
        # of an account a collector is already sent to adds no second task (they piled up,
        # one per bill, for customers in arrears for months)
        from dianfei.collections.ops_repository import open_ladder_tasks

        sent = open_ladder_tasks(conn, TASK_ACTIONS).select("account_id", "kind")
        frame = (frame.filter(~pl.col("key").is_in(list(have_t)))
                 .join(sent, on=["account_id", "kind"], how="anti"))
        ctx.report.tasks += write_frame(conn, "collection_tasks", frame)


# -- 7. meter commands -------------------------------------------------------------------------


def process_commands(db: Database, *, clock: Clock, switch: RemoteSwitch | None,
                     policy_: Policy | None = None, report: DayReport | None = None,
                     notifier: Notifier | None = None) -> int:
    """Try every due meter command once (retries wait per the policy). Safe to call often (e.g.
    every few minutes) and from several processes: each command is locked while it is tried."""
    from dianfei.collections import stops

    return stops.process_commands(db, clock=clock, switch=switch, policy_=policy_ or policy(),
                                       report=report, notifier=notifier or NotifyOutbox())


# -- reading -----------------------------------------------------------------------------------


def amount_due(conn: Any, account_id: str) -> int:
    """What the account must pay to owe nothing (fen; ≤ 0 when nothing is owed): its open items
    and the late fees accrued on its overdue bills that have not reached the ledger yet."""
    return owed(conn, [account_id])[account_id]


def amounts_due(conn: Any, accounts: list[str]) -> dict[str, int]:
    """:func:`amount_due` of each of ``accounts`` (fen; ≤ 0 when nothing is owed)."""
    return owed(conn, accounts)


def suspended_on(db: Database, day: date) -> pl.DataFrame:
    """The stop cases whose supply was suspended on business day ``day``: case_id, account_id,
    customer_id, mode ('postpaid' arrears or 'prepaid' cut-off), suspended_at."""
    start = start_of_day(day)
    return repository.suspended_between(db.engine, start, start_of_day(day + timedelta(days=1)))


def suspended_between(db: Database, first: date, last: date) -> pl.DataFrame:
    """The stop cases whose supply was suspended on business days ``first``..``last``: case_id,
    account_id, customer_id, mode ('postpaid' arrears or 'prepaid' cut-off), suspended_at."""
    return repository.suspended_between(db.engine, start_of_day(first),
                                        start_of_day(last + timedelta(days=1)))


#: what the monthly report counts of payment plans (分期缴费协议)
PLAN_EVENTS = ("plan_agreed", "plan_completed", "plan_broken")


def plan_outcomes(db: Database, first: date, last: date) -> pl.DataFrame:
    """Payment plans agreed, completed and broken on business days ``first``..``last``: type,
    events, amount (fen, as the events record it)."""
    return repository.event_totals_between(db.engine, first, last, PLAN_EVENTS)


def pending_late_fees(conn: Any, accounts: list[str]) -> dict[str, int]:
    """Late fees accrued but not yet posted, per account (fen)."""
    return repository.pending_fees(conn, accounts)


def _instant(value: datetime) -> str:
    return value.astimezone(BUSINESS_TZ).isoformat(timespec="seconds")


def events_json(db: Database, account_id: str | None = None) -> list[dict[str, Any]]:
    """The event history, oldest first, as ``collect events --json`` prints it."""
    frame = repository.events(db.engine, account_id)
    out = []
    for r in frame.iter_rows(named=True):
        e: dict[str, Any] = {"account": r["account_id"], "type": r["type"], "at": _instant(r["at"])}
        t = r["type"]
        if t == "payment_received":
            e["amount"] = fmt_yuan(r["amount"])
            e["balance_after"] = fmt_yuan(r["balance_after"])
        elif (t in ("late_fee_accrued", "waiver", "plan_agreed", "plan_broken", "plan_completed",
                   "plan_proposed", "plan_approved", "instalment_missed",
                   "promise_made", "promise_kept", "promise_broken", "account_closed")
                and r["amount"] is not None):
            e["amount"] = fmt_yuan(r["amount"])
        if r["level"] is not None:
            e["level"] = r["level"]
        if r["notice"] is not None:
            e["notice"] = r["notice"]
            e["channel"] = r["channel"]
        if r["bill_id"] is not None:
            e["bill_id"] = r["bill_id"]
        if r["detail"]:
            try:
                extra = json.loads(r["detail"])
            except ValueError:
                extra = {"detail": r["detail"]}
            for k, v in extra.items():
                e.setdefault(k, v)
        out.append(e)
    return out


def tasks_json(db: Database, status: str | None = "open") -> list[dict[str, Any]]:
    from dianfei.collections.models import CollectionTask

    with db.session() as s:
        q = select(CollectionTask).order_by(CollectionTask.task_id)
        if status:
            q = q.where(CollectionTask.status == status)
        return [{"task_id": t.task_id, "account": t.account_id, "kind": t.kind, "status": t.status,
                 "created_at": _instant(t.created_at),
                 "due_at": _instant(t.due_at) if t.due_at else None,
                 "case_id": t.case_id, "detail": json.loads(t.detail) if t.detail else None}
                for t in s.scalars(q)]


# -- facts for risk (which sits below collections and cannot read them itself) -------------------


def broken_plan_dates(db: Database) -> pl.DataFrame:
    """account_id, broken_on: each payment plan broken, by business date — the ``plans`` facts
    the risk features take (``dianfei risk`` passes them in)."""
    import polars as pl

    return repository.events_of_types(db.engine, ("plan_broken",)).select(
        "account_id", pl.col("business_date").alias("broken_on"))


def actions_by_account(db: Database, since: date) -> pl.DataFrame:
    """account_id, notices, dunning_steps, visits, stops: what collections did to each account
    since ``since`` (notices sent, dunning levels reached, collector visits ordered, suspensions
    ordered) — the actions the risk report's fairness section counts by region, class and
    low-income flag."""
    import polars as pl

    ev = repository.events_of_types(db.engine, ("notice_sent", "suspension_ordered", "dunning_level"))
    ev = ev.filter(pl.col("business_date") >= since)
    per = ev.group_by("account_id").agg(
        (pl.col("type") == "notice_sent").sum().cast(pl.Int64).alias("notices"),
        (pl.col("type") == "dunning_level").sum().cast(pl.Int64).alias("dunning_steps"),
        (pl.col("type") == "suspension_ordered").sum().cast(pl.Int64).alias("stops"))
    visits = repository.visits_since(db.engine, since)
    return (per.join(visits, on="account_id", how="full", coalesce=True)
            .with_columns([pl.col(c).fill_null(0) for c in ("notices", "dunning_steps", "visits",
                                                            "stops")])
            .select("account_id", "notices", "dunning_steps", "visits", "stops"))


def operational_metrics(conn: Any) -> list[Metric]:
    """``/metrics``: remote meter commands by action and status; stop cases and worklist tasks."""
    from sqlalchemy import text

    from dianfei.core.metrics import Metric, grouped

    cmds = conn.execute(text("SELECT action, status, COUNT(*) FROM meter_commands "
                             "GROUP BY action, status")).all()
    cases = conn.execute(text("SELECT status, COUNT(*) FROM stop_cases GROUP BY status")).all()
    tasks = conn.execute(text("SELECT kind, COUNT(*) FROM collection_tasks WHERE status = 'open' "
                              "GROUP BY kind")).all()
    return [Metric("dianfei_meter_commands", "remote trip/close commands, by action and status",
                   "gauge", tuple(({"action": str(a), "status": str(s)}, int(n))
                                  for a, s, n in cmds)),
            grouped("dianfei_stop_cases", "arrears stop cases, by status", "gauge", "status", cases),
            grouped("dianfei_collection_tasks_open", "open worklist tasks, by kind", "gauge", "kind",
                    tasks)]


# -- maker-checker (dianfei.approvals): the changes it executes once a second person approved ----

from dianfei.collections.plans import waive_late_fees as waive_late_fees  # noqa: E402


def approve_stop(session: Any, case_id: int, *, approver: str, clock: Clock) -> Any:
    """Approve a suspension order awaiting approval (停电审批): the stop may then execute."""
    from dianfei.collections.stops import approve

    return approve(session, case_id, approver=approver, clock=clock)


def late_fees_of_bill(session: Any, bill_id: str) -> int:
    """The late fees a waiver of ``bill_id`` would waive now (fen): posted and not reversed,
    plus accrued but not posted yet. 0 when the bill has none."""
    from dianfei.collections.models import LateFeeAccrual
    from dianfei.ledger.service import unreversed_entries

    fees = unreversed_entries(session, "late_fee", f"LF:{bill_id}:")
    accrual = session.get(LateFeeAccrual, bill_id)
    pending = 0
    if accrual is not None and not accrual.waived:
        pending = max(int(accrual.accrued or 0) - int(accrual.posted), 0)
    return sum(int(f[3]) for f in fees) + pending


def stop_cases_awaiting_approval(session: Any) -> list[dict[str, Any]]:
    """Suspension orders the rules raised that wait for a second person (停电审批): the case,
    its account, the bill it is for and when it was ordered, oldest first."""
    from dianfei.collections.models import StopCase

    rows = session.scalars(select(StopCase).where(
        StopCase.status == "ordered", StopCase.approval_required.is_(True),
        StopCase.approved_by.is_(None)).order_by(StopCase.case_id))
    return [{"case_id": c.case_id, "account_id": c.account_id, "customer_id": c.customer_id,
             "bill_id": c.bill_id, "ordered_at": c.ordered_at} for c in rows]
