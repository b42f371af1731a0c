"""Estimated register reads for billing (估计读数 / 估抄): when a period has no valid register read
but interval data covers it, the read is the last read billed plus the intervals since.

Per (meter, register): ``value = from_value + Σ interval Wh / 10`` (registers count 0.01 kWh,
intervals Wh, both before the multiplier), the intervals of the register's TOU band for
``sharp/peak/flat/valley`` (the VEE TOU calendar) and all of them for ``total``. The intervals
are VEE's effective values: metered, else VEE-estimated, else a manual edit above both.

The coverage rule is data (``[vee] bill_estimate_max_share``): the intervals must cover the whole
span [from_at, until) — a missing interval leaves an unknown amount of energy out — and at most
that share of them may be VEE estimates. A meter that fails it for any register is refused with
the rule named, and its account stays on the bill run's exceptions.

The estimate is stored as a register read (source ``estimated``) with its derivation in
``read_estimates``; the next bill starts from it (起码 = 上期止码), so the next actual read trues
it up: over the two bills the customer pays for exactly what the meter measured.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import TYPE_CHECKING

import polars as pl
from sqlalchemy import Connection

from dianfei.core.clock import BUSINESS_TZ, Clock, business_date
from dianfei.db.bulk import write_frame
from dianfei.db.frames import read_frame

if TYPE_CHECKING:
    from dianfei.db.engine import Database

#: registers an estimate can be built for: energy, cumulative, measured by intervals
ESTIMABLE = ("total", "sharp", "peak", "flat", "valley")

#: what ``estimate_register_reads`` needs per (meter, register)
WANTED_COLUMNS = ("meter_id", "register", "from_value", "from_at", "from_source", "digits")
ESTIMATE_SCHEMA = pl.Schema({
    "meter_id": pl.String(), "register": pl.String(), "read_at": pl.Datetime("us", "UTC"),
    "value": pl.Int64(), "from_value": pl.Int64(), "from_at": pl.Datetime("us", "UTC"),
    "from_source": pl.String(), "interval_wh": pl.Int64(), "intervals": pl.Int64(),
    "estimated_intervals": pl.Int64()})
REFUSAL_SCHEMA = pl.Schema({"meter_id": pl.String(), "reason": pl.String(), "detail": pl.String()})


def _local(instant: object) -> str:
    assert isinstance(instant, datetime)
    return instant.astimezone(BUSINESS_TZ).strftime("%Y-%m-%d %H:%M")


def _kwh(wh: int) -> str:
    """Wh as exact kWh text (integers, never float)."""
    return f"{'-' if wh < 0 else ''}{abs(wh) // 1000}.{abs(wh) % 1000:03d}"


def estimate_register_reads(db: Database, wanted: pl.DataFrame, until: datetime,
                            ) -> tuple[pl.DataFrame, pl.DataFrame]:
    """Estimated reads at ``until`` for ``wanted`` (:data:`WANTED_COLUMNS`; ``from_*`` the read
    each register starts from, null when there is none) and refusals (meter_id, reason, detail)
    for meters that cannot have one. Nothing is stored (see :func:`store_estimated_reads`)."""
    from dianfei.metering.vee import rules, tou
    from dianfei.metering.vee import service as vee

    cfg = vee.config(db)
    refusals: list[dict[str, str]] = []
    refused: set[str] = set()

    def refuse(meter_id: str, reason: str, detail: str) -> None:
        if meter_id not in refused:
            refused.add(meter_id)
            refusals.append({"meter_id": meter_id, "reason": reason, "detail": detail})

    for row in wanted.sort("meter_id", "register").iter_rows(named=True):
        if row["register"] not in ESTIMABLE:
            refuse(row["meter_id"], "estimate_unsupported_register",
                   f"meter {row['meter_id']} register {row['register']}: no estimated read is made "
                   f"for it (only {', '.join(ESTIMABLE)} are measured by intervals)")
        elif row["from_value"] is None or row["from_at"] is None:
            refuse(row["meter_id"], "estimate_no_previous_read",
                   f"meter {row['meter_id']} register {row['register']}: no previous read to "
                   "estimate from")
    todo = wanted.filter(~pl.col("meter_id").is_in(list(refused)))
    estimates = pl.DataFrame(schema=ESTIMATE_SCHEMA)
    if todo.height:
        first = todo["from_at"].min()
        assert isinstance(first, datetime)
        day_from, day_to = business_date(first), business_date(until - timedelta(microseconds=1))
        eff = vee.effective_intervals(db, day_from, day_to, todo["meter_id"].unique().to_list())
        cal = tou.calendar(cfg.tou_calendar, db.settings.billing.tariff_dir)
        bands = cal.minute_periods()["period"]
        eff = rules.local_parts(eff, str(BUSINESS_TZ)).with_columns(
            pl.lit(bands).gather(pl.col("tod")).alias("band"))
        span_min = ((pl.lit(until) - pl.col("from_at")).dt.total_seconds() // 60)
        mine = (pl.col("register") == "total") | (pl.col("register") == pl.col("band"))
        sums = (todo.lazy().join(eff.lazy(), on="meter_id", how="left")
                .filter(pl.col("ts").is_null()
                        | ((pl.col("ts") >= pl.col("from_at")) & (pl.col("ts") < until)))
                .group_by("meter_id", "register")
                .agg(pl.col("from_value").first(), pl.col("from_at").first(),
                     pl.col("from_source").first(), pl.col("digits").first(),
                     pl.col("minutes").cast(pl.Int64).sum().alias("covered_min"),
                     pl.col("wh").filter(mine).sum().alias("interval_wh"),
                     # the register's own intervals (its band's), for the derivation shown
                     pl.col("ts").filter(mine).count().alias("intervals"),
                     (mine & (pl.col("source") == "estimated")).sum().alias("estimated_intervals"),
                     # the coverage rule looks at every interval of the span
                     pl.col("ts").count().alias("all_intervals"),
                     pl.col("minutes").filter(pl.col("source") == "estimated").cast(pl.Int64)
                     .sum().alias("estimated_min"))
                .with_columns(span_min.cast(pl.Int64).alias("span_min"))
                .sort("meter_id", "register").collect())
        for row in sums.iter_rows(named=True):
            m, span = row["meter_id"], row["span_min"]
            since = f"from the read at {_local(row['from_at'])} to {_local(until)}"
            if row["all_intervals"] == 0:
                refuse(m, "estimate_no_intervals",
                       f"meter {m}: no intervals {since} to estimate a read from")
            elif row["covered_min"] < span:
                refuse(m, "estimate_intervals_missing",
                       f"meter {m}: intervals cover {row['covered_min']} of the {span} minutes "
                       f"{since}; an estimated read needs them all (measured or VEE-estimated)")
            elif row["estimated_min"] > cfg.bill_estimate_max_share * span:
                share = row["estimated_min"] / span
                refuse(m, "estimate_too_estimated",
                       f"meter {m}: {share:.1%} of the intervals {since} are VEE estimates; "
                       f"[vee] bill_estimate_max_share = {cfg.bill_estimate_max_share:.0%} "
                       "allows no more for an estimated read")
        estimates = (estimated_values(sums.filter(~pl.col("meter_id").is_in(list(refused))))
                     .with_columns(pl.lit(until).dt.cast_time_unit("us").alias("read_at"))
                     .select(list(ESTIMATE_SCHEMA.names())).cast(dict(ESTIMATE_SCHEMA)))  # type: ignore[arg-type]
    return estimates, pl.DataFrame(refusals, schema=REFUSAL_SCHEMA).sort("meter_id")


def estimated_values(frame: pl.DataFrame) -> pl.DataFrame:
    """Add ``value`` = from_value + interval_wh / 10 (Wh → 0.01 kWh, half up), rolled over at
    10**digits like the register itself. Pure: the arithmetic the true-up rests on."""
    wrap = pl.lit(10, pl.Int64).pow(pl.col("digits").cast(pl.Int64)) * 100
    return frame.with_columns(
        ((pl.col("from_value") + (pl.col("interval_wh") + 5) // 10) % wrap).alias("value"))


def store_estimated_reads(conn: Connection, estimates: pl.DataFrame, clock: Clock) -> pl.DataFrame:
    """Store estimates as register reads (source ``estimated``) with their derivation, in the
    caller's transaction, and return them as stored.

    A meter whose reads already sit at the estimate's instant (an invalid read at the period's
    end) gets its estimate one second earlier, so the actual read is kept as it was received and
    the next bill still finds the estimate it must start from. An estimate stored before (a bill
    run resumed) is returned as stored, not stored twice."""
    if estimates.height == 0:
        return estimates
    meters = estimates["meter_id"].unique().to_list()
    at = estimates["read_at"].unique().to_list()
    instants = sorted({*at, *(t - timedelta(seconds=1) for t in at)})
    existing = reads_at_conn(conn, meters, instants)
    stored_est = existing.filter(pl.col("source") == "estimated")
    actual = existing.filter(pl.col("source") != "estimated")
    occupied = actual.select("meter_id", "read_at").unique()
    moved = (estimates.join(occupied, on=["meter_id", "read_at"], how="semi")["meter_id"]
             .unique().to_list())
    out = estimates.with_columns(
        pl.when(pl.col("meter_id").is_in(moved)).then(pl.col("read_at") - timedelta(seconds=1))
        .otherwise(pl.col("read_at")).alias("read_at"))
    again = out.join(stored_est.select("meter_id", "register", "read_at", pl.col("value").alias("stored")),
                     on=["meter_id", "register", "read_at"], how="left")
    new = again.filter(pl.col("stored").is_null()).drop("stored")
    if new.height:
        write_frame(conn, "register_reads", new.select(
            "meter_id", "read_at", "register", "value", pl.lit("estimated").alias("source")))
        write_frame(conn, "read_estimates", new.with_columns(
            pl.lit(clock.now()).dt.cast_time_unit("us").alias("created_at")))
    return again.with_columns(pl.coalesce("stored", "value").alias("value")).drop("stored")


def reads_at_conn(conn: Connection, meter_ids: list[str], instants: list[datetime]) -> pl.DataFrame:
    """meter_id, register, read_at, value, source of the meters' reads at exactly ``instants``."""
    frames = []
    marks = ", ".join(f":t{j}" for j in range(len(instants)))
    for i in range(0, len(meter_ids), 500):
        chunk = meter_ids[i:i + 500]
        ids = ", ".join(f":m{j}" for j in range(len(chunk)))
        frames.append(read_frame(
            conn, "SELECT meter_id, register, read_at, value, source FROM register_reads "
            f"WHERE read_at IN ({marks}) AND meter_id IN ({ids})",
            {**{f"t{j}": t for j, t in enumerate(instants)}, **{f"m{j}": m for j, m in enumerate(chunk)}},
            instants=("read_at",), schema={"meter_id": pl.String, "register": pl.String,
                                           "value": pl.Int64, "source": pl.String}))
    return pl.concat(frames)


def estimate_basis(conn: Connection, keys: list[tuple[str, datetime]],
                   ) -> dict[tuple[str, datetime], list[dict[str, object]]]:
    """(meter_id, read_at) → the derivation of each register's estimated read at that instant,
    for the bill document: register, value, from_value, from_at, from_source, interval_wh,
    intervals, estimated_intervals."""
    out: dict[tuple[str, datetime], list[dict[str, object]]] = {}
    for meter_id, at in keys:
        rows = read_frame(
            conn, "SELECT register, value, from_value, from_at, from_source, interval_wh, intervals, "
            "estimated_intervals FROM read_estimates WHERE meter_id = :m AND read_at = :t "
            "ORDER BY register", {"m": meter_id, "t": at}, instants=("from_at",))
        if rows.height:
            out[(meter_id, at)] = rows.to_dicts()
    return out


def describe_basis(rows: list[dict[str, object]]) -> str:
    """One line: how the estimated read was derived, in figures (kWh before the multiplier)."""
    parts = []
    for r in rows:
        value, frm, wh = int(r["value"]), int(r["from_value"]), int(r["interval_wh"])  # type: ignore[call-overload]
        kind = "actual read" if r["from_source"] != "estimated" else "estimated read"
        parts.append(f"{r['register']} {value / 100:.2f} = {kind} {frm / 100:.2f} at "
                     f"{_local(r['from_at'])} + {_kwh(wh)} kWh of {r['intervals']} intervals "
                     f"({r['estimated_intervals']} VEE-estimated)")
    return "; ".join(parts)
