"""Smart prepayment (智能交费 / 费控): a daily available balance, warnings, cut-off, reconnection.

For every open account with ``payment_mode = 'prepaid'``, once a day (inside ``run_day``):

    available = −(ledger balance) − charges accrued since the last bill

The ledger balance is what the bills so far and the top-ups leave (negative: money in hand). The
accrued charge is the consumption since the last billed read (the last live bill's closing read;
for an account never billed, the monthly frozen read at 00:00 on the first of the month) up to
the latest daily frozen read (日冻结), after the multiplier and register rollover, priced with the
account's tariff by ``dianfei.tariffs.service.rate_frame`` — exactly as the next bill will price
it: the period after the last bill, the year-to-date kWh already billed that year for annual
tiers (so the period-to-date kWh sit at the right tier), time-of-use registers where the tariff
has time of use, the low-income allowance. No flat price is used for any tariff.

Stages, each entered once per crossing (not every day):

- ``warned``: available below ``warning_threshold`` (default 50 yuan) → ``prepay_warning``;
- ``cutoff``: available at or below zero → ``cutoff_notice`` and a stop case (mode ``prepaid``).
  After ``cutoff_wait_hours`` (default 24) from when the notice was SENT, the trip is ordered and
  sent through the same command outbox and remote switch as arrears stops
  (``suspension_ordered`` → ``suspended``, ``reason: "prepay"``). Protected customers are never
  cut (a collector visit task instead); trips keep the stop window (08:00–18:00, working days, no
  holidays, no extreme weather) — State Grid cuts automatically, but the protections of
  ``calendar.toml`` are the utility's rules for every stop, so a cut-off waits for the window;
- a top-up that brings the available balance above zero cancels a pending cut-off, or orders the
  remote close of a tripped meter at once (``reconnection_ordered`` → ``reconnected``).

Accounts without a daily frozen read in the last ``max_read_age_hours`` (default 48), whose
consumption cannot be priced (no tariff, a read that went backwards), or whose reads claim more
than the meter can physically register (``max_kw_per_multiplier`` × multiplier × hours since the
opening read; a forged or corrupt read — listed in the day's report as ``prepay_implausible``)
are not evaluated that day: stale or impossible data never trips a customer. The trip re-checks a
fresh ledger balance right before acting.
"""

from __future__ import annotations

import json
from datetime import UTC, timedelta
from typing import TYPE_CHECKING, Any

from sqlalchemy.orm import Session

from dianfei.collections import repository, stops
from dianfei.collections.context import PAY_CHANNELS
from dianfei.collections.models import StopCase
from dianfei.collections.notices import KEY_PREFIX, Notice
from dianfei.core.clock import Period, business_date, start_of_day
from dianfei.core.money import fmt_yuan
from dianfei.customers import service as customers

if TYPE_CHECKING:
    import polars as pl

    from dianfei.collections.context import Context

STATE_COLUMNS = ("account_id", "stage", "since_at", "available", "as_of", "accrued", "read_at")


def _period_of(text: str) -> Period:
    return Period(int(text[:4]), int(text[5:7]))


def available_balances(ctx: Context) -> pl.DataFrame:
    """One row per prepaid account that can be evaluated today: account_id, customer_id,
    customer_class, protected, meter_id, balance, accrued, available, read_at, kwh (no names:
    :func:`run` reads those of the accounts it writes to).
    Also sets ``ctx.report.prepay_unrated`` (accounts left out, for the reasons above)."""
    return with_balances(ctx, accrued_charges(ctx))


def with_balances(ctx: Context, charges: pl.DataFrame) -> pl.DataFrame:
    """:func:`accrued_charges` with what each account holds now (``balance``, from its open
    items: negative = credit) and ``available`` = credit − charges accrued since the last bill.
    Read after the day's late fees, which move balances; the charges do not depend on them."""
    import polars as pl

    from dianfei.ledger.service import balances_frame

    if charges.height == 0:
        return pl.DataFrame()
    return (charges.join(balances_frame(ctx.db.engine, charges["account_id"].to_list()),
                         on="account_id", how="left")
            .with_columns(pl.col("balance").fill_null(0))
            .with_columns((-pl.col("balance") - pl.col("accrued")).alias("available")))


def accrued_charges(ctx: Context) -> pl.DataFrame:
    """The charges each prepaid account that can be evaluated today has accrued since its last
    bill, rated from its latest daily frozen read: account_id, customer_id, customer_class,
    protected, meter_id, kwh, read_at, accrued (an empty frame when there are none). Only
    customers, bills, reads and tariffs are read — nothing the collections day writes — so the
    day computes them on the second core from its start (:func:`run_day`)."""
    import polars as pl

    from dianfei.billing.service import issued_bills_of_mode
    from dianfei.customers.service import open_accounts_of_mode
    from dianfei.metering.service import reads_at, reads_of_meters_between
    from dianfei.tariffs.service import load_catalogue, rate_frame

    day, now, eng = ctx.day, ctx.now, ctx.db.engine
    accts = (open_accounts_of_mode(eng, "prepaid", day, names=False)
             .sort("account_id", "tariff_from", nulls_last=False)
             .group_by("account_id", maintain_order=True).last())
    if accts.height == 0:
        return pl.DataFrame()
    this = Period(day.year, day.month)
    lo = Period(day.year - 1, 1) if day.month <= 2 else Period(day.year, 1)
    bills = issued_bills_of_mode(eng, "prepaid", str(lo))
    last = (bills.filter(pl.col("read_to_at").is_not_null()).sort("period")
            .group_by("account_id").last()
            .select("account_id", pl.col("period").alias("last_period"),
                    pl.col("read_to_at").alias("open_at")))
    month_start = start_of_day(this.first_day)
    base = accts.join(last, on="account_id", how="left").with_columns(
        pl.col("open_at").fill_null(pl.lit(month_start).cast(pl.Datetime("us", "UTC"))))
    # the period the accrued usage will be billed in: the one after the last bill
    periods = {p: str(_period_of(p).next()) for p in base["last_period"].drop_nulls().unique()}
    base = base.with_columns(pl.col("last_period").replace_strict(periods, default=str(this),
                                                                  return_dtype=pl.String)
                             .alias("rate_period"))
    # year-to-date kWh billed in the rating period's year before it (annual tiers)
    ytd = (bills.join(base.select("account_id", "rate_period"), on="account_id")
           .filter((pl.col("period") < pl.col("rate_period"))
                   & (pl.col("period").str.slice(0, 4) == pl.col("rate_period").str.slice(0, 4)))
           .group_by("account_id").agg(pl.col("kwh").sum().alias("ytd_kwh")))
    # the latest daily frozen read (every register at that instant) and the opening reads
    reads = reads_of_meters_between(eng, base["meter_id"].drop_nulls().to_list(),
                                    now - ctx.policy.prepay_max_read_age, now)
    latest_at = (reads.filter(pl.col("register") == "total").group_by("meter_id")
                 .agg(pl.col("read_at").max().alias("close_at")))
    close = reads.join(latest_at, on="meter_id").filter(pl.col("read_at") == pl.col("close_at"))
    opening = reads_at(eng, base["meter_id"].drop_nulls().to_list(),
                       base["open_at"].unique().to_list())
    q = (base.select("account_id", "meter_id", "multiplier", "digits", "open_at")
         .join(close.select("meter_id", "register", "close_at", pl.col("value").alias("close")),
               on="meter_id")
         .join(opening.select("meter_id", "register", pl.col("read_at").alias("open_at"),
                              pl.col("value").alias("open")),
               on=["meter_id", "register", "open_at"], how="left"))
    wrap = pl.lit(10, pl.Int64).pow(pl.col("digits").cast(pl.Int64)) * 100
    diff = pl.col("close") - pl.col("open")
    q = q.filter(pl.col("close_at") >= pl.col("open_at")).with_columns(
        (pl.when(diff >= 0).then(diff).when(diff + wrap < wrap // 2).then(diff + wrap)
         .otherwise(None) * pl.col("multiplier")).alias("qty"))
    cols = {"total": "kwh", "sharp": "sharp_kwh", "peak": "peak_kwh", "flat": "flat_kwh",
            "valley": "valley_kwh"}
    q = q.filter(pl.col("register").is_in(list(cols)))
    # a read claiming more than the meter can register since the opening read (a forged MQTT
    # message, a corrupt frame) is not believed: the account is not evaluated, and is reported
    hours = (pl.col("close_at") - pl.col("open_at")).dt.total_seconds() / 3600
    limit = (pl.lit(ctx.policy.prepay_max_kw_per_multiplier * 100) * pl.col("multiplier")
             * pl.max_horizontal(hours, pl.lit(1.0)))  # qty is in 0.01 kWh
    implausible = q.filter(pl.col("register") == "total", pl.col("qty") > limit)
    ctx.report.prepay_implausible = sorted(implausible["account_id"].unique().to_list())
    q = q.with_columns(pl.when(pl.col("account_id").is_in(ctx.report.prepay_implausible))
                       .then(None).otherwise(pl.col("qty")).alias("qty"))
    # every register of the account must be usable: one bad register leaves the account out
    bad = q.filter(pl.col("qty").is_null()).select("account_id").unique()
    ok = q.join(bad, on="account_id", how="anti")
    wide = ok.pivot(on="register", index=["account_id", "close_at"], values="qty")
    for reg, col in cols.items():
        wide = (wide.rename({reg: col}) if reg in wide.columns
                else wide.with_columns(pl.lit(None, pl.Int64).alias(col)))
    usage = (wide.filter(pl.col("kwh").is_not_null())
             .join(base.select("account_id", "tariff_id", "low_income", "rate_period"),
                   on="account_id")
             .join(ytd, on="account_id", how="left")
             .with_columns(pl.col("ytd_kwh").fill_null(0).cast(pl.Int64),
                           pl.col("low_income").fill_null(False)))
    catalogue = load_catalogue(ctx.db.settings.billing.tariff_dir)
    charges = []
    for (period_text,), rows in usage.partition_by("rate_period", as_dict=True).items():
        period = _period_of(str(period_text))
        rows = _fit_registers(catalogue, period, rows)
        lines, _errors = rate_frame(catalogue, period, rows.select(
            "account_id", "tariff_id", "kwh", "ytd_kwh", "sharp_kwh", "peak_kwh", "flat_kwh",
            "valley_kwh", pl.lit(None, pl.Int64).alias("kvarh"),
            pl.lit(None, pl.Int64).alias("capacity_kva"),
            pl.lit(None, pl.Int64).alias("max_demand_kw"), "low_income"))
        rated = rows.select("account_id", "kwh", pl.col("close_at").alias("read_at")).join(
            _errors.select("account_id"), on="account_id", how="anti")
        charges.append(rated.join(lines.group_by("account_id").agg(
            pl.col("amount").sum().alias("accrued")), on="account_id", how="left")
            .with_columns(pl.col("accrued").fill_null(0)))
    if not charges:
        ctx.report.prepay_unrated = accts.height
        return pl.DataFrame()
    acc = pl.concat(charges)
    out = (accts.select("account_id", "customer_id", "customer_class", "protected", "meter_id")
           .join(acc, on="account_id", how="inner"))
    ctx.report.prepay_accounts = out.height
    ctx.report.prepay_unrated = accts.height - out.height
    return out


def _fit_registers(catalogue: Any, period: Period, rows: pl.DataFrame) -> pl.DataFrame:
    """The meter's registers brought to the periods the tariff prices (as billing does): a
    tariff without time of use prices the total; one without a sharp period counts sharp as
    peak (尖峰并入高峰)."""
    import polars as pl

    no_tou, no_sharp = [], []
    for t in rows["tariff_id"].drop_nulls().unique().to_list():
        try:
            periods = tuple(getattr(catalogue.version_for(t, period).energy, "periods", ()))
        except Exception:  # unknown tariff / none in force: the rater reports it as an error
            continue
        if not periods:
            no_tou.append(t)
        elif "sharp" not in periods:
            no_sharp.append(t)
    fold = pl.col("tariff_id").is_in(no_sharp) & pl.col("sharp_kwh").is_not_null()
    rows = rows.with_columns(
        pl.when(fold).then(pl.col("peak_kwh").fill_null(0) + pl.col("sharp_kwh"))
        .otherwise(pl.col("peak_kwh")).alias("peak_kwh"),
        pl.when(fold).then(None).otherwise(pl.col("sharp_kwh")).alias("sharp_kwh"))
    return rows.with_columns([
        pl.when(pl.col("tariff_id").is_in(no_tou)).then(None).otherwise(pl.col(c)).alias(c)
        for c in ("sharp_kwh", "peak_kwh", "flat_kwh", "valley_kwh")])


def _context(row: dict[str, Any], stop_on: str = "") -> dict[str, str]:
    return {"customer_name": str(row.get("name") or ""), "account_id": str(row["account_id"]),
            "balance": fmt_yuan(int(row["available"])), "pay_channels": PAY_CHANNELS,
            "stop_on": stop_on}


def run(ctx: Context, session: Session, balances: pl.DataFrame) -> None:
    """Stages, notices and stop cases of prepaid accounts for today (see the module doc)."""
    import polars as pl

    from dianfei.db.bulk import write_frame

    if balances.height == 0:
        return
    now, day, pol = ctx.now, ctx.day, ctx.policy
    stage = (pl.when(pl.col("available") <= 0).then(pl.lit("cutoff"))
             .when(pl.col("available") < pol.prepay_warning_fen).then(pl.lit("warned"))
             .otherwise(pl.lit("ok")))
    prev = repository.prepay_state(ctx.db.engine).select(
        "account_id", pl.col("stage").alias("prev"), pl.col("since_at").alias("prev_since"))
    cur = balances.with_columns(stage.alias("stage")).join(prev, on="account_id", how="left")
    # the live cases as columns; only those that move today are loaded below (thousands of
    # accounts stay cut off or wait out their notice every day at a million accounts)
    live_frame = stops.live_case_frame(session, "prepaid")
    in_case = pl.col("account_id").is_in(live_frame["account_id"].implode())
    # only accounts whose stage changed, that are below the threshold, or have a live case need
    # work (and a state row): a healthy balance that stays healthy costs nothing to write
    todo = cur.filter((pl.col("prev").is_null()) | (pl.col("stage") != pl.col("prev"))
                      | (pl.col("stage") != "ok") | in_case)
    # the state first: the re-check right before a trip reads today's accrued charge
    conn = session.connection()
    # the names for the notices, of the accounts that get one today only (the loop below): the
    # tens of thousands waiting below the threshold get none
    was = pl.col("prev")
    notified = todo.filter(~in_case & (
        ((pl.col("stage") == "cutoff") & (was.is_null() | (was != "cutoff")))
        | ((pl.col("stage") == "warned") & (was.is_null() | (was == "ok")))))
    names = customers.customer_names(conn, notified["customer_id"].to_list())
    todo = todo.with_columns(pl.col("customer_id").replace_strict(
        names, default=None, return_dtype=pl.String).alias("name"))
    moving = live_frame.join(todo.select("account_id", "available"), on="account_id").filter(
        _moves(ctx, pl.col("available") > 0))
    live_accounts = set(live_frame["account_id"].to_list())
    live = {c.account_id: c for c in stops.cases_by_id(session, moving["case_id"].to_list())}
    # the stage's start is kept while the stage holds (it was set to today on every day an
    # account stayed below the threshold); a known account's row changes in place — a delete
    # and insert rewrote the key's index too, ~900 pages a day at a million accounts
    state = todo.select(
        "account_id", "stage",
        pl.when(pl.col("stage") == pl.col("prev")).then(pl.col("prev_since"))
        .otherwise(pl.lit(now.astimezone(UTC), pl.Datetime("us", "UTC"))).alias("since_at"),
        "available", pl.lit(day).alias("as_of"), "accrued", "read_at")
    known = todo["prev"].is_not_null()
    repository.update_rows(conn, "prepay_state", "account_id", state.filter(known))
    repository.replace_rows(conn, "prepay_state", "account_id", state.filter(~known))
    tasks = []
    wait_until = now + pol.prepay_cutoff_wait
    # the cases that may move today are moved together: their events written at once, their
    # meters read at once
    events = stops.CaseEvents()
    meters = customers.active_meters(conn, [c.account_id for c in live.values()
                                            if c.status in ("noticed", "ordered")])
    cutoffs: list[dict[str, Any]] = []
    for r in todo.iter_rows(named=True):
        acct, st, was = r["account_id"], r["stage"], r["prev"]
        if acct in live_accounts:
            case = live.get(acct)
            if case is None:
                continue  # its case waits (screened out by _moves)
            if r["available"] > 0:
                if case.status in ("noticing", "noticed", "ordered"):
                    stops.cancel(ctx, session, case, "topped_up", events=events)
                elif case.status == "suspended":
                    stops.order_reconnection(ctx, session, case, events=events)
            elif case.status in ("noticed", "ordered"):
                _advance(ctx, session, case, r, events=events, meters=meters)
        elif st == "cutoff" and was != "cutoff":
            if r["protected"]:
                # never cut: a person follows it up instead
                tasks.append({"key": f"prepay:{acct}:{day.isoformat()}", "account_id": acct,
                              "customer_id": r["customer_id"], "kind": "collector_visit",
                              "status": "open", "created_at": now, "due_at": now + timedelta(days=3),
                              "detail": json.dumps({"reason": "prepay", "available": r["available"]})})
                ctx.notices.append(Notice(f"{KEY_PREFIX}ppw:{acct}:{day.isoformat()}", acct,
                                          r["customer_id"], "prepay_warning", "sms", _context(r)))
                ctx.report.prepay_warnings += 1
            else:
                cutoffs.append(r)
        elif st == "warned" and was in (None, "ok"):
            ctx.notices.append(Notice(f"{KEY_PREFIX}ppw:{acct}:{day.isoformat()}", acct,
                                      r["customer_id"], "prepay_warning", "sms", _context(r)))
            ctx.report.prepay_warnings += 1
    stops.record_batch(session, events)
    _open_cutoffs(ctx, session, cutoffs, stop_on=business_date(wait_until).isoformat())
    session.flush()
    if tasks:
        frame = pl.DataFrame(tasks, schema={"key": pl.String, "account_id": pl.String,
                                            "customer_id": pl.String, "kind": pl.String,
                                            "status": pl.String,
                                            "created_at": pl.Datetime("us", "UTC"),
                                            "due_at": pl.Datetime("us", "UTC"), "detail": pl.String})
        have = repository.existing_keys(conn, "collection_tasks", frame["key"].to_list())
        ctx.report.tasks += write_frame(conn, "collection_tasks",
                                        frame.filter(~pl.col("key").is_in(list(have))))


def _open_cutoffs(ctx: Context, session: Session, rows: list[dict[str, Any]], *,
                  stop_on: str) -> None:
    """A cut-off case (``noticing``) for each account that reached zero today, opened together
    (thousands a day at a million accounts), and its cut-off notice queued."""
    import polars as pl

    if not rows:
        return
    day = ctx.day.isoformat()
    keys = {r["account_id"]: f"{KEY_PREFIX}ppc:{r['account_id']}:{day}" for r in rows}
    opened = stops.open_cases(session, pl.DataFrame({
        "account_id": [r["account_id"] for r in rows],
        "customer_id": [r["customer_id"] for r in rows],
        "customer_class": [r["customer_class"] for r in rows],
        "bill_id": [""] * len(rows), "notice_key": [keys[r["account_id"]] for r in rows],
        "approval_required": [False] * len(rows)}), mode="prepaid", opened_at=ctx.now)
    wanted = set(opened["account_id"].to_list())
    for r in rows:
        if r["account_id"] in wanted:
            ctx.notices.append(Notice(keys[r["account_id"]], r["account_id"], r["customer_id"],
                                      "cutoff_notice", "sms", _context(r, stop_on)))
            ctx.report.prepay_cutoff_notices += 1


def advance_cases(ctx: Context, session: Session) -> None:
    """Second pass of the day (after the notices went out): cases whose notice was just sent may
    already be due (a zero wait), and ordered ones are executed. The fresh re-check of the
    balance is read for all of them at once, in this transaction (nothing in the pass moves
    money): one set-based read instead of one per case — thousands a day at a million
    accounts."""
    import polars as pl

    due = stops.live_case_frame(session, "prepaid").filter(_moves(ctx, pl.lit(False)))
    cases = stops.cases_by_id(session, due["case_id"].to_list())
    ok = stops.stoppable(session.connection(), cases, ctx.policy, ctx.now)
    events = stops.CaseEvents()
    meters = customers.active_meters(session.connection(), [c.account_id for c in cases])
    for case in cases:
        _advance(ctx, session, case, None, still=case.case_id in ok, events=events, meters=meters)
    stops.record_batch(session, events)
    session.flush()


def _moves(ctx: Context, topped_up: pl.Expr) -> pl.Expr:
    """Which live prepaid cases (columns status, earliest_stop_at) the day's passes move, given
    whether the account is back above zero — exactly those :func:`run` and :func:`_advance`
    act on (a property test holds it to that): a case not carried out yet is cancelled and a
    tripped meter reconnected after a top-up; otherwise an order is executed, and a noticed
    case is ordered once its wait is over inside the stop window."""
    import polars as pl

    now = ctx.now
    status = pl.col("status")
    return ((topped_up & status.is_in(["noticing", "noticed", "ordered", "suspended"]))
            | (~topped_up & ((status == "ordered")
                             | ((status == "noticed") & (pl.col("earliest_stop_at") <= now)
                                & pl.lit(bool(ctx.policy.stop_allowed_at(now))))))).fill_null(False)


def _advance(ctx: Context, session: Session, case: StopCase, row: dict[str, Any] | None, *,
             still: bool = False, events: stops.CaseEvents | None = None,
             meters: dict[str, tuple[str, str | None]] | None = None) -> None:
    """``row``: today's balance, read minutes ago; ``still``: a fresh re-check of this
    transaction found the cut-off still due (False: not known, read again here)."""
    now = ctx.now
    # today's balance (``row``) was read minutes ago, or the caller has just re-checked
    fresh = still or (row is not None and row["available"] <= 0)
    if case.status == "noticed":
        if case.earliest_stop_at is None or now < case.earliest_stop_at:
            return
        if not ctx.policy.stop_allowed_at(now):
            return  # the stop window; the next run (or process_commands) tries again
        if not fresh and not stops.still_stoppable(session.connection(), case, ctx.policy, now):
            return  # the balance check of the day handles a top-up (cancel) next
        stops.order_stop(ctx, session, case, execute_after=now, events=events)
    if case.status == "ordered":
        # the trip itself re-checks a fresh balance right before it is sent
        stops.execute_order(ctx, session, case, checked=fresh, events=events, meters=meters)


def still_cut_off(conn: Any, case: StopCase) -> bool:
    """The re-check right before a prepaid trip: a fresh ledger balance less what was accrued at
    the last daily computation is still at or below zero, and the customer is not protected."""
    from dianfei.collections.account import owed
    from dianfei.customers.service import protected_customers

    accrued = repository.prepay_accrued(conn, case.account_id)
    if accrued is None:
        return False
    if protected_customers(conn, [case.customer_id]):
        return False
    return -owed(conn, [case.account_id])[case.account_id] - accrued <= 0
