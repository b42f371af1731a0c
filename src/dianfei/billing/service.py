"""The bill run (电费核算发行) and bill corrections.

A run for a period takes every open account, derives its consumption from register reads, rates
it with the tariff in force, and writes, chunk by chunk and each chunk in one transaction, the
bills, their itemised lines and one ledger debit per bill. Every candidate is either billed or
put on the exceptions list with a reason: nobody is skipped silently.

Idempotent and resumable: an account with a live bill for the period is never a candidate again
(a unique index enforces it too), bill ids are deterministic, and a run that died keeps its issue
and due dates in ``bill_runs`` so the next invocation finishes it with the same figures.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any, NamedTuple, Protocol

from sqlalchemy import Connection, func, select, update
from sqlalchemy.orm import Session

from dianfei.audit import service as audit
from dianfei.billing import repository as repo
from dianfei.billing.consumption import (
    account_usage,
    fit_registers_to_tariff,
    register_consumption,
    select_reads,
)
from dianfei.billing.estimates import estimate_missing_reads, name_refusals
from dianfei.billing.models import Bill, BillRunPartition
from dianfei.billing.models import BillRun as BillRun  # the run's row, for other packages
from dianfei.core.clock import Clock, Period, business_date, start_of_day
from dianfei.core.errors import ConflictError, NotFoundError, TariffError, ValidationError
from dianfei.core.faults import kill_point
from dianfei.core.metrics import Metric
from dianfei.db.bulk import write_frame
from dianfei.db.engine import refresh_statistics
from dianfei.ledger import service as ledger

if TYPE_CHECKING:
    from pathlib import Path

    import polars as pl
    from sqlalchemy import Engine

    from dianfei.db.engine import Database
    from dianfei.metering.service import IngestResult
    from dianfei.tariffs.service import TariffCatalogue, TariffVersion

#: how far back the usual query looks for opening reads (the previous monthly frozen read sits
#: exactly at the start); older ones are fetched per meter
_READ_WINDOW = timedelta(days=40)
#: up to this many meters are looked up by meter (an IN list, one index range each); more are
#: read with everyone's
_FEW_METERS = 20_000

Progress = Callable[[int, int], None]


class PartitionedBackend(Protocol):
    """Prices and writes a run's accounts elsewhere than in this process (Spark): with
    :func:`price_accounts` and :func:`write_partition` per partition, adding the kWh written to
    ``result``; ``expected`` is how many accounts it must bill or except."""

    def __call__(self, db: Database, run: BillRun, per_meter: pl.DataFrame,
                 pre_exceptions: pl.DataFrame, catalogue: TariffCatalogue, period: Period,
                 in_force: dict[str, TariffVersion], posted_at: datetime, expected: int,
                 result: BillRunResult) -> None: ...


@dataclass
class BillRunResult:
    run_id: str
    period: str
    issued_on: date
    due_on: date
    candidates: int = 0
    billed: int = 0
    exceptions: int = 0
    amount: int = 0
    kwh: int = 0
    resumed: bool = False
    #: meters this run billed on an estimated read (估计读数) it had metering make
    estimated_meters: int = 0
    timings: dict[str, float] = field(default_factory=dict)


def _start_or_resume(db: Database, period: Period, clock: Clock,
                     accounts: list[str] | None) -> tuple[BillRun, bool]:
    with db.session() as s:
        if accounts is None:
            running = s.scalars(select(BillRun).where(BillRun.period == str(period),
                                                      BillRun.status == "running")
                                .order_by(BillRun.run_id)).first()
            if running is not None:
                return running, True
        n = s.scalar(select(func.count()).select_from(BillRun)
                     .where(BillRun.period == str(period))) or 0
        issued = business_date(clock.now())
        if issued < period.first_day:
            raise ValidationError(f"cannot bill {period} before it starts (today is {issued})")
        run = BillRun(run_id=f"{period}-{n + 1:03d}", period=str(period), issued_on=issued,
                      due_on=issued + timedelta(days=db.settings.billing.due_days),
                      status="running", started_at=clock.now())
        s.add(run)
        return run, False


def run_bill_run(db: Database, period: Period, clock: Clock, *,
                 accounts: list[str] | None = None, chunk_size: int = 100_000,
                 tariff_dir: Path | None = None,
                 progress: Progress | None = None, estimate: bool = True,
                 backend: PartitionedBackend | None = None) -> BillRunResult:
    """Bill every open account (or only ``accounts``) for ``period``. ``estimate``: bill a
    meter whose reads are missing or invalid on an estimated read from its intervals where
    the coverage rule allows (see billing.estimates). ``backend``: None prices and writes here
    (the local backend); the Spark backend (``dianfei.scale.billing.spark_backend``) prices and
    writes the same way per partition of accounts in Spark tasks."""
    import polars as pl

    from dianfei.tariffs.service import load_catalogue

    t0 = time.perf_counter()
    run, resumed = _start_or_resume(db, period, clock, accounts)
    result = BillRunResult(run.run_id, str(period), run.issued_on, run.due_on, resumed=resumed)
    eng = db.engine

    # --- read: candidates, their attributes, reads ---------------------------------------
    cand = repo.billable_accounts(eng, period)
    if accounts is not None:
        cand = cand.filter(pl.col("account_id").is_in(accounts))
    done = pl.concat([repo.live_bill_accounts(eng, period),
                      repo.run_exception_accounts(eng, run.run_id)], how="vertical_relaxed")
    cand = cand.join(done, on="account_id", how="anti")
    cand = (cand.sort("account_id", "tariff_from", nulls_last=False)
            .group_by("account_id", "meter_id", maintain_order=True).last())
    meters_per_account = cand.group_by("account_id").agg(pl.col("meter_id").n_unique().alias("n"))
    cand = cand.join(meters_per_account, on="account_id").sort("account_id")
    found = int(cand.select(pl.col("account_id").n_unique()).item())
    if resumed:
        result.candidates = run.candidates  # counted when the run first started
    else:
        result.candidates = found
        with db.session() as s:
            s.execute(update(BillRun).where(BillRun.run_id == run.run_id)
                      .values(candidates=found))

    start, end = start_of_day(period.first_day), start_of_day(period.end_date)
    meters = cand.filter(pl.col("meter_id").is_not_null()).select(
        "meter_id", "multiplier", "digits").unique("meter_id")
    # 起码 = 上期止码: each meter starts where its last live bill stopped
    previous = repo.previous_period(eng, period)
    opening_at = previous.opening.join(meters.select("meter_id"), on="meter_id", how="semi")
    unbilled_last_period = meters.join(opening_at, on="meter_id", how="anti")["meter_id"]
    if unbilled_last_period.len():
        # few meters: looked up in one statement; many (a first run, a new population): one
        # scan of the last year's bills
        few = unbilled_last_period.len() <= _FEW_METERS
        earlier = repo.previous_closing(eng, period, unbilled_last_period.to_list() if few
                                        else None, within_year=not few)
        opening_at = pl.concat([opening_at, earlier.join(
            unbilled_last_period.to_frame(), on="meter_id", how="semi")])
    reads, further_back = _period_reads(eng, period, meters, opening_at)
    stale = opening_at.filter(pl.col("open_from") <= start - _READ_WINDOW)
    if stale.height:
        reads = pl.concat([reads, repo.reads_of_meters(
            eng, stale["meter_id"].to_list(), stale["open_from"].min(),  # type: ignore[arg-type]
            start - _READ_WINDOW)], how="vertical_relaxed")
    selected = select_reads(reads, start, end, opening_at)
    # demand is not cumulative: a demand register needs no opening read
    no_open = selected.filter(pl.col("open_value").is_null() & pl.col("close_value").is_not_null()
                              & (pl.col("register") != "demand_kw"))
    if no_open.height:
        older = repo.last_reads_before(eng, no_open["meter_id"].unique().to_list(), further_back)
        if older.height:
            selected = select_reads(pl.concat([reads, older], how="vertical_relaxed"), start, end,
                                    opening_at)
    t_read = time.perf_counter()

    # --- consumption and rating ------------------------------------------------------------
    consumption = register_consumption(selected, meters)
    refusals = None
    if estimate:
        t_est = time.perf_counter()
        before = consumption.filter(pl.col("problem").is_null() & pl.col("estimated"))
        consumption, refusals = estimate_missing_reads(db, selected, consumption, meters, end, clock)
        after = consumption.filter(pl.col("problem").is_null() & pl.col("estimated"))
        result.estimated_meters = after["meter_id"].n_unique() - before["meter_id"].n_unique()
        result.timings["estimate_s"] = time.perf_counter() - t_est
    usage, problems = account_usage(consumption)
    if refusals is not None:
        problems = name_refusals(problems, refusals)
    ytd = repo.year_to_date_kwh(eng, period, cand["account_id"], previous.ytd)
    base = cand.select("account_id", "customer_id", "meter_id", "multiplier", "tariff_id",
                       "low_income", "capacity_kva", "demand_basis", "n")
    later = repo.later_bill_starts(eng, period)
    base = base.join(later, on="account_id", how="left")
    structural = base.select(
        "account_id",
        # a later bill already covers this period's energy: billing it again would bill twice
        pl.when(pl.col("later_from") <= start).then(pl.lit("covered_by_later_bill"))
        .when(pl.col("meter_id").is_null()).then(pl.lit("no_meter"))
        .when(pl.col("tariff_id").is_null()).then(pl.lit("no_tariff"))
        .otherwise(None).alias("reason"),
        pl.when(pl.col("later_from") <= start).then(pl.lit(
            "a bill of a later period already starts at or before this period's start; "
            "cancel it first, then bill both again"))
        .when(pl.col("meter_id").is_null()).then(pl.lit("no meter installed in the period"))
        .when(pl.col("tariff_id").is_null()).then(pl.lit("no tariff assigned for the period"))
        .otherwise(None).alias("detail"),
    ).filter(pl.col("reason").is_not_null()).unique("account_id", keep="first")
    base = base.join(structural, on="account_id", how="anti")
    # an account on several meters is billed only when every one of them is
    read_problems = base.join(problems, on="meter_id", how="inner").sort(
        "account_id", "meter_id").select("account_id", "reason", "detail")
    # a meter without any read near the period has no row at all: it must still be reported
    unread = (base.join(usage.select("meter_id"), on="meter_id", how="anti")
              .join(problems.select("meter_id"), on="meter_id", how="anti")
              .select("account_id", pl.lit("no_read").alias("reason"),
                      pl.format("meter {} register total: no read in the period",
                                "meter_id").alias("detail")))
    read_problems = pl.concat([read_problems, unread.sort("account_id")])
    base = base.join(read_problems.select("account_id"), on="account_id", how="anti")
    per_meter = (
        base.join(usage, on="meter_id", how="inner")
        .join(ytd, on="account_id", how="left")
        .with_columns(
            pl.col("ytd_kwh").fill_null(0).cast(pl.Int64),
            pl.col("low_income").cast(pl.Boolean),
            # the basic charge of a two-part tariff uses either the contracted capacity or
            # the metered maximum demand, as the account chose (demand_basis)
            pl.when(pl.col("demand_basis") == "demand").then(None)
            .otherwise(pl.col("capacity_kva")).cast(pl.Int64).alias("capacity_kva"),
            pl.when(pl.col("demand_basis") == "demand").then(pl.col("max_demand_kw"))
            .otherwise(None).cast(pl.Int64).alias("max_demand_kw"),
        )
    )
    catalogue = load_catalogue(tariff_dir or db.settings.billing.tariff_dir)
    in_force = tariffs_in_force(catalogue, period, per_meter)
    # a cancelled bill's version number is taken: the new bill is the next version
    per_meter = per_meter.join(repo.cancelled_counts(eng, period), on="account_id", how="left")
    pre_exceptions = pl.concat([structural, read_problems], how="vertical_relaxed")
    restated = later.join(per_meter.select("account_id"), on="account_id", how="semi")
    if restated.height:
        # this period's bills come before bills already issued later in the year: the year to
        # date those kept is no longer the year's (forgotten first: a run that stops after this
        # only makes the next one sum those accounts' year)
        with eng.begin() as conn:
            repo.stale_year_to_date(conn, restated["account_id"].to_list(), period)
    if backend is not None:
        expected = result.candidates - (run.billed + run.exceptions if resumed else 0)
        t_rate = time.perf_counter()
        result.timings["read_s"] = t_rate - t0
        backend(db, run, per_meter, pre_exceptions, catalogue, period, in_force, clock.now(),
                expected, result)
        result.timings["rate_write_s"] = time.perf_counter() - t_rate
        return _finish(db, run, clock, result, t0)
    frames = price_accounts(per_meter, pre_exceptions, catalogue, period, in_force,
                            RunDates.of(run))
    t_rate = time.perf_counter()
    bills, bill_meters, lines, exceptions = frames
    accounted = bills.height + exceptions.height
    if accounted != result.candidates - (run.billed + run.exceptions if resumed else 0):
        raise AssertionError(  # never bill silently short: stop before writing anything
            f"bill run {run.run_id}: {accounted} accounts billed or excepted of "
            f"{cand['account_id'].n_unique()} candidates")
    result.timings["read_s"] = t_read - t0
    result.timings["rate_s"] = t_rate - t_read
    _write(db, run, bills, bill_meters, lines, exceptions, clock, chunk_size, result, progress)
    result.timings["write_s"] = time.perf_counter() - t_rate
    return _finish(db, run, clock, result, t0)


def _period_reads(eng: Engine, period: Period, meters: pl.DataFrame,
                  opening_at: pl.DataFrame) -> tuple[pl.DataFrame, datetime]:
    """The register reads of ``meters`` that :func:`select_reads` needs for ``period``, and the
    instant at or before which a register without an opening read looks further back.

    A meter whose last live bill stopped at the period's start (nearly every meter from the
    second month on) needs its reads from the previous period's start on, exclusive: the read at
    the start is its opening (起码 = 上期止码), and a register the previous bill did not close at
    the start has its last read in the previous period — one the previous run read too (had it
    closed no register there, that run would have excepted the account, not billed it). So the
    usual 40-day window, which also holds the previous period's opening instant (a third of a
    month's reads from the second month on), is read only for the other meters (a new meter,
    one excepted last period), by meter when they are few. One case differs from reading the
    window for everyone: a register whose only reads are older than the previous period's start,
    stored after the previous run (a late backfill), and none since — the window would list it
    as unread (no_read); here it is not seen at all. The account's total register still decides
    whether it is billed; a time-of-use tariff takes one missing TOU register as the total less
    the others and refuses two (tariffs: ``tou_registers_missing``)."""
    import polars as pl

    start, end = start_of_day(period.first_day), start_of_day(period.end_date)
    window = start - _READ_WINDOW
    since = start_of_day(period.prev().first_day)
    behind = meters.select("meter_id").join(
        opening_at.filter(pl.col("open_from") == start), on="meter_id", how="anti")
    if behind.height > _FEW_METERS or since <= window:
        reads = repo.reads_between(eng, window, end)
        return reads.join(meters.select("meter_id"), on="meter_id", how="semi"), window
    reads = repo.reads_between(eng, since, end).join(meters.select("meter_id"), on="meter_id",
                                                     how="semi")
    if behind.height:
        reads = pl.concat([reads, repo.reads_of_meters(eng, behind["meter_id"].to_list(), window,
                                                       since)], how="vertical_relaxed")
    # a register with no read at or after the previous period's start looks further back from
    # there: the last read at or before it, as the 40-day window's fallback found
    return reads, since


def _finish(db: Database, run: BillRun, clock: Clock, result: BillRunResult,
            t0: float) -> BillRunResult:
    with db.session() as s:
        s.execute(update(BillRun).where(BillRun.run_id == run.run_id)
                  .values(status="completed", finished_at=clock.now()))
        final = s.get(BillRun, run.run_id)
        assert final is not None
        result.billed, result.exceptions, result.amount = final.billed, final.exceptions, final.amount
    # a month of bills, clearings and open items changed the tables' shape: the daily queries
    # that follow need the planner's statistics to match (see db.engine)
    refresh_statistics(db.engine)
    result.timings["total_s"] = time.perf_counter() - t0
    return result


@dataclass(frozen=True)
class RunDates:
    """What pricing needs to know of its run (plain values: it travels to Spark tasks)."""

    run_id: str
    period: str
    issued_on: date
    due_on: date

    @classmethod
    def of(cls, run: BillRun) -> RunDates:
        return cls(run.run_id, run.period, run.issued_on, run.due_on)


class BillFrames(NamedTuple):
    bills: pl.DataFrame
    bill_meters: pl.DataFrame
    lines: pl.DataFrame
    exceptions: pl.DataFrame


def tariffs_in_force(catalogue: TariffCatalogue, period: Period,
                     per_meter: pl.DataFrame) -> dict[str, TariffVersion]:
    """The version in force for each tariff used; unknown tariffs and tariffs with no version
    in force are left out here and reported per account by the rater."""
    in_force: dict[str, TariffVersion] = {}
    for t in per_meter["tariff_id"].drop_nulls().unique().to_list():
        try:
            in_force[t] = catalogue.version_for(t, period)
        except TariffError:
            continue
    return in_force


def price_accounts(per_meter: pl.DataFrame, pre_exceptions: pl.DataFrame,
                   catalogue: TariffCatalogue, period: Period,
                   in_force: dict[str, TariffVersion], run: RunDates) -> BillFrames:
    """Rate the accounts of ``per_meter`` and build their bills, lines and exceptions: a pure
    function of frames, the one both backends run (the local one over every account, Spark over
    each partition of accounts). ``per_meter``: one row per (account, meter) with usage, the
    account's attributes and ``cancelled`` (its cancelled bills of the period);
    ``pre_exceptions``: accounts already refused before rating (account_id, reason, detail)."""
    import polars as pl

    from dianfei.tariffs.service import rate_frame

    tou_periods = {t: tuple(getattr(v.energy, "periods", ())) for t, v in in_force.items()}
    per_meter = fit_registers_to_tariff(per_meter, tou_periods)
    rated_in, multi = account_rows(per_meter)
    lines, rate_errors = rate_frame(catalogue, period, rated_in.select(
        "account_id", "tariff_id", "kwh", "ytd_kwh", "sharp_kwh", "peak_kwh", "flat_kwh",
        "valley_kwh", "kvarh", "capacity_kva", "max_demand_kw", "low_income", "meter_id"),
        multi.select("account_id", "meter_id", "kwh", "sharp_kwh", "peak_kwh", "flat_kwh",
                     "valley_kwh"))
    versions = {t: str(v.effective_from) for t, v in in_force.items()}
    totals = lines.group_by("account_id").agg(pl.col("amount").sum().alias("amount"))
    # joins of a million string keys cost a tenth of a second or more each: none where nothing
    # was refused, and each account's cancelled bills ride on its rater row (account_rows)
    ok = (rated_in if rate_errors.height == 0
          else rated_in.join(rate_errors.select("account_id"), on="account_id", how="anti"))
    bills = (
        ok.join(totals, on="account_id", how="left")
        .with_columns(
            pl.col("amount").fill_null(0),
            (pl.col("cancelled").fill_null(0) + 1).cast(pl.Int32).alias("version"),
        )
        .with_columns(
            pl.format("{}-{}-{}", "account_id", pl.lit(f"{period.year:04d}{period.month:02d}"),
                      "version").alias("bill_id"),
            pl.lit(str(period)).alias("period"),
            pl.lit(run.run_id).alias("run_id"),
            pl.lit(run.issued_on).alias("issued_on"),
            pl.lit(run.due_on).alias("due_on"),
            pl.col("tariff_id").replace_strict(versions, default=None).alias("tariff_version"),
            pl.lit("issued").alias("status"),
        )
        .select("bill_id", "account_id", "customer_id", "period", "version", "run_id",
                "issued_on", "due_on", "amount", "kwh", "ytd_kwh", "tariff_id", "tariff_version",
                "estimated", "meter_id", "multiplier", "read_from_at", "read_from",
                "read_to_at", "read_to", "status")
        .sort("account_id")
    )
    bill_meters = multi.join(bills.select("account_id", "bill_id"), on="account_id").select(
        "account_id", "bill_id", "meter_id", "multiplier", "kwh", "estimated", "read_from_at",
        "read_from", "read_to_at", "read_to")
    exceptions = pl.concat([
        pre_exceptions.select("account_id", "reason", "detail"),
        rate_errors.select("account_id", "reason", "detail"),
    ], how="vertical_relaxed").unique("account_id", keep="first").sort("account_id").with_columns(
        pl.lit(run.run_id).alias("run_id"), pl.lit(str(period)).alias("period"))
    # each line's bill id built as the bill's is, not joined from a million bills: a joined
    # column only for the few accounts whose bill is not the period's first version
    line_rows = (lines if rate_errors.height == 0
                 else lines.join(rate_errors.select("account_id"), on="account_id", how="anti"))
    line_rows = line_rows.with_columns(pl.format(
        "{}-{}-1", "account_id", pl.lit(f"{period.year:04d}{period.month:02d}")).alias("bill_id"))
    redone = bills.filter(pl.col("version") != 1).select("account_id", pl.col("bill_id").alias("_b"))
    if redone.height:
        line_rows = line_rows.join(redone, on="account_id", how="left").with_columns(
            pl.coalesce("_b", "bill_id").alias("bill_id")).drop("_b")
    return BillFrames(bills, bill_meters, line_rows, exceptions)


#: per-meter columns carried from consumption to the bill
_METER_COLUMNS = ("meter_id", "multiplier", "estimated", "read_from_at", "read_from",
                  "read_to_at", "read_to")
_ACCOUNT_COLUMNS = ("account_id", "customer_id", "tariff_id", "low_income", "ytd_kwh",
                    "capacity_kva", "cancelled")
_SUMMED = ("sharp_kwh", "peak_kwh", "flat_kwh", "valley_kwh", "kvarh", "max_demand_kw")


def account_rows(per_meter: pl.DataFrame) -> tuple[pl.DataFrame, pl.DataFrame]:
    """One rater row per account from one row per (account, meter) → (accounts, multi).

    An account on one meter keeps its meter's row. An account on several meters (一户多表) is
    rated on the sums of its meters (kWh, TOU registers, kvarh, and the sum of the meters'
    maximum demands, a conservative non-coincident figure); its bill row has no meter of its
    own and spans the earliest opening to the latest closing read. ``multi`` holds those
    accounts' meter rows, in meter order: the rater splits their energy lines by meter and the
    bill keeps each meter's reads (``bill_meters``).
    """
    import polars as pl

    cols = [*_ACCOUNT_COLUMNS, "kwh", *_SUMMED, *_METER_COLUMNS]
    single = per_meter.filter(pl.col("n") == 1).select(cols)
    multi = per_meter.filter(pl.col("n") > 1).sort("account_id", "meter_id")
    if not multi.height:
        return single, multi
    summed = multi.group_by("account_id", maintain_order=True).agg(
        *[pl.col(c).first() for c in _ACCOUNT_COLUMNS if c != "account_id"],
        pl.col("kwh").sum(),
        # null when no meter has the register (a sum of nothing would read as 0)
        *[pl.when(pl.col(c).is_not_null().any()).then(pl.col(c).sum()).otherwise(None)
          .alias(c) for c in _SUMMED],
        pl.lit(None, pl.String).alias("meter_id"),
        pl.lit(1, pl.Int64).alias("multiplier"),
        pl.col("estimated").any(),
        pl.col("read_from_at").min(),
        pl.lit(None, pl.Int64).alias("read_from"),
        pl.col("read_to_at").max(),
        pl.lit(None, pl.Int64).alias("read_to"),
    ).select(cols)
    accounts = pl.concat([single, summed], how="vertical_relaxed").sort("account_id")
    return accounts, multi


def _write(db: Database, run: BillRun, bills: pl.DataFrame, bill_meters: pl.DataFrame,
           lines: pl.DataFrame, exceptions: pl.DataFrame, clock: Clock, chunk_size: int,
           result: BillRunResult, progress: Progress | None) -> None:
    """Write bills, lines, debits and exceptions in chunks of accounts, one transaction each."""
    import polars as pl

    posted_at = clock.now()
    ids = pl.concat([bills.select("account_id"), exceptions.select("account_id")]).sort(
        "account_id")["account_id"]
    total = ids.len()
    written = 0
    for lo in range(0, total, chunk_size):
        chunk_ids = ids.slice(lo, chunk_size)
        first, last = chunk_ids[0], chunk_ids[-1]
        in_chunk = pl.col("account_id").is_between(pl.lit(first), pl.lit(last))
        chunk = BillFrames(bills.filter(in_chunk), bill_meters.filter(in_chunk),
                           lines.filter(in_chunk), exceptions.filter(in_chunk))
        with db.engine.begin() as conn:
            kwh = write_chunk(conn, RunDates.of(run), chunk, posted_at)
        result.kwh += kwh
        written += chunk_ids.len()
        if progress:
            progress(written, total)
        kill_point("bill_run.chunk_written")  # the crash tests die here (core/faults.py)


def write_chunk(conn: Connection, run: RunDates, frames: BillFrames, posted_at: datetime) -> int:
    """Write one chunk of a run's bills, meters, lines, debits and exceptions inside the
    caller's transaction and count them on the run; returns the chunk's kWh. The one write path
    of both backends (a Spark partition is one chunk)."""
    import polars as pl

    b = frames.bills
    ln = frames.lines.select(
        "bill_id", "line_no", "code", "description", "quantity", "unit", "unit_price",
        "amount", "power_factor", "percent", "meter_id")
    bm = frames.bill_meters.drop("account_id")
    ex = frames.exceptions.select("run_id", "period", "account_id", "reason", "detail")
    entries = b.select(
        "account_id", "customer_id", pl.lit("bill").alias("kind"), "amount",
        pl.lit(posted_at).alias("posted_at"),
        pl.col("issued_on").alias("business_date"), "due_on",
        pl.col("bill_id").alias("reference"), "period")  # the open items' period
    amount = int(b["amount"].sum()) if b.height else 0
    write_frame(conn, "bills", b)
    if bm.height:
        write_frame(conn, "bill_meters", bm)
    write_frame(conn, "bill_lines", ln)
    ledger.post_frame(conn, entries, action="bill_run.chunk",
                      subject=f"{run.period} run {run.run_id}")
    write_frame(conn, "bill_exceptions", ex)
    # last: on PostgreSQL the run's row is the one lock concurrent chunks share
    conn.execute(update(BillRun).where(BillRun.run_id == run.run_id).values(
        billed=BillRun.billed + b.height,
        exceptions=BillRun.exceptions + ex.height,
        amount=BillRun.amount + amount))
    return int(b["kwh"].sum()) if b.height else 0


def write_partition(db: Database, run: RunDates, job_id: str, part: int, accounts: int,
                    frames: BillFrames, posted_at: datetime, attempt: int) -> dict[str, Any]:
    """Write one partition exactly once: its marker row first, then the local run's chunk
    writer, all in one transaction. An attempt that finds the marker (another attempt of the
    same job committed it) writes nothing and reports what that attempt wrote."""
    from sqlalchemy import insert, select
    from sqlalchemy.exc import IntegrityError

    bills, excepted = frames.bills, frames.exceptions
    amount = int(bills["amount"].sum()) if bills.height else 0
    kwh = int(bills["kwh"].sum()) if bills.height else 0
    marker = {"run_id": run.run_id, "job_id": job_id, "part": part, "accounts": accounts,
              "billed": bills.height, "exceptions": excepted.height, "amount": amount,
              "kwh": kwh, "attempt": attempt, "written_at": posted_at}
    try:
        with db.engine.begin() as conn:
            conn.execute(insert(BillRunPartition).values(**marker))
            write_chunk(conn, run, frames, posted_at)
    except IntegrityError:
        with db.engine.connect() as conn:
            stored = conn.execute(select(*BillRunPartition.__table__.columns).where(
                BillRunPartition.run_id == run.run_id, BillRunPartition.job_id == job_id,
                BillRunPartition.part == part)).mappings().first()
        if stored is None:  # not the marker: a real conflict (a bill already live), say it
            raise
        return {"part": part, "accounts": stored["accounts"], "billed": stored["billed"],
                "exceptions": stored["exceptions"], "amount": stored["amount"],
                "kwh": stored["kwh"], "attempt": attempt, "written": False}
    return {"part": part, "accounts": accounts, "billed": bills.height,
            "exceptions": excepted.height, "amount": amount, "kwh": kwh, "attempt": attempt,
            "written": True}


def cancel_bill(session: Session, clock: Clock, bill_id: str, reason: str) -> Bill:
    """Cancel a bill (作废): its debit is reversed by a new ledger entry; nothing is deleted.

    The account can then be billed again for the period (``rebill``), as a new bill version.
    """
    if not reason or not reason.strip():
        raise ValidationError("cancelling a bill needs a reason")
    bill = session.get(Bill, bill_id, with_for_update=True)
    if bill is None:
        raise NotFoundError(f"bill {bill_id} does not exist")
    if bill.status == "cancelled":
        raise ConflictError(f"bill {bill_id} is already cancelled")
    entry_id = ledger.entry_id_for(session, "bill", bill_id)
    ledger.reverse_entry(session, clock=clock, entry_id=entry_id,
                         reason=f"bill {bill_id} cancelled: {reason}")
    bill.status = "cancelled"
    bill.cancelled_at = clock.now()
    bill.cancel_reason = reason
    session.flush()
    # the account's later bills of the year were rated on a year that held this one
    repo.stale_year_to_date(session.connection(), [bill.account_id], Period.parse(bill.period))
    audit.record(session.connection(), "bill.cancelled", bill.account_id,
                 {"bill_id": bill_id, "amount_fen": int(bill.amount), "reason": reason})
    return bill


def rebill(db: Database, clock: Clock, bill_id: str, reason: str,
           tariff_dir: Path | None = None) -> BillRunResult:
    """Cancel a bill and bill its account again for the same period from the current reads."""
    with db.session() as s:
        cancel_bill(s, clock, bill_id, reason)
    return bill_again(db, clock, bill_id, tariff_dir)


def bill_again(db: Database, clock: Clock, bill_id: str,
               tariff_dir: Path | None = None) -> BillRunResult:
    """Bill the account of a cancelled bill again for its period (the second half of
    ``rebill``, for a cancellation made in another transaction — an approved correction)."""
    with db.session() as s:
        bill = s.get(Bill, bill_id)
        if bill is None:
            raise NotFoundError(f"bill {bill_id} does not exist")
        if bill.status != "cancelled":
            raise ConflictError(f"bill {bill_id} is {bill.status}: cancel it before billing again")
        account, period = bill.account_id, Period.parse(bill.period)
    result = run_bill_run(db, period, clock, accounts=[account], tariff_dir=tariff_dir)
    with db.session() as s:
        s.execute(update(Bill).where(Bill.account_id == account, Bill.period == str(period),
                                     Bill.status == "issued")
                  .values(replaces_bill_id=bill_id))
    return result


def open_exceptions(db: Database, period: Period | None = None) -> pl.DataFrame:
    """The exceptions list: accounts not billed for a period, with the latest reason."""
    return repo.open_exceptions(db.engine, period)


def period_totals(db: Database) -> pl.DataFrame:
    """Billed periods with bill counts, kWh, amounts and open exceptions, newest first."""
    import polars as pl

    open_by_period = open_exceptions(db).group_by("period").agg(pl.len().alias("exceptions"))
    return (repo.period_totals(db.engine).join(open_by_period, on="period", how="left")
            .with_columns(pl.col("exceptions").fill_null(0).cast(pl.Int64)))


def latest_billed_period(engine: Engine) -> str | None:
    """The newest period with a bill (None: nothing billed yet) — one index look-up, for pages
    that open on the latest period."""
    with engine.connect() as conn:
        return repo.latest_period(conn)


def billing_stamp(engine: Engine) -> str | None:
    """What changes whenever bills are added: the newest billed period and the finish of the
    last completed bill run ("2026-06@2026-07-03 09:12:00"; None: nothing billed) — for figures
    kept per billed period, which a bill run still running or completed since makes stale."""
    with engine.connect() as conn:
        latest = repo.latest_period(conn)
        run = repo.last_completed_run(conn)
    if latest is None:
        return None
    return latest if run is None else f"{latest}@{run[0]}:{run[1]}"


def issued_bills_of_mode(engine: Engine, payment_mode: str, since_period: str) -> pl.DataFrame:
    """Live bills of ``payment_mode`` customers from ``since_period`` on: account_id, period,
    kwh, read_to_at (where the bill's consumption stopped). Smart prepayment prices what was
    used since."""
    return repo.issued_bills_of_mode(engine, payment_mode, since_period)


def tou_energy(engine: Engine, since_period: str) -> pl.DataFrame:
    """Live (issued) bills' time-of-use energy from ``since_period`` on: account_id, period,
    valley, kwh (0.01 kWh: the valley line and the sum of the time-of-use lines; accounts and
    periods without time-of-use lines are absent) — what the night/day theft signal reads."""
    return repo.tou_energy(engine, since_period)


def bills_between(engine: Engine, first: str, last: str) -> pl.DataFrame:
    """Every bill of the periods ``first``..``last`` as one frame (cancelled ones with their
    status, for the caller to leave out): bill_id, account_id, customer_id, period, issued_on,
    due_on, amount (fen), kwh (0.01 kWh), status, estimated, read_from_at, read_to_at. What KPIs
    and exports read of billing."""
    return repo.bills_between(engine, first, last)


def period_bills_of(engine: Engine, period: str, account_ids: list[str],
                    bill_ids: list[str]) -> pl.DataFrame:
    """:func:`bills_between`'s columns for the bills of ``period`` of ``account_ids`` or named
    by ``bill_ids`` (the few bills the KPIs' exposure and write-offs concern)."""
    return repo.period_bills_of(engine, period, account_ids, bill_ids)


def bills_by_id(conn: Connection, bill_ids: list[str]) -> pl.DataFrame:
    """bill_id, account_id, customer_id, period, issued_on, due_on, amount, kwh, status of the
    named bills (those that exist): what a payment naming a bill is checked against."""
    return repo.bill_facts(conn, "bill_id", bill_ids)


def bills_of_accounts(conn: Connection, account_ids: list[str]) -> pl.DataFrame:
    """:func:`bills_by_id`'s columns for every bill of ``account_ids``."""
    return repo.bill_facts(conn, "account_id", account_ids)


def import_bills(db: Database, path: Path, *, clock: Clock, encoding: str = "utf-8",
                 chunk_bytes: int = 32 << 20) -> IngestResult:
    """The history import (``dianfei import bills``): see billing.history. Imported here when
    called — it brings metering's file import machinery, which the commands reading bills (the
    KPIs, exports) do not need."""
    from dianfei.billing.history import import_bills as run

    return run(db, path, clock=clock, encoding=encoding, chunk_bytes=chunk_bytes)


def bill_history(engine: Engine) -> pl.DataFrame:
    """Every bill with its dates, amount, kWh, status and ``cancelled_at`` (null unless
    cancelled): bill_id, account_id, customer_id, period, issued_on, due_on, amount (fen), kwh
    (0.01 kWh), status, cancelled_at. Risk builds its as-of features from it (a bill cancelled
    after the as-of date was live on it)."""
    return repo.bill_history(engine)


def customer_bills(engine: Engine, customer_id: str) -> list[dict[str, object]]:
    """A customer's bills, newest period first (cancelled ones included, with their status):
    bill_id, account_id, period, issued_on, due_on, amount (yuan), kwh, status."""
    from sqlalchemy import select

    from dianfei.core.money import fmt_qty, fmt_yuan

    with engine.connect() as conn:
        rows = conn.execute(select(Bill.bill_id, Bill.account_id, Bill.period, Bill.issued_on,
                                   Bill.due_on, Bill.amount, Bill.kwh, Bill.status)
                            .where(Bill.customer_id == customer_id)
                            .order_by(Bill.period.desc(), Bill.bill_id)).all()
    return [{"bill_id": r[0], "account_id": r[1], "period": r[2],
             "issued_on": r[3].isoformat(), "due_on": r[4].isoformat(),
             "amount": fmt_yuan(int(r[5])), "kwh": fmt_qty(int(r[6])), "status": r[7]}
            for r in rows]


def operational_metrics(conn: Connection) -> list[Metric]:
    """``/metrics``: bills by status, bill runs in progress, open bill-run exceptions."""
    from sqlalchemy import text

    from dianfei.core.metrics import Metric, grouped

    bills = conn.execute(text("SELECT status, COUNT(*) FROM bills GROUP BY status")).all()
    running = conn.execute(text("SELECT COUNT(*) FROM bill_runs WHERE status = 'running'")
                           ).scalar_one()
    exceptions = conn.execute(text("SELECT COUNT(*) FROM bill_exceptions")).scalar_one()
    return [grouped("dianfei_bills", "bills issued, by status", "gauge", "status", bills),
            Metric("dianfei_bill_runs_running", "bill runs started and not finished", "gauge",
                   (({}, int(running)),)),
            Metric("dianfei_bill_exceptions", "accounts the bill runs could not bill", "gauge",
                   (({}, int(exceptions)),))]
