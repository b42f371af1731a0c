"""The KPIs that prove collection works (电费回收率, 逾期欠费率, 缴费周期, 投诉率 …), as of any date.

Every figure is a pure function of frames read through the other packages' services (bills from
billing, clearings from payments, customers, tickets, notices, stop cases), so the benchmark can
feed the same functions synthetic frames. :func:`load_inputs` has the database work out each
bill's state at D (``payments.service.bill_states``: one row per bill, not one per clearing) and,
for ``dianfei kpi``, the channel split and the open-customer count; :func:`bill_state` is the same
state from bare frames (the exports use it; a test holds the two equal, and another recomputes
the KPIs from the CSV files).

Definitions (docs/kpi.md writes them out for users):

- only live bills count: a cancelled bill is left out of every KPI (its rebill is a new bill);
- *collected* = clearings (allocations) to the period's bills whose ``allocated_at`` falls on or
  before the as-of date D (Asia/Shanghai); not late fees, not unused credit; a refund or a
  cancelled bill's reversal is a negative clearing and counts on its own date;
- *collection rate* = collected ÷ billed; *overdue arrears rate* = what is still unpaid at D of
  the bills due before D (``due_on`` < D) ÷ billed;
- *payment cycle* = days from a bill's issue date to the day it was paid in full, over the bills
  paid in full at D (zero-amount bills left out); median of an even count = mean of the middle two;
- *complaint rate* = complaints (every complaint category: complaint, notice_complaint,
  collector_complaint) opened in the period per 10,000 customers open at its last day;
- *satisfaction* = the mean survey score of the period's tickets and of the surveys taken in it
  after visits and reconnections.

A rate whose denominator is zero is ``None`` (JSON null), never a division by zero.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import date
from decimal import ROUND_HALF_UP, Decimal
from typing import TYPE_CHECKING, Any

from dianfei.core.clock import Period
from dianfei.core.errors import ValidationError
from dianfei.core.money import fmt_yuan

if TYPE_CHECKING:
    import polars as pl

    from dianfei.db.engine import Database

#: dimensions of ``--by``; all but ``channel`` split every KPI, ``channel`` splits what was
#: collected
DIMENSIONS = ("region", "customer_class", "collector", "station", "channel", "segment")
#: the customers column of each customer dimension (``segment``: the risk segment, added to the
#: customers by :func:`with_segments`)
DIMENSION_COLUMNS = {"region": "region_id", "customer_class": "customer_class",
                     "collector": "collector_id", "station": "station_id", "segment": "segment"}
#: periods in the monthly trend of the report (the period itself and the eleven before it);
#: ``dianfei kpi --trend N`` asks for N (0 by default: the trend reads N periods of bills)
TREND_PERIODS = 12
#: periods of billing DSO divides the receivable by
DSO_PERIODS = 3
#: days past due from which unpaid arrears count as bad debt (呆账: the oldest aging bucket)
BAD_DEBT_DAYS = 90
#: notice outcomes: reached the customer / an attempt that ended
NOTICE_REACHED = ("sent", "delivered")
NOTICE_ENDED = ("sent", "delivered", "failed")
_RATE = Decimal("0.0001")
_DAYS = Decimal("0.01")


@dataclass(frozen=True)
class Inputs:
    """Everything the KPIs of one period read, as frames (see :func:`load_inputs`)."""

    period: Period
    #: bills of the trend window (bill_id, account_id, customer_id, period, issued_on, due_on,
    #: amount, status, estimated, read_to_at), cancelled ones included (left out here); with
    #: ``as_of`` set, those issued by then with ``paid`` and ``paid_in_full_on``
    bills: pl.DataFrame
    #: clearings to those bills: bill_id, payment_id, channel, allocated_at, amount
    clearings: pl.DataFrame
    #: customer_id, customer_class, region_id, station_id, collector_id, opened_on, closed_on
    customers: pl.DataFrame
    #: tickets opened in the period: customer_id, category, satisfaction — and the surveys taken
    #: in it after visits and reconnections, as rows of category "survey"
    tickets: pl.DataFrame
    #: notices queued in the period: customer_id, status
    notices: pl.DataFrame
    #: accounts of the period on the exceptions list (not billed): account_id, customer_id
    unbilled: pl.DataFrame
    #: stop cases suspended from the period's first day on: account_id, mode, suspended_at
    suspensions: pl.DataFrame
    #: standing write-offs: reference, business_date, amount
    write_offs: pl.DataFrame
    #: D when the database worked out the bills' state (:func:`load_inputs`): ``bills`` are
    #: then the bills issued by D with ``paid`` and ``paid_in_full_on`` at D, and ``clearings``
    #: only those to the period's live bills by D (the channel split, even of a bill issued
    #: after D that money reached first). None: bare bills, their state derived from
    #: ``clearings`` by :func:`bill_state` for whatever D :func:`compute` is asked
    as_of: date | None = None
    #: the channel split worked out by the database (channel, collected, payments) when the
    #: clearings were not read (``clearings`` is then empty)
    channels: pl.DataFrame | None = None
    #: the customers open on the period's last day when their rows were not read (``customers``
    #: is then empty and no ``--by`` of a customer dimension can be computed)
    open_customers: int | None = None
    #: the bills' state at ``as_of`` summed by the database, a row per period (``payments.
    #: service.bill_state_sums``: period, n, billed, paid, unpaid, actual, dated, le_i for
    #: :func:`_past_due_thresholds`) instead of one row per bill; ``bills`` are then only the
    #: period's few bills the exposure and write-offs concern (of accounts cut off for
    #: arrears, or written off), without state
    totals: pl.DataFrame | None = None
    #: with ``totals``: the histogram of the payment days of the reported periods (period,
    #: days, n)
    payment_days: pl.DataFrame | None = None


def parse_as_of(text: str | None, period: Period, today: date) -> date:
    """The as-of date: ``text`` (YYYY-MM-DD) or today; never before the period begins."""
    if text is None:
        as_of = today
    else:
        try:
            as_of = date.fromisoformat(text)
        except ValueError:
            raise ValidationError(f"--as-of must be YYYY-MM-DD, got {text!r}") from None
    if as_of < period.first_day:
        raise ValidationError(
            f"--as-of {as_of} is before period {period} begins ({period.first_day}): nothing of "
            "that period can be billed or collected yet")
    return as_of


def check_dimension(by: str | None) -> None:
    if by is not None and by not in DIMENSIONS:
        raise ValidationError(f"--by must be one of {', '.join(DIMENSIONS)}, got {by!r}")


def first_of_window(period: Period, months: int) -> Period:
    """The first period of the ``months`` periods ending with ``period``."""
    p = period
    for _ in range(months - 1):
        p = p.prev()
    return p


def load_inputs(db: Database, period: Period, as_of: date, trend: int = 0, *,
                detail: bool = True) -> Inputs:
    """Read what the period's KPIs as of ``as_of`` need, each through its package's service (a
    few set reads): the state at D of the bills of the DSO window, or of ``trend`` periods when
    that is longer, worked out by the database (one row per bill).

    ``detail`` (the default) also reads the period's clearings and every customer's dimensions,
    so that the inputs can be cut to some customers (the dashboard's filters) and split by
    ``--by``; without it the database sums the channel split and counts the open customers
    (``dianfei kpi`` without ``--by``: a million customers' rows not read)."""
    import polars as pl

    from dianfei.billing.service import open_exceptions, period_bills_of
    from dianfei.collections.service import surveys_between, suspended_between, tickets_between
    from dianfei.core.clock import start_of_day
    from dianfei.customers.service import (
        customer_dimensions,
        open_account_facts,
        open_customer_count,
    )
    from dianfei.ledger.service import write_offs
    from dianfei.notify.service import notice_outcomes
    from dianfei.payments.service import (
        bill_clearings,
        bill_state_sums,
        bill_states,
        collected_by_channel,
    )

    first, last = str(first_of_window(period, max(trend, DSO_PERIODS))), str(period)
    since, until = start_of_day(period.first_day), start_of_day(period.end_date)
    unbilled = open_exceptions(db, period)
    accounts = unbilled["account_id"].to_list() if unbilled.height else []
    owners = (open_account_facts(db.engine, accounts, names=False).select("account_id", "customer_id")
              if accounts else pl.DataFrame(schema={"account_id": pl.String,
                                                    "customer_id": pl.String}))
    suspensions = suspended_between(db, period.first_day, max(as_of, period.first_day))
    written = write_offs(db.engine)
    totals = payment_days = None
    if detail:
        clearings, customers = (bill_clearings(db.engine, str(period), str(period), as_of),
                                customer_dimensions(db.engine))
        channels, open_count = None, None
        bills = bill_states(db.engine, first, last, as_of)
    else:
        clearings, customers = _no_clearings(), _no_customers()
        # each period of the window summed by the database (the payment days' histogram only
        # of the periods whose money figures are reported: the period and the trend's), the
        # channel split and the open customers — as many reads at once as there are
        # :data:`READERS` (each on its own connection), the period itself first
        past_due = _past_due_thresholds()
        histogram_from = str(first_of_window(period, max(trend, 1)))
        periods, p = [], period
        while str(p) >= first:
            periods.append(str(p))
            p = p.prev()

        def sums(p: str) -> tuple[pl.DataFrame, pl.DataFrame]:
            # a period only DSO reads needs its billed and unpaid amounts alone
            reported = p >= histogram_from
            row, days = bill_state_sums(db.engine, p, as_of, past_due if reported else [],
                                        by_days=reported, unpaid_only=not reported)
            return (row.select(pl.lit(p).alias("period"), pl.all()),
                    days.select(pl.lit(p).alias("period"), pl.all()))

        reads: list[Callable[[], Any]] = [
            functools.partial(sums, periods[0]),
            functools.partial(collected_by_channel, db.engine, str(period), as_of),
            *[functools.partial(sums, p) for p in periods[1:]],
            functools.partial(open_customer_count, db.engine, period.last_day)]
        done = _read_at_once(db, reads)
        channels, open_count = done[1], done[-1]
        summed = [done[0], *done[2:-1]]
        totals = pl.concat([t for t, _ in summed], how="diagonal").sort("period")
        payment_days = pl.concat([d for _, d in summed]).sort("period", "days")
        # the period's few bills the exposure (accounts cut off for arrears) and the write-offs
        # concern, issued by D
        cut = suspensions.filter(pl.col("mode") == "postpaid")["account_id"].unique().to_list()
        bills = period_bills_of(db.engine, str(period), cut, written["reference"].to_list())
        bills = bills.filter(pl.col("issued_on") <= as_of)
    return Inputs(
        period=period,
        bills=bills,
        clearings=clearings,
        customers=customers,
        tickets=pl.concat([tickets_between(db.engine, since, until).select(
            "customer_id", "category", "satisfaction"), surveys_between(db.engine, since, until)
            .select("customer_id", pl.lit("survey").alias("category"), "satisfaction")]),
        notices=notice_outcomes(db.engine, since, until),
        unbilled=owners,
        suspensions=suspensions,
        write_offs=written,
        as_of=as_of, channels=channels, open_customers=open_count, totals=totals,
        payment_days=payment_days)


#: reads :func:`load_inputs` runs at once (each on its own connection: SQLite and the driver
#: release the interpreter while the database works, PostgreSQL runs them in its own processes)
READERS = 2


def _read_at_once(db: Database, reads: list[Callable[[], Any]]) -> list[Any]:
    """The results of ``reads`` (in their order), :data:`READERS` of them at a time; one after
    the other on an in-memory SQLite database (one connection)."""
    if db.engine.dialect.name == "sqlite" and db.engine.url.database in (None, "", ":memory:"):
        return [read() for read in reads]
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(max_workers=READERS, thread_name_prefix="kpi-read") as pool:
        futures = [pool.submit(read) for read in reads]
        return [f.result() for f in futures]


def _no_clearings() -> pl.DataFrame:
    import polars as pl

    return pl.DataFrame(schema={"bill_id": pl.String, "account_id": pl.String,
                                "payment_id": pl.String, "channel": pl.String,
                                "allocated_at": pl.Datetime("us", "UTC"), "amount": pl.Int64})


def _no_customers() -> pl.DataFrame:
    import polars as pl

    return pl.DataFrame(schema={"customer_id": pl.String, "customer_class": pl.String,
                                "region_id": pl.String, "station_id": pl.String,
                                "collector_id": pl.String, "opened_on": pl.Date,
                                "closed_on": pl.Date})


# -- the state of each bill at a date --------------------------------------------------------------


#: Asia/Shanghai has kept UTC+8 without daylight saving since 1991: a business date is the UTC
#: instant plus eight hours (a fixed shift is several times cheaper than a zone lookup per row)
_BUSINESS_OFFSET_HOURS = 8


def business_day(col: str) -> pl.Expr:
    """The Asia/Shanghai business date of a UTC instant column."""
    import polars as pl

    return ((pl.col(col).dt.replace_time_zone(None) + pl.duration(hours=_BUSINESS_OFFSET_HOURS))
            .dt.date())


def bill_state(bills: pl.DataFrame, clearings: pl.DataFrame, as_of: date | None) -> pl.DataFrame:
    """Each bill issued by ``as_of`` (None: everything so far) with what was paid on it by then:
    the bills' columns plus ``paid`` (fen) and ``paid_in_full_on``.

    ``paid_in_full_on`` is the business day of the clearing that brought the bill's cumulative
    clearings up to its amount for the last time (a refund can open a paid bill again; the day
    it is paid again is the day it was paid in full), never before its issue date (money already
    on the account is applied on issue). A zero-amount bill is settled on issue. A bill not
    fully paid at ``as_of``, or cancelled, has none.
    """
    import polars as pl

    c = clearings.select("bill_id", "allocated_at", pl.col("amount").cast(pl.Int64))
    c = c.with_columns(business_day("allocated_at").alias("_day"))
    if as_of is not None:
        bills = bills.filter(pl.col("issued_on") <= as_of)
        c = c.filter(pl.col("_day") <= as_of)
    # one join on the bill id gives each clearing its bill's row number and amount; from there
    # everything is integer work: sort by (bill, instant) — stable, so clearings at the same
    # instant keep their own order — and a running total that restarts at each bill
    b = bills.with_row_index("_idx")
    c = (c.join(b.select("bill_id", "_idx", pl.col("amount").alias("_amount")), on="bill_id",
                how="inner")
         .sort("_idx", "allocated_at", maintain_order=True))
    run = pl.col("amount").cum_sum()
    first = (pl.col("_idx") != pl.col("_idx").shift(1)).fill_null(True)
    c = c.with_columns(
        (run - pl.when(first).then(run - pl.col("amount")).otherwise(None).forward_fill())
        .alias("_cum"))
    crossing = ((pl.col("_cum") >= pl.col("_amount"))
                & ((pl.col("_cum") - pl.col("amount")) < pl.col("_amount")))
    per_bill = c.group_by("_idx").agg(
        pl.col("amount").sum().alias("paid"),
        pl.col("_day").filter(crossing).last().alias("_full_day"))
    live = pl.col("status") != "cancelled"
    out = (b.join(per_bill, on="_idx", how="left", maintain_order="left").drop("_idx")
           .with_columns(pl.col("paid").fill_null(0).cast(pl.Int64)))
    return out.with_columns(
        pl.when(live & (pl.col("amount") <= 0)).then(pl.col("issued_on"))
        .when(live & (pl.col("paid") >= pl.col("amount")))
        .then(pl.max_horizontal("_full_day", "issued_on"))
        .otherwise(None).alias("paid_in_full_on"),
    ).drop("_full_day")


def states(inp: Inputs, as_of: date) -> pl.DataFrame:
    """The state at ``as_of`` of the inputs' bills (:func:`bill_state`'s columns): the one the
    database worked out when :func:`load_inputs` read them, else derived from the clearings."""
    if inp.totals is not None:
        raise ValueError("the inputs hold the bills' state summed (load_inputs(detail=False)), "
                         "not bill by bill")
    if inp.as_of is None:
        return bill_state(inp.bills, inp.clearings, as_of)
    if inp.as_of != as_of:
        raise ValueError(f"the inputs hold the bills' state as of {inp.as_of}, not {as_of}: "
                         "load them again as of that date")
    return inp.bills


# -- figures --------------------------------------------------------------------------------------


def rate(num: int, den: int) -> float | None:
    """A fraction to four places (half up), exact from integers; None when nothing to divide by."""
    if den == 0:
        return None
    return float((Decimal(num) / Decimal(den)).quantize(_RATE, rounding=ROUND_HALF_UP))


def _days(total: int, count: int) -> float | None:
    if count == 0:
        return None
    return float((Decimal(total) / Decimal(count)).quantize(_DAYS, rounding=ROUND_HALF_UP))


def _aging_names() -> tuple[str, ...]:
    from dianfei.ledger.service import AGING_BUCKETS

    return tuple(AGING_BUCKETS)


def money_figures(state: pl.DataFrame, as_of: date, key: str | None) -> pl.DataFrame:
    """Per group (``key``, or one row): billed, collected, overdue, unpaid per aging bucket,
    bad_debt, paid-in-full count, days sum and median — integer fen, one pass of columns."""
    import polars as pl

    from dianfei.ledger.service import aging_bucket_column

    s = state.filter(pl.col("status") != "cancelled")
    unpaid = pl.max_horizontal(pl.col("amount") - pl.col("paid"), pl.lit(0))
    past = (pl.lit(as_of) - pl.col("due_on")).dt.total_days()
    s = s.with_columns(unpaid.alias("_unpaid"), past.alias("_past"),
                       aging_bucket_column(past).alias("_bucket"),
                       pl.when((pl.col("amount") > 0) & pl.col("paid_in_full_on").is_not_null())
                       .then((pl.col("paid_in_full_on") - pl.col("issued_on")).dt.total_days())
                       .otherwise(None).alias("_days"))
    aggs = [
        pl.len().alias("bills"),
        pl.col("amount").sum().alias("billed"),
        pl.col("paid").sum().alias("collected"),
        pl.col("_unpaid").filter(pl.col("due_on") < as_of).sum().alias("overdue"),
        pl.col("_unpaid").filter(pl.col("_past") > BAD_DEBT_DAYS).sum().alias("bad_debt"),
        pl.col("_days").count().alias("paid_in_full"),
        pl.col("_days").sum().alias("days_sum"),
        pl.col("_days").median().alias("days_median"),
        *[pl.col("_unpaid").filter(pl.col("_bucket") == b).sum().alias(f"aging:{b}")
          for b in _aging_names()],
    ]
    if key is None:
        return s.select(aggs)
    return s.group_by(key).agg(aggs).sort(key)


def _past_due_thresholds() -> list[int]:
    """The days past due the database sums unpaid amounts up to (ascending): the aging
    buckets' ends and :data:`BAD_DEBT_DAYS` (0: not overdue yet)."""
    from dianfei.ledger.service import aging_ends

    return sorted({0, BAD_DEBT_DAYS, *(last for last, _ in aging_ends())})


def money_totals(totals: pl.DataFrame, payment_days: pl.DataFrame, key: str | None
                 ) -> pl.DataFrame:
    """:func:`money_figures` from the database's sums (``Inputs.totals``, ``payment_days``):
    the same columns per group (``key``: None or ``period``), exact — the aging from the unpaid
    amounts up to each bucket's last day past due, the payment days' count, sum and median from
    their histogram (an even count: the mean of the middle two, as Polars' median)."""
    import polars as pl

    from dianfei.ledger.service import aging_ends

    le = {t: pl.col(f"le_{i}").sum() for i, t in enumerate(_past_due_thresholds())}
    buckets, previous = [], None
    for last, name in aging_ends():
        buckets.append((le[last] - (0 if previous is None else le[previous])).alias(f"aging:{name}"))
        previous = last
    assert previous is not None
    buckets.append((pl.col("unpaid").sum() - le[previous]).alias(f"aging:{_aging_names()[-1]}"))
    keys = [key] if key is not None else []
    aggs = [
        pl.col("n").sum().alias("bills"),
        pl.col("billed").sum().alias("billed"),
        pl.col("paid").sum().alias("collected"),
        (pl.col("dated").sum() - le[0]).alias("overdue"),
        (pl.col("dated").sum() - le[BAD_DEBT_DAYS]).alias("bad_debt"),
        *buckets,
    ]
    out = totals.group_by(keys).agg(aggs) if keys else totals.select(aggs)
    hist = payment_days.group_by([*keys, "days"]).agg(pl.col("n").sum()).sort("days")
    counts, sums, medians = [], [], []
    for row in out.iter_rows(named=True):
        h = hist.filter(pl.col(key) == row[key]) if key is not None else hist
        days, n = h["days"].to_list(), h["n"].to_list()
        counts.append(sum(n))
        sums.append(sum(d * c for d, c in zip(days, n, strict=True)))
        medians.append(_histogram_median(days, n))
    out = out.with_columns(pl.Series("paid_in_full", counts, dtype=pl.Int64),
                           pl.Series("days_sum", sums, dtype=pl.Int64),
                           pl.Series("days_median", medians, dtype=pl.Float64))
    return out.sort(key) if key is not None else out


def _histogram_median(values: list[int], counts: list[int]) -> float | None:
    """The median of ``values`` each repeated ``counts`` times (sorted): the middle value, or
    the mean of the middle two."""
    total = sum(counts)
    if total == 0:
        return None
    lo_rank, hi_rank = (total - 1) // 2, total // 2
    lo = hi = None
    seen = 0
    for v, c in zip(values, counts, strict=True):
        if lo is None and lo_rank < seen + c:
            lo = v
        if hi_rank < seen + c:
            hi = v
            break
        seen += c
    assert lo is not None and hi is not None
    return (lo + hi) / 2


def _money_json(row: dict[str, Any]) -> dict[str, Any]:
    billed, collected, overdue = int(row["billed"]), int(row["collected"]), int(row["overdue"])
    median = row["days_median"]
    return {
        "bills": int(row["bills"]),
        "billed": fmt_yuan(billed),
        "collected": fmt_yuan(collected),
        "collection_rate": rate(collected, billed),
        "overdue_amount": fmt_yuan(overdue),
        "overdue_rate": rate(overdue, billed),
        "avg_payment_days": _days(int(row["days_sum"] or 0), int(row["paid_in_full"])),
        "median_payment_days": None if median is None else float(median),
        "bills_paid_in_full": int(row["paid_in_full"]),
        "aging": {b: fmt_yuan(int(row[f"aging:{b}"])) for b in _aging_names()},
        "bad_debt_amount": fmt_yuan(int(row["bad_debt"])),
        "bad_debt_rate": rate(int(row["bad_debt"]), billed),
    }


def _with_group(frame: pl.DataFrame, customers: pl.DataFrame, column: str | None) -> pl.DataFrame:
    """``frame`` (with customer_id) with the customer dimension as column ``group``."""
    import polars as pl

    if column is None:
        return frame.with_columns(pl.lit("all").alias("group"))
    dims = customers.select("customer_id", pl.col(column).fill_null("(none)").alias("group"))
    return frame.join(dims, on="customer_id", how="left").with_columns(
        pl.col("group").fill_null("(none)"))


def _service_figures(inp: Inputs, this: pl.DataFrame, as_of: date,
                     column: str | None) -> dict[str, dict[str, Any]]:
    """Per group: complaint rate, satisfaction, notice delivery, read success, days of exposure,
    write-offs — each counted from its own rows (``this``: the period's bills at D)."""
    import polars as pl

    from dianfei.collections.service import COMPLAINT_CATEGORIES

    period = inp.period
    live = this.filter(pl.col("status") != "cancelled")

    def grouped(frame: pl.DataFrame, *aggs: pl.Expr) -> pl.DataFrame:
        return _with_group(frame, inp.customers, column).group_by("group").agg(*aggs)

    if inp.open_customers is not None:
        if column is not None:
            raise ValueError("the customers' rows were not read (load_inputs(detail=False)): "
                             f"no split by {column}")
        counted = pl.DataFrame({"group": ["all"], "customers": [inp.open_customers]},
                               schema={"group": pl.String, "customers": pl.UInt32})
    else:
        counted = grouped(inp.customers.filter(
            (pl.col("opened_on") <= period.last_day)
            & (pl.col("closed_on").is_null() | (pl.col("closed_on") > period.last_day))),
            pl.len().alias("customers"))
    parts = [
        counted,
        grouped(inp.tickets, pl.col("category").is_in(COMPLAINT_CATEGORIES).sum()
                .alias("complaints"),
                pl.col("satisfaction").count().alias("surveys"),
                pl.col("satisfaction").sum().alias("score_sum")),
        grouped(inp.notices, pl.col("status").is_in(NOTICE_REACHED).sum().alias("reached"),
                pl.col("status").is_in(NOTICE_ENDED).sum().alias("ended")),
    ]
    if inp.totals is not None:  # the database's totals of the period (no customer split)
        if column is not None:
            raise ValueError(f"the bills' state was summed (load_inputs(detail=False)): no "
                             f"split by {column}")
        t = inp.totals.filter(pl.col("period") == str(period))
        parts.append(pl.DataFrame(
            {"group": ["all"],
             "actual_reads": [int(t["actual"].sum() or 0)],
             "reads_due": [int(t["n"].sum() or 0) + inp.unbilled.height],
             "billed": [int(t["billed"].sum() or 0)]},
            schema={"group": pl.String, "actual_reads": pl.Int64, "reads_due": pl.Int64,
                    "billed": pl.Int64}))
    else:
        parts += [
            # read success: bills on actual reads ÷ (bills + accounts left unbilled)
            grouped(pl.concat([
                live.select("customer_id", (~pl.col("estimated").fill_null(False))
                            .cast(pl.Int64).alias("actual")),
                inp.unbilled.select("customer_id", pl.lit(0, pl.Int64).alias("actual"))]),
                pl.col("actual").sum().alias("actual_reads"), pl.len().alias("reads_due")),
            grouped(live, pl.col("amount").sum().alias("billed")),
        ]
    # exposure: from the read that closed the bill's consumption to the cut-off for arrears
    cuts = (inp.suspensions.filter(pl.col("mode") == "postpaid")
            .with_columns(business_day("suspended_at").alias("_cut"))
            .filter(pl.col("_cut") <= as_of)
            .group_by("account_id").agg(pl.col("_cut").min()))
    exposed = (live.filter(pl.col("read_to_at").is_not_null())
               .join(cuts, on="account_id", how="inner")
               .filter(pl.col("_cut") >= pl.col("issued_on"))
               .with_columns((pl.col("_cut") - business_day("read_to_at")).dt.total_days()
                             .alias("_exposure")))
    parts.append(grouped(exposed, pl.col("_exposure").count().alias("cutoffs"),
                         pl.col("_exposure").sum().alias("exposure_sum")))
    written = (inp.write_offs.filter(pl.col("business_date") <= as_of)
               .join(live.select(pl.col("bill_id").alias("reference"), "customer_id"),
                     on="reference"))
    parts.append(grouped(written, pl.col("amount").sum().alias("written_off")))
    table = parts[0]
    for part in parts[1:]:
        table = table.join(part, on="group", how="full", coalesce=True)
    table = table.fill_null(0)
    out: dict[str, dict[str, Any]] = {}
    for r in table.iter_rows(named=True):  # one row per group (regions, collectors), not accounts
        customers, complaints = int(r["customers"]), int(r["complaints"])
        out[r["group"]] = {
            "customers": customers,
            "complaints": complaints,
            "complaint_rate": None if customers == 0 else float(
                (Decimal(complaints) * 10000 / Decimal(customers)).quantize(
                    _DAYS, rounding=ROUND_HALF_UP)),
            "satisfaction": _days(int(r["score_sum"]), int(r["surveys"])),
            "satisfaction_surveys": int(r["surveys"]),
            "notices": int(r["ended"]),
            "notice_delivery_rate": rate(int(r["reached"]), int(r["ended"])),
            "read_success_rate": rate(int(r["actual_reads"]), int(r["reads_due"])),
            "cutoffs": int(r["cutoffs"]),
            "days_of_exposure": _days(int(r["exposure_sum"]), int(r["cutoffs"])),
            "written_off": fmt_yuan(int(r["written_off"])),
            "write_off_rate": rate(int(r["written_off"]), int(r["billed"])),
        }
    return out


def _dso(state: pl.DataFrame, period: Period, as_of: date) -> float | None:
    """Days sales outstanding over the last :data:`DSO_PERIODS` periods: what their live bills
    still owe at D ÷ what they billed × their days (older arrears: ledger aging)."""
    import polars as pl

    first = first_of_window(period, DSO_PERIODS)
    recent = state.filter((pl.col("status") != "cancelled") & (pl.col("period") >= str(first))
                          & (pl.col("period") <= str(period)))
    receivable = int(recent.select(pl.max_horizontal(pl.col("amount") - pl.col("paid"),
                                                     pl.lit(0)).sum()).item() or 0)
    billed = int(recent["amount"].sum() or 0)
    days = (period.end_date - first.first_day).days
    if billed == 0:
        return None
    return float((Decimal(receivable) * days / Decimal(billed)).quantize(
        _DAYS, rounding=ROUND_HALF_UP))


def trend(state: pl.DataFrame, period: Period, months: int, as_of: date) -> list[dict[str, Any]]:
    """The ``months`` periods ending with ``period`` that have bills (oldest first) with their
    headline KPIs, each as of the same D."""
    import polars as pl

    first = str(first_of_window(period, months))
    rows = money_figures(state.filter(pl.col("period") >= first), as_of, "period").to_dicts()
    return [_trend_row(r) for r in rows]


def _trend_row(r: dict[str, Any]) -> dict[str, Any]:
    return {"period": r["period"], **{k: v for k, v in _money_json(r).items()
                                      if k in ("billed", "collected", "collection_rate",
                                               "overdue_amount", "overdue_rate",
                                               "avg_payment_days", "median_payment_days")}}


def by_channel(inp: Inputs, as_of: date) -> list[dict[str, Any]]:
    """What was collected on the period's live bills by D, per channel of the payment the money
    came from (credit used later counts under the channel that brought it)."""
    import polars as pl

    if inp.channels is not None:
        if inp.as_of != as_of:
            raise ValueError(f"the inputs hold the channel split as of {inp.as_of}, not {as_of}")
        c = inp.channels.sort("channel")
    else:
        if inp.as_of is None:
            live = inp.bills.filter((pl.col("period") == str(inp.period))
                                    & (pl.col("status") != "cancelled"))
            c = inp.clearings.join(live.select("bill_id"), on="bill_id", how="semi")
        else:  # already the clearings to the period's live bills by D (load_inputs)
            if inp.as_of != as_of:
                raise ValueError(f"the inputs hold the clearings as of {inp.as_of}, not {as_of}")
            c = inp.clearings
        c = (c.filter(business_day("allocated_at") <= as_of)
             .group_by("channel").agg(pl.col("amount").sum().alias("collected"),
                                      pl.col("payment_id").n_unique().alias("payments"))
             .sort("channel"))
    total = int(c["collected"].sum() or 0)
    return [{"channel": r["channel"], "collected": fmt_yuan(int(r["collected"])),
             "payments": int(r["payments"]), "share": rate(int(r["collected"]), total)}
            for r in c.iter_rows(named=True)]


def compute(inp: Inputs, as_of: date, by: str | None = None, trend_periods: int = 0
            ) -> dict[str, Any]:
    """The period's KPIs as of ``as_of`` (the JSON of ``dianfei kpi``), optionally by dimension,
    with the monthly trend of ``trend_periods`` periods (the inputs must hold them)."""
    import polars as pl

    check_dimension(by)
    period = inp.period
    if as_of < period.first_day:
        raise ValidationError(f"as-of {as_of} is before period {period} begins")
    if inp.totals is not None:
        return _compute_totals(inp, as_of, by, trend_periods)
    state = states(inp, as_of)
    this = state.filter(pl.col("period") == str(period))
    if this.filter(pl.col("status") != "cancelled").height == 0:
        _nothing_to_measure(period, as_of)
    head = money_figures(this, as_of, None).row(0, named=True)
    result: dict[str, Any] = {"period": str(period), "as_of": as_of.isoformat(),
                              **_money_json(head)}
    result.update(_service_figures(inp, this, as_of, None)["all"])
    result["dso"] = _dso(state, period, as_of)
    if trend_periods:
        result["trend"] = trend(state, period, trend_periods, as_of)
    result["channels"] = by_channel(inp, as_of)
    if by is not None:
        result["by"] = by
        if by == "channel":
            result["groups"] = result["channels"]
        else:
            column = DIMENSION_COLUMNS[by]
            if column not in inp.customers.columns:
                raise ValueError(f"the customers' rows have no {column!r} column: give the "
                                 "inputs their segments first (with_segments)")
            keyed = _with_group(this, inp.customers, column)
            money = {r["group"]: _money_json(r)
                     for r in money_figures(keyed, as_of, "group").iter_rows(named=True)}
            service = _service_figures(inp, this, as_of, column)
            result["groups"] = [{by: g, **money[g], **service.get(g, {})}
                                for g in sorted(money)]
    return result


def _nothing_to_measure(period: Period, as_of: date) -> None:
    raise ValidationError(
        f"no bills for period {period} issued by {as_of} (none issued, or every one "
        "cancelled): there is nothing to measure; `dianfei bill run --period` issues them")


def _compute_totals(inp: Inputs, as_of: date, by: str | None, trend_periods: int
                    ) -> dict[str, Any]:
    """:func:`compute` from the database's totals (``Inputs.totals``): the same JSON, key for
    key; no split by a customer dimension (that needs the bills one by one)."""
    import polars as pl

    assert inp.totals is not None
    if inp.as_of != as_of:
        raise ValueError(f"the inputs hold the bills' totals as of {inp.as_of}, not {as_of}")
    if by is not None and by != "channel":
        raise ValueError(f"the bills' state was summed (load_inputs(detail=False)): no split "
                         f"by {by}")
    period = inp.period
    totals = inp.totals
    mine = totals.filter(pl.col("period") == str(period))
    if int(mine["n"].sum() or 0) == 0:
        _nothing_to_measure(period, as_of)
    this = inp.bills.filter(pl.col("period") == str(period))
    assert inp.payment_days is not None
    hist = inp.payment_days
    head = money_totals(mine, hist.filter(pl.col("period") == str(period)), None).row(
        0, named=True)
    result: dict[str, Any] = {"period": str(period), "as_of": as_of.isoformat(),
                              **_money_json(head)}
    result.update(_service_figures(inp, this, as_of, None)["all"])
    first = first_of_window(period, DSO_PERIODS)
    recent = totals.filter((pl.col("period") >= str(first)) & (pl.col("period") <= str(period)))
    billed, receivable = int(recent["billed"].sum() or 0), int(recent["unpaid"].sum() or 0)
    days = (period.end_date - first.first_day).days
    result["dso"] = None if billed == 0 else float(
        (Decimal(receivable) * days / Decimal(billed)).quantize(_DAYS, rounding=ROUND_HALF_UP))
    if trend_periods:
        start = str(first_of_window(period, trend_periods))
        rows = money_totals(totals.filter((pl.col("period") >= start) & (pl.col("n") > 0)),
                            hist.filter(pl.col("period") >= start), "period").to_dicts()
        result["trend"] = [_trend_row(r) for r in rows]
    result["channels"] = by_channel(inp, as_of)
    if by is not None:
        result["by"] = by
        result["groups"] = result["channels"]
    return result


def period_kpis(db: Database, period: Period, as_of: date, by: str | None = None,
                trend_periods: int = 0) -> dict[str, Any]:
    """Read and compute (what ``dianfei kpi`` and the demo summary call)."""
    check_dimension(by)
    if as_of < period.first_day:
        raise ValidationError(f"--as-of {as_of} is before period {period} begins ({period.first_day})")
    if not 0 <= trend_periods <= 120:
        raise ValidationError(f"--trend must be 0..120 periods, got {trend_periods}")
    # a split by customer dimension needs every customer's row; otherwise the database counts
    # (``--by channel`` is the channel split every report has)
    detail = by is not None and by != "channel"
    inp = load_inputs(db, period, as_of, trend_periods, detail=detail)
    if by == "segment":
        inp = with_segments(db, inp, min(period.last_day, as_of))
    return compute(inp, as_of, by, trend_periods)


def with_segments(db: Database, inp: Inputs, day: date) -> Inputs:
    """``inp`` with each customer's risk segment (客户分类) on ``day`` in ``customers.segment``:
    the segments of risk's rules (``risk.service.segments`` — payment facts as of ``day``, the
    consumption facts of the file the daily collections run reads), read through risk's service.
    A customer with several open accounts takes the segment of its accounts that comes first in
    the rules' order; a customer with no open account has none (``"(none)"``)."""
    from dianfei.risk.service import segments

    return replace(inp, customers=customer_segments(
        inp.customers, segments(db, day, stored_facts=True)))


def customer_segments(customers: pl.DataFrame, segments: pl.DataFrame) -> pl.DataFrame:
    """``customers`` with ``segment``: of ``segments`` (customer_id, segment — one row per
    account), the one of each customer's accounts first in the rules' order."""
    import polars as pl

    from dianfei.risk.service import RISK_SEGMENTS

    order = {name: i for i, name in enumerate(RISK_SEGMENTS)}
    first = (segments.select("customer_id", "segment")
             .with_columns(pl.col("segment").replace_strict(order, return_dtype=pl.Int32)
                           .alias("_order"))
             .sort("customer_id", "_order").unique("customer_id", keep="first")
             .drop("_order"))
    return customers.drop("segment", strict=False).join(first, on="customer_id", how="left")


def last_full_period(today: date) -> Period:
    """The last period whose month has ended (the demo summary's period)."""
    return Period(today.year, today.month).prev()


def service_figures(inp: Inputs, as_of: date, column: str | None = None) -> dict[str, dict[str, Any]]:
    """The service KPIs of ``inp.period`` per group of the customers' ``column`` (or ``"all"``):
    complaint rate, satisfaction, notice delivery, read success, exposure, write-offs — what
    :func:`compute` reports beside the money, for a trend of them (the console's dashboard)."""
    import polars as pl

    this = states(replace(inp, bills=inp.bills.filter(pl.col("period") == str(inp.period))),
                  as_of)
    return _service_figures(inp, this, as_of, column)
